"""Where a changed example sits in the contexts of dU, and what that does to a correct addition.

From a labeled state D (gold labels on a seeded half of the examples: a benchmark may read gold to build its
state; the search never does), each of M unlabeled candidates x is added with its gold label and with the other
label, and P(D + x) - P(D) is computed under these demonstration orders:

  last       the old plan: x placed right before every query (the other examples in canonical order)
  tree       every example at its own place in a divide-and-conquer tree whose leaves are a seeded shuffle of
             the batch (plan.py; the default before `grouped`)
  grouped    icm_lite's default (plan.py): the same tree over whole groups in a seeded random order
  spread     the same tree over every group's first members, then its second members (an earlier layout)
  fileorder  the same tree over the canonical order (groups contiguous, not shuffled)
  canonical  the authors' order: every query after all other labeled examples in file order

Reported per order: mean dP of the correct addition, how many correct additions have dP > 0, how often the
correct label has the larger dP (the label a search would pick), tokens and seconds.

  python benchmarks/bench_order.py [--data F --task T] [--model NAME|PATH] [--candidates 8] [--seed 0] [--json]
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

from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.plan import tree_layout, trie  # noqa: E402
from icm_lite.scoring import Scorer, predictability  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402


def spread(order, group_of) -> list[int]:
    """Every group's first members in order, then every second member, ..."""
    seen, rank = {}, {}
    for i in order:
        key = group_of(i) if group_of(i) is not None else ("solo", i)
        rank[i] = seen.get(key, 0)
        seen[key] = rank[i] + 1
    pos = {i: k for k, i in enumerate(order)}
    return sorted(order, key=lambda i: (rank[i], pos[i]))


def last_scores(scorer: Scorer, labels, x) -> dict[int, float]:
    """Leave-one-out scores of `labels` with x (labeled there) right before every other query."""
    seqs = []
    for i, y in enumerate(labels):
        if y is None:
            continue
        demos = tuple(d for d in scorer.demos(labels, [i, x]))
        tail = ((x, labels[x]),) if i != x else ()
        seqs.append((demos + tail + ((i, None),), i))
    return scorer.backend.run(trie(seqs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "examples" / "reviews.jsonl"))
    ap.add_argument("--task", default=str(ROOT / "examples" / "reviews.task.json"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--orders", default="last,tree,grouped,spread,fileorder,canonical")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from icm_lite.models import resolve_model
    from icm_lite.run import ModelOptions, open_backend

    task = Task.resolve(args.task)
    ds = load_dataset(args.data, task)
    n = len(ds.examples)
    rng = random.Random(args.seed)
    state = [None] * n
    for i in rng.sample(range(n), n // 2):
        state[i] = ds.gold[i]
    cands = rng.sample([i for i in range(n) if state[i] is None], args.candidates)
    ref = resolve_model(args.model)
    backend = open_backend(ref.path, ModelOptions(n_ctx=8192))
    backend.prepare(ds.examples, task.label_words)
    rows = []
    for order in args.orders.split(","):
        scorer = Scorer(backend, ds.examples, order if order in ("canonical", "grouped") else "tree")
        if order == "fileorder":
            scorer.layout = tree_layout(scorer.order)
        elif order == "spread":
            scorer.layout = tree_layout(spread(scorer.order, scorer.group_of))
        tokens0, t0 = backend.tokens_evaluated, time.perf_counter()
        p0 = predictability(scorer.loo(state), state)
        deltas = {}
        for x in cands:
            for y in (ds.gold[x], not ds.gold[x]):
                lab = list(state)
                lab[x] = y
                scores = last_scores(scorer, lab, x) if order == "last" else scorer.loo(lab)
                deltas[(x, y == ds.gold[x])] = predictability(scores, lab) - p0
        right = [deltas[(x, True)] for x in cands]
        rows.append({"order": order, "mean_dP_correct": round(statistics.mean(right), 3),
                     "correct_dP_positive": sum(d > 0 for d in right),
                     "correct_label_has_larger_dP": sum(deltas[(x, True)] > deltas[(x, False)] for x in cands),
                     "candidates": len(cands), "P_state": round(p0, 3),
                     "tokens": backend.tokens_evaluated - tokens0, "seconds": round(time.perf_counter() - t0, 1)})
    out = {"model": ref.name, "data": Path(args.data).name, "examples": n, "labeled": n // 2, "rows": rows}
    if args.json:
        print(orjson.dumps(out).decode())
        return
    print(f"{ref.name}, {out['data']}: {n // 2} of {n} labeled with gold, {len(cands)} candidates")
    print("| order | mean dP of the correct addition | correct additions with dP > 0 | correct label has the larger dP | tokens | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['order']} | {r['mean_dP_correct']:+.3f} | {r['correct_dP_positive']} of {r['candidates']} | "
              f"{r['correct_label_has_larger_dP']} of {r['candidates']} | {r['tokens']:,} | {r['seconds']} |")


if __name__ == "__main__":
    main()
