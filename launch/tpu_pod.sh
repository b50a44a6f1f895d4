#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: create the slice (or reuse it), install despoof_jax on every
# worker, run the same command on every worker, wait, and collect each worker's log and status.
#
#   TPU_NAME=despoof-v4-32 ZONE=us-central2-b WORKDIR=gs://my-bucket/despoof/run1 \
#     launch/tpu_pod.sh --config=configs/default.py --config.train.batch_size=16 [--config.x=y ...]
#
# The global batch must divide over every chip of the slice (16 on a v4-32): the paper's 6 fits
# 1, 2, 3 or 6 devices only, so a pod run picks a multiple of its device count.
#
# Expects: gcloud, authenticated, with a project set (or PROJECT); TPU quota in ZONE; a bucket the
# TPU's service account can write. Every worker needs the same run directory, so WORKDIR must be
# gs://...; the dataset must be prepared once in a shared TFDS_DATA_DIR (gs://... too, or a path
# that exists on every worker) before a pod run: generated datasets are built by process 0 alone.
#
# Environment:
#   TPU_NAME, ZONE, WORKDIR  required
#   PROJECT                  gcloud project (default: gcloud's own setting)
#   ACCELERATOR              slice type when it must be created (default v4-32)
#   RUNTIME                  TPU VM software version (default tpu-ubuntu2204-base)
#   SPOT=1                   create a Spot slice: preemptible; a preemption stops training with a
#                            checkpoint (exit 143) and running this script again resumes
#   TFDS_DATA_DIR            the shared dataset folder (default: ~/tensorflow_datasets per worker)
#   REPO                     where the code goes on the workers (default despoof_jax, in $HOME)
#   JAX_SPEC                 the JAX to install (default 'jax[tpu]>=0.6,<0.11')
#   LOGS                     local folder for the collected logs (default ./tpu_logs/$TPU_NAME)
#   STEPS                    which steps to run, in order (default "create install run logs");
#                            "logs" alone collects the logs of a run started earlier
# The code sent is `git archive HEAD` of this checkout: commit what you want to run.
# Exit status: 0 when every worker finished, else the first non-zero status of a worker (143:
# stopped by SIGTERM / a preemption notice after saving a checkpoint; rerun to resume). A Spot
# preemption that takes the VMs away ends the ssh session: the script says so, collects what logs
# it can reach and exits non-zero ("unknown" status); running it again resumes from $WORKDIR.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR (gs://... on pods)}"
cd "$(dirname "$0")/.."
[[ $WORKDIR == gs://* ]] || echo "warning: WORKDIR=$WORKDIR is not gs://; every worker must see it" >&2
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
REPO=${REPO:-despoof_jax}
JAX_SPEC=${JAX_SPEC:-'jax[tpu]>=0.6,<0.11'}
LOGS=${LOGS:-./tpu_logs/$TPU_NAME}
STEPS=${STEPS:-create install run logs}
gc=(gcloud compute tpus tpu-vm)
where=(--zone "$ZONE")
[[ -n ${PROJECT:-} ]] && where+=(--project "$PROJECT")
on_all() { "${gc[@]}" ssh "$TPU_NAME" "${where[@]}" --worker=all --command "$1"; }

create() {
  local state
  if state=$("${gc[@]}" describe "$TPU_NAME" "${where[@]}" --format='value(state)' 2>/dev/null); then
    if [[ $state == PREEMPTED || $state == TERMINATED ]]; then
      # A preempted Spot slice cannot run anything: delete it and create it again (the run
      # resumes from the checkpoints in $WORKDIR).
      echo "TPU slice $TPU_NAME is $state: deleting and recreating it"
      "${gc[@]}" delete "$TPU_NAME" "${where[@]}" --quiet
    else
      echo "reusing TPU slice $TPU_NAME ($state)"
      return
    fi
  fi
  local extra=()
  [[ ${SPOT:-0} == 1 ]] && extra+=(--spot)
  # ${a[@]+...}: an empty array under `set -u` fails on bash < 4.4 (macOS's 3.2).
  "${gc[@]}" create "$TPU_NAME" "${where[@]}" --accelerator-type "$ACCELERATOR" \
    --version "$RUNTIME" ${extra[@]+"${extra[@]}"}
}

install() {
  local tarball
  tarball=$(mktemp "${TMPDIR:-/tmp}/despoof_jax.XXXXXX")   # portable (no GNU --suffix)
  git archive --format=tar.gz -o "$tarball" HEAD
  "${gc[@]}" scp "$tarball" "$TPU_NAME:despoof_jax.tar.gz" "${where[@]}" --worker=all
  rm -f "$tarball"
  on_all "set -e; rm -rf $REPO && mkdir -p $REPO && tar -xzf despoof_jax.tar.gz -C $REPO && \
    python3 -m pip install -q -U pip && python3 -m pip install -q '$JAX_SPEC' -e './${REPO}[gcs]'"
}

run() {
  local job b64 cmd
  # The job, every value quoted for the workers' bash (%q: spaces, quotes), then shipped as base64
  # so no layer of ssh quoting can change it. --cpu_kernels=default: the YNNPACK flag is XLA:CPU's.
  job="cd $(printf %q "$REPO") && TFDS_DATA_DIR=$(printf %q "${TFDS_DATA_DIR:-}") \
python3 -m despoof_jax.main --multihost --cpu_kernels=default \
--workdir=$(printf %q "$WORKDIR")$(printf ' %q' "$@") > ~/despoof_run.log 2>&1 < /dev/null
echo \$? > ~/despoof_run.status.tmp && mv ~/despoof_run.status.tmp ~/despoof_run.status"
  b64=$(printf '%s\n' "$job" | base64 | tr -d '\n')
  # The old status goes first, in the foreground; the job runs detached (nohup: a dropped ssh
  # session does not stop it) and writes its status whole (tmp + mv). The ssh waits for it.
  cmd="rm -f ~/despoof_run.status ~/despoof_run.status.tmp && \
echo $b64 | base64 -d > ~/despoof_run.sh && \
(nohup bash ~/despoof_run.sh > /dev/null 2>&1 < /dev/null &) && \
while [ ! -f ~/despoof_run.status ]; do sleep 20; done; \
echo \"worker \$(hostname): exit status \$(cat ~/despoof_run.status)\""
  on_all "$cmd" || echo "warning: the ssh session to the workers ended with status $? (a \
preemption?); collecting what can be reached" >&2
}

logs() {
  local n status=0 rc
  n=$("${gc[@]}" describe "$TPU_NAME" "${where[@]}" --format='value(networkEndpoints.len())')
  mkdir -p "$LOGS"
  for ((w = 0; w < n; w++)); do
    "${gc[@]}" scp "$TPU_NAME:despoof_run.log" "$LOGS/worker_$w.log" "${where[@]}" --worker="$w" \
      || echo "worker $w: its log could not be copied" >&2
    "${gc[@]}" scp "$TPU_NAME:despoof_run.status" "$LOGS/worker_$w.status" "${where[@]}" \
      --worker="$w" || echo "unknown" > "$LOGS/worker_$w.status"
    rc=$(cat "$LOGS/worker_$w.status")
    if [[ $rc != 0 ]]; then
      echo "worker $w: exit status $rc; see $LOGS/worker_$w.log" >&2
      if ((status == 0)); then status=$rc; fi
    fi
  done
  echo "logs of $n workers in $LOGS"
  [[ $status =~ ^[0-9]+$ ]] || status=1
  return "$status"
}

for step in $STEPS; do
  case $step in
    create) create ;;
    install) install ;;
    run) run "$@" ;;
    logs) logs ;;
    *) echo "unknown step $step (expected create, install, run, logs)" >&2; exit 2 ;;
  esac
done
