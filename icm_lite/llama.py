"""The llama.cpp backend: the only module that imports llama_cpp. It implements backend.Backend.

It loads a GGUF model (raw prompts, no chat template), tokenizes the examples once, and runs scoring
plans (plan.py, through plan.walk) over one KV-cache sequence: entering a plan node decodes only the tokens
that the cache does not already hold at that position; leaving it rewinds. After a query it reads the full next-token
logits (no top-k, no sampling) and returns the log-odds
    s = logsumexp(logits[True-word ids]) - logsumexp(logits[False-word ids]),
where the ids are every single-token variant of the label word (" True", "True", " true", ...) that the
tokenizer produces right after the template's last character. A context longer than n_ctx is an error,
never truncated.

Threads: llama.cpp's worker threads spin-wait at every barrier of a decode, so one thread more than the free
cores stalls every decode whenever the OS runs something else (measured: benchmarks/README.md). The default
(`default_threads`) is the physical cores minus the cores other processes keep busy when the model loads, and
the backend re-checks that between plans: the thread count changes how fast llama.cpp runs, not what it
computes (checked in tests/test_model_exact.py).

Example: b = LlamaBackend(path, ModelOptions()); b.prepare(examples, ("True", "False")); Scorer(b, examples).loo(labels)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from typing import Hashable, Sequence

import numpy as np

from .backend import STATS, SequenceBackend
from .errors import ModelError, UserError
from .options import ModelOptions
from .plan import Item, Node, one_by_one, walk
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


def physical_cores() -> int:
    """Physical cores this process may use (Linux: distinct (package, core) pairs; else the logical count)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, cur = set(), {}
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            key, _, val = line.partition(":")
            key = key.strip()
            if key in ("physical id", "core id"):
                cur[key] = val.strip()
            elif not line.strip() and cur:
                cores.add((cur.get("physical id"), cur.get("core id")))
                cur = {}
        if cur:
            cores.add((cur.get("physical id"), cur.get("core id")))
        if len(cores) >= 1 and None not in {c for pair in cores for c in pair}:
            return max(1, min(logical, len(cores)))
    except OSError:
        pass
    return max(1, logical)


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            vals = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)
    return sum(vals) - idle, sum(vals)


def _own_time() -> float:
    t = os.times()
    return t.user + t.system


def busy_cores(seconds: float = 0.2) -> float:
    """How many cores other processes kept busy over the last `seconds` (0.0 where it cannot be measured)."""
    a, own_a = _cpu_times(), _own_time()
    if a is None:
        return 0.0
    time.sleep(seconds)
    b, own_b = _cpu_times(), _own_time()
    if b is None or b[1] <= a[1]:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    others = (b[0] - a[0]) - (own_b - own_a) * tick  # busy jiffies of every process but this one
    return max(0.0, others / (b[1] - a[1]) * (os.cpu_count() or 1))


def default_threads(sample: float = 0.2) -> int:
    """Physical cores minus the cores other processes keep busy (rounded), at least 1.

    Example: on an idle 2-core machine 2; beside one busy process 1.
    """
    return max(1, physical_cores() - int(busy_cores(sample) + 0.5))


