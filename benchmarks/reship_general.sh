#!/usr/bin/env bash
# Every result measured with the shipped general prior, re-run for candidate weights in a staging folder,
# so that shipping a new training step of `general` takes one background command and one copy.
#
#   bash benchmarks/reship_general.sh CANDIDATE_DIR [THREADS]
#
# CANDIDATE_DIR: an EMA export of the live run (model.safetensors + config.json), e.g. a snapshot chosen by
#   python benchmarks/choose_checkpoint.py runs/general_snapshots/step* --sampler cli
# The candidate is shipped into benchmarks/staging/weights (data_scripts/ship_checkpoint.py), its
# out-of-distribution warning calibrated on validation images there, and every general-dependent benchmark
# re-run with SGM_INVERSE_WEIGHTS / RESULTS pointing at the staging folders; the committed weights and results
# are not touched. FROM=N starts at command #N (numbered on stderr) to continue an interrupted run; ONLY="3 4 7"
# runs just those commands, so that two shells can share the work on the 2-core CPU once #1 and #2 are done:
#   ONLY="1 2" bash benchmarks/reship_general.sh DIR
#   ONLY="3 4 7 8" bash benchmarks/reship_general.sh DIR &  ONLY="5 6" bash benchmarks/reship_general.sh DIR &
# Afterwards, if the staged numbers are better:
#   python benchmarks/stale_results.py --results benchmarks/staging/results   # nothing stale for general?
#   cp benchmarks/staging/weights/general.* sgm_inverse/weights/ && cp benchmarks/staging/results/*.{md,json,png} benchmarks/results/
# then the README's and docs/benchmarks.md's general rows. On 2026-12-07 the two halves took 43 min (3 4 7 8)
# and 98 min (5 6) side by side, with a third job part of the time; for step 9,000, with 8 MRI samples and before
# ScoreModel's CPU chunking, 61 and 121 min.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: bash benchmarks/reship_general.sh CANDIDATE_DIR [THREADS]}
threads=${2:-1}
FROM=${FROM:-1}
ONLY=${ONLY:-}
export SGM_INVERSE_WEIGHTS=benchmarks/staging/weights RESULTS=benchmarks/staging/results
mkdir -p "$SGM_INVERSE_WEIGHTS" "$RESULTS"
n=0
run() {
  n=$((n + 1))
  if [ "$n" -lt "$FROM" ] || { [ -n "$ONLY" ] && [[ " $ONLY " != *" $n "* ]]; }; then
    echo "[#$n skipped]" >&2; return
  fi
  echo "[#$n $(date +%H:%M)] $*" >&2
  "$@"
}
run python data_scripts/ship_checkpoint.py general "$src" --weights-dir "$SGM_INVERSE_WEIGHTS"
run python data_scripts/calibrate_ood.py general
T="--threads $threads"
run python benchmarks/real_scans.py --methods baseline fista_tv general:cli --stem real_scans_cli --out $RESULTS $T --quiet
run python benchmarks/real_scans.py --out $RESULTS $T --quiet
run python benchmarks/general_in_distribution.py --settings brain-ct4 brain-ct6 brain-ct8 brain-ct23 brain-ctfan8 \
    brain-mri4 brain-mri8 ellipses-ct4 ellipses-ct6 ellipses-ct8 ellipses-ct23 ellipses-ctfan8 ellipses-mri4 \
    ellipses-mri8 --methods baseline fista_tv general:cli -n 10 --out $RESULTS $T
run python benchmarks/patch_vs_direct.py --checkpoint general --size 128 --patches 32 64 -n 4 --sampler cli \
    --out $RESULTS $T
run python benchmarks/cli_sampler_choice.py -n 3 --size 128 --t0 0.2 --ws-steps 50 --ws-samples 1 4 8 --out $RESULTS $T
run python benchmarks/stale_results.py --results $RESULTS --checkpoint general
