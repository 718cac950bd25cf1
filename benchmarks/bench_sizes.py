"""Exact ICM at the sizes users run: tokens, KV memory and seconds for n = 64, 128, 256 labeled examples.

Two kinds of data, token lengths from the default model's tokenizer (the model is loaded once; counting decodes
nothing):
  short  examples/truthfulqa_sample.jsonl as it is (64 claims), repeated: copy c of a record gets its own id and
         consistency group, so 256 = 4 copies of the same 64 length-distribution.
  long   examples/gsm8k_sample.jsonl (64 chains of thought, ~150 tokens here) lengthened to GSM8K-size chains: copy c
         of a record takes sentences of other chains of the same question, in seeded random order, while the prompt
         stays within a target drawn uniformly from 200-300 tokens: distinct texts of ~250 tokens each.

What is measured, and how:
  tokens per U(D)       plan_tokens of Scorer.plan([labels]): one exact leave-one-out pass, every example labeled.
  tokens per proposal   a search (the authors' alpha 30 / T0 10, seed 0) on the fake backend (fake.py, which knows the
                        gold concept) given these real token lengths, from the seeds until every example is labeled
                        (= one batch here; at most --max-iterations): proposals per label gained, each proposal in
                        units of the U(D) of its moment (as bench_search.py), the tokens of proposals made with >= 90%
                        of the examples labeled (the per-proposal cost at size n), and the batch's tokens.
  KV memory             n_ctx x layers x KV heads x (key + value dims) x 2 bytes (f16), n_ctx = the longest context
                        of the pass; gemma-3-270m's shape read from its GGUF, Llama-3.1-8B's given (32 x 8 x 128).
  seconds (CPU)         --measure: real decodes of the default model (run it under `nice` on a shared machine), within
                        --budget seconds: a sweep along one long context (pushes of ~32, ~250 and ~500 tokens, and
                        short reads, the leaves, at every depth), fitted to t = c + c_read [logits read] + k (a + b p)
                        for a decode of k tokens around position p; then one real U(D) (--check-n short claims) checks
                        the fit. The projections price every decode the fake logged (chunked at n_batch 512).
  seconds (8B GPU)      the same decode logs priced with published llama.cpp rates for Llama-3 8B Q4_K_M (GPUS below:
                        pp512 and pp8192 give a and b, c = 0; a decode never takes less than one generated token, 1/tg).

  python benchmarks/bench_sizes.py [--ns 64,128,256] [--measure --budget 150 | --fit SAVED.json] [--tail N] [--json | --report FILE]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import platform
import random
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.data import build_dataset, read_records  # noqa: E402
from icm_lite.fake import FakeBackend  # noqa: E402
from icm_lite.plan import TAIL, contexts, plan_tokens  # noqa: E402
from icm_lite.scoring import Scorer  # noqa: E402
from icm_lite.search import Search, SearchConfig  # noqa: E402
from icm_lite.tasks import Task  # noqa: E402

N_BATCH = 512
CPU = "gemma-3-270m, this CPU (fit)"
LLAMA_8B = {"name": "Llama-3.1-8B Q4_K_M", "layers": 32, "kv_heads": 8, "key_dim": 128, "value_dim": 128,
            "n_ctx_train": 131072, "weights_gib": 4.58}
# Published llama.cpp rates, Llama-3 8B Q4_K_M, all layers on the GPU, llama-bench (flash attention off), May 2024:
# github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference (README, "LLaMA 3"). pp N = mean prompt rate over N tokens
# from an empty cache, tg = generation rate. The RTX 3070 is a desktop card, a stand-in for a high-end laptop GPU.
GPUS = {
    "M1 Max 32-core (laptop)": {"pp512": 408.23, "pp8192": 302.92, "tg512": 35.73},
    "M3 Max 40-core (laptop)": {"pp512": 693.32, "pp8192": 505.32, "tg512": 48.97},
    "RTX 3070 8GB (desktop)": {"pp512": 2402.51, "pp8192": 1419.97, "tg512": 72.79},
}


# --- data ----------------------------------------------------------------------------------------------------
def short_records(n: int) -> list[tuple[str, dict]]:
    base = read_records(ROOT / "examples" / "truthfulqa_sample.jsonl")
    return [_copy(base[i % len(base)], i // len(base)) for i in range(n)]


def long_records(n: int, tokens, task: Task, seed: int = 0) -> list[tuple[str, dict]]:
    """Copies of the GSM8K sample whose chains grow by sentences of other chains of the same question, each added
    while the rendered prompt (counted by `tokens`) stays within a target of 200-300 tokens."""
    base = read_records(ROOT / "examples" / "gsm8k_sample.jsonl")
    rng = random.Random(seed)
    by_question: dict = {}
    for _, r in base:
        by_question.setdefault(r["consistency_id"], []).append(r["cot"])
    out = []
    for i in range(n):
        original = base[i % len(base)][1]
        where, r = _copy(base[i % len(base)], i // len(base))
        target = rng.randint(200, 300)
        pool = [s for cot in by_question[original["consistency_id"]] if cot != r["cot"] for s in _sentences(cot)]
        rng.shuffle(pool)
        cot = r["cot"]
        for sentence in pool:  # every sentence that still fits under the target, in shuffled order
            if tokens(task.render({**r, "cot": cot + " " + sentence})) <= target:
                cot += " " + sentence
        out.append((where, {**r, "cot": cot}))
    return out


def _copy(rec: tuple[str, dict], c: int) -> tuple[str, dict]:
    where, r = rec
    return f"{where}#{c}", {**r, "id": f"{r['id']}-c{c}", "consistency_id": f"{r['consistency_id']}-c{c}"}


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


# --- the fake backend with real lengths, logging every decode ----------------------------------------------------
class Counting(FakeBackend):
    """FakeBackend whose items have the real token lengths; `calls` logs (start position, tokens, read) of every
    decode (read: the logits of its last token are read)."""

    def __init__(self, hidden, table: dict, prefix: int):
        super().__init__(hidden)
        self.table, self.prefix, self.calls = table, prefix, []

    def length(self, item) -> int:
        return self.table[item]

    def push(self, items, read: bool) -> None:
        before = self._counts["tokens_evaluated"]
        super().push(items, read)
        new = self._counts["tokens_evaluated"] - before
        if new:  # the evaluated items are the tail of the context
            self.calls.append((self.prefix + self._cum[self._n] - new, new, read))


def decode_seconds(calls, per_call: float, per_read: float, per_token: float, per_token_pos: float,
                   floor: float = 0.0) -> float:
    """Seconds of a decode log, chunked at N_BATCH as the backend does, each chunk of k tokens around position p
    costing max(floor, c + c_read [logits read] + k (a + b p))."""
    total = 0.0
    for start, k, read in calls:
        m = -(-k // N_BATCH)
        size = -(-k // m)
        for j in range(m):
            kk = min(size, k - j * size)
            last = read and j == m - 1
            total += max(floor, per_call + per_read * last + kk * (per_token + per_token_pos * (start + j * size + kk / 2)))
    return total


def gpu_model(g: dict) -> dict:
    """a, b from pp512 and pp8192 (1/pp_N = a + b N/2 for a decode of N tokens from an empty cache), floor = 1/tg."""
    b = (1 / g["pp8192"] - 1 / g["pp512"]) / ((8192 - 512) / 2)
    return {"per_call": 0.0, "per_read": 0.0, "per_token": 1 / g["pp512"] - b * 256, "per_token_pos": b,
            "floor": 1 / g["tg512"]}


# --- counting ------------------------------------------------------------------------------------------------
def count(ds, table: dict, prefix: int, max_iterations: int, tail: int = TAIL) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    n = len(ds.examples)
    hidden = [bool(g) for g in ds.gold]
    fake = Counting(hidden, table, prefix)
    sc = Scorer(fake, ds.examples, tail=tail)
    root = sc.plan([hidden])
    ctx = contexts(root)
    fake.run(root)
    u_calls, fake.calls = fake.calls, []
    out = {"n": n, "tokens_per_demo": round(sum(table[(i, True)] for i in range(n)) / n, 1),
           "u_tokens": plan_tokens(root, fake.length),
           "naive_tokens": sum(sum(fake.length(it) for it in seq) for seq in ctx.values()),
           "max_context": prefix + max(sum(fake.length(it) for it in seq) for seq in ctx.values())}

    search = Search(ds.examples, sc, ds.task.relation, SearchConfig(iterations=max_iterations, tail=tail))
    fake.reset_stats()
    fake.calls = []
    search.start()
    seed_calls, fake.calls = fake.calls, []
    units, late, late_calls, fill_calls = [], [], [], list(seed_calls)
    labeled0 = sum(y is not None for y in search.state.labels)
    while not search.finished() and None in search.state.labels:
        before, labels, fake.calls = fake.tokens_evaluated, list(search.state.labels), []
        ev = search.step()
        fill_calls.extend(fake.calls)
        if ev.kind == "skip":
            continue
        spent = fake.tokens_evaluated - before
        units.append(spent / plan_tokens(sc.plan([labels]), fake.length))  # U(D) of that moment, as bench_search
        if sum(y is not None for y in labels) >= 0.9 * n:  # a proposal at (nearly) the batch's full size
            late.append(spent)
            late_calls.extend(fake.calls)
    labeled = sum(y is not None for y in search.state.labels)
    out.update({
        "iterations": search.state.iteration, "proposals": len(units), "all_labeled": labeled == n, "labeled": labeled,
        "proposals_per_label": round(len(units) / max(1, labeled - labeled0), 2),
        "u_per_proposal_then": round(sum(units) / max(1, len(units)), 2), "batch_tokens": fake.tokens_evaluated,
        "late_proposals": len(late), "tokens_per_proposal": round(sum(late) / len(late)) if late else None,
        "search_python_s": round(time.perf_counter() - t0, 1),
    })
    out["u_per_proposal"] = round(out["tokens_per_proposal"] / out["u_tokens"], 2) if late else None
    return out, {"u": u_calls, "fill": fill_calls, "proposal": late_calls}


def priced(row: dict, logs: dict, model: dict) -> dict:
    """Seconds per U(D), per label-changing proposal at >= 90% labeled, and for the batch (seeds to all labeled)."""
    per = lambda calls: decode_seconds(calls, **model)  # noqa: E731
    props = per(logs["proposal"]) / row["late_proposals"] if row["late_proposals"] else None
    return {"u_s": per(logs["u"]), "proposal_s": props, "batch_s": per(logs["fill"])}


# --- the model: shape and measured rates ---------------------------------------------------------------------
def model_shape(backend) -> dict:
    """Layers, KV heads, key/value dims and trained context, read from the loaded GGUF's metadata."""
    import llama_cpp

    buf = ctypes.create_string_buffer(128)

    def meta(key: str):
        n = llama_cpp.llama_model_meta_val_str(backend.model, key.encode(), buf, len(buf))
        return int(buf.value) if n > 0 else None

    arch_n = llama_cpp.llama_model_meta_val_str(backend.model, b"general.architecture", buf, len(buf))
    arch = buf.value.decode() if arch_n > 0 else ""
    n_head = llama_cpp.llama_model_n_head(backend.model)
    fallback = llama_cpp.llama_model_n_embd(backend.model) // max(1, n_head)
    return {"layers": llama_cpp.llama_model_n_layer(backend.model), "kv_heads": llama_cpp.llama_model_n_head_kv(backend.model),
            "key_dim": meta(f"{arch}.attention.key_length") or fallback,
            "value_dim": meta(f"{arch}.attention.value_length") or fallback,
            "n_ctx_train": llama_cpp.llama_model_n_ctx_train(backend.model)}


