"""Roofline: the model's FLOPs per second as a fraction of this machine's matmul peak.

  python -m bench.bench_roofline                     # CSA, 224x224, batch of 4 pairs
  python -m bench.bench_roofline --attention ca --image-size 128

* peak: the best of float32 ``jnp.dot`` of square matrices (1024, 2048, 4096), jitted,
  median of ``--repeats`` runs: what XLA:CPU reaches on its best-shaped work.
* FLOPs: XLA's cost analysis of the compiled pair forward (eval mode) and of the
  compiled train step. The train step is counted with XLA's own gradients (the "xla"
  variant of bench_framework.py): the CPU kernel-gradient rewrite of
  ``coseg_jax.models.conv`` sums its matmuls in a ``lax.scan``, whose body the cost
  analysis counts once, not once per iteration. Both do the same arithmetic.
* time: median step time of the model as it runs (``train_lib``'s jitted steps).

Reported per mode: GFLOP per pair, achieved GFLOP/s and the fraction of the peak.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bench.bench_framework import JaxRunner, make_batch, make_config
from bench.common import median_seconds, print_table, write_json
from coseg_jax import models


def matmul_peak(repeats):
  """{size: GFLOP/s} of jitted float32 square matmuls."""
  peaks = {}
  for n in (1024, 2048, 4096):
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    dot = jax.jit(jnp.dot)
    seconds = median_seconds(lambda: dot(a, a).block_until_ready(), repeats)
    peaks[n] = 2 * n**3 / seconds / 1e9
  return peaks


def flops(compiled):
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis["flops"])


def model_flops(config, model, batch):
  """{mode: FLOPs of one step} from XLA's cost analysis (train: XLA's own gradients)."""
  runner = JaxRunner(config, model, batch, ops="xla")  # XLA's ops: its cost analysis sees all
  forward = runner.forward_step.lower(
      runner.variables, runner.batch["image_a"], runner.batch["image_b"]).compile()
  train = runner.train_step.lower(runner.state, runner.batch).compile()
  return {"forward": flops(forward), "train": flops(train)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--attention", default="csa")
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batch-size", type=int, default=4, help="pairs per step")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="bench/results/roofline.json")
  args = parser.parse_args(argv)

  peaks = matmul_peak(args.repeats)
  peak = max(peaks.values())
  print("matmul GFLOP/s: " + ", ".join(f"{n}: {g:.1f}" for n, g in peaks.items()))
  config = make_config(args.attention, args.image_size, args.batch_size)
  model, batch = models.build(config.model), make_batch(args.batch_size, args.image_size)
  counted = model_flops(config, model, batch)
  runner = JaxRunner(config, model, batch)
  rows = []
  for mode in ("forward", "train"):
    seconds = median_seconds(getattr(runner, mode), args.repeats)
    achieved = counted[mode] / seconds / 1e9
    rows.append({"mode": mode, "gflop_per_pair": counted[mode] / args.batch_size / 1e9,
                 "seconds": seconds, "gflop_per_s": achieved, "fraction_of_peak": achieved / peak})
  print_table(rows, list(rows[0]))
  write_json(args.out, {"args": vars(args), "matmul_gflop_per_s": peaks,
                        "peak_gflop_per_s": peak, "rows": rows})


if __name__ == "__main__":
  main()
