#!/usr/bin/env bash
# Multi-host training rehearsed on one machine: N processes, each with D fake CPU devices, joined
# by jax.distributed on 127.0.0.1 (what a TPU pod or a GPU cluster does across hosts).
#
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS WORKDIR [main.py flags...]
#   launch/local_multiprocess.sh 2 2 /tmp/mh --config=configs/default.py:smoke
#
# Each process logs to WORKDIR/process_<i>.log; the script exits non-zero if any process fails.
set -euo pipefail
n=${1:?number of processes}; d=${2:?devices per process}; workdir=${3:?workdir}; shift 3
port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$workdir"
pids=()
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$d" JAX_PLATFORMS=cpu \
    python3 -m despoof_jax.main --multihost --coordinator="127.0.0.1:$port" \
      --num_processes="$n" --process_id="$i" --workdir="$workdir" "$@" \
      >"$workdir/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; see $workdir/process_$i.log" >&2
    status=1
  fi
done
exit $status
