"""Mutual predictability: the scoring contract between the search and a backend.

A backend runs a plan (see plan.py) and returns, for every read key, the log-odds
s = log P(True-word | context) - log P(False-word | context) of the next token. `Scorer` turns labelings
into plans through one fixed layout of the batch's examples (plan.py: every example at its own place in
every context, whichever examples are labeled), so a score is a function of the labeling alone; it returns
per-example log-odds, and `predictability` turns those into P(D) for either objective:

  code  (default): P = mean_i (s_i if y_i else -s_i)            -- the authors' code, alpha 30, T0 10
  paper          : P = sum_i log sigmoid(s_i if y_i else -s_i)  -- the paper's sum of log-probabilities

This module never sees gold labels: it only gets examples and the labels the search proposes.

Example: Scorer(backend, examples).loo([True, None, False]) -> {0: s0, 2: s2}
         Scorer(backend, examples).held_out(labels) -> {i: s_i from the labeled examples of other groups}
         Scorer(backend, examples).predict(1, [True, None, False]) -> s1 (after examples 0 and 2)
         Scorer(backend, examples).held_out_and_loo(labels) -> (held_out(labels), loo(labels)), one pass
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Sequence

from .backend import Backend
from .plan import LAYOUT, TAIL, Item, Node, build
from .plan import layout as make_layout
from .tasks import Example, units

OBJECTIVES = ("code", "paper")
Labels = Sequence[bool | None]


def term(s: float, y: bool, objective: str = "code") -> float:
    """One labeled example's share of P: its signed log-odds (code) or log sigmoid of it (paper)."""
    v = s if y else -s
    if objective == "code":
        return v
    if objective == "paper":
        return -math.log1p(math.exp(-v)) if v > -30 else v  # log sigmoid, stable
    raise ValueError(f"objective must be one of {OBJECTIVES}")


def aggregate(total: float, n: int, objective: str = "code") -> float:
    """P from the sum of the terms of n labeled examples: their mean (code) or the sum itself (paper)."""
    if objective == "code":
        return total / n if n else 0.0
    return total


def predictability(scores: dict[int, float], labels: Labels, objective: str = "code") -> float:
    return aggregate(sum(term(s, labels[i], objective) for i, s in scores.items()), len(scores), objective)


def utility(p: float, inconsistent: int, alpha: float) -> float:
    """ICM's objective U = alpha * P - I, written once.

    Example: utility(0.5, 1, 30.0) -> 14.0
    """
    return alpha * p - inconsistent


def predict_after(backend: Backend, demos: Sequence[Item], xs: Iterable[int]) -> dict[int, float]:
    """Log-odds of each x after the same demonstrations, in the order given: one plan, the demonstrations pushed once
    as the prefix of every query (the rest of a run predicted from its searched core).

    Example: predict_after(backend, [(0, True), (1, False)], [2, 3]) -> {2: s2, 3: s3}
    """
    return backend.run(Node(tuple(demos), [Node(((x, None),), [], (x,)) for x in xs], fan=True))


class Scorer:
    """Leave-one-out log-odds of labelings of `examples`, every context laid out by one fixed `Layout`."""

    def __init__(self, backend: Backend, examples: Sequence[Example], layout: str = LAYOUT, seed: int = 0,
                 tail: int = TAIL):
        self.backend = backend
        self.examples = examples
        groups = units(examples)  # canonical order: groups by first appearance, each in file order
        first = {i: members[0] for members in groups for i in members}
        self.rank = [(first[i], i) for i in range(len(examples))]
        self.order = [i for members in groups for i in members]
        self.layout_kind = layout
        self.layout = make_layout(layout, self.order, seed, tail, groups) if examples else None

    @property
    def tokens(self) -> int:
        """Tokens the backend has evaluated (what the search's events report)."""
        return self.backend.tokens_evaluated

    def group_of(self, i: int) -> Hashable:
        return self.examples[i].group

    def demos(self, labels: Labels, exclude: Sequence[int] = ()) -> list[Item]:
        """The labeled examples as demonstrations in canonical order (groups contiguous, then file order)."""
        skip = set(exclude)
        return [(i, labels[i]) for i in self.order if labels[i] is not None and i not in skip]

    def plan(self, labelings: Sequence[Labels], wants: Sequence[int] | None = None) -> Node:
        return build(self.layout, labelings, wants)

    def scores(self, labelings: Sequence[Labels], wants: Sequence[Iterable[int]] | None = None) -> list[dict[int, float]]:
        """Log-odds of several labelings in one pass: per labeling {i: s_i} for the wanted examples (default:
        its labeled ones, leave-one-out), each with every other example labeled there in context."""
        if not labelings:
            return []
        masks = None if wants is None else [sum(1 << i for i in set(w)) for w in wants]
        got = self.backend.run(self.plan(labelings, masks))
        out: list[dict[int, float]] = [{} for _ in labelings]
        for (k, i), s in got.items():
            out[k][i] = s
        return out

    def loo(self, labels: Labels) -> dict[int, float]:
        """Exact leave-one-out log-odds of every labeled example."""
        return self.scores([labels])[0]

    def predict_many(self, xs: Iterable[int], labels: Labels) -> dict[int, float]:
        """Log-odds of each x with every other labeled example in context (x's own label, if any, left out)."""
        return self.scores([labels], [xs])[0]

    def predict(self, x: int, labels: Labels) -> float:
        return self.predict_many([x], labels)[x]

    def held_out(self, labels: Labels, xs: Iterable[int] | None = None) -> dict[int, float]:
        """Log-odds of each x (default: the labeled ones) with every labeled example *outside x's consistency
        group* in context: no member of its own group is shown, as a test question's other answers are never
        among the paper's demonstrations. Without groups this is `loo`. One pass: in the grouped layout the
        per-group labelings agree on every segment pushed before a group's subtree, so it costs less than one
        `loo` (0.84x at 40 examples in pairs, fake backend); in `tree`, whose groups are scattered, 3-5x."""
        return self.held_out_and_loo(labels, xs, loo=False)[0]

    def held_out_and_loo(self, labels: Labels, xs: Iterable[int] | None = None,
                         loo: bool = True) -> tuple[dict[int, float], dict[int, float]]:
        """`held_out(labels, xs)` and `loo(labels)` in one pass. In the grouped layout a group's held-out
        contexts are its leave-one-out contexts up to the group's own subtree, so the plan shares that prefix:
        the leave-one-out scores cost about 2·n·L tokens more than the held-out ones alone, not a pass."""
        xs = [i for i, y in enumerate(labels) if y is not None] if xs is None else list(xs)
        by_group: dict[Hashable, list[int]] = {}
        for x in xs:
            by_group.setdefault(self.rank[x][0], []).append(x)
        labelings = []
        for first in by_group:
            labelings.append([None if self.rank[i][0] == first else y for i, y in enumerate(labels)])
        wants = list(by_group.values())
        if loo:
            labelings.append(list(labels))
            wants.append([i for i, y in enumerate(labels) if y is not None])
        got = self.scores(labelings, wants)
        out: dict[int, float] = {}
        for part in got[:len(by_group)]:
            out.update(part)
        return out, (got[-1] if loo else {})
