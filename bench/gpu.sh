#!/bin/bash
# The GPU benchmark as one command (docs/performance.md, section 3), for a machine with
# one accelerator and this repository installed with jax[cuda12] (no data needed):
#   bash bench/gpu.sh            # results in bench/results/gpu_*.json, tables on stdout
#   SIZE=64 BATCHES=2 GROUP=8 TORCH_DEVICE=cpu bash bench/gpu.sh   # a quick check on a CPU
# 512 x 512 FCA training pairs/s in float32 and bfloat16, JAX against the PyTorch twin on
# the same GPU (bfloat16: autocast), batch by batch; then instant-group images/s for a
# group of 2,746 images (VOC 2012 train+val size) in chunks of 64. The first batch size
# and the group come first, so that a run cut short still has one of each.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
SIZE=${SIZE:-512}
GROUP=${GROUP:-2746}
BATCHES=(${BATCHES:-8 16 4})
"$PYTHON" -c "import jax; print(jax.__version__, jax.devices())"
train() {
  for d in float32 bfloat16; do
    "$PYTHON" -m bench.bench_framework --torch-device "${TORCH_DEVICE:-cuda}" --image-size "$SIZE" \
        --batch-size "$1" --dtype "$d" --modes train --attention fca --warmup 2 --repeats 5 \
        --out "bench/results/gpu_train_${SIZE}_${1}_${d}.json"
  done
}
train "${BATCHES[0]}"
"$PYTHON" -m bench.bench_group --sizes "$GROUP" --image-size "$SIZE" --chunk-size 64 \
    --pairwise-max-n 0 --out "bench/results/gpu_group_${SIZE}.json"
for b in "${BATCHES[@]:1}"; do train "$b"; done
