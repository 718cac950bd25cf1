"""Wall-clock speedup of labeling on W Ray workers (distributed.py) against one worker and the plain path.

Fake mode (default): the fake backend with a fixed cost per evaluated token (time.sleep, so it needs no CPU and
measures the executor, not this machine's cores), --batches batches of --batch-size examples, W = 1, 2, 4 workers
on one local Ray cluster. Batch 1 always runs alone on the driver first (its labels are every later batch's carried
demonstrations), so two speedups are reported: of the whole run, and of the parallel phase (batches 2..B), each
next to its ideal for equal batches (B / (1 + ceil((B-1)/W)) and (B-1) / ceil((B-1)/W)). Worker start-up (a Python
process per actor; a model load with --real) counts against the parallel phase.

--real: one real model (default: the registry's default model) on examples/truthfulqa_sample.jsonl cut into
batches by a small --n-ctx, plain vs 1 vs 2 workers: the labels must be identical, the time ratio is what it is (on a
2-core machine two llama.cpp workers share the cores that one worker used; each gets cores // W threads).

  python benchmarks/bench_scale.py [--workers 1,2,4] [--batches 8] [--batch-size 12] [--iterations 40]
                                   [--cost-us 200] [--json]
  python benchmarks/bench_scale.py --real [--model NAME|PATH] [--n 64] [--n-ctx 768] [--iterations 30] [--json]

It asserts nothing about speed; it exits 1 only when the labels differ between worker counts.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.config import RunConfig  # noqa: E402
from icm_lite.data import Dataset  # noqa: E402
from icm_lite.distributed import RayExecutor, need_ray  # noqa: E402
from icm_lite.fake import FakeBackend  # noqa: E402
from icm_lite.options import Batching, ModelOptions  # noqa: E402
from icm_lite.run import Job, plan_for, start  # noqa: E402
from icm_lite.rundir import RunDir  # noqa: E402
from icm_lite.search import SearchConfig  # noqa: E402
from icm_lite.tasks import Example, Task  # noqa: E402


class TimedFake(FakeBackend):
    """The fake backend, plus a fixed wall-clock cost per token it evaluates (a model's prompt processing)."""

    def __init__(self, cost: float, *a, **kw):
        super().__init__(*a, **kw)
        self.cost = cost

    def push(self, items, read: bool) -> None:
        before = self._counts["tokens_evaluated"]
        super().push(items, read)
        time.sleep((self._counts["tokens_evaluated"] - before) * self.cost)


def timed_run(job: Job, executor) -> dict:
    """Run the job: wall seconds of the whole run, of its parallel phase (after batch 1's done event), and until
    the first event of a later batch (worker start-up, for the executor)."""
    marks: dict[str, float] = {}

    def on_event(p) -> None:
        now = time.perf_counter()
        if p.batch == 0 and p.event.kind == "done":
            marks["phase"] = now
        elif p.batch > 0:
            marks.setdefault("first", now)

    t0 = time.perf_counter()
    summary = job.run(on_event, executor=executor)
    t1 = time.perf_counter()
    assert summary["finished"], summary
    phase = marks.get("phase", t0)
    return {"seconds": t1 - t0, "phase_seconds": t1 - phase, "startup_seconds": marks.get("first", phase) - phase,
            "labels": list(job.labels), "predicted": dict(job.predicted), "tokens": summary["tokens_evaluated"]}


def fake_setup(args) -> tuple[Dataset, functools.partial]:
    """--batches x --batch-size synthetic examples (consistency pairs) and the factory of their timed fake."""
    n = args.batches * args.batch_size
    rng = random.Random(1)
    hidden = [rng.random() < 0.5 for _ in range(n)]
    examples = tuple(Example(f"ex{i}", f"prompt {i}", str(i // 2), None) for i in range(n))
    return (Dataset(examples, tuple(hidden), Task.builtin("claim"), "synthetic"),
            functools.partial(TimedFake, args.cost_us * 1e-6, hidden))


def fake_job(path: Path, args, dataset: Dataset, factory) -> Job:
    backend = factory()
    batches, k = plan_for(dataset, backend, backend.n_ctx, args.batch_size, 8)
    assert len(batches) == args.batches, len(batches)
    config = RunConfig(data="synthetic", task=dataset.task, search=SearchConfig(iterations=args.iterations, seed=0),
                       batches=tuple(tuple(b) for b in batches), carried=k)
    run_dir = RunDir.create(path)
    run_dir.write_json("config.json", config.to_json())
    return Job(config, dataset, backend, run_dir)


def real_job(path: Path, args) -> Job:
    """The first --n claims of the sample, labeled by the real model (run.start: what `icm-lite label` does)."""
    rows = (ROOT / "examples" / "truthfulqa_sample.jsonl").read_bytes().splitlines()[: args.n]
    data = path.parent / "data.jsonl"
    data.write_bytes(b"\n".join(rows) + b"\n")
    config = RunConfig(data=str(data), task=Task.builtin("claim"), model=args.model,
                       model_options=ModelOptions(n_ctx=args.n_ctx),
                       search=SearchConfig(iterations=args.iterations, seed=0), batching=Batching(carry=4))
    return start(config, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="a real model, plain vs 1 vs 2 workers")
    ap.add_argument("--model", default=None, help="--real: registry name or .gguf path (default: the default model)")
    ap.add_argument("--n", type=int, default=64, help="--real: the first N claims of the sample")
    ap.add_argument("--n-ctx", type=int, default=768, help="--real: context size (smaller: more batches)")
    ap.add_argument("--workers", default=None, help="worker counts, comma-separated (default 1,2,4; --real 1,2)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=None, help="per batch (default 40; --real 30)")
    ap.add_argument("--cost-us", type=float, default=200.0, help="fake: microseconds per evaluated token")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    counts = [int(w) for w in (args.workers or ("1,2" if args.real else "1,2,4")).split(",")]
    args.iterations = args.iterations or (30 if args.real else 40)

    ray = need_ray()
    ray.init(address="local", num_cpus=max(counts), include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="bench_scale."))
    dataset, factory = (None, None) if args.real else fake_setup(args)
    rows = []
    for w in [0, *counts]:  # 0: the plain path, no Ray
        path = root / f"w{w}" / "run"
        path.parent.mkdir(parents=True)
        job = real_job(path, args) if args.real else fake_job(path, args, dataset, factory)
        got = timed_run(job, RayExecutor(w, backend=factory) if w else None)  # backend None: the run's model
        rows.append({"workers": w, "batches": len(job.batches), **got})
    ray.shutdown()

    base = rows[1]  # the first worker count
    b = rows[0]["batches"]
    same = all(r["labels"] == rows[0]["labels"] and r["predicted"] == rows[0]["predicted"] for r in rows)
    table = []
    for r in rows:
        w = r["workers"]
        rounds = math.ceil((b - 1) / w) if w else b - 1
        table.append({"workers": w or "plain", "seconds": round(r["seconds"], 2),
                      "speedup": round(base["seconds"] / r["seconds"], 2), "ideal": round(b / (1 + rounds), 2),
                      "phase_seconds": round(r["phase_seconds"], 2),
                      "phase_speedup": round(base["phase_seconds"] / r["phase_seconds"], 2),
                      "phase_ideal": round((b - 1) / rounds, 2),
                      "startup_seconds": round(r["startup_seconds"], 2) if w else None,
                      "tokens": r["tokens"]})
    out = {"mode": "real" if args.real else "fake", "model": args.model if args.real else None, "batches": b,
           "iterations": args.iterations, "cost_us_per_token": None if args.real else args.cost_us,
           "labels_identical": same, "rows": table}
    if args.json:
        print(orjson.dumps(out).decode())
    else:
        head = ["workers", "seconds", "speedup", "ideal", "phase_seconds", "phase_speedup", "phase_ideal",
                "startup_seconds", "tokens"]
        print(f"{out['mode']}: {b} batches, {args.iterations} iterations each" +
              ("" if args.real else f", {args.cost_us:g} µs per token") + f"; labels identical: {same}")
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for r in table:
            print("| " + " | ".join(str(r[h]) for h in head) + " |")
        print(f"speedups against {base['workers']} worker(s); phase = batches 2..B, after batch 1 ran alone on the "
              "driver; startup = from batch 1's end to a worker's first event")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
