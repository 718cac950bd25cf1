"""Mutual predictability: the scoring contract between the search and a backend.

A backend runs a plan (see plan.py) and returns, for every read key, the log-odds
s = log P(True-word | context) - log P(False-word | context) of the next token. `Scorer` turns labelings
into plans in a fixed canonical order (consistency groups contiguous, then file order) and returns
per-example log-odds; `predictability` turns those into P(D) for either objective:

  code  (default): P = mean_i (s_i if y_i else -s_i)            -- the authors' code, alpha 30, T0 10
  paper          : P = sum_i log sigmoid(s_i if y_i else -s_i)  -- the paper's sum of log-probabilities

This module never sees gold labels: it only gets examples and the labels the search proposes.

Example: Scorer(backend, examples).loo([True, None, False]) -> {0: s0, 2: s2}
"""

from __future__ import annotations

import math
from typing import Hashable, Protocol, Sequence

from .plan import Item, Node, compare_plan, context_plan
from .tasks import Example

OBJECTIVES = ("code", "paper")
Labels = Sequence[bool | None]


class Backend(Protocol):
    tokens_evaluated: int

    def run(self, root: Node) -> dict[Hashable, float]: ...


def predictability(scores: dict[int, float], labels: Labels, objective: str = "code") -> float:
    if not scores:
        return 0.0
    signed = [s if labels[i] else -s for i, s in scores.items()]
    if objective == "code":
        return sum(signed) / len(signed)
    if objective == "paper":
        return sum(-math.log1p(math.exp(-v)) if v > -30 else v for v in signed)  # log sigmoid, stable
    raise ValueError(f"objective must be one of {OBJECTIVES}")


class Scorer:
    def __init__(self, backend: Backend, examples: Sequence[Example]):
        self.backend = backend
        self.examples = examples
        first: dict[Hashable, int] = {}
        for i, ex in enumerate(examples):
            first.setdefault(ex.group if ex.group is not None else ("solo", i), i)
        self.rank = [(first[ex.group if ex.group is not None else ("solo", i)], i) for i, ex in enumerate(examples)]

    def group_of(self, i: int) -> Hashable:
        return self.examples[i].group

    def demos(self, labels: Labels, exclude: Sequence[int] = ()) -> list[Item]:
        skip = set(exclude)
        idx = [i for i, y in enumerate(labels) if y is not None and i not in skip]
        idx.sort(key=self.rank.__getitem__)
        return [(i, labels[i]) for i in idx]

    def loo(self, labels: Labels) -> dict[int, float]:
        """Exact leave-one-out log-odds of every labeled example."""
        return self.compare(labels, [], [{}])[0]

    def predict(self, x: int, labels: Labels) -> float:
        """Log-odds of example x with every other labeled example in context."""
        return self.backend.run(context_plan(self.demos(labels, [x]), x))["query"]

    def compare(self, labels: Labels, changed: Sequence[int],
                labelings: Sequence[dict[int, bool | None]]) -> list[dict[int, float]]:
        """Leave-one-out log-odds of several labelings that differ from `labels` only on `changed`.

        All labelings share one demonstration order: the unchanged labeled examples in canonical order,
        then `changed` (in the given order). Returns one {index: log-odds} per labeling.
        """
        changed = list(changed)
        root = compare_plan(self.demos(labels, changed), changed, labelings, self.group_of)
        got = self.backend.run(root)
        out: list[dict[int, float]] = [{} for _ in labelings]
        for (k, i), s in got.items():
            out[k][i] = s
        return out
