"""Tokens to label a whole dataset: the batch-by-batch cold search (the default until 2026-12) against the default
(a warm-started core that fits one context, the rest predicted from it), on the fake backend with real token lengths.

The fake backend (icm_lite/fake.py) has a hidden concept and counts tokens exactly as the llama.cpp backend does
(prefix reuse included); its lengths here are the real model's tokens of each example of FILE, as a query and as a
demonstration of either label, repeated to reach N examples (new ids and groups, the same lengths). Both runs go
through run.Job, the labeling job of `icm-lite label`.

The cold path labels B batches; batches 2..B are independent given batch 1 and balanced in size, so this script
runs batch 1 and batch 2 and projects the rest as B - 2 more of batch 2 (`--all-batches` runs them all). The
default path runs whole. Agreement is with the fake's hidden concept: the core's searched labels and the predicted
rest separately.

  python benchmarks/bench_dataset.py [--data FILE --task TASK] [--sizes 1000,10000] [--model NAME|PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.config import RunConfig  # noqa: E402
from icm_lite.data import Dataset, load_dataset  # noqa: E402
from icm_lite.fake import FakeBackend  # noqa: E402
from icm_lite.options import Batching, ModelOptions  # noqa: E402
from icm_lite.run import Job, agreement, plan_core  # noqa: E402
from icm_lite.rundir import RunDir  # noqa: E402
from icm_lite.search import SearchConfig  # noqa: E402
from icm_lite.tasks import Example, Task  # noqa: E402


class RealLengths(FakeBackend):
    """The fake backend with each example's real lengths: as a query, and as a demonstration of either label."""

    def __init__(self, hidden, query, demo, **kw):
        super().__init__(hidden, query, **kw)
        self.demo = demo  # demo[i] = (tokens with the False word, tokens with the True word)

    def length(self, item) -> int:
        i, y = item
        return self.lengths[i] if y is None else self.demo[i][1 if y else 0]


def real_lengths(ds: Dataset, model: str | None) -> tuple[list[int], list[tuple[int, int]]]:
    from icm_lite.llama import LlamaBackend
    from icm_lite.models import resolve_model

    b = LlamaBackend(str(resolve_model(model).path), ModelOptions(n_ctx=512))
    b.prepare(ds.examples, ds.task.label_words)
    out = [b.length((i, None)) for i in range(len(ds))], [(b.length((i, False)), b.length((i, True)))
                                                          for i in range(len(ds))]
    b.close()
    return out


def tiled(ds: Dataset, n: int) -> Dataset:
    """The first n examples of the dataset repeated: copy k gets ids and groups of its own."""
    examples, gold = [], []
    k = 0
    while len(examples) < n:
        for ex, g in zip(ds.examples, ds.gold):
            if len(examples) == n:
                break
            group = None if ex.group is None else f"{k}:{ex.group}"
            examples.append(Example(f"{k}:{ex.id}", ex.prompt, group, ex.key))
            gold.append(g)
        k += 1
    return Dataset(tuple(examples), tuple(gold), ds.task, ds.source)


def job(ds, backend, n_ctx, core, seed, path) -> Job:
    batching = Batching(core=core)
    batches, carried, rest = plan_core(ds, backend, n_ctx, batching)
    config = RunConfig(data="mem", task=ds.task, search=SearchConfig(seed=seed, init="seeds" if core == "all" else
                                                                     "bootstrap"),
                       batching=batching, batches=tuple(tuple(b) for b in batches), carried=carried, rest=tuple(rest))
    rd = RunDir.create(path)
    rd.write_json("config.json", {})
    return Job(config, ds, backend, rd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "benchmarks" / "data" / "mixed1000.jsonl"))
    ap.add_argument("--task", default=str(ROOT / "benchmarks" / "data" / "mixed1000.task.json"))
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--model", default=None, help="whose tokenizer gives the lengths (default: the default model)")
    ap.add_argument("--n-ctx", type=int, default=ModelOptions.n_ctx)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-batches", action="store_true", help="run every cold batch instead of projecting")
    args = ap.parse_args()

    task = Task.resolve(args.task)
    base = load_dataset(args.data, task)
    query, demo = real_lengths(base, args.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    print("| N | path | batches (searched) | predicted | tokens | agreement, searched | agreement, predicted | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        ds = tiled(base, n)
        reps = -(-n // len(base))
        q, d = (query * reps)[:n], (demo * reps)[:n]
        results = {}
        for core in ("all", "auto"):
            fb = RealLengths(list(ds.gold), q, d, seed=args.seed, n_ctx=args.n_ctx)
            j = job(ds, fb, args.n_ctx, core, args.seed, tmp / f"{n}-{core}")
            t0 = time.perf_counter()
            if core == "all" and not args.all_batches and len(j.batches) > 2:
                j.run_batch(0)
                first = fb.tokens_evaluated
                j.run_batch(1)
                tokens = first + (len(j.batches) - 1) * (fb.tokens_evaluated - first)
                how = f"{len(j.batches)} (2 run, {len(j.batches) - 2} projected as batch 2)"
            else:
                j.run()
                tokens = fb.tokens_evaluated
                how = f"{len(j.batches)}" + (f" (core {len(j.batches[0])})" if j.rest else "")
            secs = time.perf_counter() - t0
            searched = agreement(j.labels, ds.gold)
            rest = agreement([j.predicted[i][0] if i in j.predicted and i in set(j.rest) else None
                              for i in range(n)], ds.gold)
            results[core] = tokens
            print(f"| {n:,} | {'batch by batch, cold (--core all --init seeds)' if core == 'all' else 'default'} | "
                  f"{how} | {len(j.rest):,} | {tokens:,} | {searched[0]:.1%} of {searched[1]:,} | "
                  f"{'—' if rest is None else f'{rest[0]:.1%} of {rest[1]:,}'} | {secs:.0f} |", flush=True)
        print(f"| {n:,} | default / cold | | | {results['auto'] / results['all']:.4f} (1/{results['all'] / results['auto']:.0f}) "
              f"| | | |", flush=True)


if __name__ == "__main__":
    main()
