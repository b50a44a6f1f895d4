#!/usr/bin/env bash
# Train on Cloud TPU slices of a GKE cluster with xpk: one JobSet workload, one pod per TPU VM
# host, the same command in each; jax.distributed.initialize() finds the other hosts through the
# TPU environment by itself.
#
#   CLUSTER=my-cluster TPU_TYPE=v5litepod-16 WORKDIR=gs://my-bucket/despoof/run1 \
#     launch/xpk.sh --config=configs/default.py --config.train.batch_size=16 [--config.x=y ...]
#
# The global batch must divide over every chip (16 on a v5litepod-16): the paper's 6 fits 1, 2,
# 3 or 6 devices only.
#
# Expects: the `xpk` command (pip install xpk), gcloud authenticated with a project and zone set
# (or PROJECT and ZONE), kubectl and docker (xpk builds the image from this checkout), and a
# cluster made once with `xpk cluster create --cluster $CLUSTER --tpu-type=$TPU_TYPE
# --num-slices=1 [--spot | --reservation=...]`. WORKDIR must be gs://... (every pod writes it);
# the dataset must be prepared beforehand in a shared TFDS_DATA_DIR (gs://...).
#
# Environment:
#   CLUSTER, TPU_TYPE, WORKDIR  required
#   WORKLOAD       workload name (default despoof-<month><day>-<hour><minute>)
#   NUM_SLICES     TPU slices (default 1)
#   MAX_RESTARTS   restarts after a failure or a preemption (default 10): a stopped run exits 143
#                  after saving a checkpoint, and the restarted pods resume from it
#   BASE_IMAGE     image this checkout is layered onto (default python:3.11)
#   JAX_SPEC       the JAX to install (default 'jax[tpu]>=0.6,<0.11')
#   TFDS_DATA_DIR  the shared dataset folder
#   PROJECT, ZONE  passed to xpk when set
# Follow it with `xpk workload list --cluster $CLUSTER`; the pods' logs are in Cloud Logging
# (xpk prints the link) or `kubectl logs -l jobset.sigs.k8s.io/jobset-name=$WORKLOAD`.
set -euo pipefail
: "${CLUSTER:?set CLUSTER}" "${TPU_TYPE:?set TPU_TYPE}" "${WORKDIR:?set WORKDIR (gs://...)}"
cd "$(dirname "$0")/.."
WORKLOAD=${WORKLOAD:-despoof-$(date +%m%d-%H%M)}
JAX_SPEC=${JAX_SPEC:-'jax[tpu]>=0.6,<0.11'}
where=()
[[ -n ${PROJECT:-} ]] && where+=(--project "$PROJECT")
[[ -n ${ZONE:-} ]] && where+=(--zone "$ZONE")
# Every value quoted for the pod's shell (%q). --cpu_kernels=default: the YNNPACK flag is
# XLA:CPU's and has no business on a TPU host.
command="python3 -m pip install -q $(printf %q "$JAX_SPEC") -e '.[gcs]' && \
TFDS_DATA_DIR=$(printf %q "${TFDS_DATA_DIR:-}") python3 -m despoof_jax.main --multihost \
--cpu_kernels=default --workdir=$(printf %q "$WORKDIR")$(printf ' %q' "$@")"
# --restart-on-user-code-failure: without it xpk's container wrapper turns every exit status but
# 143 into 0, so a crash, a bad config (2) or a NaN loss (3) ends "Completed" and is never
# restarted. With it, any failure is restarted up to MAX_RESTARTS times, and then reported failed.
xpk workload create --cluster "$CLUSTER" --workload "$WORKLOAD" --tpu-type="$TPU_TYPE" \
  --num-slices="${NUM_SLICES:-1}" --max-restarts="${MAX_RESTARTS:-10}" \
  --restart-on-user-code-failure \
  --base-docker-image="${BASE_IMAGE:-python:3.11}" --script-dir=. \
  --command "$command" ${where[@]+"${where[@]}"}
echo "submitted $WORKLOAD; follow it with: xpk workload list --cluster $CLUSTER"
