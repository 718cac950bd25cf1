"""The backend contract: what scoring, batching and the run need from a model, and nothing more.

A backend turns scoring plans (plan.py) into log-odds. `Backend` is the abstract base class that the llama.cpp
backend (llama.py), the fake (fake.py) and one batch's view of either (batches.BatchView) implement:

  prepare(examples, words)  tokenize every example once: as a query, and as a demonstration with either label
                            word (label word + blank line after the prompt); raise UserError/ModelError on
                            examples or label words the model cannot score
  length(item) -> int       tokens of an item: (i, None) the query, (i, True|False) the demonstration
  n_ctx                     the longest context it scores; a longer one is a UserError, never truncated
  prefix_length             tokens every context starts with (BOS), outside every item
  run(plan) -> {key: s}     log-odds s = log P(True-word) - log P(False-word) of the next token after every node
                            of the plan that reads, each with exactly its path's items in context
  stats() -> dict           counters since reset_stats(): tokens_evaluated, tokens_reused, naive_tokens,
                            decode_seconds, decode_calls (STATS)
  close()                   free what it holds (idempotent)

Backends over one KV-cache sequence implement the four `plan.Ops` (mark, push, rewind, read) and inherit
`run = plan.walk`: the one depth-first traversal, and `fan = plan.one_by_one` (llama.py overrides it to decode
the leaves after a shared prefix together, as several sequences of one batch). `tests/test_backend_contract.py` runs the same conformance
tests against every implementation. This module loads no model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Hashable, Sequence

from .plan import Item, Node, one_by_one, walk
from .tasks import Example

STATS = ("tokens_evaluated", "tokens_reused", "naive_tokens", "decode_seconds", "decode_calls")


class Backend(ABC):
    n_ctx: int

    @abstractmethod
    def prepare(self, examples: Sequence[Example], words: tuple[str, str]) -> None: ...

    @abstractmethod
    def length(self, item: Item) -> int: ...

    @property
    @abstractmethod
    def prefix_length(self) -> int: ...

    @abstractmethod
    def stats(self) -> dict: ...

    @abstractmethod
    def reset_stats(self) -> None: ...

    def run(self, root: Node) -> dict[Hashable, float]:
        return walk(root, self)  # needs the Ops: mark, push, rewind, read

    @property
    def tokens_evaluated(self) -> int:
        return self.stats()["tokens_evaluated"]

    def close(self) -> None:
        return None

    # plan.Ops, for backends that run plans over one KV-cache sequence
    def mark(self) -> int:
        raise NotImplementedError

    def push(self, items: Sequence[Item], read: bool) -> None:
        raise NotImplementedError

    def rewind(self, mark: int) -> None:
        raise NotImplementedError

    def read(self) -> float:
        raise NotImplementedError

    def fan(self, suffixes: Sequence[Sequence[Item]]) -> list[float]:
        return one_by_one(self, suffixes)  # a backend that decodes several sequences at once overrides it
