#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per GPU. jax.distributed.initialize() reads the
# coordinator, the process ids and each process's GPU (SLURM_LOCALID) from SLURM's environment,
# so --ntasks-per-node must equal --gpus-per-node (with one task per node JAX would use one GPU
# of each node).
#
#   sbatch --nodes=2 --gpus-per-node=8 --ntasks-per-node=8 launch/slurm_gpu.sh /shared/workdir \
#       --config=configs/default.py --config.train.batch_size=16
#
# The global batch must divide over all GPUs: the paper's 6 fits 1, 2, 3 or 6 of them, so on
# 16 GPUs pass a multiple of 16 (and scale the learning rate as you see fit; README, "Multi-host").
# Expects: despoof_jax installed with a CUDA JAX (`pip install 'jax[cuda12]' -e .`) in the
# environment sbatch starts from, the workdir on a filesystem every node shares (or gs://, with
# the `gcs` extra), the dataset prepared beforehand in a shared TFDS_DATA_DIR.
# 120 s before the time limit the batch shell gets SIGTERM (--signal=B:TERM@120) and forwards it
# to the tasks: they agree on a step, save it and exit 143; the shell then requeues the job
# (scontrol requeue), and the requeued job resumes from that checkpoint. A job cancelled with
# scancel is not requeued. Exit status: srun's, the highest of the tasks'.
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
set -euo pipefail
workdir=${1:?workdir on a shared filesystem}; shift
near_limit=0
# shellcheck disable=SC2329  # called from on_term (a trap)
secs_left() {   # squeue's time left (%L): [D-]HH:MM:SS, MM:SS, or UNLIMITED
  local left d=0 s=0 part
  left=$(squeue -h -j "$SLURM_JOB_ID" -o %L 2>/dev/null) || { echo 0; return; }
  [[ -z $left || $left == UNLIMITED ]] && { echo 999999; return; }
  [[ $left == *-* ]] && { d=${left%%-*}; left=${left#*-}; }
  IFS=: read -r -a part <<< "$left"
  for x in "${part[@]}"; do s=$((s * 60 + 10#$x)); done
  echo $((10#$d * 86400 + s))
}
# shellcheck disable=SC2329  # the SIGTERM trap
on_term() {
  # The time limit's notice (SIGTERM 120 s before) requeues; a scancel (also a SIGTERM, with
  # more time left) does not.
  if (( $(secs_left) <= 300 )); then near_limit=1; fi
  kill -TERM "$step" 2>/dev/null || true
}
trap on_term TERM
if [[ -n ${SLURM_NTASKS_PER_NODE:-} && -n ${SLURM_GPUS_ON_NODE:-} &&
      ${SLURM_NTASKS_PER_NODE%%(*} != "$SLURM_GPUS_ON_NODE" ]]; then
  echo "error: --ntasks-per-node=${SLURM_NTASKS_PER_NODE} but $SLURM_GPUS_ON_NODE GPUs per node:" \
    "one task per GPU (otherwise JAX uses one GPU of each task and the rest sit idle)" >&2
  exit 2
fi
# --cpu_kernels=default: the YNNPACK flag is XLA:CPU's and has no business on a GPU host.
srun python3 -m despoof_jax.main --multihost --cpu_kernels=default --workdir="$workdir" "$@" &
step=$!
status=0
wait "$step" || status=$?
if kill -0 "$step" 2>/dev/null; then
  # The trap interrupted `wait` (SIGTERM: the time limit or a scancel): the tasks are still
  # saving their checkpoint. Wait for them, whichever it was, so the job does not end first.
  status=0
  wait "$step" || status=$?
fi
if [[ $near_limit == 1 ]]; then
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
