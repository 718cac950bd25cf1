"""How much one demonstration's label moves a query's prediction, by its distance from the query.

For each dataset, Q queries are drawn; each is read after all the other examples in a seeded random order, labeled
with gold (a benchmark may read gold to build contexts; the search never does). Then the demonstration d places
before the query has its label flipped, and the change of the query's log-odds towards the new label is
recorded. The mean over queries, per distance d, is a model's recency profile: a flat profile means a label counts
the same wherever it sits; a profile that is high at small d means the model copies recent labels, which is what
the tree layout's tail (plan.py, `--tail`) is sized for: the positions where a label counts most are the same
examples for every query.

All contexts of a query share their prefix up to the flipped demonstration, so a dataset costs about Q full
contexts plus Q·sum(d)·L tokens.

  python benchmarks/bench_recency.py [--datasets spam,reviews,...] [--queries 12] [--seed 0] [--model NAME|PATH] [--json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_quality import DATASETS  # noqa: E402

from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.plan import trie  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402

DISTANCES = (1, 2, 3, 4, 6, 8, 12, 16, 24)


def profile(ds, backend, queries: int, seed: int) -> dict[int, float]:
    """{distance: mean change of a query's log-odds towards a flipped demonstration's new label}."""
    n, gold, rng = len(ds.examples), list(ds.gold), random.Random(seed)
    seqs, flipped = [], {}
    for q in rng.sample(range(n), min(queries, n)):
        others = [j for j in range(n) if j != q]
        rng.shuffle(others)
        base = [(j, gold[j]) for j in others]
        seqs.append((tuple(base) + ((q, None),), (q, 0)))
        for d in DISTANCES:
            if d <= len(base):
                alt = list(base)
                j, y = alt[-d]
                alt[-d] = (j, not y)
                flipped[(q, d)] = not y
                seqs.append((tuple(alt) + ((q, None),), (q, d)))
    got = backend.run(trie(seqs))
    out = {}
    for d in DISTANCES:
        moves = [(got[(q, dd)] - got[(q, 0)]) * (1 if new else -1) for (q, dd), new in flipped.items() if dd == d]
        if moves:
            out[d] = statistics.mean(moves)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="spam,reviews,products,capitals,sizes,arithmetic")
    ap.add_argument("--queries", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", action="store_true", help="one JSON line per dataset instead of the table")
    args = ap.parse_args()

    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions
    from icm_lite.run import open_backend

    ref = resolve_model(args.model)
    backend = open_backend(ref.path, ModelOptions(n_ctx=8192))
    if not args.json:
        print("| dataset | " + " | ".join(f"d={d}" for d in DISTANCES) + " | tokens | s |")
        print("|---" * (len(DISTANCES) + 3) + "|")
    for name in args.datasets.split(","):
        data, task_spec = DATASETS[name]
        task = Task.resolve(str(task_spec))
        ds = load_dataset(data, task)
        backend.prepare(ds.examples, task.label_words)
        backend.reset_stats()
        t0 = time.perf_counter()
        prof = profile(ds, backend, args.queries, args.seed)
        row = {"dataset": name, "model": ref.name, "profile": prof, "tokens": backend.stats()["tokens_evaluated"],
               "seconds": round(time.perf_counter() - t0, 1)}
        if args.json:
            print(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS).decode(), flush=True)
        else:
            cells = " | ".join(f"{prof[d]:+.2f}" if d in prof else "" for d in DISTANCES)
            print(f"| {name} | {cells} | {row['tokens']:,} | {row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
