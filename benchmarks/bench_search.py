"""Cost of ICM proposals in units of one U(D) evaluation, on a short real run (or the fake backend).

One U(D) evaluation = the tokens a fresh exact leave-one-out pass over the labels of that moment costs
(the prefix-tree plan, computed from the same token lengths). For every iteration we record the tokens
the backend really evaluated (prediction, ConsistencyFix rounds and the comparison pass of dU) and
divide. Skips (the predicted label equals the current one) cost one prediction.

  python benchmarks/bench_search.py [--model NAME|PATH | --fake] [--n 48] [--iterations 150] [--alpha A]
                                   [--t0 T] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.plan import plan_tokens  # noqa: E402
from icm_lite.scoring import Scorer  # noqa: E402
from icm_lite.search import Search, SearchConfig  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--fake", action="store_true", help="count tokens with the fake backend (no model)")
    ap.add_argument("--data", default=str(ROOT / "examples" / "reviews.jsonl"))
    ap.add_argument("--task", default=str(ROOT / "examples" / "reviews.task.json"))
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=SearchConfig.alpha)
    ap.add_argument("--t0", type=float, default=SearchConfig.t0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    task = Task.resolve(args.task)
    ds = load_dataset(args.data, task)
    examples = ds.examples[: args.n]
    if args.fake:
        from icm_lite.fake import FakeBackend

        # the fake "model" knows the gold concept when the data has one (consistent with the keys, like
        # the truth); the search still sees only log-odds
        hidden = [bool(g) for g in ds.gold[: args.n]] if ds.gold else [i % 2 == 0 for i in range(len(examples))]
        backend = FakeBackend(hidden, [len(e.prompt) // 4 for e in examples])
        name = "fake"
    else:
        from icm_lite.models import resolve_model
        from icm_lite.options import ModelOptions
        from icm_lite.run import open_backend

        ref = resolve_model(args.model)
        backend = open_backend(ref.path, ModelOptions(n_ctx=8192))
        backend.prepare(examples, task.label_words)
        name = ref.name
    scorer = Scorer(backend, examples)
    search = Search(examples, scorer, task.relation, SearchConfig(iterations=args.iterations, seed=args.seed,
                                                                      alpha=args.alpha, t0=args.t0))

    def u_cost(labels) -> int:
        return plan_tokens(scorer.plan([labels]), backend.length)

    t0 = time.perf_counter()
    search.start()
    rows = []
    for _ in range(args.iterations):
        before_tokens, labels = backend.tokens_evaluated, list(search.state.labels)
        ev = search.step()
        unit = u_cost(labels) or 1
        rows.append((ev.kind, (backend.tokens_evaluated - before_tokens) / unit, ev.fixes, ev.cached))
    seconds = time.perf_counter() - t0

    props = [r for r in rows if r[0] in ("accept", "reject")]
    out = {
        "model": name, "n": len(examples), "iterations": len(rows), "proposals_changing_a_label": len(props),
        "skips": sum(r[0] == "skip" for r in rows), "accepted": sum(r[0] == "accept" for r in rows),
        "fixes_applied": sum(r[2] for r in props), "repeats_reused": sum(r[3] for r in props),
        "u_evals_per_iteration": round(statistics.mean(r[1] for r in rows), 3),
        "u_evals_per_changing_proposal": round(statistics.mean(r[1] for r in props), 3) if props else None,
        "u_evals_per_skip": round(statistics.mean(r[1] for r in rows if r[0] == "skip"), 3) if len(props) < len(rows) else None,
        "tokens": backend.tokens_evaluated, "seconds": round(seconds, 1),
        "labeled_at_end": sum(y is not None for y in search.state.labels),
    }
    if args.json:
        print(orjson.dumps(out).decode())
        return
    for k, v in out.items():
        print(f"{k:>32}: {v}")


if __name__ == "__main__":
    main()
