"""Datasets larger than one context: batches that fit n_ctx, and the view through which one batch is scored.

ICM puts every labeled example of a labeling in one context, so a batch fits when
    BOS + carried demonstrations + sum over the batch of its longest demonstration + its longest query <= n_ctx.
`plan_batches` cuts the dataset into such batches: consistency groups stay whole (a group is never split; a
group that alone does not fit is a DataError), groups and lone examples keep the order of the file, and the
batches are balanced (600 examples that need 3 batches give 200/200/200, not 256/256/88). Inside a batch the
examples keep file order. A dataset that fits one context is one batch, exactly as before batching existed.

Carried labels: the authors labeled independent 256-example batches, so each batch could settle on either
polarity (a globally flipped labeling is just as coherent) and "True" in batch 2 need not mean batch 1's "True".
Here each later batch sees `carry` (default 8) labeled examples of the *first* batch as fixed demonstrations at
the start of every context: never proposed, never changed, outside P(D) and I(D). All later batches carry the same
ones, so once the first batch is labeled the others are independent of each other: they can run in any order or
in parallel (the Ray executor), with the same labels. We chose
this over seeding the new batch from predictions because the demonstrations condition every prediction and every
score of the whole search, not only its start; and they are almost free: as the common prefix of every context,
the KV cache evaluates them once per batch. `choose_carried` takes them balanced (half True, half False) and most
confident (largest log-odds towards their label). Their tokens are reserved in every batch's budget.

`BatchView` is how one batch is scored: the search and its scorer see the batch's examples as 0..m-1 and know
nothing about batches; the view maps those indices to the dataset's and puts the carried demonstrations first.
This module does not read files, run searches or see gold labels.

Example: plan_batches(examples, [20] * 100, [18] * 100, n_ctx=512, prefix=1) -> ([[0, ..., 16], ...], 8)
"""

from __future__ import annotations

import math
from typing import Collection, Hashable, Sequence

from .backend import Backend
from .errors import DataError
from .plan import Item, Node
from .tasks import Example, units


def _greedy(cost: list[int], query: list[int], size: list[int], token_cap: float, count_cap: float) -> list[list[int]]:
    """Next-fit: unit indices per batch. A batch holds demo tokens + its longest query within token_cap; a unit
    that alone exceeds a cap still gets a batch of its own."""
    batches: list[list[int]] = []
    cur: list[int] = []
    tokens = longest = count = 0
    for u, (c, q, n) in enumerate(zip(cost, query, size)):
        if cur and (tokens + c + max(longest, q) > token_cap or count + n > count_cap):
            batches.append(cur)
            cur, tokens, longest, count = [], 0, 0, 0
        cur.append(u)
        tokens += c
        longest = max(longest, q)
        count += n
    if cur:
        batches.append(cur)
    return batches


def plan_batches(examples: Sequence[Example], demo_len: Sequence[int], query_len: Sequence[int], n_ctx: int,
                 prefix: int = 0, batch_size: int | None = None, carry: int = 8) -> tuple[list[list[int]], int]:
    """Batches of example indices (each in file order) and how many carried demonstrations they leave room for.

    demo_len[i] / query_len[i]: tokens of example i as a demonstration (its longer label) / as a query;
    prefix: tokens every context starts with (BOS); batch_size: at most this many examples per batch (a group
    larger than that is still kept whole). A batch fits when prefix + carried + its demos + its longest query
    <= n_ctx (an upper bound on every context its search builds). DataError when a group can never fit.
    """
    us = units(examples)
    cost = [sum(demo_len[i] for i in u) for u in us]
    query = [max(query_len[i] for i in u) for u in us]
    size = [len(u) for u in us]
    room = n_ctx - prefix  # tokens for demonstrations and a query in any context
    for u, c, q in zip(us, cost, query):
        if c + q > room:
            ex = examples[u[0]]
            if len(u) == 1:
                raise DataError(f"example {ex.id!r} alone takes {prefix + c + q} tokens with a query, more than "
                                f"n_ctx={n_ctx}; raise --n-ctx or shorten it")
            raise DataError(f"consistency group {ex.group!r} ({len(u)} examples) needs {prefix + c + q} tokens in one "
                            f"context, more than n_ctx={n_ctx}; a group is never split across batches: raise --n-ctx")
    count_cap = batch_size if batch_size else math.inf
    if sum(cost) + max(query) <= room and len(examples) <= count_cap:
        return [list(range(len(examples)))], 0
    # Several batches: keep room for the carried demonstrations (an upper bound: the longest ones), as many as fit
    # next to the largest unit.
    longest = sorted(demo_len, reverse=True)
    k = max(0, min(carry, len(longest)))
    while k > 0 and sum(longest[:k]) + max(c + q for c, q in zip(cost, query)) > room:
        k -= 1
    cap = room - sum(longest[:k])
    n = len(_greedy(cost, query, size, cap, count_cap))
    lo, hi = 0.0, 1.0  # the smallest load that still needs only n batches: balanced batches
    for _ in range(40):
        mid = (lo + hi) / 2
        if len(_greedy(cost, query, size, mid * cap, mid * count_cap)) <= n:
            hi = mid
        else:
            lo = mid
    batches = [sorted(i for u in b for i in us[u]) for b in _greedy(cost, query, size, hi * cap, hi * count_cap)]
    return batches, k if len(batches) > 1 else 0  # one batch (a single group above batch_size) carries nothing


