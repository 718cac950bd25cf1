"""Exact leave-one-out scoring: naive (every context from scratch) vs icm_lite's prefix tree, one run.

For each n, the same n examples with the same (arbitrary, fixed) labels are scored both ways on the
same model. The naive baseline evaluates exactly the contexts the tree produces, each from an empty
cache, so `max_abs_diff` compares identical token sequences. `raw_tokens_per_s` is llama.cpp's prompt
rate on one long sequence of the same examples (the ceiling for any scorer).

  python benchmarks/bench_scoring.py [--model NAME|PATH] [--ns 16,32,64] [--json]
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.llama import LlamaBackend  # noqa: E402
from icm_lite.models import resolve_model  # noqa: E402
from icm_lite.options import ModelOptions  # noqa: E402
from icm_lite.plan import Node, contexts  # noqa: E402
from icm_lite.scoring import Scorer  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402

DATA = ROOT / "examples" / "truthfulqa_sample.jsonl"


def measure(backend: LlamaBackend, examples, n: int, seed: int = 0) -> dict:
    ex = examples[:n]
    backend.prepare(ex, ("True", "False"))
    sc = Scorer(backend, ex)
    rng = random.Random(seed)
    labels = [rng.random() < 0.5 for _ in ex]
    root = sc.plan([labels])

    # raw prompt rate: all n demonstrations as one sequence, from an empty cache
    backend.clear()
    backend.reset_stats()
    backend.run(Node(tuple(sc.demos(labels)), []))
    raw = backend.tokens_evaluated / backend.stats()["decode_seconds"]

    backend.clear()
    backend.reset_stats()
    t0 = time.perf_counter()
    tree = backend.run(root)
    seconds_reuse = time.perf_counter() - t0
    tokens_reuse = backend.tokens_evaluated
    reuse_rate = tokens_reuse / seconds_reuse  # wall clock: plan and Python overhead included

    backend.reset_stats()
    t0 = time.perf_counter()
    naive = {}
    for key, seq in contexts(root).items():
        backend.clear()
        naive.update(backend.run(Node(seq, [], (key,))))
    seconds_naive = time.perf_counter() - t0
    tokens_naive = backend.tokens_evaluated

    return {
        "n": n, "tokens_naive": tokens_naive, "tokens_reuse": tokens_reuse,
        "seconds_naive": round(seconds_naive, 2), "seconds_reuse": round(seconds_reuse, 2),
        "raw_tokens_per_s": round(raw, 1), "reuse_tokens_per_s": round(reuse_rate, 1),
        "max_abs_diff": round(max(abs(tree[k] - naive[k]) for k in tree), 5),
        "mean_tokens_per_example": round(sum(backend.length((i, True)) for i in range(n)) / n, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="registry name or .gguf path (default: the default model)")
    ap.add_argument("--ns", default="16,32,64")
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--kv-type", default="f16", choices=("f16", "f32", "q8_0"))
    ap.add_argument("--n-threads", type=int, default=None, help="default: icm_lite's (free physical cores)")
    ap.add_argument("--json", action="store_true", help="one JSON object per n on stdout")
    args = ap.parse_args()

    ref = resolve_model(args.model)
    backend = LlamaBackend(str(ref.path), ModelOptions(n_ctx=args.n_ctx, n_batch=args.n_batch, kv_type=args.kv_type,
                                                       n_threads=args.n_threads, flash_attn=args.kv_type == "q8_0"))
    examples = load_dataset(DATA, Task.builtin("claim")).examples
    rows = []
    for n in (int(x) for x in args.ns.split(",")):
        r = measure(backend, examples, n)
        r["model"] = ref.name + (f" ({args.kv_type} KV)" if args.kv_type != "f16" else "")
        r["threads"] = backend.n_threads
        rows.append(r)
        if args.json:
            print(orjson.dumps(r).decode(), flush=True)
    if args.json:
        return
    print(f"model {ref.name}  |  {platform.processor() or platform.machine()}  |  n_batch {args.n_batch}")
    print(f"{'n':>4} {'tok naive':>10} {'tok tree':>9} {'ratio':>6} {'s naive':>8} {'s tree':>7} {'ratio':>6} "
          f"{'raw tok/s':>9} {'tree tok/s':>10} {'%raw':>5} {'max|diff|':>9}")
    for r in rows:
        print(f"{r['n']:>4} {r['tokens_naive']:>10} {r['tokens_reuse']:>9} {r['tokens_naive'] / r['tokens_reuse']:>6.2f} "
              f"{r['seconds_naive']:>8.1f} {r['seconds_reuse']:>7.1f} {r['seconds_naive'] / r['seconds_reuse']:>6.2f} "
              f"{r['raw_tokens_per_s']:>9.0f} {r['reuse_tokens_per_s']:>10.0f} "
              f"{100 * r['reuse_tokens_per_s'] / r['raw_tokens_per_s']:>5.0f} {r['max_abs_diff']:>9.4f}")


if __name__ == "__main__":
    main()
