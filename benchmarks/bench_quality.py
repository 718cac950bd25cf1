"""Label quality on small gold-labeled datasets: ICM against zero-shot, gold and random many-shot, per setting.

For each dataset (benchmarks/data/, examples/; see benchmarks/data/README.md) the baselines are computed once:
zero-shot accuracy (no demonstrations), gold many-shot and random many-shot accuracy (each example predicted
from the examples of all *other* consistency groups, labeled with gold / balanced random labels, in the search's
layout: `Scorer.held_out`), the same with the own group's other members shown (`*_loo`), and P and I of the
gold labeling. Then `icm-lite label` runs (run.start + Job.run, the CLI's path) for every setting and seed, and
each run reports: the fraction the search labeled, agreement with gold of the searched labels (and with the
predicted ones added), U of the ICM labels and U of gold on the same examples, tokens, seconds.

Gold labels are read here for evaluation and baselines only; the runs get the data files as a user would.

  python benchmarks/bench_quality.py [--datasets reviews,products,...] [--settings default,authors] [--seeds 0,1,2]
                                     [--model NAME|PATH] [--n-ctx N] [--jsonl results.jsonl] [--set KEY=VALUE ...]
  python benchmarks/bench_quality.py table results.jsonl      # the markdown table, with the acceptance verdict
  --seeds none: baselines only (no search).

Settings: `default` is SearchConfig's defaults (what `icm-lite label` does with no search options: the authors'
alpha 30, T0 10, ConsistencyFix and seeds, 12 iterations per example); `tiny` is alpha 2, T0 0.7 (what the demo
used for the 270M model before); `authors` adds the authors' fixed 3000 iterations. `--set KEY=VALUE` overrides a
search option in every setting (e.g. --set fix=paper).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.config import RunConfig  # noqa: E402
from icm_lite.consistency import Consistency  # noqa: E402
from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.scoring import Scorer, predictability  # noqa: E402
from icm_lite.search import SearchConfig  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
DATASETS = {
    "reviews": (ROOT / "examples" / "reviews.jsonl", ROOT / "examples" / "reviews.task.json"),
    "products": (DATA / "products.jsonl", DATA / "products.task.json"),
    "capitals": (DATA / "capitals.jsonl", DATA / "capitals.task.json"),
    "sizes": (DATA / "sizes.jsonl", DATA / "sizes.task.json"),
    "spam": (DATA / "spam.jsonl", DATA / "spam.task.json"),
    "arithmetic": (DATA / "arithmetic.jsonl", DATA / "arithmetic.task.json"),
    "truthfulqa": (ROOT / "examples" / "truthfulqa_sample.jsonl", "claim"),
    "gsm8k": (ROOT / "examples" / "gsm8k_sample.jsonl", "math"),
    "alpaca": (ROOT / "examples" / "alpaca_sample.jsonl", "comparison"),
}
SETTINGS = {"default": {}, "tiny": {"alpha": 2.0, "t0": 0.7},
            "authors": {"alpha": 30.0, "t0": 10.0, "fix": "code", "seeds": "groups", "iterations": 3000}}


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def accuracy(scores: dict[int, float], gold) -> float:
    return sum((s > 0) == gold[i] for i, s in scores.items()) / len(scores)


def baselines(ds, backend, order: str, tail: int) -> dict:
    """Zero-shot, gold and random many-shot accuracy, and P, I of the gold labeling (no search).

    Many-shot is held out by group (`Scorer.held_out`): each example is predicted from the labeled examples of
    the *other* consistency groups, as the paper's test questions never have their own other answers among the
    demonstrations. The in-layout leave-one-out accuracies (the mate shown, wherever the layout puts it) are
    kept as `*_loo`: in the grouped layout the mate is the last demonstration, and a model that copies or
    answers against the last label reads the answer off it (benchmarks/README.md, quality)."""
    n = len(ds.examples)
    sc = Scorer(backend, ds.examples, order, tail=tail)
    gold = list(ds.gold)
    rand = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(0).shuffle(rand)
    zero = sc.predict_many(range(n), [None] * n)
    g, r = sc.scores([gold, rand])
    cons = Consistency(ds.examples, ds.task.relation)
    return {"zero_shot": accuracy(zero, gold), "gold_many_shot": accuracy(sc.held_out(gold), gold),
            "random_many_shot": accuracy(sc.held_out(rand), gold), "gold_loo": accuracy(g, gold),
            "random_loo": accuracy(r, gold), "P_gold": predictability(g, gold), "I_gold": cons.count(gold),
            "zero_shot_true": sum(s > 0 for s in zero.values()) / n}


def run_one(name: str, ds, data: Path, task: Task, backend, search: SearchConfig, out: Path) -> dict:
    from icm_lite import run
    from icm_lite.evaluate import u_gap
    from icm_lite.export import load_run

    cfg = RunConfig(data=str(data), task=task, search=search)
    backend.reset_stats()
    t0 = time.perf_counter()
    job = run.start(cfg, out, force=True, backend=backend)
    summary = job.run()
    seconds = time.perf_counter() - t0
    tokens = backend.stats()["tokens_evaluated"]
    gap = u_gap(load_run(out), backend)
    n = len(ds.examples)
    return {"dataset": name, "seed": search.seed, "examples": n, "labeled": summary["labeled"] / n,
            "agreement": summary.get("agreement"), "agreement_with_predicted": summary.get("agreement_with_predicted",
                                                                                          summary.get("agreement")),
            "true_share": summary["true"] / max(1, summary["labeled"]), "U_icm": gap["icm"], "U_gold_same": gap["gold_same"],
            "U_gold_all": gap["gold_all"], "gap": gap["gap"], "iterations": summary["iterations"], "stop": summary["stop"],
            "inconsistencies": summary["inconsistencies"], "tokens": tokens, "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="reviews,products,capitals,sizes,spam,arithmetic")
    ap.add_argument("--settings", default="default,authors")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default=None)
    ap.add_argument("--n-ctx", type=int, default=8192, help="context size; raise it for long examples (the paper samples ran with 16384)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a search option")
    ap.add_argument("--jsonl", default=None, help="append one JSON line per baseline and per run")
    args = ap.parse_args()

    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions
    from icm_lite.run import open_backend

    overrides = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    ref = resolve_model(args.model)
    backend = open_backend(ref.path, ModelOptions(n_ctx=args.n_ctx))
    sink = open(args.jsonl, "ab") if args.jsonl else None

    def emit(row: dict) -> None:
        print(orjson.dumps(row).decode(), flush=True)
        if sink:
            sink.write(orjson.dumps(row) + b"\n")
            sink.flush()

    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    for name in args.datasets.split(","):
        data, task_spec = DATASETS[name]
        task = Task.resolve(str(task_spec))
        ds = load_dataset(data, task)
        backend.prepare(ds.examples, task.label_words)
        by_order: dict[tuple, dict] = {}  # the baselines depend on the layout only, not on the other settings
        for setting in args.settings.split(","):
            search = dataclasses.replace(SearchConfig(), **{**SETTINGS[setting], **overrides})
            layout = (search.order, search.tail)
            if layout not in by_order:
                by_order[layout] = baselines(ds, backend, *layout)
            base = by_order[layout]
            emit({"kind": "baseline", "model": ref.name, "dataset": name, "setting": setting, **base,
                  "U_gold_all": search.alpha * base["P_gold"] - base["I_gold"]})
            for seed in (int(s) for s in args.seeds.split(",") if s != "none"):
                row = run_one(name, ds, data, task, backend, dataclasses.replace(search, seed=seed), tmp / f"{name}-{setting}-{seed}")
                emit({"kind": "run", "model": ref.name, "setting": setting,
                      "search": {k: v for k, v in dataclasses.asdict(search).items() if k != "seed"}, **row})
    if sink:
        sink.close()


def table(path: str) -> None:
    """Markdown tables from a --jsonl file: one row per dataset and setting (means over seeds, min–max)."""
    rows = [orjson.loads(line) for line in open(path, "rb") if line.strip()]
    base = {(r["dataset"], r["setting"]): r for r in rows if r["kind"] == "baseline"}
    for (name, _), b in base.items():
        if "gold_loo" not in b:
            sys.exit(f"{path}: the {name} baseline predates held-out many-shot; append new ones: --datasets {name} --seeds none")
    runs: dict = {}
    for r in rows:
        if r["kind"] == "run":
            runs.setdefault((r["dataset"], r["setting"]), []).append(r)
    print("| dataset | setting | zero-shot | gold many-shot | random many-shot | gold, mate shown | labeled (searched) | "
          "agreement | agreement incl. predicted | U(ICM) | U(gold) same examples | tokens | s | seeds | acceptance |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def span(xs, fmt):
        lo, hi, mean = min(xs), max(xs), statistics.mean(xs)
        return fmt(mean) if lo == hi else f"{fmt(mean)} ({fmt(lo)}–{fmt(hi)})"

    pct = lambda x: f"{x:.0%}"  # noqa: E731

    def baseline_cells(key, b) -> str:
        return (f"| {key[0]} | {key[1]} | {pct(b['zero_shot'])} | {pct(b['gold_many_shot'])} | "
                f"{pct(b['random_many_shot'])} | {pct(b['gold_loo'])} |")

    for key, rs in runs.items():
        b = base[key]
        signal = b["gold_many_shot"] - b["zero_shot"] >= 0.10
        ok = all(r["labeled"] >= 0.9 and (r["agreement"] or 0) >= b["gold_many_shot"] - 0.05
                 and r["U_icm"] >= r["U_gold_same"] - 0.1 for r in rs)
        verdict = ("pass" if ok else "**fail**") if signal else "n/a (no signal)"
        print(f"{baseline_cells(key, b)} "
              f"{span([r['labeled'] for r in rs], pct)} | {span([r['agreement'] or 0 for r in rs], pct)} | "
              f"{span([r['agreement_with_predicted'] or 0 for r in rs], pct)} | "
              f"{span([r['U_icm'] for r in rs], lambda x: f'{x:.2f}')} | "
              f"{span([r['U_gold_same'] for r in rs], lambda x: f'{x:.2f}')} | "
              f"{span([r['tokens'] for r in rs], lambda x: f'{x:,.0f}')} | {span([r['seconds'] for r in rs], lambda x: f'{x:.0f}')} | "
              f"{len(rs)} | {verdict} |")
    for key, b in base.items():  # baselines without runs (--seeds none)
        if key not in runs:
            print(baseline_cells(key, b) + " — |" * 7 + " 0 | not searched |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        main()
