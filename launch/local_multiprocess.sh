#!/usr/bin/env bash
# Multi-host training rehearsed on one machine: N processes, each with D fake CPU devices, joined
# by jax.distributed on 127.0.0.1 (what a TPU pod or a GPU cluster does across hosts).
#
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS WORKDIR [main.py flags...]
#   launch/local_multiprocess.sh 2 2 /tmp/mh --config=configs/default.py:smoke
#
# Environment: PYTHON (default python3, with despoof_jax installed), PORT (default: a free one),
# LOGDIR (default: WORKDIR, or ./multiprocess_logs when WORKDIR is a URL); XLA_FLAGS reach every
# process, followed by the device count (XLA takes the last of a repeated flag).
# Each process logs to LOGDIR/process_<i>.log. SIGTERM or SIGINT sent to this script is passed
# on to every process, as a scheduler's preemption would be: they agree on a step, save it and
# exit with 143 (SIGTERM) or 130 (SIGINT); running the same command again resumes.
# Exit status: 0 when every process succeeded, else the first non-zero status of a process.
set -uo pipefail
n=${1:?number of processes}; d=${2:?devices per process}; workdir=${3:?workdir}; shift 3
py=${PYTHON:-python3}
port=${PORT:-$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if [[ $workdir == *://* ]]; then logdir=${LOGDIR:-./multiprocess_logs}; else logdir=${LOGDIR:-$workdir}; fi
mkdir -p "$logdir"

# Job control: without it the processes started with `&` below would ignore SIGINT (bash does
# that to background commands of a script); with it, each runs in its own process group, so a
# Ctrl-C reaches this script alone and the trap passes it on, once, to every process.
set -m
pids=()
# shellcheck disable=SC2317,SC2329  # called from the traps
forward() { ((${#pids[@]})) && kill -s "$1" "${pids[@]}" 2>/dev/null; return 0; }
trap 'forward TERM' TERM
trap 'forward INT' INT
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$d" JAX_PLATFORMS=cpu \
    "$py" -m despoof_jax.main --multihost --coordinator="127.0.0.1:$port" \
      --num_processes="$n" --process_id="$i" --workdir="$workdir" "$@" \
      >"$logdir/process_$i.log" 2>&1 &
  pids+=($!)
done

# `wait` returns early when a trapped signal arrives; wait again until the process is gone, then
# once more for its own exit status (bash keeps it).
wait_for() { while kill -0 "$1" 2>/dev/null; do wait "$1"; done; wait "$1"; }
status=0
for i in "${!pids[@]}"; do
  wait_for "${pids[$i]}"
  rc=$?
  if ((rc != 0)); then
    echo "process $i exited with status $rc; see $logdir/process_$i.log" >&2
    ((status == 0)) && status=$rc
  fi
done
exit "$status"
