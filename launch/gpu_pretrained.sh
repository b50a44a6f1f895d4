#!/usr/bin/env bash
# The packaged model's recipe (configs/pretrained.py) trained on one GPU, evaluated and packed:
# a candidate in minutes instead of the 2-core CPU's ~95 (measured on an H200, 2026-12-04:
# 5 min with the paper's DQ/VQ widths, of which the `wide2_s128` build on 16 cores 90 s and
# stage 2 at 35-45 steps/s 90 s; README, issue #14).
#
#   bash launch/gpu_pretrained.sh NAME [main.py flags...]
#   bash launch/gpu_pretrained.sh c10 --config.train.stage2_steps=7200 --config.train.lr_decay_step=4800
#   CONFIG=configs/pretrained.py:smoke ALLOW_CPU=1 bash launch/gpu_pretrained.sh rehearsal
#
# Writes $OUT/NAME/ (default ./gpu_runs/NAME): the run's config.json and eval/ (metrics.json,
# table2.md, scores, model.json), the stages' metrics.jsonl, packed/ (what
# `despoof_jax.load(".../packed")` and `despoof crosscheck DIR --model .../packed` read: weights
# float16, < 1 MB) and train.log. The checkpoints stay in $WORKDIRS/NAME (default ./gpu_workdirs,
# outside $OUT: they are ~100x the packed model): killed, the same command resumes there.
# The dataset is built once into $DATA_DIR (default ./gpu_tfds) with every CPU core and reused by
# the next NAME. Several candidates in one call: run the script once per NAME.
# A GPU runs the step ~50x faster than the 2-core CPU, so the script saves every 600 steps
# (CHECKPOINT_EVERY; the config's 50 steps are ~1 s of GPU work) and decodes in 12 grain
# workers, or one a core on a smaller machine (WORKERS; the loop is input-bound: 6 fed 35-45
# steps/s on an H200, 12 fed 59 on an H100, 2026-12-05); neither changes what is trained, and
# flags given after NAME override both.
# Judge a candidate on the synthetic test split only, under a rule written before it is trained
# (README, issue #14), then score real photographs on the CPU machine with the packed model.
# VERSUS=MODEL (e.g. pretrained) then compares the packed candidate with MODEL on the run's test
# split, as Rule T60 does (README): `despoof subset --model packed --versus MODEL`, once on the
# whole split and once on the records VERSUS_WHERE selects (default: the wide2 world's direct
# sessions, "photo_source=-1 scene_content=-1"), into $OUT/NAME/versus_{whole,subset}.{txt,json}.
# Train on --config.data.builder_config=wide2_s128_t60 (wide2_s128's training records, 5x the
# test identities) for the rule's test split.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: launch/gpu_pretrained.sh NAME [main.py flags...]}; shift
[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "NAME must be letters, digits, _ . -: $name" >&2; exit 2; }
default_out=./gpu_runs
# shellcheck source=launch/gpu_common.sh
source launch/gpu_common.sh   # py, out, the GPU check; one GPU
config=${CONFIG:-configs/pretrained.py}
data_dir=${DATA_DIR:-./gpu_tfds}
workdir=${WORKDIRS:-./gpu_workdirs}/$name
dest=$out/$name
mkdir -p "$dest" "$workdir"

workers=${WORKERS:-$(( $(nproc) < 12 ? $(nproc) : 12 ))}
# No XLA:CPU kernel choice on a GPU (the default kernels rehearse on a CPU).
"$py" -m despoof_jax.main --cpu_kernels=default --config="$config" --workdir="$workdir" \
  --config.data.data_dir="$data_dir" --config.train.checkpoint_every="${CHECKPOINT_EVERY:-600}" \
  --config.data.worker_count="$workers" "$@" 2>&1 | tee -a "$dest/train.log"
"$py" -m despoof_jax.serving.pretrained "$workdir" --out "$dest/packed" | tee -a "$dest/train.log"
cp "$workdir/config.json" "$dest/"
rm -rf "$dest/eval"
cp -r "$workdir/eval" "$dest/eval"
for stage in dq ds; do
  [[ -f $workdir/$stage/metrics.jsonl ]] && cp "$workdir/$stage/metrics.jsonl" "$dest/${stage}_metrics.jsonl"
done
if [[ -n ${VERSUS:-} ]]; then
  read -r -a where_args <<< "${VERSUS_WHERE-photo_source=-1 scene_content=-1}"
  subset=("$py" -m despoof_jax.cli --cpu-kernels=default subset --model "$dest/packed"
          --versus "$VERSUS" --data-dir "$data_dir" --scores "$dest/scores_test.csv"
          --versus-scores "$dest/versus_scores_test.csv")
  "${subset[@]}" --json "$dest/versus_whole.json" | tee "$dest/versus_whole.txt"
  if (( ${#where_args[@]} )); then
    "${subset[@]}" "${where_args[@]/#/--where=}" --json "$dest/versus_subset.json" \
      | tee "$dest/versus_subset.txt"
  fi
fi
echo "$name: $(du -sh "$dest" | cut -f1) in $dest"