class LlamaBackend(SequenceBackend):
    RECHECK_SECONDS = 5.0  # decode time between checks of how many cores are free (automatic threads only)

    def __init__(self, model_path: str, opts: ModelOptions | None = None):
        import llama_cpp

        opts = opts or ModelOptions()
        if opts.kv_type == "q8_0" and not opts.flash_attn:
            raise UserError("--kv-type q8_0 needs --flash-attn: llama.cpp quantizes the V cache only with flash attention")
        self._lc = llama_cpp
        self.n_ctx = opts.n_ctx
        self.n_batch = opts.n_batch
        self.auto_threads = opts.n_threads is None
        self.n_threads = opts.n_threads or default_threads()
        if not _backend_ready:
            with _quiet():
                llama_cpp.llama_backend_init()
            _backend_ready.append(True)
        self.model = self._load(model_path, opts)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.fan_width = opts.fan
        self.ctx = self._context(opts)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(opts.n_batch, 0, 1)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.prefix: list[int] = self._tokenize(b"", True)[:1]  # BOS once at the start of every context (if used)
        self._counts = dict.fromkeys(STATS, 0)
        self._counts["decode_seconds"] = 0.0
        self._decoding = 0.0  # decode seconds since the model loaded (reset_stats does not touch it)
        self._checked_at = 0.0
        self._kv: list[int] = []  # tokens in the sequence's cells, by position
        self._pos = 0  # current context length (<= len(self._kv))
        self._last: float | None = None  # log-odds of the last push that read
        self.clear()
        self.queries: list[list[int]] = []
        self.demos: list[tuple[list[int], list[int]]] = []

    def _load(self, model_path: str, opts: ModelOptions):
        llama_cpp = self._lc
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = opts.n_gpu_layers
        # llama.cpp's CPU "repacked" weight layouts (extra buffer types, e.g. Q4_K 8x8 on AVX2, and the AMX
        # kernels that crash on some CPUs) compute a token's activations by a path that depends on how its decode
        # was split, so the same tokens scored through the prefix tree moved by up to ~0.3 nats on Gemma-3
        # Q4_K_M. Without them the tree equals a from-scratch decode, at the same prompt speed here.
        mp.use_extra_bufts = False
        with _quiet():  # llama.cpp prints loader notes straight to stderr
            model = llama_cpp.llama_model_load_from_file(str(model_path).encode("utf-8"), mp)
        if not model:
            raise ModelError(f"llama.cpp could not load {model_path}: the file is damaged or its architecture is not "
                             f"supported by llama-cpp-python {getattr(llama_cpp, '__version__', '?')}")
        return model

    def _context(self, opts: ModelOptions):
        llama_cpp = self._lc
        p = llama_cpp.llama_context_default_params()
        # Sequence 0 holds the plan's path; with --fan N, sequences 1..N are the leaves of a fan, decoded together in
        # one llama_decode after a shared prefix (`fan`): the KV cache is then unified (one buffer, the prefix's cells
        # shared) with n_batch cells more than n_ctx, room for one decode's leaves beyond a full context. Neither
        # changes a single sequence's scores (checked: tests/test_model_exact.py).
        p.n_ctx = opts.n_ctx + (opts.n_batch if opts.fan > 1 else 0)
        p.n_batch = p.n_ubatch = opts.n_batch
        p.n_seq_max = opts.fan + 1 if opts.fan > 1 else 1
        p.kv_unified = opts.fan > 1
        p.n_threads = p.n_threads_batch = self.n_threads
        p.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if opts.flash_attn
                             else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        p.no_perf = True
        p.type_k = p.type_v = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32,
                               "q8_0": llama_cpp.GGML_TYPE_Q8_0}[opts.kv_type]
        with _quiet():
            ctx = llama_cpp.llama_init_from_model(self.model, p)
        if not ctx:
            raise ModelError(f"llama.cpp could not create a context of {opts.n_ctx} tokens (out of memory?): "
                             "lower --n-ctx or --n-batch, or offload fewer layers with --n-gpu-layers")
        return ctx

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
    def _decode(self, tokens: Sequence[int], start: int, want_last: bool) -> None:
        """One llama_decode of `tokens` at positions start.. (logits for the last one if asked)."""
        b = self.batch
        for k, tok in enumerate(tokens):
            b.token[k] = tok
            b.pos[k] = start + k
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = 0
            b.logits[k] = want_last and k == len(tokens) - 1
        b.n_tokens = len(tokens)
        self._timed_decode(len(tokens))

    def _timed_decode(self, n_tokens: int) -> None:
        """llama_decode of the batch as filled, counted and timed."""
        t0 = time.perf_counter()
        rc = self._lc.llama_decode(self.ctx, self.batch)
        took = time.perf_counter() - t0
        self._counts["decode_seconds"] += took
        self._decoding += took
        self._counts["decode_calls"] += 1
        if rc != 0:
            raise ModelError(f"llama_decode failed (code {rc}): the KV cache is full or memory ran out; lower --n-ctx or --n-batch")
        self._counts["tokens_evaluated"] += n_tokens

    def _logodds(self, row: int) -> float:
        lp = self._lc.llama_get_logits_ith(self.ctx, row)
        logits = np.ctypeslib.as_array(lp, shape=(self.n_vocab,))
        t, f = logits[self.true_ids].astype(np.float64), logits[self.false_ids].astype(np.float64)
        return float(_lse(t) - _lse(f))

    def _push(self, toks: list[int], read: bool) -> float | None:
        """Extend the sequence from the current position, reusing cells that already hold these tokens."""
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
        self._counts["tokens_reused"] += max(0, start - pos)
        rest = (kv[start:pos] + toks) if start < pos else toks[start - pos:]
        if rest:
            if start < len(kv):
                self._lc.llama_memory_seq_rm(self.mem, 0, start, -1)
                del kv[start:]
            size = -(-len(rest) // -(-len(rest) // self.n_batch))  # equal chunks: no tiny remainder
            for c in range(0, len(rest), size):
                chunk = rest[c:c + size]
                self._decode(chunk, start + c, read and c + len(chunk) == len(rest))
            kv.extend(rest)
        self._pos = end
        if read:
            self._counts["naive_tokens"] += self._pos
            return self._logodds(len(chunk) - 1)
        return None

    # --- the Backend contract ------------------------------------------------------------------------
    @property
    def prefix_length(self) -> int:
        return len(self.prefix)

    def stats(self) -> dict:
        return dict(self._counts)

    def reset_stats(self) -> None:
        self._counts = dict.fromkeys(STATS, 0)
        self._counts["decode_seconds"] = 0.0

    def clear(self) -> None:
        """Forget the cache (the next push decodes from the start)."""
        self._lc.llama_memory_clear(self.mem, True)
        self._kv, self._pos = [], 0
        if self.prefix:
            self._decode(self.prefix, 0, False)
            self._counts["tokens_evaluated"] -= len(self.prefix)
        self._kv = list(self.prefix)
        self._pos = len(self.prefix)

    def mark(self) -> int:
        return self._pos

    def push(self, items: Sequence[Item], read: bool) -> None:
        self._last = self._push(self._tokens(items), read)

    def rewind(self, mark: int) -> None:
        self._pos = mark

    def read(self) -> float:
        if self._last is None:
            raise ValueError("read() needs a push that ended in a query")
        return self._last

    def run(self, root: Node) -> dict[Hashable, float]:
        self._adapt_threads()
        return walk(root, self)

    def fan(self, suffixes: Sequence[Sequence[Item]]) -> list[float]:
        """Log-odds after each suffix, every one read right after the current context (plan.Ops.fan). Several
        suffixes share one llama_decode: suffix j is sequence j, its cells see the context's cells (seq_cp shares
        them, it copies nothing) and its own, and only its last position's logits are computed. Decodes are filled
        up to n_batch tokens and --fan suffixes; a suffix longer than n_batch goes alone. Not bit-identical to one
        sequence at a time: the cells of a second sequence sit elsewhere in the cache, so attention sums them in
        another order (up to 0.6 nats measured here). With --fan 1 (the default), one at a time (plan.one_by_one)."""
        if self.fan_width < 2:
            return one_by_one(self, suffixes)
        base = self._pos
        toks = [self._tokens(items) for items in suffixes]
        for t in toks:
            self._check_fits(base + len(t))
        if len(self._kv) > base:  # what seq 0 held past the context: the leaves' cells need the room
            self._lc.llama_memory_seq_rm(self.mem, 0, base, -1)
            del self._kv[base:]
        out: list[float | None] = [None] * len(toks)
        group: list[int] = []
        for k in range(len(toks)):
            if len(toks[k]) > self.n_batch:
                out[k] = self._push(toks[k], True)  # alone, through the sequence path
                self.rewind(base)
                continue
            if group and (sum(len(toks[j]) for j in group) + len(toks[k]) > self.n_batch
                          or len(group) == self.fan_width):
                self._decode_fan(toks, group, base, out)
                group = []
            group.append(k)
        if group:
            self._decode_fan(toks, group, base, out)
        return out  # type: ignore[return-value]

    def _decode_fan(self, toks: list[list[int]], group: list[int], base: int, out: list) -> None:
        """One llama_decode of the suffixes in `group`, each its own sequence after the shared context."""
        if len(group) == 1 or sum(len(toks[k]) for k in group) < MIN_DECODE:  # the sequence path, leaf by leaf
            for k in group:
                out[k] = self._push(toks[k], True)
                self.rewind(base)
            return
        lc, b, row, rows = self._lc, self.batch, 0, []
        for seq, k in enumerate(group, start=1):
            lc.llama_memory_seq_cp(self.mem, 0, seq, 0, base)
            for n, tok in enumerate(toks[k]):
                b.token[row] = tok
                b.pos[row] = base + n
                b.n_seq_id[row] = 1
                b.seq_id[row][0] = seq
                b.logits[row] = n == len(toks[k]) - 1
                row += 1
            rows.append(row - 1)
            self._counts["naive_tokens"] += base + len(toks[k])
        b.n_tokens = row
        self._timed_decode(row)
        for k, r in zip(group, rows):
            out[k] = self._logodds(r)
        for seq in range(1, len(group) + 1):
            lc.llama_memory_seq_rm(self.mem, seq, -1, -1)

    def _adapt_threads(self) -> None:
        """With automatic threads, follow the free cores: at most every RECHECK_SECONDS of decoding."""
        if not self.auto_threads or self._decoding - self._checked_at < self.RECHECK_SECONDS:
            return
        self._checked_at = self._decoding
        busy, cores = busy_cores(0.1), physical_cores()
        n = max(1, cores - int(busy + 0.5))
        if n > self.n_threads and busy > cores - n + 0.25:
            return  # more threads only when the cores are clearly free: no flapping beside a half-busy neighbour
        if n != self.n_threads:
            self.n_threads = n
            with _quiet():  # llama.cpp logs the change to stderr
                self._lc.llama_set_n_threads(self.ctx, n, n)


def _lse(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum()))
