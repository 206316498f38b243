#!/usr/bin/env bash
# Every CT / MRI reconstruction run behind the README's tables, in the order they were made.
#
#   bash benchmarks/reproduce.sh LANE [EXTRA ARGS...]
#
# LANE: brain-ct | brain-mri | ellipses-ct | summary | all. The main runs write $RESULTS/ct_sparse_view.* and
# mri_undersampled.* (the canonical figures), the partial runs (DPS, noise, fan beam, ellipses, 8 samples) their own
# folder under $RESULTS/archive/. The three data lanes write different
# result files (the two CT lanes share ct_sparse_view_tuned.json, which the scripts merge under a
# lock), so they may run at the same time, one per core; `summary` collects their results into
# $RESULTS/reconstruction.md. EXTRA ARGS go to every benchmark command, e.g. --bf16 (the network in
# bfloat16, about 1.5x faster here) or --threads 2.
#
# Environment: RESULTS (default benchmarks/results) is where every command writes; FROM=N starts the
# lane at its command #N (each is numbered on stderr), to continue an interrupted lane; TO=M stops it after
# command #M, so that two parts of a lane whose inputs are ready can run at once, one per core (e.g.
# ellipses-ct: FROM=1 TO=5 beside FROM=6 TO=7, the DPS tuning, which needs nothing from #1-#5).
# Re-running for candidate weights, possibly over several sessions, without touching what ships:
#   python data_scripts/ship_checkpoint.py brain64 training_state/brain64/ema --weights-dir benchmarks/staging/weights
#   mkdir -p benchmarks/staging/results && cp benchmarks/results/*_tuned.json benchmarks/staging/results/
#   export SGM_INVERSE_WEIGHTS=benchmarks/staging/weights RESULTS=benchmarks/staging/results
#   bash benchmarks/reproduce.sh brain-ct --bf16 & bash benchmarks/reproduce.sh brain-mri --bf16; wait
#   python benchmarks/sample_quality.py --checkpoint brain64 ... --out $RESULTS
#   python benchmarks/stale_results.py --results $RESULTS     # nothing left for brain64? then move both in:
#   cp -r benchmarks/staging/results/. benchmarks/results/ && cp benchmarks/staging/weights/brain64.* sgm_inverse/weights/
set -euo pipefail
cd "$(dirname "$0")/.."
lane=${1:?usage: bash benchmarks/reproduce.sh brain-ct|brain-mri|ellipses-ct|summary|all [EXTRA ARGS...]}
shift
X=("$@")
R=${RESULTS:-benchmarks/results}   # every command writes under $R (tuned files included)
FROM=${FROM:-1}                     # skip the commands numbered below FROM (to continue an interrupted lane)
TO=${TO:-1000000}                   # and those numbered above TO
n=0
run() {
  n=$((n + 1))
  if [ "$n" -lt "$FROM" ] || [ "$n" -gt "$TO" ]; then echo "[#$n skipped]" >&2; return; fi
  echo "[#$n] $*" "${X[@]}" >&2
  "$@" "${X[@]}" --no-progress
}
ct() { run python benchmarks/ct_sparse_view.py "$@"; }
mri() { run python benchmarks/mri_undersampled.py "$@"; }

S="--grid small --n-val 4 --n-samples 1 --tune-steps 100"         # tuning: 4 validation images, 100 steps
E="--steps 100 --n-samples 2 --grid small"                          # test split: 25 images a setting
T="--tuned $R/ct_sparse_view_tuned.json"
TM="--tuned $R/mri_undersampled_tuned.json"
D="--grid-set zeta=0.03,0.1,0.3"                                    # dps at every noiseless CT setting
G="--grid-set snr=0.16,0.25,0.5,1.0 --grid-set lam=0.85,1 --grid-set consistency=cg"   # ellipses
M="$TM --noise 0.05 --accelerations 4 --gaussian-accelerations"    # MRI, 5% noise

brain_ct() {
  ct --out $R --tune --datasets brain --noise 0 --fan-views --views 4 6 8 23 --methods projection $S --steps-study 100 250 500
  ct --out $R --tune --datasets brain --noise 0 --fan-views --views 8 --methods dps $S --steps-study 100
  ct --out $R --datasets brain --noise 0 --fan-views --views 4 6 8 23 --methods fbp fista_tv projection $E
  # 1% noise and fan beam (8 views)
  ct --out $R --tune --datasets brain --noise 0.01 --views 8 --fan-views --methods projection dps $S --skip-steps-study \
     --grid-set snr=0.5,1.0,2.0 --grid-set lam=0.85,1 --grid-set inverse_method= --grid-set consistency_snr=0.5,1.0,2.0 \
     --grid-set zeta=0.03,0.1,0.3
  ct --out $R --tune --datasets brain --noise 0 --views --fan-views 8 --methods projection dps $S --skip-steps-study \
     --grid-set snr=0.5,1.0,2.0 --grid-set lam=1 --grid-set inverse_method= --grid-set consistency_snr=0.5,1.0 \
     --grid-set zeta=0.03,0.1,0.3
  ct --datasets brain --noise 0.01 --views 8 --fan-views --methods fbp fista_tv projection $E --out $R/archive/ct_noisy_damped $T
  ct --datasets brain --noise 0.01 --views 8 --fan-views --methods fbp fista_tv dps $E --out $R/archive/ct_noisy $T
  #   (the committed ct_noisy run also holds projection with the exact CG fit, run before the noise-aware
  #    step existed; this re-run drops it)
  ct --datasets brain --noise 0 --views --fan-views 8 --methods fbp fista_tv projection $E --out $R/archive/ct_fan $T
  ct --out $R --tune --datasets brain --noise 0 --views 4 6 23 --fan-views --methods dps $S --skip-steps-study $D
  ct --datasets brain --noise 0 --views 8 --fan-views --methods fbp fista_tv dps $E --out $R/archive/ct_dps $T
  ct --datasets brain --noise 0 --views --fan-views 8 --methods fbp fista_tv dps $E --out $R/archive/ct_dps_fan $T
  ct --datasets brain --noise 0 --views 6 --fan-views --methods fbp fista_tv dps $E --out $R/archive/ct_dps_6v $T
  ct --datasets brain --noise 0 --views 4 23 --fan-views --methods fbp fista_tv dps $E --out $R/archive/ct_dps_more $T
  ct --datasets brain --noise 0 --views 8 --fan-views --methods fbp fista_tv projection --steps 100 --n-samples 8 \
     --grid small --out $R/archive/ct_samples8 $T                            # 8 posterior samples
  # steps study (100 / 250 / 500 / 1000) and posterior-samples study (mean of 1 / 2 / 4 / 8), 8 views
  ct --out $R --tune --datasets brain --noise 0 --views 8 --fan-views --methods projection $S --steps-study 100 250 500 1000 \
     --samples-study 1 2 4 8 --grid-set snr=0.08,0.16,0.25,0.5,1.0,2.0 --grid-set lam=1 --grid-set consistency=cg
}

