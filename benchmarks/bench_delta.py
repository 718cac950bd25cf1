"""Estimated dU (--delta sample) against exact dU: tokens per proposal and equal decisions, on the same states.

An exact search runs on the fake backend (token lengths: --length, or the default model's tokens for the demo
data with --real-lengths). At every proposal it scores (not a cached repeat), the same proposal is also
estimated from that very state by a second search object in sample mode (its own fake backend, so its tokens
are counted apart), and both decisions are drawn with one common uniform number: exact accepts when
dU > 0 or u < exp(dU/T); sample accepts when d > 0 or u < exp(d), d = dU_est/T - var/(2T^2) (the penalty rule).
Reported per n: exact and sampled tokens per proposal (the prediction included, as the search pays it), their
ratio, the share of equal decisions, and the mean |dU_est - dU| against the estimate's own standard deviation.

  python benchmarks/bench_delta.py [--ns 64,128,256] [--queries 16] [--iterations 400] [--length 40] [--json]
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.estimate import Block  # noqa: E402
from icm_lite.fake import FakeBackend  # noqa: E402
from icm_lite.scoring import Scorer  # noqa: E402
from icm_lite.search import Search, SearchConfig  # noqa: E402
from icm_lite.tasks import Example  # noqa: E402


def problem(n: int, seed: int):
    """n claims in groups of four with a hidden concept (no constraints: every proposal is one change)."""
    rng = random.Random(seed)
    hidden = [rng.random() < 0.5 for _ in range(n)]
    return [Example(f"ex{i}", "p", str(i // 4)) for i in range(n)], hidden


def measure(n: int, queries: int, iterations: int, length: int, seed: int) -> dict:
    examples, hidden = problem(n, seed)
    lengths = [length + (i * 7) % 11 for i in range(n)]
    exact_b = FakeBackend(hidden, lengths, seed=seed, noise=1.0)
    sample_b = FakeBackend(hidden, lengths, seed=seed, noise=1.0)
    cfg = SearchConfig(iterations=iterations, seed=seed)
    exact = Search(examples, Scorer(exact_b, examples), "none", cfg)
    sampler = Search(examples, Scorer(sample_b, examples), "none", SearchConfig(iterations=iterations, seed=seed,
                                                                                    delta="sample", queries=queries))
    coin = random.Random(seed + 99)
    exact.start()
    rows = []
    while exact.state.iteration < iterations:
        before = copy.deepcopy(exact.state)
        t = exact.temperature()
        tokens0 = exact_b.tokens_evaluated
        ev = exact.step()
        if ev.kind not in ("accept", "reject") or ev.cached:
            continue
        exact_tokens = exact_b.tokens_evaluated - tokens0
        # the same proposal from the same state, estimated
        sampler.state = copy.deepcopy(before)
        sampler._predictions.clear()
        sampler._memo.clear()
        s0 = sample_b.tokens_evaluated
        x, new = ev.example, ev.new
        sampler.predict(x)
        labels = tuple(before.labels)
        block = Block.pick(sampler.scorer.layout, sum(y is not None for y in labels), queries,
                           random.Random(coin.random()))
        proposal = list(labels)
        proposal[x] = new
        after, _ = sampler.fix(tuple(proposal), sampler._fix_rng(labels, f"{x}:{new}"), forced=True,
                               evaluate=lambda labelings: sampler._estimate(labelings, block))
        est = after.U - before.U
        d = est / t - after.var / (2 * t * t)
        u = coin.random()
        same = (ev.delta > 0 or u < math.exp(ev.delta / t)) == (d > 0 or u < math.exp(d))
        rows.append({"labeled": sum(y is not None for y in labels), "exact_tokens": exact_tokens,
                     "sample_tokens": sample_b.tokens_evaluated - s0, "same": same, "error": abs(est - ev.delta),
                     "sd": math.sqrt(after.var)})
    late = [r for r in rows if r["labeled"] >= 0.75 * n] or rows
    mean = lambda key, rs: statistics.mean(r[key] for r in rs)  # noqa: E731
    return {"n": n, "queries": queries, "proposals": len(rows), "late_proposals": len(late),
            "exact_tokens_per_proposal": round(mean("exact_tokens", late)),
            "sample_tokens_per_proposal": round(mean("sample_tokens", late)),
            "ratio": round(mean("sample_tokens", late) / mean("exact_tokens", late), 3),
            "ratio_all": round(mean("sample_tokens", rows) / mean("exact_tokens", rows), 3),
            "equal_decisions": round(sum(r["same"] for r in rows) / len(rows), 3),
            "mean_abs_error": round(mean("error", rows), 3), "mean_sd": round(mean("sd", rows), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="64,128,256")
    ap.add_argument("--queries", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [measure(int(n), args.queries, args.iterations, args.length, args.seed) for n in args.ns.split(",")]
    if args.json:
        print(orjson.dumps(rows).decode())
        return
    print("| n | proposals | exact tokens / proposal | sampled | ratio (>= 75% labeled) | ratio (all) | equal decisions "
          "| mean abs(dU_est - dU) | mean sd of the estimate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['proposals']} | {r['exact_tokens_per_proposal']:,} | {r['sample_tokens_per_proposal']:,} | "
              f"{r['ratio']} | {r['ratio_all']} | {r['equal_decisions']:.1%} | {r['mean_abs_error']} | {r['mean_sd']} |")


if __name__ == "__main__":
    main()
