#!/bin/bash
# The GPU benchmark as one command (docs/performance.md, section 3), for a machine with
# one accelerator and this repository installed with jax[cuda12] (no data needed):
#   bash bench/gpu.sh            # results in bench/results/gpu_*.json, tables on stdout
#   SIZE=64 BATCHES=2 GROUP=8 bash bench/gpu.sh   # a quick check of the command on a CPU
# 512 x 512 training pairs/s in float32 and bfloat16 at several batch sizes (JAX only:
# the torch twin is a CPU reference here), then instant-group images/s for a group of
# 2,746 images (VOC 2012 train+val size) in chunks of 64.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import jax; print(jax.devices())"
SIZE=${SIZE:-512}
GROUP=${GROUP:-2746}
for b in ${BATCHES:-4 8 16 32}; do
  for d in float32 bfloat16; do
    python bench/bench_framework.py --no-torch --image-size "$SIZE" --batch-size "$b" --dtype "$d" \
        --modes train --attention fca --warmup 2 --repeats 5 \
        --out "bench/results/gpu_train_${SIZE}_${b}_${d}.json"
  done
done
python bench/bench_group.py --sizes "$GROUP" --image-size "$SIZE" --chunk-size 64 --pairwise-max-n 0 \
    --out "bench/results/gpu_group_${SIZE}.json"
