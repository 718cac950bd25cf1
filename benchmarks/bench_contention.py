"""Scoring speed idle and beside a busy neighbour: icm_lite's thread default against llama.cpp's (physical cores).

The same exact leave-one-out pass (the first --n examples of the demo data, fixed labels) is timed four ways:
{idle, beside one busy-loop process} x {icm_lite's default threads (physical cores minus the busy ones, re-checked
between plans), a fixed --n-threads equal to the physical cores (llama.cpp's own default)}. The busy neighbour is
a separate Python process spinning on one core, like a fine-tuning job on one core. Each configuration loads the
model fresh (so the default is decided with the neighbour already running). The machine must be otherwise idle:
the script measures the other processes' load first and refuses to run when it is above --max-load cores.

  python benchmarks/bench_contention.py [--model NAME|PATH] [--n 24] [--repeat 2] [--json]

--json prints one object: idle_tokens_per_s and busy_tokens_per_s (icm_lite's default), the same two for the fixed
thread count, the thread counts chosen, the other processes' load before the run, and the hardware.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.scoring import Scorer  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402


def spin() -> None:
    while True:
        pass


def rate(path, ds, n: int, threads: int | None, repeat: int) -> tuple[float, int]:
    """Tokens per second of `repeat` leave-one-out passes, and the threads the backend ran with at the end."""
    from icm_lite.llama import LlamaBackend
    from icm_lite.options import ModelOptions

    b = LlamaBackend(str(path), ModelOptions(n_ctx=4096, n_threads=threads))
    ex = ds.examples[:n]
    b.prepare(ex, ds.task.label_words)
    labels = [i % 3 != 0 for i in range(n)]
    sc = Scorer(b, ex)
    sc.loo(labels)  # warm up (first decode allocates)
    b.reset_stats()
    t0 = time.perf_counter()
    for _ in range(repeat):
        b.clear()
        sc.loo(labels)
    took = time.perf_counter() - t0
    out = b.stats()["tokens_evaluated"] / took, b.n_threads
    b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=str(ROOT / "examples" / "reviews.jsonl"))
    ap.add_argument("--task", default=str(ROOT / "examples" / "reviews.task.json"))
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--max-load", type=float, default=0.3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from icm_lite.llama import busy_cores, physical_cores
    from icm_lite.models import resolve_model

    load = busy_cores(2.0)
    if load > args.max_load:
        sys.exit(f"error: other processes keep {load:.2f} cores busy; this benchmark needs an idle machine "
                 f"(at most {args.max_load}); try again when it is idle")
    ref = resolve_model(args.model)
    ds = load_dataset(args.data, Task.resolve(args.task))
    cores = physical_cores()
    out = {"model": ref.name, "n": args.n, "physical_cores": cores, "load_before": round(load, 2),
           "cpu": platform.processor() or platform.machine()}
    for label, threads in (("default", None), ("fixed", cores)):
        out[f"{label}_idle_tokens_per_s"], out[f"{label}_idle_threads"] = rate(ref.path, ds, args.n, threads, args.repeat)
        neighbour = multiprocessing.Process(target=spin, daemon=True)
        neighbour.start()
        time.sleep(0.5)
        try:
            out[f"{label}_busy_tokens_per_s"], out[f"{label}_busy_threads"] = rate(ref.path, ds, args.n, threads, args.repeat)
        finally:
            neighbour.terminate()
            neighbour.join()
        time.sleep(0.5)
    out["idle_tokens_per_s"] = out["default_idle_tokens_per_s"]
    out["busy_tokens_per_s"] = out["default_busy_tokens_per_s"]
    out["busy_share_of_idle"] = out["busy_tokens_per_s"] / out["idle_tokens_per_s"]
    out["fixed_busy_share_of_idle"] = out["fixed_busy_tokens_per_s"] / out["fixed_idle_tokens_per_s"]
    if args.json:
        print(orjson.dumps(out).decode())
        return
    print(f"{ref.name}, {args.n} examples, {cores} physical cores, other load before: {load:.2f} cores")
    print("| threads | idle tokens/s | beside a busy process | share of idle |")
    print("|---|---|---|---|")
    for label, name in (("default", "icm_lite default (free physical cores)"), ("fixed", f"fixed {cores} (llama.cpp's default)")):
        print(f"| {name}: {out[label + '_idle_threads']} idle, {out[label + '_busy_threads']} busy | "
              f"{out[label + '_idle_tokens_per_s']:.0f} | {out[label + '_busy_tokens_per_s']:.0f} | "
              f"{out[label + '_busy_tokens_per_s'] / out[label + '_idle_tokens_per_s']:.0%} |")


if __name__ == "__main__":
    main()
