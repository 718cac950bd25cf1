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

import contextlib
import ctypes
import os
import time
from typing import Hashable, Sequence

import numpy as np

from .errors import ModelError, UserError
from .plan import Item, Node
from .tasks import Example


# Decodes of 2-7 tokens run through other CPU kernels than larger ones (and single tokens), so the same
# tokens came out up to ~0.1 nats apart on Gemma-3 (measured here); every decode is kept at >= 8 tokens by
# re-decoding a few cached tokens before it, which makes the prefix tree equal a from-scratch decode.
MIN_DECODE = 8
_backend_ready: list[bool] = []  # llama_backend_init runs once per process


def _quiet():
    """Silence llama.cpp's own prints (they bypass its log callback) while loading."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:  # a private helper of llama-cpp-python: do without it if it moves
        return contextlib.nullcontext()
    return suppress_stdout_stderr(disable=False)


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
                 n_batch: int = 512, flash_attn: bool = False, n_seq: int = 1,
                 kv_f32: bool = False, repack: bool = False):
        import llama_cpp

        self._lc = llama_cpp
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        # n_seq > 1 decodes small subtrees as parallel sequences in one batch (fewer, larger decodes), but
        # attention on the CPU depends on which KV cells hold a sequence, and parallel branches sit in other
        # cells than a from-scratch decode uses (0.2-0.4 nats, measured), so the exact depth-first path over
        # one sequence, which puts every token back in its own cell, is the default.
        self.n_seq = max(1, min(n_seq, 256))
        threads = n_threads or os.cpu_count() or 1
        if not _backend_ready:
            with _quiet():
                llama_cpp.llama_backend_init()
            _backend_ready.append(True)
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        # llama.cpp's CPU "repacked" weight layouts (extra buffer types, e.g. Q4_K 8x8 on AVX2) compute a
        # token's activations by a path that depends on how its decode was split, so the same tokens scored
        # through the prefix tree moved by up to ~0.3 nats on Gemma-3 Q4_K_M. Without them the tree equals a
        # from-scratch decode, at the same prompt speed here (564 vs 541 tokens/s, 2 cores).
        mp.use_extra_bufts = repack
        with _quiet():  # llama.cpp prints loader notes straight to stderr
            model = llama_cpp.llama_model_load_from_file(str(model_path).encode("utf-8"), mp)
        if not model:
            raise ModelError(f"llama.cpp could not load {model_path}: the file is damaged or its architecture is not "
                             f"supported by llama-cpp-python {getattr(llama_cpp, '__version__', '?')}")
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        p = llama_cpp.llama_context_default_params()
        p.n_ctx = n_ctx + n_batch  # headroom: a batch of branches sits beside the current path
        p.n_batch = p.n_ubatch = n_batch
        p.n_seq_max = self.n_seq
        p.kv_unified = True  # branches share their prefix's KV cells
        p.n_threads = p.n_threads_batch = threads
        p.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                             else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        p.no_perf = True
        if kv_f32:  # f32 KV cache (twice the memory), for experiments
            p.type_k = p.type_v = 0  # GGML_TYPE_F32
        with _quiet():
            self.ctx = llama_cpp.llama_init_from_model(self.model, p)
        if not self.ctx:
            raise ModelError(f"llama.cpp could not create a context of {n_ctx} tokens (out of memory?): "
                             "lower --n-ctx or --n-batch, or offload fewer layers with --n-gpu-layers")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, self.n_seq)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.prefix: list[int] = self._tokenize(b"", True)[:1]  # BOS once at the start of every context (if used)
        self.tokens_evaluated = 0
        self.tokens_reused = 0  # tokens a push found already in the cache
        self.naive_tokens = 0  # tokens the same reads would cost with every context built from scratch
        self.decode_seconds = 0.0
        self.decode_calls = 0
        self._kv: list[int] = []  # tokens in sequence 0's cells, by position
        self._pos = 0  # current context length (<= len(self._kv))
        self.clear()
        self.queries: list[list[int]] = []
        self.demos: list[tuple[list[int], list[int]]] = []

    def close(self) -> None:
        with _quiet():  # llama.cpp reports buffer sizes on the way out
            if getattr(self, "ctx", None):
                self._lc.llama_batch_free(self.batch)
                self._lc.llama_free(self.ctx)
                self.ctx = None
            if getattr(self, "model", None):
                self._lc.llama_model_free(self.model)
                self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- tokens ------------------------------------------------------------------------------------
    def _tokenize(self, text: bytes, add_bos: bool) -> list[int]:
        lc = self._lc
        n = len(text) + 2
        buf = (lc.llama_token * n)()
        got = lc.llama_tokenize(self.vocab, text, len(text), buf, n, add_bos, False)
        if got < 0:  # more tokens than bytes (never for BPE/SentencePiece, but cheap to honour)
            n = -got
            buf = (lc.llama_token * n)()
            got = lc.llama_tokenize(self.vocab, text, len(text), buf, n, add_bos, False)
        return list(buf[:got])

    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text.encode("utf-8"), False)

    def piece(self, token: int) -> str:
        """The text of one token (for messages and tests)."""
        buf = ctypes.create_string_buffer(64)
        n = self._lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

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

    def _tokens(self, items: Sequence[Item]) -> list[int]:
        return [t for it in items for t in self.item_tokens(it)]

    def _check_fits(self, end: int) -> None:
        if end > self.n_ctx:
            raise UserError(f"a context needs {end} tokens but n_ctx is {self.n_ctx}: "
                            "raise --n-ctx or label fewer examples per batch")

    # --- decoding ----------------------------------------------------------------------------------
    def _decode(self, rows: list[tuple[int, int, Sequence[int], bool]]) -> None:
        """One llama_decode of rows (token, position, sequence ids, want logits)."""
        b = self.batch
        for k, (tok, pos, seqs, want) in enumerate(rows):
            b.token[k] = tok
            b.pos[k] = pos
            b.n_seq_id[k] = len(seqs)
            for j, s in enumerate(seqs):
                b.seq_id[k][j] = s
            b.logits[k] = want
        b.n_tokens = len(rows)
        t0 = time.perf_counter()
        rc = self._lc.llama_decode(self.ctx, b)
        self.decode_seconds += time.perf_counter() - t0
        self.decode_calls += 1
        if rc != 0:
            raise ModelError(f"llama_decode failed (code {rc}): the KV cache is full or memory ran out; lower --n-ctx or --n-batch")
        self.tokens_evaluated += len(rows)

    def _logodds(self, row: int) -> float:
        lp = self._lc.llama_get_logits_ith(self.ctx, row)
        logits = np.ctypeslib.as_array(lp, shape=(self.n_vocab,))
        t, f = logits[self.true_ids].astype(np.float64), logits[self.false_ids].astype(np.float64)
        return float(_lse(t) - _lse(f))

    def _push(self, toks: list[int], read: bool) -> float | None:
        """Extend sequence 0 from the current position, reusing cells that already hold these tokens."""
        pos = self._pos
        self._check_fits(pos + len(toks))
        limit = len(toks) - 1 if read else len(toks)  # a read needs its last token decoded (fresh logits)
        kv, k = self._kv, 0
        while k < limit and pos + k < len(kv) and kv[pos + k] == toks[k]:
            k += 1
        end = pos + len(toks)
        start = pos + k
        if 0 < end - start < MIN_DECODE:  # a tiny decode takes another kernel path: re-decode a few cached tokens
            start = max(len(self.prefix), end - MIN_DECODE)
        self.tokens_reused += max(0, start - pos)
        rest = (kv[start:pos] + toks) if start < pos else toks[start - pos:]
        if rest:
            if start < len(kv):
                self._lc.llama_memory_seq_rm(self.mem, 0, start, -1)
                del kv[start:]
            size = -(-len(rest) // -(-len(rest) // self.n_batch))  # equal chunks: no tiny remainder
            for c in range(0, len(rest), size):
                chunk = rest[c:c + size]
                last = c + len(chunk) == len(rest)
                self._decode([(t, start + c + j, (0,), read and last and j == len(chunk) - 1)
                              for j, t in enumerate(chunk)])
            kv.extend(rest)
        self._pos = pos + len(toks)
        if read:
            self.naive_tokens += self._pos
            return self._logodds(len(chunk) - 1)
        return None

    def reset_stats(self) -> None:
        self.tokens_evaluated = self.tokens_reused = self.naive_tokens = self.decode_calls = 0
        self.decode_seconds = 0.0

    def clear(self) -> None:
        """Forget the cache (the next push decodes from the start)."""
        self._lc.llama_memory_clear(self.mem, True)
        self._kv, self._pos = [], 0
        if self.prefix:
            self._decode([(t, j, (0,), False) for j, t in enumerate(self.prefix)])
            self.tokens_evaluated -= len(self.prefix)
        self._kv = list(self.prefix)
        self._pos = len(self.prefix)

    # --- plans -------------------------------------------------------------------------------------
    def run(self, root: Node) -> dict[Hashable, float]:
        """Scores of a plan: depth-first on sequence 0; small subtrees go as parallel branches in one decode."""
        out: dict[Hashable, float] = {}
        sizes: dict[int, tuple[int, int]] = {}

        def size(node: Node) -> tuple[int, int]:  # (tokens in the subtree, leaves)
            got = sizes.get(id(node))
            if got is None:
                toks = sum(self.length(it) for it in node.items)
                leaves = 0 if node.children else 1
                for c in node.children:
                    t, lv = size(c)
                    toks, leaves = toks + t, leaves + lv
                got = sizes[id(node)] = (toks, leaves)
            return got

        def visit(node: Node) -> None:
            mark = self._pos
            s = self._push(self._tokens(node.items), bool(node.read))
            for k in node.read:
                out[k] = s
            pack: list[Node] = []
            budget, seqs = 0, 0
            for child in node.children:
                t, lv = size(child)
                if t <= self.n_batch and lv < self.n_seq:
                    if budget + t > self.n_batch or seqs + lv >= self.n_seq:
                        self._branches(pack, out)
                        pack, budget, seqs = [], 0, 0
                    pack.append(child)
                    budget, seqs = budget + t, seqs + lv
                else:
                    visit(child)
            self._branches(pack, out)
            self._pos = mark

        visit(root)
        return out

    def _branches(self, nodes: list[Node], out: dict) -> None:
        """Decode whole subtrees after the current position in one batch, one sequence per leaf."""
        if not nodes:
            return
        pos0 = self._pos
        rows: list[tuple[int, int, list[int], bool]] = []
        reads: list[tuple[int, tuple, int]] = []  # (row, keys, context length)
        next_seq = [1]

        def lay(node: Node, pos: int) -> list[int]:
            toks = self._tokens(node.items)
            self._check_fits(pos + len(toks))
            first = len(rows)
            for j, t in enumerate(toks):
                rows.append((t, pos + j, [], False))
            end = pos + len(toks)
            if node.children:
                seqs = [s for c in node.children for s in lay(c, end)]
            else:
                seqs = [next_seq[0]]
                next_seq[0] += 1
            for r in range(first, first + len(toks)):
                rows[r][2].extend(seqs)
            if node.read:
                if not toks:
                    raise ValueError("a read needs tokens in its node")
                rows[first + len(toks) - 1] = rows[first + len(toks) - 1][:3] + (True,)
                reads.append((first + len(toks) - 1, node.read, end))
            return seqs

        for n in nodes:
            lay(n, pos0)
        used = range(1, next_seq[0])
        for sq in used:
            self._lc.llama_memory_seq_cp(self.mem, 0, sq, 0, pos0)
        try:
            self._decode(rows)
            for row, keys, end in reads:
                s = self._logodds(row)
                self.naive_tokens += end
                for k in keys:
                    out[k] = s
        finally:
            for sq in used:
                self._lc.llama_memory_seq_rm(self.mem, sq, -1, -1)


def _lse(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum()))
