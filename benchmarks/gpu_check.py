"""The Python half of benchmarks/gpu_check.sh: what llama.cpp was built with, exactness, and the summary.

  env      the build: llama-cpp-python's version, llama.cpp's system info (CUDA/Metal/CPU flags), whether it can
           offload to a GPU, and ggml's devices (name and description), as one JSON object.
  exact    for SmolLM2 and the default model (gemma-3-270m): one exact leave-one-out plan and one plan scoring four
           labelings at once (tests/test_model_exact.py's), run through icm_lite's prefix tree, and every context of
           both re-evaluated from an empty cache (the naive way, bench_scoring.py's baseline). Reports the largest
           |tree - scratch| log-odds difference in nats, and tokens and seconds of tree vs naive on the
           leave-one-out plan. Measures; asserts nothing.
  summary  reads the JSON files the script wrote and prints the summary block a user sends back.

  python benchmarks/gpu_check.py env|exact [--n-gpu-layers -1] [--n 32]  |  summary DIR
"""

from __future__ import annotations

import argparse
import ctypes
import random
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def env() -> dict:
    import llama_cpp

    out = {"llama_cpp_python": llama_cpp.__version__,
           "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
           "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()), "devices": []}
    try:  # ggml's device registry (a C API that llama-cpp-python does not wrap); best effort
        lib = next(p for p in (Path(llama_cpp.__file__).parent / "lib").iterdir() if p.name.startswith("libggml.")
                   and p.suffix in (".so", ".dylib", ".dll"))
        g = ctypes.CDLL(str(lib))
        g.ggml_backend_dev_count.restype = ctypes.c_size_t
        g.ggml_backend_dev_get.restype, g.ggml_backend_dev_get.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(g, fn).restype, getattr(g, fn).argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        for i in range(g.ggml_backend_dev_count()):
            d = g.ggml_backend_dev_get(i)
            out["devices"].append(f"{g.ggml_backend_dev_name(d).decode()}: {g.ggml_backend_dev_description(d).decode()}")
    except (StopIteration, OSError, AttributeError) as e:
        out["devices_error"] = str(e)
    return out


def exact(model: str, n: int, n_gpu_layers: int) -> dict:
    from icm_lite.data import load_dataset
    from icm_lite.llama import LlamaBackend
    from icm_lite.models import resolve_model
    from icm_lite.options import ModelOptions
    from icm_lite.plan import Node, contexts
    from icm_lite.scoring import Scorer
    from icm_lite.tasks import Task

    if n < 6:
        raise SystemExit("exact: --n must be at least 6 (the four-labeling plan flips examples 0, 3 and 5)")
    ref = resolve_model(model)
    examples = load_dataset(ROOT / "examples" / "truthfulqa_sample.jsonl", Task.builtin("claim")).examples[:n]
    b = LlamaBackend(str(ref.path), ModelOptions(n_ctx=4096, n_gpu_layers=n_gpu_layers))
    b.prepare(examples, ("True", "False"))
    sc = Scorer(b, examples)
    rng = random.Random(0)
    labels = [rng.random() < 0.5 for _ in examples]  # arbitrary labels: exactness is about tokens, not truth
    labels[3] = None
    flip0 = list(labels)
    flip0[0] = not labels[0]
    flip05 = list(flip0)
    flip05[5] = not labels[5]
    add3 = list(flip05)
    add3[3] = True
    b.run(sc.plan([labels]))  # warm up: the first decodes allocate (and on a GPU load kernels)

    out = {"model": ref.name, "n": n, "n_gpu_layers": n_gpu_layers, "threads": b.n_threads}
    worst = 0.0
    for name, root in (("loo", sc.plan([labels])), ("four_labelings", sc.plan([labels, flip0, flip05, add3]))):
        b.clear()
        b.reset_stats()
        t0 = time.perf_counter()
        tree = b.run(root)
        tree_s, tree_tokens = time.perf_counter() - t0, b.stats()["tokens_evaluated"]
        b.reset_stats()
        t0 = time.perf_counter()
        scratch = {}
        for key, seq in contexts(root).items():
            b.clear()
            scratch.update(b.run(Node(seq, [], (key,))))
        naive_s, naive_tokens = time.perf_counter() - t0, b.stats()["tokens_evaluated"]
        diff = max(abs(tree[k] - scratch[k]) for k in tree)
        worst = max(worst, diff)
        out[name] = {"contexts": len(tree), "max_abs_diff": diff, "tree_tokens": tree_tokens,
                     "naive_tokens": naive_tokens, "tree_s": round(tree_s, 3), "naive_s": round(naive_s, 3)}
    out["max_abs_diff"] = worst
    b.close()
    return out


def summary(d: Path) -> str:
    def load(name):
        p = d / name
        return orjson.loads(p.read_bytes()) if p.exists() and p.stat().st_size else None

    e, demo = load("env.json") or {}, load("demo.json")
    gpu_name = (d / "gpu_name.txt").read_text().strip() if (d / "gpu_name.txt").exists() else ""
    flags = [f.strip() for f in e.get("system_info", "").split("|") if f.strip()]
    lines = ["== icm_lite gpu_check summary ==",
             f"mode: {(d / 'mode.txt').read_text().strip() if (d / 'mode.txt').exists() else '?'}",
             f"gpu: {gpu_name or 'none found'}",
             f"devices: {'; '.join(e.get('devices', [])) or 'unknown'}",
             f"build: llama-cpp-python {e.get('llama_cpp_python', '?')}, gpu offload "
             f"{'yes' if e.get('gpu_offload') else 'NO (a CPU build: make install GPU=cuda|metal)'}, "
             f"flags: {', '.join(flags)}"]
    for m in ("smollm2", "gemma"):
        x = load(f"exact_{m}.json")
        if x is None:
            lines.append(f"exactness {m}: FAILED (see {d / ('exact_' + m + '.log')})")
            continue
        loo = x["loo"]
        lines.append(f"exactness {x['model']}: max |tree - scratch| = {x['max_abs_diff']:.4f} nats "
                     f"(n={x['n']}, {loo['contexts'] + x['four_labelings']['contexts']} contexts, n_gpu_layers "
                     f"{x['n_gpu_layers']})")
        lines.append(f"tree vs naive {x['model']}: tokens {loo['naive_tokens'] / loo['tree_tokens']:.2f}x "
                     f"({loo['naive_tokens']:,} / {loo['tree_tokens']:,}), time {loo['naive_s'] / loo['tree_s']:.2f}x "
                     f"({loo['naive_s']:.2f} s / {loo['tree_s']:.2f} s)")
    fan = load("fan.json")
    if fan is None:
        lines.append(f"fan: FAILED (see {d / 'fan.log'})")
    else:
        one, fanned = fan["one"], fan["fanned"]
        lines.append(f"fan {fan['model']}: {fan['queries']} queries after {fan['prefix_tokens']} prefix tokens, one "
                     f"decode for up to {fan['fan']} {fan['speedup']:.2f}x faster than one at a time "
                     f"({one['tokens'] / one['seconds']:,.0f} vs {fanned['tokens'] / fanned['seconds']:,.0f} tokens/s); "
                     f"|log-odds difference| max {fan['max_abs_diff']:.4f}, mean {fan['mean_abs_diff']:.4f} nats, "
                     f"same sign {fan['same_sign']}/{fan['queries']}")
    if demo is None:
        lines.append(f"demo: FAILED (see {d / 'demo.log'})")
    else:
        agr = demo.get("agreement")
        lines.append(f"demo: labeled {demo['labeled']}/{demo['examples']}, agreement "
                     f"{'n/a' if agr is None else f'{agr:.3f}'}, {demo['tokens_evaluated']:,} tokens in "
                     f"{demo['seconds']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("env", "exact", "summary"))
    ap.add_argument("dir", nargs="?", help="summary: the directory gpu_check.sh wrote")
    ap.add_argument("--model", default=None, help="exact: registry name or .gguf path")
    ap.add_argument("--n", type=int, default=32, help="exact: examples (claims)")
    ap.add_argument("--n-gpu-layers", type=int, default=-1)
    args = ap.parse_args()
    if args.what == "env":
        print(orjson.dumps(env()).decode())
    elif args.what == "exact":
        print(orjson.dumps(exact(args.model, args.n, args.n_gpu_layers)).decode())
    else:
        print(summary(Path(args.dir)))


if __name__ == "__main__":
    main()
