#!/bin/bash
# fp32 vs bf16 network on the same validation images and seeds, at the chosen settings (brain64 step 2430)
cd /work/main
S="--grid small --n-val 4 --n-samples 1 --tune-steps 100 --skip-steps-study --no-progress --threads 1"
for p in fp32 bf16; do
  F=""; [ $p = bf16 ] && F="--bf16"
  /usr/bin/time -f "%e s wall" python benchmarks/ct_sparse_view.py --tune --datasets brain --noise 0 --views 8 --fan-views --methods projection dps $S \
     --grid-set snr=1.0 --grid-set lam=1 --grid-set consistency=cg --grid-set zeta=0.1 --tuned benchmarks/results/archive/bf16_check/ct_$p.json $F > benchmarks/results/archive/bf16_check/ct_$p.log 2>&1
  /usr/bin/time -f "%e s wall" python benchmarks/mri_undersampled.py --tune --accelerations 4 --gaussian-accelerations --methods projection dps $S \
     --grid-set snr=1.0 --grid-set lam=1 --grid-set consistency=cg --grid-set zeta=1.0 --tuned benchmarks/results/archive/bf16_check/mri_$p.json $F > benchmarks/results/archive/bf16_check/mri_$p.log 2>&1
done
