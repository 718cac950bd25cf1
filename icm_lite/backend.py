"""The llama.cpp backend: the only module that imports llama_cpp.

It loads a GGUF model (raw prompts, no chat template), tokenizes the examples once, and runs scoring
plans (plan.py) over one KV-cache sequence: entering a plan node decodes only the tokens that the cache
does not already hold at that position; leaving it rewinds. After a query it reads the full next-token
logits (no top-k, no sampling) and returns the log-odds
    s = logsumexp(logits[True-word ids]) - logsumexp(logits[False-word ids]),
where the ids are every single-token variant of the label word (" True", "True", " true", ...) that the
tokenizer produces right after the template's last character. A context longer than n_ctx is an error,
never truncated.

Example: b = LlamaBackend(path); b.prepare(examples, ("True", "False")); Scorer(b, examples).loo(labels)
"""

from __future__ import annotations

import os
import time
from typing import Hashable, Sequence

import numpy as np

from .errors import ModelError, UserError
from .plan import Item, Node, walk
from .tasks import Example


def _variants(word: str) -> list[str]:
    forms = [word, word.lower(), word.upper(), word.capitalize()]
    out = []
    for f in forms:
        for v in (" " + f, f):
            if v not in out:
                out.append(v)
    return out


class LlamaBackend:
    def __init__(self, model_path: str, *, n_ctx: int = 8192, n_gpu_layers: int = 0, n_threads: int | None = None,
                 n_batch: int = 512, flash_attn: bool = False, seed: int = 0):
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.n_ctx = n_ctx
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(model_path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                n_gpu_layers=n_gpu_layers, n_threads=n_threads or os.cpu_count() or 1,
                flash_attn=flash_attn, logits_all=False, seed=seed, verbose=False)
        except ValueError as e:
            msg = str(e)
            if "llama_context" in msg:  # not just "context": the model path may contain that word
                raise ModelError(f"llama.cpp could not create a context of {n_ctx} tokens (out of memory?): "
                                 "lower --n-ctx or --n-batch, or offload fewer layers with --n-gpu-layers") from None
            raise ModelError(f"llama.cpp could not load {model_path} ({msg}): the file is damaged or its architecture "
                             f"is not supported by llama-cpp-python {getattr(llama_cpp, '__version__', '?')}") from None
        self.n_vocab = self.llm.n_vocab()
        bos = self.llm.tokenize(b"", add_bos=True, special=False)
        self.prefix: list[int] = bos[:1]  # BOS once at the start of every context (if the model uses one)
        self.tokens_evaluated = 0
        self.tokens_reused = 0  # tokens a push found already in the cache
        self.naive_tokens = 0  # tokens the same reads would cost with every context built from scratch
        self.decode_seconds = 0.0
        self._kv: list[int] = []  # tokens held by the KV cache, in order
        self._pos = 0  # current context length (<= len(self._kv))
        self.clear()
        self.queries: list[list[int]] = []
        self.demos: list[tuple[list[int], list[int]]] = []

    # --- tokens ------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def label_ids(self, prompt: str, word: str) -> list[int]:
        """Token ids that spell `word` (any case, with or without a leading space) right after `prompt`."""
        base = self.tokenize(prompt)
        ids = []
        for v in _variants(word):
            toks = self.tokenize(prompt + v)
            if len(toks) == len(base) + 1 and toks[: len(base)] == base and toks[-1] not in ids:
                ids.append(toks[-1])
        return ids

    def prepare(self, examples: Sequence[Example], words: tuple[str, str]) -> None:
        """Tokenize every example once, as a query and as a demonstration with either label."""
        if not examples:
            raise UserError("no examples to score")
        probe = examples[0].prompt
        self.true_ids = self.label_ids(probe, words[0])
        self.false_ids = self.label_ids(probe, words[1])
        for w, ids in zip(words, (self.true_ids, self.false_ids)):
            if not ids:
                n = len(self.tokenize(probe + " " + w)) - len(self.tokenize(probe))
                raise ModelError(f"this model's tokenizer splits the label word {w!r} into {n} tokens after the "
                                 "template; icm_lite needs single-token label words (set label_words in a task file)")
        if set(self.true_ids) & set(self.false_ids):
            raise ModelError(f"label words {words[0]!r} and {words[1]!r} share a token for this model; choose other label_words")
        self.queries = [self.tokenize(ex.prompt) for ex in examples]
        self.demos = [(self.tokenize(f"{ex.prompt} {words[1]}\n\n"), self.tokenize(f"{ex.prompt} {words[0]}\n\n"))
                      for ex in examples]

    def item_tokens(self, item: Item) -> list[int]:
        i, y = item
        return self.queries[i] if y is None else self.demos[i][1 if y else 0]

    def length(self, item: Item) -> int:
        return len(self.item_tokens(item))

    def context_length(self, items: Sequence[Item]) -> int:
        return len(self.prefix) + sum(self.length(it) for it in items)

    # --- plan.Ops ----------------------------------------------------------------------------------
    def mark(self) -> int:
        return self._pos

    def rewind(self, mark: int) -> None:
        self._pos = mark  # lazy: cells past _pos stay until a push overwrites them

    def push(self, items: Sequence[Item], read: bool) -> None:
        toks = [t for it in items for t in self.item_tokens(it)]
        if self._pos + len(toks) > self.n_ctx:
            raise UserError(f"a context needs {self._pos + len(toks)} tokens but n_ctx is {self.n_ctx}: "
                            "raise --n-ctx or label fewer examples per batch")
        limit = len(toks) - 1 if read else len(toks)  # a read needs the last token decoded (fresh logits)
        kv, pos, k = self._kv, self._pos, 0
        while k < limit and pos + k < len(kv) and kv[pos + k] == toks[k]:
            k += 1
        self.tokens_reused += k
        rest = toks[k:]
        if rest:
            self.llm.n_tokens = pos + k
            t0 = time.perf_counter()
            self.llm.eval(rest)
            self.decode_seconds += time.perf_counter() - t0
            self.tokens_evaluated += len(rest)
            del kv[pos + k:]
            kv.extend(rest)
        self._pos = pos + len(toks)
        if read:
            self.naive_tokens += self._pos

    def read(self) -> float:
        lp = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(lp, shape=(self.n_vocab,)).astype(np.float64)
        t, f = logits[self.true_ids], logits[self.false_ids]
        return float(_lse(t) - _lse(f))

    def run(self, root: Node) -> dict[Hashable, float]:
        return walk(root, self)

    def reset_stats(self) -> None:
        self.tokens_evaluated = self.tokens_reused = self.naive_tokens = 0
        self.decode_seconds = 0.0

    def clear(self) -> None:
        """Forget the cache (the next push decodes from the start)."""
        self.llm.n_tokens = 0
        if self.prefix:
            self.llm.eval(self.prefix)
        self._kv = list(self.prefix)
        self._pos = len(self.prefix)


def _lse(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum()))
