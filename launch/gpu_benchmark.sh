#!/usr/bin/env bash
# Throughput on a GPU machine: float32 and bfloat16 compute at 128 and 256 px, JSON into $OUT.
#
#   bash launch/gpu_benchmark.sh                 # results in $OUT (or ./bench_out) as JSON + logs
#   WHEELS=/path/to/wheels bash launch/gpu_benchmark.sh   # what the machine lacks, from wheels
#
# Installs nothing from the network: it expects `jax` with a CUDA plugin and despoof_jax's
# dependencies to be importable, or what is missing as a folder of wheels in $WHEELS
# (launch/gpu_common.sh). Fails early, with the reason, when JAX sees no GPU or a dependency does
# not import. Batch 6 is the paper's; the GPU is far from saturated by it, so a batch-48 row is
# added.
set -euo pipefail
cd "$(dirname "$0")/.."
default_out=./bench_out
# shellcheck source=launch/gpu_common.sh
source launch/gpu_common.sh   # py, out, the GPU check; one GPU (the figures are per chip, and
                              # batch 6 divides over 1, 2, 3 or 6 devices only)
run() {   # name, then benchmark arguments
  local name=$1; shift
  timeout 1200 "$py" -m despoof_jax.cli --cpu-kernels default benchmark --json "$out/$name.json" "$@" \
    2>&1 | tee "$out/$name.log"
}
run f32 --sizes 128 256 --steps 20 --warmup 3 --dtype float32
run bf16 --sizes 128 256 --steps 20 --warmup 3 --dtype bfloat16
run bf16_b48 --sizes 256 --steps 20 --warmup 3 --dtype bfloat16 --batch 48 --only stage2
echo "results in $out"
