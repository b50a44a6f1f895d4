# shellcheck shell=bash
# Sourced by the GPU scripts (launch/gpu_benchmark.sh, launch/gpu_pretrained.sh): checks that JAX
# sees a GPU and that despoof_jax's dependencies import; nothing comes from the network. On an
# offline machine, WHEELS names a folder of wheels for what its Python lacks (downloaded elsewhere
# for its Python and platform; README "On one GPU" lists the set an H200 image with a CUDA JAX
# needed, and the command): every wheel there is installed without its dependencies into
# $WHEELS_TARGET (default /tmp/despoof_site), which goes first on PYTHONPATH, so it shadows the
# machine's own copy (a CUDA jax/jaxlib/plugin set in the folder is installed the same way).
# With ALLOW_CPU=1 the check passes on a CPU (a rehearsal of the script, e.g. at smoke scale).
# Sets `py` (default python3) and `out` ($OUT, or the caller's default in `default_out`), and one
# GPU unless the caller chose (CUDA_VISIBLE_DEVICES). Device memory is not preallocated, so
# figures of the peak are real.
py=${PYTHON:-python3}
out=${OUT:-$default_out}
mkdir -p "$out"
if [[ -n "${WHEELS:-}" ]]; then
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  shopt -u nullglob
  (( ${#wheels[@]} )) || { echo "WHEELS=$WHEELS holds no .whl file" >&2; exit 2; }
  target=${WHEELS_TARGET:-/tmp/despoof_site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$target" \
    "${wheels[@]}" || { echo "installing the ${#wheels[@]} wheels of $WHEELS failed" >&2; exit 2; }
  export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}"
fi
ALLOW_CPU=${ALLOW_CPU:-0} "$py" - <<'PY'
import importlib, os, sys
missing = []
for name in ("jax", "flax", "optax", "orbax.checkpoint", "ml_collections", "tensorflow_datasets",
             "grain", "array_record", "etils.epath", "scipy", "skimage", "PIL", "absl"):
    try:
        importlib.import_module(name)
    except Exception as e:   # noqa: BLE001 (a broken install raises more than ImportError)
        missing.append(f"{name} ({type(e).__name__}: {e})")
if missing:
    sys.exit("despoof_jax's dependencies do not import: " + "; ".join(missing) + ". Install them "
             "(pip install -e .), or on an offline machine pass WHEELS=dir of wheels")
import jax
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
if jax.default_backend() != "gpu" and os.environ["ALLOW_CPU"] != "1":
    sys.exit("no GPU visible to JAX: install jax[cuda12] (or set WHEELS=dir of wheels) and check "
             "nvidia-smi; ALLOW_CPU=1 rehearses the script on the CPU")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia_smi.csv" 2>&1 || true
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
