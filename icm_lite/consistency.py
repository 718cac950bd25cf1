"""Logical consistency: I(D), the inconsistent pairs, and the label options that fix a pair.

Pure combinatorics over (group, key, label); no model is involved (the paper's Algorithm 2 picks among
these options by U). Rules inside one consistency group, for two labeled examples i, j:
  * same key             -> implication: labels must be equal;
  * different keys, relation "contradiction" -> not both True;
  * different keys, relation "asymmetry"     -> exactly one True (both False is inconsistent too).
Examples without a group or without a key take part in no pair. The fix options of a pair are its consistent
labelings: (T,T)/(F,F) for an implication, (T,F)/(F,T) for asymmetry, and for a contradiction (T,F)/(F,T) and,
in the paper's variant, also (F,F).

`decode` is the other direction: given each example's log-odds, the consistent labeling of every group that
maximises the summed signed log-odds (s if True, -s if False). Equal keys move together, so a group is
enumerated over its distinct keys (GSM8K-style groups stay small); a group with no consistent labeling (three
keys under asymmetry) gets the fewest inconsistent pairs first, then the highest sum.

Example: Consistency(examples, "contradiction").count(labels) -> number of inconsistent pairs
         Consistency(pair, "asymmetry").decode({0: 0.3, 1: 1.2}) -> {0: False, 1: True}
"""

from __future__ import annotations

from itertools import combinations, product
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
        self.groups = groups
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
        if self.keys[i] == self.keys[j]:
            return yi != yj  # implication
        return self.conflict_kind(self.relation, yi, yj)

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

    def decode(self, scores: dict[int, float], fixed: dict[int, bool] | None = None) -> dict[int, bool]:
        """The labeling of the scored examples that breaks the fewest constraints and, among those, maximises
        sum_i (s_i if y_i else -s_i), group by group over the scored members (others are left out). Examples
        in no group, or without a key, take the sign of their log-odds (0 counts as False). `fixed`: labels that
        may not change (pinned by a person): the group's other members are decoded around them."""
        fixed = fixed or {}
        out = {i: s > 0 for i, s in scores.items()}
        for members in self.groups.values():
            scored = [i for i in members if i in scores]
            if len(scored) > 1:
                out.update(self._decode_group(scored, scores, fixed))
        out.update({i: y for i, y in fixed.items() if i in out})
        return out

    MAX_KEYS = 16  # distinct keys enumerated in one group (2**16 labelings); beyond it keys decode alone

    def _decode_group(self, members: list[int], scores: dict[int, float], fixed: dict[int, bool]) -> dict[int, bool]:
        keys = list(dict.fromkeys(self.keys[i] for i in members))
        weight = {k: sum(scores[i] for i in members if self.keys[i] == k) for k in keys}  # a key's members agree
        forced = {self.keys[i]: y for i, y in fixed.items() if i in members}
        if len(keys) > self.MAX_KEYS:
            return {i: forced.get(self.keys[i], weight[self.keys[i]] > 0) for i in members}
        count = {k: sum(1 for i in members if self.keys[i] == k) for k in keys}
        best, best_key = None, None
        for choice in product((True, False), repeat=len(keys)):  # True first: ties go to the earlier labeling
            if any(forced.get(k, y) != y for k, y in zip(keys, choice)):
                continue
            bad = sum(count[a] * count[b] for (a, ya), (b, yb) in combinations(zip(keys, choice), 2)
                      if self.conflict_kind(self.relation, ya, yb))
            total = sum(weight[k] if y else -weight[k] for k, y in zip(keys, choice))
            rank = (-bad, total)
            if best is None or rank > best:
                best, best_key = rank, dict(zip(keys, choice))
        return {i: best_key[self.keys[i]] for i in members}

    @staticmethod
    def conflict_kind(relation: str, ya: bool, yb: bool) -> bool:
        """Whether two labels of *different* keys conflict under `relation`."""
        if relation == "contradiction":
            return ya and yb
        if relation == "asymmetry":
            return ya == yb
        return False
