#!/usr/bin/env bash
# GPU readiness check for icm_lite. Run it after `make install GPU=cuda` (NVIDIA) or `make install GPU=metal`
# (Apple Silicon), from anywhere:
#
#     benchmarks/gpu_check.sh            # on the GPU: --n-gpu-layers -1, 32 claims, the 30-iteration demo
#     benchmarks/gpu_check.sh --cpu      # the same on the CPU (how the test runs it; a reference for the GPU run)
#     options: --n N (claims for the exactness runs, >= 6), --demo-n N (demo examples, even), --iterations N,
#              --fan-queries N (queries after one prefix, default 96), --out DIR (default runs/gpu_check)
#
# It needs nothing but this repository and its .venv (both models come from PyPI packages; no network), and checks:
#   1. the build: llama-cpp-python's version, llama.cpp's build flags (CUDA / Metal / CPU features), whether it can
#      offload to a GPU at all, and the devices ggml sees (plus nvidia-smi / system_profiler's GPU name);
#   2. exactness on the GPU: icm_lite's prefix tree against a from-scratch decode of every context (SmolLM2, which
#      is bit-exact on the CPU, and the default gemma-3-270m), on a leave-one-out plan and a four-labeling plan:
#      max |tree - scratch| in nats. On the CPU both are 0.000. GPU kernels change with the number of tokens per
#      decode (CUDA switches matmul kernels with batch size), so a GPU may differ; this measures by how much;
#   3. speed: tokens and seconds of the tree against the naive way (every context from an empty cache) on the
#      leave-one-out plan, as benchmarks/bench_scoring.py does;
#   4. many queries after one prefix (how the rest of a run is predicted after its core, --core): one llama_decode
#      for many sequences (--fan) against one query at a time (benchmarks/bench_fan.py): the speed-up and how far
#      the log-odds move (on the CPU up to ~0.25 nats; multi-sequence decodes are not bit-identical);
#   5. a short demo (`icm-lite label` on examples/reviews.jsonl, the demo's --alpha 2 --t0 0.7) on the GPU: labeled
#      and agreement with the gold labels.
# Then it prints one summary block. Please send back that block and DIR/*.json (and DIR/*.log if a step failed).
#
# The tree's leaves are never decoded as parallel sequences: that changed scores on the CPU (0.2-0.4 nats), and the
# tree's scores are compared across labelings (dU). Only the predicted rest, scored once, uses --fan.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=gpu N=32 DEMO_N=32 ITERATIONS=30 FAN_QUERIES=96 OUT=runs/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --n) N="$2"; shift ;;
    --demo-n) DEMO_N="$2"; shift ;;
    --iterations) ITERATIONS="$2"; shift ;;
    --fan-queries) FAN_QUERIES="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || { echo "gpu_check.sh: no $PY; run make install GPU=cuda|metal first (or set PYTHON)" >&2; exit 2; }
NGL=-1
[ "$MODE" = cpu ] && NGL=0
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/gpu_name.txt
echo "$MODE (n_gpu_layers $NGL)" > "$OUT/mode.txt"

T0=$SECONDS
step() { echo "gpu_check [$((SECONDS - T0)) s]: $*" >&2; }

step "build and devices"
"$PY" benchmarks/gpu_check.py env > "$OUT/env.json"
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu_name.txt" 2>/dev/null || true
elif [ "$(uname)" = Darwin ]; then
  system_profiler SPDisplaysDataType 2>/dev/null | awk -F': ' '/Chipset Model|Total Number of Cores/ {printf "%s ", $2}' \
    > "$OUT/gpu_name.txt" || true
fi

for model in smollm2 gemma-3-270m; do
  tag=${model%%-*}  # smollm2 | gemma
  step "exactness and tree vs naive: $model, n=$N"
  "$PY" benchmarks/gpu_check.py exact --model "$model" --n "$N" --n-gpu-layers "$NGL" \
    > "$OUT/exact_$tag.json" 2> "$OUT/exact_$tag.log" || rm -f "$OUT/exact_$tag.json"
done

step "many queries after one prefix: one decode (--fan) vs one at a time, $FAN_QUERIES queries"
"$PY" benchmarks/bench_fan.py --model gemma-3-270m --demos 32 --queries "$FAN_QUERIES" --repeats 2 \
  --n-gpu-layers "$NGL" --json > "$OUT/fan.json" 2> "$OUT/fan.log" || rm -f "$OUT/fan.json"

step "demo: $DEMO_N reviews, $ITERATIONS iterations"
head -n "$DEMO_N" examples/reviews.jsonl > "$OUT/reviews.jsonl"
"$PY" -m icm_lite.cli label "$OUT/reviews.jsonl" --task examples/reviews.task.json --out "$OUT/demo" --force \
  --iterations "$ITERATIONS" --alpha 2 --t0 0.7 --n-gpu-layers "$NGL" --plain --json \
  > "$OUT/demo.json" 2> "$OUT/demo.log" || rm -f "$OUT/demo.json"

step "done"
"$PY" benchmarks/gpu_check.py summary "$OUT" | tee "$OUT/summary.txt"
