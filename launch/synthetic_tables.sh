#!/usr/bin/env bash
# The README's synthetic-world tables in one go, at the quickstart scale, on CPU: Table 2
# (configs/quickstart.py), the Sec. 4.2 loss ablations, the two baselines, Table 3's resolution
# and blur rows, issue #13's decomposing DS Net and its ablation (configs/decomposition.py), then
# one report with every table (bootstrap intervals over test identities).
#
#   launch/synthetic_tables.sh [ROOT=workdir] [PART...]
#   launch/synthetic_tables.sh workdir quickstart ablations baselines table3 decomposition report
#
# Each run resumes from its checkpoints, so rerunning the script after a kill continues where it
# stopped; finished runs are skipped. A run is finished once `despoof train` exited 0 for it: the
# script then leaves $w/synthetic_tables.done (eval/metrics.json alone is no sign: the evaluation
# writes it before its other files). The ablations and the decomposition runs reuse the
# quickstart's stage-1 DQ Net (it does not depend on stage 2's losses), so they train stage 2 only.
set -euo pipefail
root=${1:-workdir}; shift || true
parts=${*:-quickstart ablations baselines table3 decomposition report}
run() {   # workdir, config, extra flags
  local w=$1 c=$2; shift 2
  if [[ -f "$w/synthetic_tables.done" ]]; then echo "== $w: done"; return; fi
  echo "== $w ($c) $(date -u +%H:%M:%S)"
  # pipefail: a run that fails or is killed stops the script here, before the marker (grep's
  # own status, 1 when every line is a progress line, is not the run's)
  despoof train --config="$c" --workdir="$w" "$@" 2>&1 | { grep -v " step [0-9]*/" || true; } |
    tail -3
  touch "$w/synthetic_tables.done"
}
on_quickstart_dq() {   # workdir, config, extra flags: stage 2 on the quickstart's stage-1 DQ Net
  local w=$1
  if [[ ! -d "$w/dq" ]]; then mkdir -p "$w" && cp -r "$root/quickstart/dq" "$w/dq"; fi
  run "$@"
}
for part in $parts; do
  case $part in
    quickstart) run "$root/quickstart" configs/quickstart.py ;;
    ablations)
      for v in no_magnitude no_zero_one_map no_repetitive; do
        on_quickstart_dq "$root/ablation_$v" "configs/ablation_loss.py:$v"
      done ;;
    decomposition)
      for v in truth_skip truth skip; do
        on_quickstart_dq "$root/decomposition_$v" "configs/decomposition.py:$v"
      done ;;
    baselines)
      run "$root/baseline_cnn" configs/baseline_cnn.py
      on_quickstart_dq "$root/baseline_depth" configs/baseline_depth.py --config.mode=eval ;;
    table3)
      for v in res32 res16 blur1 blur2; do run "$root/table3_$v" "configs/resolution_blur.py:$v"; done ;;
    report)
      shopt -s nullglob   # the parts not run yet are left out
      despoof report "$root"/quickstart "$root"/ablation_* "$root"/baseline_* "$root"/table3_* \
        "$root"/decomposition_* --out "$root/report" ;;
    *) echo "unknown part $part (quickstart ablations baselines table3 decomposition report)" >&2
       exit 2 ;;
  esac
done
