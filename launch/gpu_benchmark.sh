#!/usr/bin/env bash
# Throughput on a GPU machine: float32 and bfloat16 compute at 128 and 256 px, JSON into $OUT.
#
#   bash launch/gpu_benchmark.sh                 # results in $OUT (or ./bench_out) as JSON + logs
#   WHEELS=/path/to/wheels bash launch/gpu_benchmark.sh   # install jax[cuda] from local wheels
#
# Installs nothing from the network: it expects `jax` with a CUDA plugin to be importable, or a
# directory of wheels in $WHEELS (pip --no-index). Fails early, with the reason, when JAX sees no
# GPU. Batch 6 is the paper's; the GPU is far from saturated by it, so a batch-48 row is added.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-./bench_out}
mkdir -p "$out"
py=${PYTHON:-python3}

if ! "$py" -c "import jax" 2>/dev/null || ! "$py" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  if [[ -n "${WHEELS:-}" ]]; then
    "$py" -m pip install --no-index --find-links "$WHEELS" "jax[cuda12]" 2>&1 | tail -2
  fi
fi
"$py" - <<'PY'
import sys, jax
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
if jax.default_backend() != "gpu":
    sys.exit("no GPU visible to JAX: install jax[cuda12] (or set WHEELS=dir of wheels) and check nvidia-smi")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia_smi.csv" 2>&1 || true

# GPUs need no XLA:CPU kernel choice; device memory is preallocated by default, so ask JAX not to
# (the benchmark reports the peak it actually used).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# One GPU (the figures are per chip, and batch 6 divides over 1, 2, 3 or 6 devices only):
# the first one unless the caller chose.
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
run() {   # name, then benchmark arguments
  local name=$1; shift
  timeout 1200 "$py" -m despoof_jax.cli --cpu-kernels default benchmark --json "$out/$name.json" "$@" \
    2>&1 | tee "$out/$name.log"
}
run f32 --sizes 128 256 --steps 20 --warmup 3 --dtype float32
run bf16 --sizes 128 256 --steps 20 --warmup 3 --dtype bfloat16
run bf16_b48 --sizes 256 --steps 20 --warmup 3 --dtype bfloat16 --batch 48 --only stage2
echo "results in $out"
