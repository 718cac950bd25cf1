"""Estimated dU (`--delta sample`): the change of U from the changed examples plus a random block of queries.

A proposal changes the labels of a few examples C (the proposed one and what ConsistencyFix changed). Exactly,
U(D') - U(D) needs every labeled example's score under D' (one full pass). The estimate keeps what is cheap
exact and samples the rest:

  sum of terms under D' = sum under D                      (known: the state's P)
                        - terms of C under D + terms of C under D'          (exact)
                        + sum over the unchanged labeled U of (t_i(D') - t_i(D))  (estimated)

The last sum is estimated from the queries of one block: a node of the scorer's layout tree picked uniformly
among the nodes at one depth (they partition the examples), so every example is in the block with the same
probability pi and (1/pi) * sum over the block is unbiased (Horvitz-Thompson). A block's queries share the path
of pushes down to the block: their contexts, each with all other labeled examples where the exact mode puts
them, cost about one context plus the block's own leave-one-out, and both labelings share the prefix up to the
first changed example. The depth is chosen so a block holds about `queries` labeled examples; with fewer
labeled examples than that the block is the whole tree and the estimate is exact.

The variance (for the penalty acceptance rule, search.py) treats the block's queries as a simple random sample of
U: N^2 (1 - n/N) s^2 / n. Block members are layout neighbours, so this understates it somewhat; benchmarks
report the decisions that differ from the exact mode.

This module is arithmetic over plans and numbers; the search decides what to do with the estimates.

Example: Block.pick(scorer.layout, labeled=200, queries=16, rng) -> Block(mask=..., probability=1/16)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .plan import Slot


def _nodes_at(root: Slot, depth: int) -> list[Slot]:
    level = [root]
    for _ in range(depth):
        level = [child for node in level for _, child in node.edges] or level
    return level


def _min_depth(root: Slot) -> int:
    depth, level = 0, [root]
    while level and all(node.edges for node in level):
        level = [child for node in level for _, child in node.edges]
        depth += 1
    return depth


@dataclass(frozen=True)
class Block:
    mask: int  # bit i set: example i's query is in the block
    probability: float  # of any example being in the block

    @staticmethod
    def pick(root: Slot, labeled: int, queries: int, rng: random.Random) -> "Block":
        """A uniformly random layout node whose subtree holds about `queries` of the `labeled` examples."""
        if labeled <= queries:
            return Block(root.mask, 1.0)
        depth = min(_min_depth(root), max(0, round(math.log2(labeled / queries))))
        nodes = _nodes_at(root, depth)
        return Block(nodes[rng.randrange(len(nodes))].mask, 1.0 / len(nodes))

    def __contains__(self, i: int) -> bool:
        return bool(self.mask >> i & 1)


def horvitz_thompson(diffs: list[float], population: int, probability: float) -> tuple[float, float]:
    """The estimated sum over a population of `population` items from the `diffs` of the sampled ones, and its
    variance as if the sample were simple random.

    Example: horvitz_thompson([0.1, 0.3], 8, 0.25) -> (1.6, var)
    """
    total = sum(diffs) / probability
    n = len(diffs)
    if probability >= 1.0 or n >= population:
        return total, 0.0
    if n < 2:
        return total, math.nan  # unknown: the caller uses what earlier steps measured
    mean = sum(diffs) / n
    s2 = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return total, population ** 2 * (1 - n / population) * s2 / n