def kv_bytes(shape: dict, n_ctx: int, bytes_per: int = 2) -> int:
    """f16 K and V for every layer (llama.cpp's swa_full default keeps sliding-window layers full size too)."""
    n_ctx = -(-n_ctx // 256) * 256  # llama.cpp pads the cache to a multiple of 256 cells
    return n_ctx * shape["layers"] * shape["kv_heads"] * (shape["key_dim"] + shape["value_dim"]) * bytes_per


def measure(path: str, long_ds, short_ds, budget: float, check_n: int = 32) -> dict:
    """Real decodes: a sweep along one long context (rate vs position) with short reads along the way, a least-squares
    fit of t = c + k a + k p b, and one real U(D) of `check_n` short claims against the fit's prediction."""
    import numpy as np

    from icm_lite.llama import LlamaBackend, busy_cores
    from icm_lite.options import ModelOptions

    busy_before = busy_cores(2.0)
    b = LlamaBackend(path, ModelOptions(n_ctx=32768))
    n_long = len(long_ds.examples)
    b.prepare(long_ds.examples + short_ds.examples, ("True", "False"))
    points = []  # (tokens, mid position, read, seconds)

    def timed(items, read):
        start, s0, t0 = b.mark(), b.stats()["decode_seconds"], b.stats()["tokens_evaluated"]
        b.push(items, read)
        k = b.stats()["tokens_evaluated"] - t0
        points.append((k, b.mark() - k / 2, read, b.stats()["decode_seconds"] - s0))
        return start

    b.clear()
    t_start, i, q, n_short = time.perf_counter(), 0, 0, len(short_ds.examples)
    while time.perf_counter() - t_start < budget and i + 3 <= n_long and b.mark() + 1200 < b.n_ctx:
        for _ in range(3):  # leaf-sized reads at this depth (a short query, logits read), then back
            b.rewind(timed([(n_long + q % n_short, None)], True))
            q += 1
        timed([(i, True)], False)  # then the context grows by pushes of ~250, ~500 and ~32 tokens
        timed([(i + 1, False), (i + 2, True)], False)
        timed([(n_long + q % n_short, True)], False)
        i, q = i + 3, q + 1
    k, p, r, t = (np.array(v, dtype=float) for v in zip(*points))
    (c, cr, a, bb), *_ = np.linalg.lstsq(np.stack([np.ones_like(k), r, k, k * p], 1), t, rcond=None)
    fit = {"per_call": float(c), "per_read": float(cr), "per_token": float(a), "per_token_pos": float(bb)}
    big = [(kk, pp, tt) for kk, pp, rr, tt in points if kk >= 256]
    sweep = [{"position": int(pp), "tokens_per_s": round(kk / tt)} for kk, pp, tt in big[:: max(1, len(big) // 8)]]

    # check: one real exact leave-one-out pass over check_n short claims, against the fit applied to the fake's log
    ex = short_ds.examples[:check_n]
    b.prepare(ex, ("True", "False"))
    labels = [bool(g) for g in short_ds.gold[:check_n]]
    root = Scorer(b, ex).plan([labels])
    b.clear()
    b.reset_stats()
    t0 = time.perf_counter()
    b.run(root)
    wall = time.perf_counter() - t0
    fake = Counting(labels, {it: b.length(it) for i in range(check_n) for it in ((i, None), (i, True), (i, False))},
                    b.prefix_length)
    fake.run(root)
    predicted = decode_seconds(fake.calls, **fit)
    out = {"fit": fit, "points": len(points), "max_position": int(max(p)), "sweep": sweep,
           "rate_at_start": round(1 / (a + bb * 256)), "rate_at_max": round(1 / (a + bb * max(p))),
           "check": {"n": check_n, "tokens": b.stats()["tokens_evaluated"], "decode_s": round(b.stats()["decode_seconds"], 2),
                         "wall_s": round(wall, 2), "predicted_s": round(predicted, 2)},
           "threads": b.n_threads, "busy_cores_before": round(busy_before, 2), "busy_cores_after": round(busy_cores(2.0), 2),
           "seconds": round(time.perf_counter() - t_start, 1)}
    b.close()
    return out


# --- report --------------------------------------------------------------------------------------------------
def fmt_s(s: float) -> str:
    return f"{s:.3g} s" if s < 120 else f"{s / 60:.3g} min" if s < 7200 else f"{s / 3600:.3g} h" if s < 172800 \
        else f"{s / 86400:.3g} d"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="registry name or .gguf path (default: the default model)")
    ap.add_argument("--ns", default="64,128,256")
    ap.add_argument("--max-iterations", type=int, default=3000, help="cap of the search (it stops once all are labeled)")
    ap.add_argument("--measure", action="store_true", help="also time real decodes (CPU) for the seconds columns")
    ap.add_argument("--budget", type=float, default=150.0, help="seconds for the sweep of real decodes")
    ap.add_argument("--check-n", type=int, default=32, help="claims in the real U(D) that checks the CPU fit")
    ap.add_argument("--fit", metavar="JSON", help="reuse the CPU measurement of a saved --measure --json run (the fit "
                                                 "prices decodes on that machine; it does not depend on the plan)")
    ap.add_argument("--tail", type=int, default=TAIL, help="the tree layout's --tail (plan.py)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout instead of tables")
    ap.add_argument("--report", metavar="JSON", help="print the tables of a saved --json run (no model, no search)")
    args = ap.parse_args()
    if args.fit and args.measure:
        ap.error("--fit reuses a measurement, --measure makes one: give one of them")
    if args.report:
        return report(orjson.loads(Path(args.report).read_bytes()))

    from icm_lite.llama import LlamaBackend, busy_cores, physical_cores
    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions

    ref = resolve_model(args.model)
    tok = LlamaBackend(str(ref.path), ModelOptions(n_ctx=512, n_threads=1))  # tokenizer and shape; nothing decoded
    shape = model_shape(tok)
    ns = [int(x) for x in args.ns.split(",")]
    claim, math_task = Task.builtin("claim"), Task.builtin("math")
    sets = {"short": build_dataset(short_records(max(ns)), claim, "short"),
            "long": build_dataset(long_records(max(ns), lambda s: len(tok.tokenize(s)), math_task), math_task, "long")}
    rows, logs = [], {}
    for kind, full in sets.items():
        tok.prepare(full.examples, ("True", "False"))
        table = {it: tok.length(it) for i in range(len(full.examples)) for it in ((i, None), (i, True), (i, False))}
        for n in ns:
            ds = replace(full, examples=full.examples[:n], gold=full.gold[:n])
            row, log = count(ds, table, tok.prefix_length, args.max_iterations, args.tail)
            row["data"] = kind
            row["kv_gemma_mib"] = round(kv_bytes(shape, row["max_context"]) / 2**20)
            row["kv_8b_gib"] = round(kv_bytes(LLAMA_8B, row["max_context"]) / 2**30, 2)
            row["fits_model_ctx"] = row["max_context"] <= shape["n_ctx_train"]
            rows.append(row)
            logs[(kind, n)] = log
    tok.close()

    if args.fit:
        measured = orjson.loads(Path(args.fit).read_bytes())["measured"]
    elif args.measure:
        measured = measure(str(ref.path), sets["long"], sets["short"], args.budget, args.check_n)
    else:
        measured = None
    models = {name: gpu_model(g) for name, g in GPUS.items()}
    if measured:
        models = {CPU: measured["fit"], **models}
    for row in rows:
        row["seconds"] = {name: {k: v if v is None else round(v, 2) for k, v in priced(row, logs[(row["data"], row["n"])], m).items()}
                          for name, m in models.items()}
        if CPU in row["seconds"] and not row["fits_model_ctx"]:
            row["seconds"][CPU] = None  # the default model cannot hold this context

    info = {"model": ref.name, "shape": shape, "llama_8b": LLAMA_8B, "gpus": GPUS, "gpu_models": models,
            "date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu": platform.processor() or platform.machine(),
            "physical_cores": physical_cores(), "loadavg": os.getloadavg(), "busy_cores": round(busy_cores(1.0), 2),
            "measured": measured, "rows": rows}
    if args.json:
        print(orjson.dumps(info, option=orjson.OPT_NON_STR_KEYS).decode())
        return
    report(info)


def report(info: dict) -> None:
    rows = info["rows"]
    print(f"model {info['model']} {info['shape']} | {info['cpu']}, {info['physical_cores']} cores | {info['date']} | "
          f"load {info['loadavg'][0]:.2f}, busy cores {info['busy_cores']}\n")
    print("| data | n | tok/demo | longest context | tokens per U(D) | naive n²L | proposals to label all (per label) "
          "| U(D) of the moment per proposal | tokens per proposal at >= 90% labeled (U(D)) | tokens per batch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        done = "" if r["all_labeled"] else f", stopped at {r['labeled']}/{r['n']}"
        per = "–" if r["tokens_per_proposal"] is None else f"{r['tokens_per_proposal']:,} ({r['u_per_proposal']})"
        print(f"| {r['data']} | {r['n']} | {r['tokens_per_demo']} | {r['max_context']:,} | {r['u_tokens']:,} | "
              f"{r['naive_tokens']:,} | {r['proposals']} ({r['proposals_per_label']}{done}) | "
              f"{r['u_per_proposal_then']} | {per} | {r['batch_tokens']:,} |")
    print("\n| data | n | KV gemma-3-270m f16 | fits its 32K context | KV Llama-3.1-8B f16 | 8B weights + KV |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['n']} | {r['kv_gemma_mib']} MiB | {'yes' if r['fits_model_ctx'] else 'no'} | "
              f"{r['kv_8b_gib']} GiB | {r['kv_8b_gib'] + LLAMA_8B['weights_gib']:.1f} GiB |")
    names = list(rows[0]["seconds"])
    measured_to = {m: (info["measured"]["max_position"] if m == CPU else 8192) for m in names}
    print("\n| data | n | " + " | ".join(f"{m}: U(D) / proposal / batch" for m in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in rows:
        cells = ["n/a (context too long)" if r["seconds"][m] is None else
                 " / ".join("–" if r["seconds"][m][k] is None else fmt_s(r["seconds"][m][k])
                            for k in ("u_s", "proposal_s", "batch_s"))
                 + (" *" if r["max_context"] > measured_to[m] else "") for m in names]
        print(f"| {r['data']} | {r['n']} | " + " | ".join(cells) + " |")
    print("\n\\* contexts longer than the rates were measured at (CPU: the sweep's deepest position; GPUs: pp8192): "
          "the rate's fall with position is extrapolated linearly.")
    print("\n| assumed GPU (Llama-3 8B Q4_K_M, published) | pp512 tok/s | pp8192 tok/s | tg tok/s | a (ms/token) | "
          "b (us/token/position) | floor per decode (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, g in info["gpus"].items():
        x = info["gpu_models"][name]
        print(f"| {name} | {g['pp512']} | {g['pp8192']} | {g['tg512']} | {x['per_token'] * 1e3:.3f} | "
              f"{x['per_token_pos'] * 1e6:.4f} | {x['floor'] * 1e3:.1f} |")
    m = info["measured"]
    if m:
        f = m["fit"]
        print(f"\nCPU fit ({m['points']} real decodes, {m['seconds']} s, {m['threads']} threads, busy cores "
              f"{m['busy_cores_before']} before / {m['busy_cores_after']} after): c = {f['per_call'] * 1000:.1f} ms per "
              f"decode (+{f['per_read'] * 1000:.1f} ms when logits are read), a = {f['per_token'] * 1000:.3f} ms per token, b = {f['per_token_pos'] * 1e6:.3f} us per token "
              f"per position; {m['rate_at_start']} tok/s near 0, {m['rate_at_max']} at {m['max_position']:,}")
        print("sweep: " + ", ".join(f"{s['position']:,}: {s['tokens_per_s']}" for s in m["sweep"]))
        print(f"check, one real U(D) of short claims: {m['check']}")


if __name__ == "__main__":
    main()
