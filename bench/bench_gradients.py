"""The CPU gradient rewrites of models/conv.py against XLA's own, on both training steps.

  python -m bench.bench_gradients                 # the table in docs/performance.md
  python -m bench.bench_gradients --repeats 2     # quicker, noisier

One run times, with the model built with each ``ops`` of bench/common.py (``fast`` = both
rewrites, the default; ``kernel_only``; ``pool_only``; ``xla`` = XLA's gradients):

1. the paper's train step (CA, 224 px, 4 pairs; bench_framework.py): the project's step
   (``training.trainer``) for every ops, a step written as a user writes one
   (``jax.value_and_grad`` over ``model.apply``, ``optax.adam``) with ``fast`` and ``xla``,
   and the PyTorch twin, interleaved round by round;
2. the recipe's cached-feature step (FCA, pool3 skip, 256 px, 8 pairs, frozen encoder;
   bench_cached_step.py) for every ops. Its decoder has no max-pool, so ``pool_only``
   equals ``xla`` there.
"""

import argparse
import pathlib

from bench import bench_cached_step, bench_framework
from bench.common import OPS


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--attention", default="ca")
  parser.add_argument("--out-dir", default="bench/results")
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out_dir)
  variants = ",".join(name for name in OPS if name != "fast")
  bench_framework.main(["--attention", args.attention, "--modes", "train", "--warmup", "1",
                        "--repeats", str(args.repeats), "--jax-variants", variants,
                        "--user-step", "--out", str(out / "gradients_paper_step.json")])
  bench_cached_step.main(["--dtypes", "float32", "--formulations", "upsample_conv",
                          "--ops", ",".join(OPS), "--repeats", str(args.repeats),
                          "--out", str(out / "gradients_cached_step.json")])


if __name__ == "__main__":
  main()
