#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node (each sees all its GPUs);
# jax.distributed.initialize() reads the coordinator and the process ids from SLURM's environment.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm_gpu.sh /shared/workdir --config=configs/default.py
#
# Expects: despoof_jax installed with a CUDA JAX (`pip install 'jax[cuda12]' -e .`) in the
# environment sbatch starts from, the workdir on a filesystem every node shares (or gs://, with
# the `gcs` extra), the dataset prepared beforehand in a shared TFDS_DATA_DIR.
# 120 s before the time limit (and on scancel) every task gets SIGTERM: the processes agree on a
# step, save it and exit 143; --requeue puts the job back in the queue, and the requeued job
# resumes from that checkpoint. Exit status: srun's, the highest of the tasks'.
#SBATCH --ntasks-per-node=1
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
set -euo pipefail
workdir=${1:?workdir on a shared filesystem}; shift
srun python3 -m despoof_jax.main --multihost --workdir="$workdir" "$@"
