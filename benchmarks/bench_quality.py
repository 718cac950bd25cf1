"""Label quality on gold-labeled datasets: ICM (warm default and cold), the cheap peer, zero-shot and many-shot.

For each dataset (benchmarks/data/, examples/; see benchmarks/data/README.md) the baselines are computed once:
zero-shot accuracy (no demonstrations) and zero-shot decoded (the same log-odds, decoded consistently group by
group: in a pair, the likelier member True), gold many-shot and random many-shot accuracy (each example predicted
from the examples of all *other* consistency groups, labeled with gold / balanced random labels, in the search's
layout: `Scorer.held_out`), the same with the own group's other members shown (`*_loo`), and P and I of the
gold labeling. For every seed, the cheap peer (bootstrap.py: bootstrapped many-shot prompting with the consistency
constraint, from balanced random labels, at most PASSES passes) reports its agreement, passes and tokens. Then
`icm-lite label` runs (run.start + Job.run, the CLI's path) for every setting and seed, and each run reports: the
fraction the search labeled, agreement with gold of the searched labels (and with the predicted ones added, and of
the predicted rest alone when a core was searched), U of the ICM labels and U of gold on the same examples, how
the batch started (bootstrap passes, flip kept, fell back to seeds), tokens, seconds.

Gold labels are read here for evaluation and baselines only; the runs get the data files as a user would.

  python benchmarks/bench_quality.py [--datasets reviews,products,...] [--settings default,authors] [--seeds 0,1,2]
                                     [--model NAME|PATH] [--n-ctx N] [--jsonl results.jsonl] [--set KEY=VALUE ...]
  python benchmarks/bench_quality.py table results.jsonl [more.jsonl]  # the markdown table, with the verdict
  --seeds none: baselines only (no search).

Settings: `default` is SearchConfig's defaults (what `icm-lite label` does with no search options: the warm start,
--init bootstrap); `cold` is --init seeds, the authors' start (alpha 30, T0 10, their ConsistencyFix and seeds, 12
iterations per example: the default until 2026-12); `tiny` is alpha 2, T0 0.7 from seeds (what the demo used for
the 270M model before); `authors` adds the authors' fixed 3000 iterations. `--set KEY=VALUE` overrides a search
option in every setting (e.g. --set fix=paper). `--no-peer` skips the peer rows; `--baselines gold|zero-shot` computes
fewer baselines (all of them cost ~4 leave-one-out passes over the whole dataset in one context).
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

from icm_lite.bootstrap import PASSES, peer  # noqa: E402
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
    "meals": (DATA / "meals.jsonl", DATA / "meals.task.json"),
    "hotels": (DATA / "hotels.jsonl", DATA / "hotels.task.json"),
    "gadgets": (DATA / "gadgets.jsonl", DATA / "gadgets.task.json"),
    "mixed1000": (DATA / "mixed1000.jsonl", DATA / "mixed1000.task.json"),
}
SETTINGS = {"default": {}, "cold": {"init": "seeds"}, "tiny": {"init": "seeds", "alpha": 2.0, "t0": 0.7},
            "authors": {"init": "seeds", "alpha": 30.0, "t0": 10.0, "fix": "code", "seeds": "groups",
                        "iterations": 3000}}


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def accuracy(scores: dict[int, float], gold) -> float:
    return sum((s > 0) == gold[i] for i, s in scores.items()) / len(scores)


def cheap_baselines(ds, backend) -> dict:
    """Zero-shot accuracy, and zero-shot decoded consistently per group (no demonstrations: n queries)."""
    n = len(ds.examples)
    zero = Scorer(backend, ds.examples).predict_many(range(n), [None] * n)
    decoded = Consistency(ds.examples, ds.task.relation).decode(zero)
    return {"zero_shot": accuracy(zero, ds.gold), "zero_shot_true": sum(s > 0 for s in zero.values()) / n,
            "zero_shot_decoded": sum(decoded[i] == ds.gold[i] for i in range(n)) / n}


def peer_row(ds, backend, order: str, tail: int, seed: int) -> dict:
    """The cheap peer on the whole dataset in one context, the layout of a run with this seed."""
    sc = Scorer(backend, ds.examples, order, seed, tail)
    backend.reset_stats()
    t0 = time.perf_counter()
    got = peer(sc, Consistency(ds.examples, ds.task.relation), random.Random(seed), PASSES)
    n = len(ds.examples)
    return {"seed": seed, "agreement": sum(y == g for y, g in zip(got.labels, ds.gold)) / n, "passes": got.passes,
            "converged": got.converged, "changed": got.changed, "tokens": backend.stats()["tokens_evaluated"],
            "seconds": round(time.perf_counter() - t0, 1)}


def baselines(ds, backend, order: str, tail: int, which: str = "full") -> dict:
    """Zero-shot, gold and random many-shot accuracy, and P, I of the gold labeling (no search).

    Many-shot is held out by group (`Scorer.held_out`): each example is predicted from the labeled examples of
    the *other* consistency groups, as the paper's test questions never have their own other answers among the
    demonstrations. The in-layout leave-one-out accuracies (the mate shown, wherever the layout puts it) are
    kept as `*_loo`: in the grouped layout the mate is the last demonstration, and a model that copies or
    answers against the last label reads the answer off it (benchmarks/README.md, quality)."""
    if which == "zero-shot":
        return cheap_baselines(ds, backend)
    n = len(ds.examples)
    sc = Scorer(backend, ds.examples, order, tail=tail)
    gold = list(ds.gold)
    if which == "gold":
        return {**cheap_baselines(ds, backend), "gold_many_shot": accuracy(sc.held_out(gold), gold)}
    rand = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(0).shuffle(rand)
    g, r = sc.scores([gold, rand])
    cons = Consistency(ds.examples, ds.task.relation)
    return {**cheap_baselines(ds, backend), "gold_many_shot": accuracy(sc.held_out(gold), gold),
            "random_many_shot": accuracy(sc.held_out(rand), gold), "gold_loo": accuracy(g, gold),
            "random_loo": accuracy(r, gold), "P_gold": predictability(g, gold), "I_gold": cons.count(gold)}


def run_one(name: str, ds, data: Path, task: Task, backend, search: SearchConfig, out: Path) -> dict:
    from icm_lite import run
    from icm_lite.evaluate import u_gap
    from icm_lite.export import load_run
    from icm_lite.rundir import RunDir

    cfg = RunConfig(data=str(data), task=task, search=search)
    backend.reset_stats()
    t0 = time.perf_counter()
    job = run.start(cfg, out, force=True, backend=backend)
    summary = job.run()
    seconds = time.perf_counter() - t0
    tokens = backend.stats()["tokens_evaluated"]
    gap = u_gap(load_run(out), backend)
    n = len(ds.examples)
    start = next((e for e in RunDir(out).events() if e["kind"] == "seed"), {})
    return {"dataset": name, "seed": search.seed, "examples": n, "labeled": summary["labeled"] / n,
            "core": summary.get("core", n), "agreement_rest": summary.get("agreement_predicted") if summary.get("rest")
            else None, "passes": start.get("passes"), "flipped": start.get("flipped"),
            "fell_back": bool(start.get("changed")),
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
    ap.add_argument("--no-peer", dest="peer", action="store_false", help="skip the cheap peer's rows")
    ap.add_argument("--baselines", choices=("full", "gold", "zero-shot"), default="full",
                    help="full: every baseline; gold: zero-shot and gold many-shot (one held-out pass); zero-shot: "
                         "no many-shot pass (for data far larger than a context)")
    ap.add_argument("--first", type=int, default=None, metavar="N",
                    help="each dataset's first N records only (a slice of a large one, as dataset[:N])")
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
        if args.first:  # the first N records (the data files keep a group's records together)
            name = f"{name}[:{args.first}]"
            lines = Path(data).read_bytes().splitlines(keepends=True)[: args.first]
            data = tmp / f"{name}.jsonl"
            data.write_bytes(b"".join(lines))
        ds = load_dataset(data, task)
        backend.prepare(ds.examples, task.label_words)
        by_order: dict[tuple, dict] = {}  # the baselines depend on the layout only, not on the other settings
        for setting in args.settings.split(","):
            search = dataclasses.replace(SearchConfig(), **{**SETTINGS[setting], **overrides})
            layout = (search.order, search.tail)
            seeds = [int(s) for s in args.seeds.split(",") if s != "none"]
            if layout not in by_order:
                by_order[layout] = baselines(ds, backend, *layout, args.baselines)
                for seed in seeds if args.peer else ():
                    emit({"kind": "peer", "model": ref.name, "dataset": name, **peer_row(ds, backend, *layout, seed)})
            base = by_order[layout]
            u_gold = search.alpha * base["P_gold"] - base["I_gold"] if "P_gold" in base else None
            emit({"kind": "baseline", "model": ref.name, "dataset": name, "setting": setting, **base,
                  "U_gold_all": u_gold})
            for seed in seeds:
                row = run_one(name, ds, data, task, backend, dataclasses.replace(search, seed=seed), tmp / f"{name}-{setting}-{seed}")
                emit({"kind": "run", "model": ref.name, "setting": setting,
                      "search": {k: v for k, v in dataclasses.asdict(search).items() if k != "seed"}, **row})
    if sink:
        sink.close()


def load_rows(paths: list[str]) -> list[dict]:
    return [orjson.loads(line) for path in paths for line in open(path, "rb") if line.strip()]


def span(xs, fmt) -> str:
    lo, hi, mean = min(xs), max(xs), statistics.mean(xs)
    return fmt(mean) if lo == hi else f"{fmt(mean)} ({fmt(lo)}–{fmt(hi)})"


def pct(x) -> str:
    return f"{x:.0%}"


def count(x) -> str:
    return f"{x:,.0f}"


def table(paths: list[str]) -> None:
    """The side-by-side table from --jsonl files: per dataset the baselines, the peer, ICM at the default and ICM
    cold (means over seeds, min–max), and the verdict of issue 19's acceptance where gold many-shot beats zero-shot
    by 10 points: the default's agreement >= cold's - 2 points and >= the peer's, its tokens <= 1/5 of cold's."""
    rows = load_rows(paths)
    base: dict[str, dict] = {}
    for r in rows:
        if r["kind"] == "baseline":
            base.setdefault(r["dataset"], {}).update({k: v for k, v in r.items() if v is not None})
    peers: dict[str, list] = {}
    runs: dict[tuple, list] = {}
    for r in rows:
        if r["kind"] == "peer":
            peers.setdefault(r["dataset"], []).append(r)
        elif r["kind"] == "run":
            runs.setdefault((r["dataset"], r["setting"]), []).append(r)
    print("| dataset | examples (searched) | zero-shot | zero-shot decoded | gold many-shot | peer: agreement | peer: passes "
          "| peer: tokens | ICM default: agreement | default: rest predicted | default: tokens | ICM cold: agreement "
          "| cold: tokens | default / cold tokens | seeds: peer/default/cold | verdict |")
    print("|" + "---|" * 16)
    names = list(dict.fromkeys([r["dataset"] for r in rows if r["kind"] in ("baseline", "peer", "run")]))
    for name in names:
        b, ps = base.get(name, {}), peers.get(name, [])
        warm, cold = runs.get((name, "default"), []), runs.get((name, "cold"), [])
        cell = lambda rs, key, fmt: span([r[key] for r in rs if r.get(key) is not None], fmt) if any(  # noqa: E731
            r.get(key) is not None for r in rs) else "—"
        n = (warm or cold or [{}])[0].get("examples", "—")
        core = (warm or [{}])[0].get("core")
        size = f"{n} ({core})" if core and core != n else f"{n}"
        signal = "gold_many_shot" in b and b["gold_many_shot"] - b["zero_shot"] >= 0.10
        verdict = "n/a (no signal)" if "gold_many_shot" in b and not signal else "—"
        if signal and warm and cold:
            mean = lambda rs, key: statistics.mean(r[key] or 0 for r in rs)  # noqa: E731
            ok = (mean(warm, "agreement") >= mean(cold, "agreement") - 0.02
                  and (not ps or mean(warm, "agreement") >= mean(ps, "agreement"))
                  and mean(warm, "tokens") <= mean(cold, "tokens") / 5)
            verdict = "pass" if ok else "**fail**"
        ratio = (f"{statistics.mean(r['tokens'] for r in warm) / statistics.mean(r['tokens'] for r in cold):.2f}"
                 if warm and cold else "—")
        passes = span([p["passes"] for p in ps], lambda x: f"{x:.1f}".rstrip("0").rstrip(".")) if ps else "—"
        print(f"| {name} | {size} | {pct(b['zero_shot']) if 'zero_shot' in b else '—'} | "
              f"{pct(b['zero_shot_decoded']) if 'zero_shot_decoded' in b else '—'} | "
              f"{pct(b['gold_many_shot']) if 'gold_many_shot' in b else '—'} | {cell(ps, 'agreement', pct)} | {passes} | "
              f"{cell(ps, 'tokens', count)} | {cell(warm, 'agreement', pct)} | {cell(warm, 'agreement_rest', pct)} | "
              f"{cell(warm, 'tokens', count)} | {cell(cold, 'agreement', pct)} | {cell(cold, 'tokens', count)} | {ratio} | "
              f"{len(ps)}/{len(warm)}/{len(cold)} | {verdict} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        main()
