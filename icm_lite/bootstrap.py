"""The cheap peer: bootstrapped many-shot prompting with the consistency constraint.

Shrivastava, Qi, Canavan et al., "Eliciting base models with simple unsupervised techniques": start from balanced
random labels; in each pass predict every example from the labels of the *other* consistency groups
(`Scorer.held_out`: a group's members read the same demonstrations and none of their own group's labels) and take,
group by group, the consistent labeling with the highest summed log-odds (`Consistency.decode`); repeat until a
pass changes nothing, at most `max_passes` times. One pass costs about one held-out pass of the batch (0.84-0.88 of
a leave-one-out pass in the grouped layout), so a few passes cost what a few ICM proposals cost.

It maximises no global objective: a labeling and its global flip are both consistent, and the passes can settle
on the flip. ICM's warm start (search.py, `--init bootstrap`) runs these passes, then keeps the labeling or its
flip by U, then anneals; this module only gives the passes and their starts (balanced random labels for the peer,
the zero-shot labels for ICM's warm start). Pure: a scorer and a random stream in, labels out; it never sees gold
labels.

Example: peer(Scorer(backend, examples), Consistency(examples, "asymmetry"), random.Random(0)).labels
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Sequence

from .consistency import Consistency
from .scoring import Scorer

PASSES = 4  # default bound on passes (--passes)


def balanced(n: int, rng: random.Random) -> list[bool]:
    """n labels, half True and half False (the odd one False), in a random order.

    Example: sorted(balanced(4, random.Random(0))) -> [False, False, True, True]
    """
    labels = [True] * (n // 2) + [False] * (n - n // 2)
    rng.shuffle(labels)
    return labels


def zero_shot_start(scorer: Scorer, cons: Consistency, fixed: dict[int, bool] | None = None) -> list[bool]:
    """Every example's zero-shot log-odds (no demonstrations; n queries, about 0.15 of a pass), centred on their median
    and decoded group by group: in a pair the likelier member is True whatever the model's bias towards one label
    word, and examples outside constraints are split half and half by rank, as balanced as seeds (`fixed`: pinned
    labels, kept as they are)."""
    n = len(scorer.examples)
    zero = scorer.predict_many(range(n), [None] * n)
    mid = statistics.median(zero.values())
    decoded = cons.decode({i: s - mid for i, s in zero.items()}, fixed)
    return [decoded[i] for i in range(n)]


@dataclass
class Pass:
    """One pass: the labels it scored, their held-out log-odds, the decoded labels, and (when asked) the
    leave-one-out log-odds of the labels it scored, from the same plan."""

    scored: list[bool]
    held_out: dict[int, float]
    labels: list[bool]
    loo: dict[int, float] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(a != b for a, b in zip(self.scored, self.labels))


def one_pass(scorer: Scorer, cons: Consistency, labels: Sequence[bool], loo: bool = False,
             fixed: dict[int, bool] | None = None) -> Pass:
    """Predict every example from the other groups' labels and decode each group consistently (`fixed`: pinned
    labels, kept as they are)."""
    held, loo_scores = scorer.held_out_and_loo(labels, loo=loo)
    decoded = cons.decode(held, fixed)
    return Pass(list(labels), held, [decoded[i] for i in range(len(labels))], loo_scores)


@dataclass
class Peer:
    labels: list[bool]
    passes: int
    converged: bool  # the last pass changed nothing
    changed: list[int]  # labels changed by each pass


def peer(scorer: Scorer, cons: Consistency, rng: random.Random, max_passes: int = PASSES) -> Peer:
    """The bootstrapped peer on its own: balanced random labels, then passes until nothing changes."""
    labels = balanced(len(scorer.examples), rng)
    changed: list[int] = []
    for _ in range(max_passes):
        p = one_pass(scorer, cons, labels)
        changed.append(p.changed)
        labels = p.labels
        if p.changed == 0:
            break
    return Peer(labels, len(changed), bool(changed) and changed[-1] == 0, changed)
