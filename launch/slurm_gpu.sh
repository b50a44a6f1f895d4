#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node (each sees all its GPUs);
# jax.distributed.initialize() reads the coordinator and process ids from SLURM's environment.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm_gpu.sh /shared/workdir --config=configs/default.py
#SBATCH --ntasks-per-node=1
set -euo pipefail
workdir=${1:?workdir on a shared filesystem}; shift
srun python3 -m despoof_jax.main --multihost --workdir="$workdir" "$@"
