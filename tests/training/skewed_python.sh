#!/usr/bin/env bash
# PYTHON for launch/local_multiprocess.sh in the tests: runs tests.training.skewed_main (process 1
# late at stage 1's first step) where the script runs despoof_jax.main, and anything else (the
# script's free-port probe) as it is. REAL_PYTHON: the interpreter (the test's own).
set -euo pipefail
py=${REAL_PYTHON:-python3}
if [[ ${1-} == -m && ${2-} == despoof_jax.main ]]; then
  shift 2
  exec "$py" -m tests.training.skewed_main "$@"
fi
exec "$py" "$@"
