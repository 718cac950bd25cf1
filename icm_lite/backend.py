"""The backend contract: what scoring, batching and the run need from a model, and nothing more.

A backend turns scoring plans (plan.py) into log-odds. Two levels, as lm-evaluation-harness splits `LM` from
`TemplateLM`:

`Backend` (abstract): what the search, the scorer and the run call. The llama.cpp backend (llama.py), the fakes
(fake.py) and one batch's view of either (batches.BatchView) implement it:

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

`SequenceBackend(Backend)` (abstract): a backend over one KV-cache sequence implements the four `plan.Ops` that
`plan.walk` drives depth-first, and inherits `run = walk` and `fan = plan.one_by_one`:

  mark() -> int             the current context length
  push(items, read)         append the items' tokens (reusing cells that already hold them); read: the last item
                            is a query whose log-odds `read()` returns next
  rewind(mark)              back to a marked length (cells past it may be kept for reuse)
  read() -> float           the log-odds after the last push that read
  fan(suffixes)             (optional) the log-odds after each suffix, each read after the current context;
                            llama.py decodes them as sequences of one batch

`tests/test_backend_contract.py` runs the same conformance tests against every implementation. This module loads
no model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Hashable, Sequence

from .plan import Item, Node, one_by_one, walk
from .tasks import Example

STATS = ("tokens_evaluated", "tokens_reused", "naive_tokens", "decode_seconds", "decode_calls")


class Backend(ABC):
    """What the search, the scorer and the run need (module docstring)."""

    n_ctx: int

    @abstractmethod
    def prepare(self, examples: Sequence[Example], words: tuple[str, str]) -> None: ...

    @abstractmethod
    def length(self, item: Item) -> int: ...

    @property
    @abstractmethod
    def prefix_length(self) -> int: ...

    @abstractmethod
    def run(self, root: Node) -> dict[Hashable, float]: ...

    @abstractmethod
    def stats(self) -> dict: ...

    @abstractmethod
    def reset_stats(self) -> None: ...

    @property
    def tokens_evaluated(self) -> int:
        return self.stats()["tokens_evaluated"]

    def close(self) -> None:
        return None


class SequenceBackend(Backend):
    """A backend over one KV-cache sequence: the four plan.Ops, and `run` is the one depth-first traversal."""

    def run(self, root: Node) -> dict[Hashable, float]:
        return walk(root, self)

    @abstractmethod
    def mark(self) -> int: ...

    @abstractmethod
    def push(self, items: Sequence[Item], read: bool) -> None: ...

    @abstractmethod
    def rewind(self, mark: int) -> None: ...

    @abstractmethod
    def read(self) -> float: ...

    def fan(self, suffixes: Sequence[Sequence[Item]]) -> list[float]:
        return one_by_one(self, suffixes)  # a backend that decodes several sequences at once overrides it
