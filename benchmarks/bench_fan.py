"""Many queries after one prefix: one llama_decode for many sequences (`fan`) against one query at a time.

The rest of a run (--core) is predicted after the core's labels: one fixed prefix, then every other example as a
query. llama.py decodes those queries as sequences of one batch (`LlamaBackend.fan`); this script scores the same
queries both ways on the same backend, in the same run, and reports tokens, seconds, tokens/s, the ratio, and how
far the log-odds moved (multi-sequence decodes are not bit-identical to single ones: benchmarks/README.md).

  python benchmarks/bench_fan.py [--model NAME|PATH] [--data FILE --task TASK] [--demos 64] [--queries 96]
                                 [--repeats 3] [--n-gpu-layers N] [--fan 16]

Check the load first (`uptime`): llama.cpp's threads spin-wait, and a busy neighbour voids the seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.models import resolve_model  # noqa: E402
from icm_lite.options import ModelOptions  # noqa: E402
from icm_lite.plan import Node, one_by_one  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=str(ROOT / "benchmarks" / "data" / "mixed1000.jsonl"))
    ap.add_argument("--task", default=str(ROOT / "benchmarks" / "data" / "mixed1000.task.json"))
    ap.add_argument("--demos", type=int, default=64, help="labeled examples in the shared prefix")
    ap.add_argument("--queries", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--n-gpu-layers", type=int, default=0)
    ap.add_argument("--n-threads", type=int, default=None)
    ap.add_argument("--fan", type=int, default=16, help="queries per llama_decode on the fanned side (--fan)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table (gpu_check.sh)")
    args = ap.parse_args()

    from icm_lite.llama import LlamaBackend

    task = Task.resolve(args.task)
    ds = load_dataset(args.data, task)
    ref = resolve_model(args.model)
    b = LlamaBackend(str(ref.path), ModelOptions(n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers,
                                                 n_threads=args.n_threads, fan=args.fan))
    b.prepare(ds.examples, task.label_words)
    demos = tuple((i, ds.gold[i]) for i in range(args.demos))
    queries = list(range(args.demos, args.demos + args.queries))
    fan_root = Node(demos, [Node(((q, None),), [], (q,)) for q in queries], fan=True)

    def fanned():
        return b.run(fan_root)

    def single():
        b.rewind(b.prefix_length)
        b.push(demos, False)
        got = dict(zip(queries, one_by_one(b, [((q, None),) for q in queries])))
        b.rewind(b.prefix_length)
        return got

    rows = {}
    for name, fn in (("one at a time", single), ("fan", fanned)):
        fn()  # warm: the prefix is in the cache for both; what is measured is the queries
        best = None
        for _ in range(args.repeats):
            b.reset_stats()
            t0 = time.perf_counter()
            got = fn()
            secs = time.perf_counter() - t0
            st = b.stats()
            if best is None or secs < best[1]:
                best = (st["tokens_evaluated"], secs, st["decode_calls"], got)
        rows[name] = best
    (t1, s1, c1, g1), (t2, s2, c2, g2) = rows["one at a time"], rows["fan"]
    diffs = [abs(g1[q] - g2[q]) for q in queries]
    if args.json:
        import orjson

        print(orjson.dumps({"model": ref.name, "queries": args.queries, "demos": args.demos,
                            "prefix_tokens": b.context_length(demos), "n_gpu_layers": args.n_gpu_layers,
                            "threads": b.n_threads, "fan": b.fan_width,
                            "one": {"tokens": t1, "seconds": s1, "calls": c1},
                            "fanned": {"tokens": t2, "seconds": s2, "calls": c2}, "speedup": s1 / s2,
                            "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs),
                            "same_sign": sum((g1[q] > 0) == (g2[q] > 0) for q in queries)}).decode())
        return
    print(f"model {ref.name}, {args.queries} queries after {args.demos} demonstrations "
          f"(prefix {b.context_length(demos)} tokens), {os.cpu_count()} CPUs, threads {b.n_threads}, "
          f"n_gpu_layers {args.n_gpu_layers}, best of {args.repeats}")
    print("| method | tokens | decode calls | seconds | tokens/s |")
    print("|---|---|---|---|---|")
    for name, (t, s, c, _) in rows.items():
        print(f"| {name} | {t:,} | {c} | {s:.2f} | {t / s:,.0f} |")
    print(f"fan / one at a time: {s1 / s2:.2f}x faster; |log-odds difference| max {max(diffs):.4f}, "
          f"mean {sum(diffs) / len(diffs):.4f} nats; same sign {sum((g1[q] > 0) == (g2[q] > 0) for q in queries)}"
          f"/{len(queries)}")


if __name__ == "__main__":
    main()