brain_mri() {
  mri --out $R --tune --methods projection $S --steps-study 100 250 500
  mri --out $R --tune --methods dps --accelerations 4 8 --gaussian-accelerations $S --steps-study 100
  mri --out $R --methods zero_filled fista_tv projection $E
  mri --methods zero_filled fista_tv dps --accelerations 4 --gaussian-accelerations $E --out $R/archive/mri_dps $TM
  mri --out $R --tune --methods dps --accelerations --gaussian-accelerations 4 $S --skip-steps-study --grid-set zeta=0.3,1.0 $TM
  mri --methods zero_filled fista_tv dps --accelerations 8 --gaussian-accelerations 4 $E --out $R/archive/mri_dps_more $TM
  mri --out $R --tune --methods projection dps $S --skip-steps-study $M \
      --grid-set snr=0.25,0.5,1.0 --grid-set lam=1 --grid-set consistency=cg,transform --grid-set zeta=0.3,1.0
  mri --methods zero_filled fista_tv projection $E $M --out $R/archive/mri_noisy
  mri --methods zero_filled fista_tv dps $E $M --out $R/archive/mri_noisy_dps
}

ellipses_ct() {
  ct --out $R --tune --datasets ellipses --noise 0 --views 4 6 8 23 --fan-views 8 --methods projection $S --skip-steps-study $G
  ct --datasets ellipses --noise 0 --views 4 8 --fan-views --methods fbp fista_tv projection $E --out $R/archive/ct_ellipses $T
  ct --out $R --tune --datasets ellipses --noise 0.01 --views 8 --fan-views --methods projection $S --skip-steps-study $G
  ct --datasets ellipses --noise 0 --views 6 23 --fan-views 8 --methods fbp fista_tv projection $E --out $R/archive/ct_ellipses_more $T
  ct --datasets ellipses --noise 0.01 --views 8 --fan-views --methods fbp fista_tv projection $E --out $R/archive/ct_ellipses_noisy $T
  ct --out $R --tune --datasets ellipses --noise 0 --views 4 8 --fan-views --methods dps $S --skip-steps-study \
     --grid-set zeta=0.03,0.1,0.3,1.0
  ct --out $R --tune --datasets ellipses --noise 0 --views 6 23 --fan-views 8 --methods dps $S --skip-steps-study $D
  ct --datasets ellipses --noise 0 --views 4 8 --fan-views --methods fbp fista_tv dps $E --out $R/archive/ct_ellipses_dps $T
  ct --datasets ellipses --noise 0 --views 6 23 --fan-views 8 --methods fbp fista_tv dps $E --out $R/archive/ct_ellipses_dps_more $T
  ct --out $R --tune --datasets ellipses --noise 0 --views 8 --fan-views --methods projection $S --steps-study 100 250 500 1000 \
     --samples-study 1 2 4 8 $G
}

summary() {
  python benchmarks/reconstruction_summary.py -o $R/reconstruction.md $R/ct_sparse_view.json $R/archive/ct_ellipses/ct_sparse_view.json \
    $R/archive/ct_ellipses_more/ct_sparse_view.json $R/archive/ct_ellipses_noisy/ct_sparse_view.json \
    $R/archive/ct_noisy_damped/ct_sparse_view.json $R/archive/ct_noisy/ct_sparse_view.json $R/archive/ct_fan/ct_sparse_view.json \
    $R/archive/ct_samples8/ct_sparse_view.json $R/archive/ct_dps/ct_sparse_view.json $R/archive/ct_dps_fan/ct_sparse_view.json \
    $R/archive/ct_dps_6v/ct_sparse_view.json $R/archive/ct_dps_more/ct_sparse_view.json \
    $R/archive/ct_ellipses_dps/ct_sparse_view.json $R/archive/ct_ellipses_dps_more/ct_sparse_view.json \
    $R/mri_undersampled.json $R/archive/mri_dps/mri_undersampled.json $R/archive/mri_dps_more/mri_undersampled.json \
    $R/archive/mri_noisy/mri_undersampled.json $R/archive/mri_noisy_dps/mri_undersampled.json
}

case "$lane" in
  brain-ct) brain_ct ;;
  brain-mri) brain_mri ;;
  ellipses-ct) ellipses_ct ;;
  summary) summary ;;
  all) brain_ct; brain_mri; ellipses_ct; summary ;;
  *) echo "unknown lane $lane: brain-ct | brain-mri | ellipses-ct | summary | all" >&2; exit 2 ;;
esac
