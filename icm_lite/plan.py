"""Scoring plans: which token sequences to evaluate, and in which order, as a tree of shared prefixes.

A plan is a tree of `Node`s. Entering a node appends its items to the context; leaving it rewinds the
context to where it was. Items are demonstrations `(i, True|False)` or queries `(i, None)`; after a
node that ends in a query, the log-odds of the label word are read and stored under each key in `read`.
Nothing here knows about tokens or models: a backend maps items to tokens, and `walk` drives any backend
through the tree depth-first.

Where each demonstration sits in a context is fixed once per batch by a `Layout`, over *all* of the batch's
examples, labeled or not: the context of query i is the layout's sequence for i with the examples that are
unlabeled (in the labeling being scored) left out. So a score is a function of the labeling alone, and a
changed example sits at its own place in every context, never in a special one (a recency-sensitive model
would otherwise reward or punish the change itself). Three layouts:

  tree       divide and conquer: split the examples into halves A and B; B is pushed once as the shared
             prefix of every leaf in A, and A for every leaf in B; recurse. Each level pushes every labeled
             demonstration once, so one U(D) costs about n·L·log2(n) tokens plus n queries instead of n²·L.
             The leaves are the examples in a seeded random order (`shuffled`): the demonstrations right
             before a query are its nearest tree neighbours, different for every query, and a small model
             copies recent labels, so labelings in which neighbours agree gain. Where the concept's signal is
             weak the search finds such labelings: they score above gold in their own layout and below it in
             any other (measured on spam: benchmarks/README.md, "one layout's labelings").
             `tail` (default TAIL = 0, `--tail`): the last `tail` examples of the shuffle are kept out of the
             halves and pushed right before every query, so every context ends with the same examples, as in
             the authors' order; it costs about n·tail·L tokens more per U(D), and every prediction then leans
             towards the tail's labels (measured with 4: benchmarks/README.md; not the default).
  grouped    (default, LAYOUT) the tree over whole consistency groups (`grouped`, `group_tree_layout`): the
             groups in a seeded random order, the halves cut between groups, so a group's members are the
             leaves of one subtree and read the same demonstrations before they read each other. For a pair
             labeled one True, one False (asymmetry), whatever the shared demonstrations add to both members'
             log-odds cancels in P (code objective: +s for one, -s for the other), so an additive push such as
             a copied recent label cannot favour one arrangement of the other labels; what is left is the
             pair's own content. Examples without a group are groups of one: with no groups at all this is the
             tree, the same layout. Same cost as the tree.
  canonical  the authors' order: every query after all other labeled examples in file order (groups
             contiguous); built as a trie, about n²·L/2 tokens per U(D).

`build` scores several labelings in one pass: labelings that agree on a pushed segment share its node, so
they share everything up to the first example where they differ.

Example: walk(build(tree_layout([0, 1, 2]), [[True, False, None]]), ops) -> {(0, 0): s0, (0, 1): s1}
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Hashable, Protocol, Sequence

Item = tuple[int, "bool | None"]  # (example index, label) for a demonstration; label None = query
LAYOUTS = ("tree", "grouped", "canonical")
LAYOUT = "grouped"  # the default layout (`--order`; measured against the others: benchmarks/README.md)
TAIL = 0  # tree layouts: examples that end every context (see the module docstring; `--tail`)


@dataclass
class Node:
    """items: pushed on entering; read: keys of the log-odds read after them; fan: the children are leaves that
    may be decoded together (`Ops.fan`), each read after this node's context. Only plans whose reads are not
    compared across labelings set it (the rest predicted after a core): llama.cpp's multi-sequence decode moves
    log-odds by up to ~0.5 nats against one sequence at a time (benchmarks/README.md, bench_fan)."""

    items: tuple[Item, ...]
    children: list["Node"] = field(default_factory=list)
    read: tuple[Hashable, ...] = ()
    fan: bool = False


class Ops(Protocol):
    """What a backend offers `walk`: a context that grows by items and rewinds to a mark, and `fan`: the log-odds
    after each of several item sequences, each read right after the current context, the context unchanged after
    (`one_by_one` does it with the other four; a backend may decode them together)."""

    def mark(self) -> int: ...
    def push(self, items: Sequence[Item], read: bool) -> None: ...
    def rewind(self, mark: int) -> None: ...
    def read(self) -> float: ...
    def fan(self, suffixes: Sequence[Sequence[Item]]) -> list[float]: ...


def one_by_one(ops: Ops, suffixes: Sequence[Sequence[Item]]) -> list[float]:
    """`Ops.fan` from push, read and rewind: each suffix in turn after the current context."""
    out = []
    for items in suffixes:
        m = ops.mark()
        ops.push(items, True)
        out.append(ops.read())
        ops.rewind(m)
    return out


def walk(root: Node, ops: Ops) -> dict[Hashable, float]:
    """Depth-first over the plan; returns {read key: log-odds}. A `fan` node hands its leaves to `ops.fan` together."""
    out: dict[Hashable, float] = {}

    def visit(node: Node) -> None:
        m = ops.mark()
        ops.push(node.items, bool(node.read))
        if node.read:
            s = ops.read()
            for k in node.read:
                out[k] = s
        kids = node.children
        if node.fan and kids:
            assert all(c.read and not c.children for c in kids), "a fan node's children are leaves that read"
            for c, s in zip(kids, ops.fan([c.items for c in kids])):
                for k in c.read:
                    out[k] = s
        else:
            for child in kids:
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


# --- layouts: where every example sits in every context ---------------------------------------------
@dataclass
class Slot:
    """A layout node: `edges` are (examples pushed, subtree) pairs; a leaf is the query `query`.
    `mask` has bit i set when query i is under this node."""

    mask: int
    edges: list[tuple[tuple[int, ...], "Slot"]] = field(default_factory=list)
    query: int | None = None


def _leaf(i: int) -> Slot:
    return Slot(1 << i, [], i)


def shuffled(order: Sequence[int], seed: int) -> list[int]:
    """The examples in a seeded random order: the tree layout's leaves.

    Example: shuffled([0, 1, 2, 3], 0) -> a fixed permutation of [0, 1, 2, 3]
    """
    return random.Random(seed).sample(list(order), len(order))


def tree_layout(order: Sequence[int], tail: Sequence[int] = ()) -> Slot:
    """Divide and conquer over `order`: halves A | B; the leaves under A are read after B, and vice versa.
    The examples in `tail` are left out of the halves and pushed right before every query instead (itself
    excepted), the same ones for every query: every context ends as the authors' order ends every context."""
    order, tail = tuple(order), tuple(tail)
    if len(order) == 1:
        i = order[0]
        rest = tuple(j for j in tail if j != i)
        return Slot(1 << i, [(rest, _leaf(i))]) if rest else _leaf(i)
    cut = len(order) // 2
    a, b = order[:cut], order[cut:]
    left, right = tree_layout(a, tail), tree_layout(b, tail)
    return Slot(left.mask | right.mask, [(tuple(j for j in b if j not in tail), left),
                                         (tuple(j for j in a if j not in tail), right)])


