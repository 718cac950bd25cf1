"""A fake backend with a hidden concept, for fast tests and token-count proofs. No model involved.

Example i has a hidden truth h_i (the concept) and a "length" in tokens. Its log-odds in a context are

    s_i = sign(h_i) * (prior_i + follow * c * m / (m + m0)) + noise_i + recency * sign(y_last),
    c = (agreeing - disagreeing demos) / m,   m = number of demos in context

where a demo (j, y) "agrees" when y == h_j. So a long context labeled by the concept makes every
example predict its concept label, a flipped one predicts the flip (as real models do in context), a
few demos move the prediction less than many, and the zero-shot prior (about 75% right) is modest. `recency`
(default 0) copies the label of the demo right before the query, as small real models do: a plan that put a
changed example in that place would make every change look like it moves every prediction. The search never
sees h: it only gets log-odds, like from a real model. `last` records (query, last demo) for every read.

Counting mirrors the llama backend: the context is kept between pushes, and a push re-evaluates only
the items that differ from what the cache already holds after the current position (the last item is
always evaluated when its log-odds are read, so they are fresh). It implements backend.Backend, n_ctx
included: a context longer than n_ctx is a UserError, as with the real model.

`PromptFake` is the fake behind `--model fake`: sized when it is prepared, each example's hidden label and length
derived from its prompt (a hash; deterministic), so the whole command line runs without a model file, in
milliseconds. Its labels mean nothing: it is for trying the tool and for tests, which select it the way a user
selects a model.

Example: FakeBackend([True, False, True]).run(plan) -> {key: log-odds}
"""

from __future__ import annotations

import random
from typing import Sequence

from .backend import STATS, SequenceBackend
from .errors import UserError
from .plan import Item


class FakeBackend(SequenceBackend):
    def __init__(self, hidden: Sequence[bool], lengths: Sequence[int] | None = None, *, prior: float = 1.0,
                 follow: float = 3.0, m0: float = 8.0, noise: float = 0.5, seed: int = 0, demo_extra: int = 3,
                 recency: float = 0.0, n_ctx: int = 1_000_000):
        self.hidden = list(hidden)
        rng = random.Random(seed)
        self.prior = [prior * rng.uniform(-0.5, 1.5) for _ in self.hidden]
        self.noise = [rng.gauss(0.0, noise) for _ in self.hidden]
        self.lengths = list(lengths) if lengths is not None else [40] * len(self.hidden)
        self.demo_extra = demo_extra  # label word + separator tokens after a demo's prompt
        self.follow = follow
        self.m0 = m0
        self.recency = recency
        self.last: list[tuple[int, Item | None]] = []
        self.n_ctx = n_ctx
        self._counts = dict.fromkeys(STATS, 0)
        self.reads = 0
        self._cache: list[Item] = []
        self._cum = [0]  # _cum[k]: tokens in the first k cached items
        self._n = 0

    def prepare(self, examples, words) -> None:
        if len(examples) != len(self.hidden):
            raise UserError(f"the fake backend knows {len(self.hidden)} examples, not {len(examples)}")

    @property
    def prefix_length(self) -> int:
        return 0

    def stats(self) -> dict:
        return dict(self._counts)

    def reset_stats(self) -> None:
        self._counts = dict.fromkeys(STATS, 0)

    def length(self, item: Item) -> int:
        i, y = item
        return self.lengths[i] + (0 if y is None else self.demo_extra)

    # Ops for plan.walk
    def mark(self) -> int:
        return self._n

    def rewind(self, mark: int) -> None:
        self._n = mark

    def push(self, items: Sequence[Item], read: bool) -> None:
        k = 0
        limit = len(items) - 1 if read else len(items)
        while k < limit and self._n + k < len(self._cache) and self._cache[self._n + k] == items[k]:
            k += 1
        end = self._cum[self._n] + sum(self.length(it) for it in items)
        if end > self.n_ctx:
            raise UserError(f"a context needs {end} tokens but n_ctx is {self.n_ctx}")
        del self._cache[self._n + k:]
        del self._cum[self._n + k + 1:]
        for it in items[k:]:
            self._cache.append(it)
            self._cum.append(self._cum[-1] + self.length(it))
        new = sum(self.length(it) for it in items[k:])
        self._counts["tokens_evaluated"] += new
        self._counts["tokens_reused"] += sum(self.length(it) for it in items[:k])
        self._counts["decode_calls"] += bool(new)
        self._n += len(items)

    def read(self) -> float:
        self.reads += 1
        self._counts["naive_tokens"] += self._cum[self._n]
        *demos, (q, y) = self._cache[: self._n]
        assert y is None, "log-odds are read after a query"
        agree = sum(1 if lab == self.hidden[j] else -1 for j, lab in demos)
        m = len(demos)
        pull = self.follow * agree / (m + self.m0)  # = follow * c * m / (m + m0)
        sign = 1.0 if self.hidden[q] else -1.0
        last = demos[-1] if demos else None
        self.last.append((q, last))
        copy = 0.0 if last is None else self.recency * (1.0 if last[1] else -1.0)
        return sign * (self.prior[q] + pull) + self.noise[q] + copy



class PromptFake(FakeBackend):
    """`--model fake`: the fake backend over whatever examples it is prepared for (hidden label and length from a
    hash of each prompt)."""

    def __init__(self, n_ctx: int = 1_000_000):
        self._n_ctx = n_ctx
        super().__init__([], n_ctx=n_ctx)

    def prepare(self, examples, words) -> None:
        import hashlib

        digest = [hashlib.sha256(ex.prompt.encode()).digest() for ex in examples]
        FakeBackend.__init__(self, [d[0] % 2 == 0 for d in digest], [8 + len(ex.prompt) // 4 for ex in examples],
                             n_ctx=self._n_ctx)
