"""Logical consistency: I(D), the inconsistent pairs, and the label options that fix a pair.

Pure combinatorics over (group, key, label); no model is involved (the paper's Algorithm 2 picks among
these options by U). Rules inside one consistency group, for two labeled examples i, j:
  * same key             -> implication: labels must be equal;
  * different keys, relation "contradiction" -> not both True;
  * different keys, relation "asymmetry"     -> exactly one True (both False is inconsistent too).
Examples without a group or without a key take part in no pair. The fix options of a pair are its consistent
labelings: (T,T)/(F,F) for an implication, (T,F)/(F,T) for asymmetry, and for a contradiction (T,F)/(F,T) and,
in the paper's variant, also (F,F).

Example: Consistency(examples, "contradiction").count(labels) -> number of inconsistent pairs
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

from .tasks import Example

Labels = Sequence[bool | None]


class Consistency:
    def __init__(self, examples: Sequence[Example], relation: str):
        self.relation = relation
        groups: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            if ex.group is not None and ex.key is not None:
                groups.setdefault(ex.group, []).append(i)
        self.keys = [ex.key for ex in examples]
        # only pairs that can ever conflict are kept
        self.pairs: list[tuple[int, int]] = [
            (i, j) for members in groups.values() for i, j in combinations(members, 2)
            if self.keys[i] == self.keys[j] or relation != "none"
        ]
        self.pairs_of: dict[int, list[tuple[int, int]]] = {}
        for p in self.pairs:
            for k in p:
                self.pairs_of.setdefault(k, []).append(p)

    def kind(self, i: int, j: int) -> str:
        return "implication" if self.keys[i] == self.keys[j] else self.relation

    def conflict(self, i: int, j: int, yi: bool | None, yj: bool | None) -> bool:
        if yi is None or yj is None:
            return False
        kind = self.kind(i, j)
        if kind == "implication":
            return yi != yj
        if kind == "contradiction":
            return yi and yj
        if kind == "asymmetry":
            return yi == yj
        return False

    def inconsistent(self, labels: Labels) -> list[tuple[int, int]]:
        return [(i, j) for i, j in self.pairs if self.conflict(i, j, labels[i], labels[j])]

    def count(self, labels: Labels) -> int:
        return sum(1 for i, j in self.pairs if self.conflict(i, j, labels[i], labels[j]))

    def options(self, i: int, j: int, both_false: bool = True) -> list[tuple[bool, bool]]:
        """The consistent labelings of the pair (i, j), in a fixed order. both_false=False leaves (F, F) out of
        a contradiction's options, as the authors' code does (it offers (T, F) and (F, T) only)."""
        kind = self.kind(i, j)
        if kind == "implication":
            return [(True, True), (False, False)]
        if kind == "contradiction":
            return [(True, False), (False, True)] + ([(False, False)] if both_false else [])
        if kind == "asymmetry":
            return [(True, False), (False, True)]
        return []