def canonical_layout(order: Sequence[int]) -> Slot:
    """Every query after all the others in `order`: a chain d0 -> d1 -> ... with a branch per query."""
    order = tuple(order)
    # built from the end: chain_k = (push d_k, then chain_{k+1}) or (push d_{k+1}.., then query k)
    chain = _leaf(order[-1]) if order else Slot(0)
    for k in range(len(order) - 2, -1, -1):
        chain = Slot(chain.mask | (1 << order[k]), [(order[k + 1:], _leaf(order[k])), ((order[k],), chain)])
    return chain


def grouped(units: Sequence[Sequence[int]], seed: int) -> list[list[int]]:
    """Whole groups in a seeded random order, each group's members in a seeded random order too. With groups
    of one this is `shuffled`: the same permutation.

    Example: grouped([[0, 1], [2, 3]], 0) -> [[3, 2], [0, 1]] (or another fixed arrangement)
    """
    out = [list(u) for u in random.Random(seed).sample([tuple(u) for u in units], len(units))]
    inner = random.Random(f"{seed}|members")
    return [inner.sample(u, len(u)) if len(u) > 1 else u for u in out]


def group_tree_layout(units: Sequence[Sequence[int]], tail: Sequence[int] = ()) -> Slot:
    """`tree_layout` over whole groups: the halves are cut between groups (nearest the middle by examples),
    so a group's members are leaves of one subtree and share every demonstration before it. With groups of
    one this is `tree_layout` of the flattened order."""
    if len(units) == 1:
        return tree_layout(units[0], tail)
    sizes = [len(u) for u in units]
    half, acc, cut, best = sum(sizes) / 2, 0, 1, math.inf
    for k in range(1, len(units)):
        acc += sizes[k - 1]
        if abs(acc - half) < best:
            cut, best = k, abs(acc - half)
    left, right = group_tree_layout(units[:cut], tail), group_tree_layout(units[cut:], tail)
    a = tuple(i for u in units[:cut] for i in u if i not in tail)
    b = tuple(i for u in units[cut:] for i in u if i not in tail)
    return Slot(left.mask | right.mask, [(b, left), (a, right)])


