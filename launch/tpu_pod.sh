#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: the same command on every host; jax.distributed.initialize()
# finds the coordinator and the process ids from the TPU environment by itself.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=gs://bucket/despoof \
#     launch/tpu_pod.sh --config=configs/default.py [--config.field=value ...]
#
# Prerequisites: the repository checked out at ~/despoof_jax on every host (or pass REPO), the
# dataset prepared once in a shared TFDS_DATA_DIR (gs:// works through etils), and
# `pip install -e ~/despoof_jax` done on every host with `jax[tpu]`.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR (gs:// on pods)}"
REPO=${REPO:-~/despoof_jax}
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
  "cd $REPO && TFDS_DATA_DIR=${TFDS_DATA_DIR:-} python3 -m despoof_jax.main --multihost --workdir=$WORKDIR$args"
