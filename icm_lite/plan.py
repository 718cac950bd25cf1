"""Scoring plans: which token sequences to evaluate, and in which order, as a tree of shared prefixes.

A plan is a tree of `Node`s. Entering a node appends its items to the context; leaving it rewinds the
context to where it was. Items are demonstrations `(i, True|False)` or queries `(i, None)`; after a
node that ends in a query, the log-odds of the label word are read and stored under each key in `read`.
Nothing here knows about tokens or models: a backend maps items to tokens, and `walk` drives any backend
through the tree depth-first.

Exact leave-one-out (every labeled example scored with all the others in context) is a divide and
conquer: split the demonstrations into halves A and B; B is pushed once as the shared prefix of every
leaf in A, and A for every leaf in B; recurse. Each level pushes every demonstration once, so a full
U(D) costs about n·L·log2(n) demonstration tokens plus n queries, instead of n²·L when every context is
built from scratch. Splits fall on consistency-group boundaries so each group stays contiguous.

`compare_plan` scores several labelings that differ only on a few examples C in one pass: C goes last
in every context, so ΔU between the labelings compares the same demonstration order.

Example: walk(compare_plan([(0, True), (1, False)], [], [{}], groups), ops) -> {(0, 0): s0, (0, 1): s1}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Protocol, Sequence

Item = tuple[int, "bool | None"]  # (example index, label) for a demonstration; label None = query


@dataclass
class Node:
    items: tuple[Item, ...]
    children: list["Node"] = field(default_factory=list)
    read: tuple[Hashable, ...] = ()


class Ops(Protocol):
    """What a backend offers `walk`: a context that grows by items and rewinds to a mark."""

    def mark(self) -> int: ...
    def push(self, items: Sequence[Item], read: bool) -> None: ...
    def rewind(self, mark: int) -> None: ...
    def read(self) -> float: ...


def walk(root: Node, ops: Ops) -> dict[Hashable, float]:
    """Depth-first over the plan; returns {read key: log-odds}."""
    out: dict[Hashable, float] = {}

    def visit(node: Node) -> None:
        m = ops.mark()
        ops.push(node.items, bool(node.read))
        if node.read:
            s = ops.read()
            for k in node.read:
                out[k] = s
        for child in node.children:
            visit(child)
        ops.rewind(m)

    visit(root)
    return out


def _node(items: tuple[Item, ...], children: list[Node], read: tuple = ()) -> Node:
    """A node, merged with its only child when nothing is read in between (fewer rewinds)."""
    if not read and len(children) == 1:
        c = children[0]
        return Node(items + c.items, c.children, c.read)
    return Node(items, children, read)


def _split(demos: Sequence[Item], group_of: Callable[[int], Hashable]) -> int:
    """Cut point nearest the middle that does not separate a consistency group."""
    n = len(demos)
    best = None
    for k in range(1, n):
        g0, g1 = group_of(demos[k - 1][0]), group_of(demos[k][0])
        if g0 is None or g0 != g1:
            if best is None or abs(2 * k - n) < abs(2 * best - n):
                best = k
    return n // 2 if best is None else best


def loo_nodes(demos: Sequence[Item], group_of: Callable[[int], Hashable],
              tails: Callable[[int], list[Node]]) -> list[Node]:
    """Nodes under the current context such that each demo i gets `tails(i)` after all other demos."""
    if len(demos) == 1:
        return tails(demos[0][0])
    cut = _split(demos, group_of)
    a, b = tuple(demos[:cut]), tuple(demos[cut:])
    return [_node(b, loo_nodes(a, group_of, tails)), _node(a, loo_nodes(b, group_of, tails))]


def trie(seqs: Sequence[tuple[tuple[Item, ...], Hashable]]) -> list[Node]:
    """Prefix tree over item sequences; each sequence's key is read where it ends."""
    buckets: dict[Item, list[tuple[tuple[Item, ...], Hashable]]] = {}
    for seq, key in seqs:
        buckets.setdefault(seq[0], []).append((seq[1:], key))
    nodes = []
    for item, rest in buckets.items():
        reads = tuple(k for s, k in rest if not s)
        nodes.append(_node((item,), trie([(s, k) for s, k in rest if s]), reads))
    return nodes


def compare_plan(base: Sequence[Item], changed: Sequence[int], labelings: Sequence[dict[int, bool | None]],
                 group_of: Callable[[int], Hashable]) -> Node:
    """Leave-one-out scores of several labelings that agree on `base` and differ on `changed`.

    base: demonstrations common to every labeling, in order; changed: indices placed last in every
    context; labelings[k][c]: label of c under labeling k (None or missing = unlabeled there).
    Keys read: (k, i) for every example i labeled under labeling k.
    """
    def tail(k: int, skip: int | None) -> tuple[Item, ...]:
        return tuple((c, labelings[k][c]) for c in changed if c != skip and labelings[k].get(c) is not None)

    def base_tails(i: int) -> list[Node]:
        return trie([(tail(k, None) + ((i, None),), (k, i)) for k in range(len(labelings))])

    children = loo_nodes(base, group_of, base_tails) if base else []
    changed_seqs = [(tail(k, c) + ((c, None),), (k, c))
                    for c in changed for k in range(len(labelings)) if labelings[k].get(c) is not None]
    if changed_seqs:
        children.append(_node(tuple(base), trie(changed_seqs)))
    return Node((), children)


def context_plan(demos: Sequence[Item], query: int, key: Hashable = "query") -> Node:
    """One context: the demos in order, then the query."""
    return Node(tuple(demos) + ((query, None),), [], (key,))


def plan_tokens(root: Node, length: Callable[[Item], int]) -> int:
    """Tokens a backend evaluates for the plan if every node is decoded (no cross-plan reuse)."""
    return sum(length(it) for it in root.items) + sum(plan_tokens(c, length) for c in root.children)


def contexts(root: Node) -> dict[Hashable, tuple[Item, ...]]:
    """The full item sequence behind every read key (to re-evaluate a plan's contexts one by one)."""
    out: dict[Hashable, tuple[Item, ...]] = {}

    def visit(node: Node, prefix: tuple[Item, ...]) -> None:
        seq = prefix + node.items
        for k in node.read:
            out[k] = seq
        for c in node.children:
            visit(c, seq)

    visit(root, ())
    return out