def layout(kind: str, order: Sequence[int], seed: int = 0, tail: int = TAIL,
           units: Sequence[Sequence[int]] | None = None) -> Slot:
    """The layout of `order` (the examples in canonical order); the tree's leaves are a seeded shuffle of it,
    and the last `tail` of the shuffle end every context. `units`: the consistency groups in canonical order
    (default: every example its own), which the grouped tree keeps together."""
    if kind in ("tree", "grouped"):  # the tree is the grouped tree with every example its own group
        parts = grouped(units if kind == "grouped" and units is not None else [[i] for i in order], seed)
        leaves = [i for u in parts for i in u]
        k = max(0, min(tail, len(leaves) - 1))
        return group_tree_layout(parts, leaves[len(leaves) - k:])
    if kind == "canonical":
        return canonical_layout(order)
    raise ValueError(f"layout must be one of {LAYOUTS}")


def build(root: Slot, labelings: Sequence[Sequence[bool | None]], wants: Sequence[int] | None = None) -> Node:
    """One plan that scores every labeling: key (k, i) = log-odds of example i under labeling k, with every
    other example labeled under k in context, where the layout puts it.

    wants[k]: bit mask of the examples to read under labeling k; default: the examples labeled under k
    (leave-one-out). An unlabeled example may be wanted too: its prediction from all labeled ones.
    """
    if wants is None:
        wants = [sum(1 << i for i, y in enumerate(lab) if y is not None) for lab in labelings]

    def visit(slot: Slot, ks: list[int]) -> list[Node]:
        if slot.query is not None:
            i = slot.query
            keys = tuple((k, i) for k in ks if wants[k] >> i & 1)
            return [Node(((i, None),), [], keys)] if keys else []
        out: list[Node] = []
        for seg, child in slot.edges:
            live = [k for k in ks if wants[k] & child.mask]
            if not live:
                continue
            by_items: dict[tuple[Item, ...], list[int]] = {}
            for k in live:
                lab = labelings[k]
                by_items.setdefault(tuple((j, lab[j]) for j in seg if lab[j] is not None), []).append(k)
            for items, group in by_items.items():
                sub = visit(child, group)
                if sub:
                    out.append(_node(items, sub))
        return out

    return Node((), visit(root, list(range(len(labelings)))))


def trie(seqs: Sequence[tuple[tuple[Item, ...], Hashable]]) -> Node:
    """A plan that reads each given context (items ending in a query) under its key, shared prefixes once.

    Example: trie([(((0, True), (1, None)), "a"), (((0, True), (2, None)), "b")]) -> one (0, True) node, two leaves
    """
    def nodes(group: Sequence[tuple[tuple[Item, ...], Hashable]]) -> list[Node]:
        buckets: dict[Item, list[tuple[tuple[Item, ...], Hashable]]] = {}
        for seq, key in group:
            buckets.setdefault(seq[0], []).append((seq[1:], key))
        out = []
        for item, rest in buckets.items():
            reads = tuple(k for s, k in rest if not s)
            out.append(_node((item,), nodes([(s, k) for s, k in rest if s]), reads))
        return out

    return Node((), nodes([(tuple(s), k) for s, k in seqs if s]))


def plan_tokens(root: Node, length: Callable[[Item], int]) -> int:
    """Tokens a backend evaluates for the plan if every node is decoded (no cross-plan reuse)."""
    total, stack = 0, [root]
    while stack:
        node = stack.pop()
        total += sum(length(it) for it in node.items)
        stack.extend(node.children)
    return total


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
