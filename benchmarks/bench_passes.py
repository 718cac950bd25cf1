"""Why the bootstrap passes settle on one dataset and not on another: the passes from the zero-shot start (agreement
with gold and U of each scored labeling), one pass from gold and one from its global flip (how many pairs move, and
each pair's margin), and, with --neighbours, U of every labeling one group away from the passes' best; with
--climb R, a greedy local search by U from there (take the one-group change that raises U most, score again) for
at most R rounds.

The margin of a group is its members' held-out log-odds, each signed by its label, summed: for a pair, the difference
of its members' log-odds, positive when the pass keeps the pair as it is. A labeling whose margins are all
positive is a fixed point of the passes. Gold labels are read here to start a pass from them and to evaluate; the
search and the passes never see them.

  python benchmarks/bench_passes.py --dataset spam [--seed 0] [--neighbours] [--climb 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.bootstrap import PASSES, one_pass, zero_shot_start  # noqa: E402
from icm_lite.consistency import Consistency  # noqa: E402
from icm_lite.data import load_dataset  # noqa: E402
from icm_lite.scoring import Scorer, predictability, utility  # noqa: E402
from icm_lite.search import SearchConfig  # noqa: E402
from icm_lite.tasks import Task, units  # noqa: E402

from bench_quality import DATASETS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("--seed", type=int, default=0, help="layout seed (a run's --seed)")
    ap.add_argument("--neighbours", action="store_true", help="also score every one-group change of the best labeling")
    ap.add_argument("--climb", type=int, default=0, metavar="R",
                    help="then take the change that raises U most and score its neighbours again, at most R rounds")
    args = ap.parse_args()

    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions
    from icm_lite.run import open_backend

    data, task = DATASETS[args.dataset]
    ds = load_dataset(data, Task.resolve(str(task)))
    backend = open_backend(resolve_model(None).path, ModelOptions())
    backend.prepare(ds.examples, ds.task.label_words)
    ex, gold, n = ds.examples, list(ds.gold), len(ds.examples)
    config = SearchConfig()
    sc = Scorer(backend, ex, config.order, args.seed, config.tail)
    cons = Consistency(ex, ds.task.relation)
    groups = units(ex)

    def u(labels, loo) -> float:
        return utility(predictability(loo, labels, config.objective), cons.count(labels), config.alpha)

    def agree(labels) -> str:
        return f"{sum(a == b for a, b in zip(labels, gold)) / n:.0%}"

    def margin(members, labels, held) -> float:
        """A group's signed held-out log-odds summed: the group as labeled against the group flipped (for a pair,
        positive iff the held-out decoding keeps it)."""
        return sum(held[i] if labels[i] else -held[i] for i in members)

    def margins(labels, held) -> list[float]:
        return sorted(round(margin(members, labels, held), 2) for members in groups)

    labels = zero_shot_start(sc, cons)  # the default's first labeling, as the search makes it
    print(f"{args.dataset}, layout seed {args.seed}: zero-shot decoded {agree(labels)}, {sc.tokens:,} tokens")
    print("| pass | scored labeling: agreement | its U | labels the pass changes | tokens so far |")
    print("|---|---|---|---|---|")
    seen = []
    for k in range(PASSES):
        p = one_pass(sc, cons, labels, loo=True)
        seen.append((u(tuple(labels), p.loo), list(labels), p.held_out))
        print(f"| {k + 1} | {agree(labels)} | {seen[-1][0]:.2f} | {p.changed} | {sc.tokens:,} |")
        labels = p.labels
        if not p.changed:
            break
    for name, start in (("gold", gold), ("gold flipped", [not y for y in gold])):
        before = sc.tokens
        p = one_pass(sc, cons, start, loo=True)
        m = margins(start, p.held_out)
        print(f"one pass from {name}: U {u(tuple(start), p.loo):.2f}, changes {p.changed} labels "
              f"({sum(x < 0 for x in m)} of {len(m)} groups), margins {m[0]} to {m[-1]} "
              f"(median {statistics.median(m):.2f}), {sc.tokens - before:,} tokens")
    if args.neighbours or args.climb:
        best_u, best, held = max(seen, key=lambda t: t[0])
        ranked = sorted(groups, key=lambda members: margin(members, best, held))
        print("its groups by margin, lowest first (w: labeled against gold, .: with it): "
              + "".join("." if all(best[i] == gold[i] for i in members) else "w" for members in ranked))
        for r in range(max(args.climb, 1)):
            nbrs = []
            for members in groups:
                nb = list(best)
                for i in members:
                    nb[i] = not nb[i]
                nbrs.append(tuple(nb))
            before = sc.tokens
            got = [u(nb, s) for nb, s in zip(nbrs, sc.scores(nbrs))]
            up = sorted((v - best_u, agree(nb)) for v, nb in zip(got, nbrs) if v > best_u)
            where = "the passes' best labeling" if r == 0 else f"climb step {r}"
            print(f"from {where} ({agree(best)}, U {best_u:.2f}): "
                  f"{len(nbrs)} one-group changes cost {sc.tokens - before:,} tokens in one plan; {len(up)} raise U"
                  + (": " + ", ".join(f"+{d:.2f} ({a})" for d, a in reversed(up)) if up else " (a local maximum)"))
            if not up or not args.climb:
                break
            best_u, k = max((v, k) for k, v in enumerate(got))
            best = list(nbrs[k])
        print(f"tokens in all: {sc.tokens:,}")


if __name__ == "__main__":
    main()
