# shellcheck shell=bash
# Sourced by the GPU scripts (launch/gpu_benchmark.sh, launch/gpu_pretrained.sh): checks that JAX
# sees a GPU, installing jax[cuda12] from a local wheel directory ($WHEELS, pip --no-index) when
# it does not; nothing comes from the network. With ALLOW_CPU=1 the check passes on a CPU (a
# rehearsal of the script, e.g. at smoke scale). Sets `py` (default python3) and `out` ($OUT, or
# the caller's default in `default_out`), and one GPU unless the caller chose
# (CUDA_VISIBLE_DEVICES). Device memory is not preallocated, so figures of the peak are real.
py=${PYTHON:-python3}
out=${OUT:-$default_out}
mkdir -p "$out"
if [[ -n "${WHEELS:-}" ]] && ! "$py" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  "$py" -m pip install --no-index --find-links "$WHEELS" "jax[cuda12]" 2>&1 | tail -2
fi
ALLOW_CPU=${ALLOW_CPU:-0} "$py" - <<'PY'
import os, sys, jax
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
if jax.default_backend() != "gpu" and os.environ["ALLOW_CPU"] != "1":
    sys.exit("no GPU visible to JAX: install jax[cuda12] (or set WHEELS=dir of wheels) and check "
             "nvidia-smi; ALLOW_CPU=1 rehearses the script on the CPU")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia_smi.csv" 2>&1 || true
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