def spread(m: int) -> list[int]:
    """0..m-1 in an order whose every prefix is spread evenly over the range (van der Corput, base 2).

    Example: spread(8) -> [0, 4, 2, 6, 1, 5, 3, 7]
    """
    bits = max(1, (m - 1).bit_length())
    keyed = sorted(range(1 << bits), key=lambda k: int(f"{k:0{bits}b}"[::-1], 2))
    return [k for k in keyed if k < m]


def choose_core(examples: Sequence[Example], demo_len: Sequence[int], query_len: Sequence[int], n_ctx: int,
                prefix: int = 0, limit: int | None = None, first: Collection[int] = ()) -> list[int]:
    """The core: whole consistency groups drawn evenly across the file, as many as fit one context together with the
    longest query of the data (the rest is predicted after the whole core), and at most `limit` examples when given
    (a group is never split, so the core may end below it). The groups of `first` (pinned examples: labels a person
    gave, demonstrations of the rest like the core's) come first, and must fit. Returned in file order.

    Example: choose_core(examples, [20] * 1000, [18] * 1000, n_ctx=8192, prefix=1) -> about 400 indices
    """
    us = units(examples)
    longest = max(query_len)
    room = n_ctx - prefix - longest
    cap = math.inf if limit is None else limit
    chosen: list[int] = []
    tokens = count = 0
    must = [u for u, members in enumerate(us) if any(i in first for i in members)]
    skip = set(must)
    for u in must + [u for u in spread(len(us)) if u not in skip]:
        c, n = sum(demo_len[i] for i in us[u]), len(us[u])
        if tokens + c > room or count + n > cap:
            if u in skip:
                raise DataError(f"the pinned examples' groups do not fit one context with a query (n_ctx={n_ctx}, "
                                "--core): raise --n-ctx or --core, or pin fewer")
            continue  # a smaller group further on may still fit
        chosen.extend(us[u])
        tokens, count = tokens + c, count + n
    if not chosen:
        raise DataError(f"no consistency group fits one context with a query (n_ctx={n_ctx}): raise --n-ctx")
    return sorted(chosen)


def choose_carried(labels: Sequence[bool | None], scores: dict[int, float], k: int) -> list[Item]:
    """Up to k labeled examples, half True and half False, most confident first; returned in index order.

    Confidence is the example's log-odds towards its own label (s if True, -s if False). When one label is
    short, the other fills the rest.

    Example: choose_carried([True, False, True, None], {0: 2.0, 1: -1.0, 2: 0.5}, 2) -> [(0, True), (1, False)]
    """
    ranked = {y: sorted((i for i, lab in enumerate(labels) if lab is y),
                        key=lambda i: (-(scores.get(i, 0.0) if y else -scores.get(i, 0.0)), i))
              for y in (True, False)}
    want = {True: k // 2, False: k - k // 2}
    for y in (True, False):
        spare = want[y] - len(ranked[y])
        if spare > 0:
            want[y] -= spare
            want[not y] += spare
    chosen = ranked[True][: want[True]] + ranked[False][: want[False]]
    return [(i, labels[i]) for i in sorted(chosen)]


class BatchView(Backend):
    """One batch's backend: local indices 0..m-1, every context starting with the carried demonstrations.

    It implements the Backend contract over the wrapped backend (which was prepared for the whole dataset):
    lengths, n_ctx and stats are the wrapped backend's; plans are mapped to dataset indices and run there.
    """

    def __init__(self, backend: Backend, index: Sequence[int], carried: Sequence[Item] = ()):
        self.backend = backend
        self.index = list(index)
        self.carried = tuple((int(i), bool(y)) for i, y in carried)
        self.n_ctx = backend.n_ctx

    def prepare(self, examples, words) -> None:
        raise TypeError("a BatchView scores what its backend was prepared for; prepare the backend")

    def length(self, item: Item) -> int:
        i, y = item
        return self.backend.length((self.index[i], y))

    @property
    def prefix_length(self) -> int:
        return self.backend.prefix_length

    def stats(self) -> dict:
        return self.backend.stats()

    def reset_stats(self) -> None:
        self.backend.reset_stats()

    def _map(self, node: Node) -> Node:
        return Node(tuple((self.index[i], y) for i, y in node.items), [self._map(c) for c in node.children], node.read,
                    node.fan)

    def plan(self, root: Node) -> Node:
        """The plan in dataset indices, every context starting with the carried demonstrations."""
        mapped = self._map(root)
        return Node(self.carried + mapped.items, mapped.children, mapped.read, mapped.fan)

    def run(self, root: Node) -> dict[Hashable, float]:
        return self.backend.run(self.plan(root))
