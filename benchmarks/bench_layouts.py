"""Does a labeling score well because of the data, or because of one layout? U of labelings across layouts.

A search scores every labeling in one layout (plan.py), fixed for its batch. A labeling that is better than gold
only in that layout has been fitted to where the layout puts each example (which demonstrations sit right before
each query), not to the concept. This script scores gold, flipped gold and the searched labels of finished runs
(their labels.jsonl, `"source": "search"` only) in several layouts and prints U = alpha·P - I of each; the
accuracy of gold's own leave-one-out predictions in each layout (the mate shown, where the layout puts it; not
bench_quality's held-out gold many-shot) comes with it. Gold is read here for evaluation only.

  python benchmarks/bench_layouts.py --dataset spam --runs RUN_DIR[,RUN_DIR...] \
      [--layouts tree:0,tree:1,tree:2,grouped:0,grouped:1] [--alpha 30] [--model NAME|PATH] [--json]

Each layout is KIND:SEED (kind: tree, grouped, canonical). One pass per layout scores all labelings together.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_quality import DATASETS  # noqa: E402

from icm_lite.consistency import Consistency  # noqa: E402
from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.export import load_run, used_labels  # noqa: E402
from icm_lite.scoring import Scorer, predictability  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("--runs", default="", help="run directories, comma-separated (labels.jsonl in each)")
    ap.add_argument("--layouts", default="tree:0,tree:1,tree:2,grouped:0,grouped:1")
    ap.add_argument("--alpha", type=float, default=30.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", action="store_true", help="one JSON line per layout instead of the table")
    args = ap.parse_args()

    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions
    from icm_lite.run import open_backend

    data, task_spec = DATASETS[args.dataset]
    task = Task.resolve(str(task_spec))
    ds = load_dataset(data, task)
    ref = resolve_model(args.model)
    backend = open_backend(ref.path, ModelOptions(n_ctx=8192))
    backend.prepare(ds.examples, task.label_words)
    gold = list(ds.gold)
    labelings = {"gold": gold, "flipped gold": [not y for y in gold]}
    for run in filter(None, args.runs.split(",")):
        lab = list(used_labels(load_run(run), False))  # the searched labels, in the data file's order
        agree = sum(y == g for y, g in zip(lab, gold) if y is not None) / max(1, sum(y is not None for y in lab))
        labelings[f"{Path(run).name} ({agree:.0%} agreement)"] = lab
    cons = Consistency(ds.examples, task.relation)
    names = list(labelings)
    rows = []
    for spec in args.layouts.split(","):
        kind, _, seed = spec.partition(":")
        scorer = Scorer(backend, ds.examples, kind, int(seed or 0))
        backend.reset_stats()
        t0 = time.perf_counter()
        got = scorer.scores([labelings[k] for k in names])
        u = {k: args.alpha * predictability(s, labelings[k]) - cons.count(labelings[k]) for k, s in zip(names, got)}
        acc = sum((s > 0) == gold[i] for i, s in got[0].items()) / len(got[0])
        rows.append({"layout": spec, "U": u, "gold_loo": acc, "tokens": backend.stats()["tokens_evaluated"],
                     "seconds": round(time.perf_counter() - t0, 1)})
        if args.json:
            print(orjson.dumps(rows[-1]).decode(), flush=True)
    if not args.json:
        print("| labeling | " + " | ".join(r["layout"] for r in rows) + " |")
        print("|---" * (len(rows) + 1) + "|")
        for k in names:
            print(f"| {k} | " + " | ".join(f"{r['U'][k]:.2f}" for r in rows) + " |")
        print("| gold, leave-one-out (mate shown) | " + " | ".join(f"{r['gold_loo']:.0%}" for r in rows) + " |")
        print("| tokens | " + " | ".join(f"{r['tokens']:,}" for r in rows) + " |")


if __name__ == "__main__":
    main()
