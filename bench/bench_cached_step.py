"""The cached-feature training step of the CPU recipe (attention learner + decoder only).

  python -m bench.bench_cached_step                     # 256 px, 8 pairs, FCA, both decoders
  python -m bench.bench_cached_step --dtypes float32,bfloat16 --out bench/results/cached.json
  python -m bench.bench_cached_step --dtypes float32 --skips pool5,pool4,pool3  # the skips' cost

With a frozen encoder (``configs/cpu_frozen.py``) a training step decodes cached pool5
features (and pool4 / pool3 with ``model.skip``; ``--skips`` names the finest map the
decoder sees, pool5 for none), so the decoder's layers at 64..256 px dominate it. Two
formulations of the
paper's decoder are timed in the same run, on the same weights and batch:

* ``upsample_conv``: the package's ``UpsampleConv``, each "upsample x2 -> conv 3x3" as one
  2x2 convolution of the small map with four phase kernels;
* ``plain``: nearest-neighbour upsampling, then a 3x3 ``nn.Conv`` of the upsampled map.
"""

import argparse
import contextlib
import functools
import pathlib

import flax.linen as nn
import jax
import numpy as np

from bench.common import OPS, median_seconds, write_json
from coseg_jax import config as config_lib
from coseg_jax import models
from coseg_jax.constants import STRIDE
from coseg_jax.training import trainer as train_lib
from coseg_jax.models import conv, decoder
from coseg_jax.models.coseg import SKIPS


class PlainUpsampleConv(nn.Module):
  """conv3x3(upsample2x(x)) as two operations, the formulation ``UpsampleConv`` replaces."""
  features: int
  dtype: object = None
  ops: conv.Ops = conv.FAST

  @nn.compact
  def __call__(self, x):
    return nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                   conv_general_dilated=self.ops.conv_general_dilated, name="conv")(
                       decoder.upsample2x(x))


@contextlib.contextmanager
def formulation_of(name):
  """The decoder builds its upsample-conv blocks with ``name``'s module while inside."""
  original = decoder.UpsampleConv
  decoder.UpsampleConv = PlainUpsampleConv if name == "plain" else original
  try:
    yield
  finally:
    decoder.UpsampleConv = original


# the finest encoder map the decoder sees -> config.model.skip (models.coseg.SKIPS)
SKIP_OF = {(taps[-1] if taps else "pool5"): skip for skip, taps in SKIPS.items()}


def random_features(rng, model, batch_size, size):
  """Cached encoder features as training reads them: pool5, or a dict with the skips' maps
  (the i-th map is 2**i times finer than pool5 and has the encoder's (4 - i)-th width)."""
  maps = {tap: rng.random((batch_size, size // (STRIDE >> i), size // (STRIDE >> i),
                           model.encoder_widths[4 - i]), np.float32)
          for i, tap in enumerate(("pool5",) + model.taps)}
  return maps if model.taps else maps["pool5"]


def step_seconds(dtype, size, batch_size, repeats, skip="", ops="fast", cue=""):
  """Median seconds of one jitted training step on random features, the model built with
  ``OPS[ops]`` and ``cue`` (the recipe has the cue; docs/performance.md's figures were
  measured without it, the default here)."""
  config = config_lib.load_file(pathlib.Path(__file__).parents[1] / "configs" / "cpu_frozen.py")
  config.model.dtype, config.data.image_size, config.batch_size = dtype, size, batch_size
  config.model.skip, config.model.cue = skip, cue
  model = models.build(config.model).clone(ops=OPS[ops])
  state = train_lib.create_state(config, model, jax.random.key(0))
  step = jax.jit(functools.partial(train_lib.train_step, model=model, freeze_encoder=True),
                 donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {"features_a": random_features(rng, model, batch_size, size),
           "features_b": random_features(rng, model, batch_size, size),
           "mask_a": (rng.random((batch_size, size, size)) > 0.8).astype(np.uint8),
           "mask_b": (rng.random((batch_size, size, size)) > 0.8).astype(np.uint8)}
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], batch)
    jax.block_until_ready(metrics)

  return median_seconds(run, repeats, warmup=2)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--batch", type=int, default=8, help="pairs per step")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skips", default="pool3", help="the finest maps the decoder sees, "
                      "of " + ", ".join(SKIP_OF) + " (pool3: the recipe's default)")
  parser.add_argument("--ops", default="fast", help="comma-separated, of " + ", ".join(OPS)
                      + ": the gradients the step uses (bench/common.py)")
  parser.add_argument("--formulations", default="plain,upsample_conv")
  parser.add_argument("--cue", default="", choices=["", "correlation"],
                      help='model.cue: "" (default; the figures quoted in docs/performance.md) '
                      'or "correlation" (the recipe\'s step today)')
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  rows = []
  for finest in args.skips.split(","):
    for dtype in args.dtypes.split(","):
      for formulation in args.formulations.split(","):
        for ops in args.ops.split(","):
          with formulation_of(formulation):
            seconds = step_seconds(dtype, args.size, args.batch, args.repeats,
                                   SKIP_OF[finest], ops, args.cue)
          rows.append({"skips_to": finest, "formulation": formulation, "dtype": dtype,
                       "ops": ops, "seconds": seconds, "pairs_per_s": args.batch / seconds})
          print(f"{finest:6s} {formulation:14s} {dtype:9s} {ops:11s} {seconds:.3f} s/step  "
                f"{args.batch / seconds:.2f} pairs/s", flush=True)
  if args.out:
    write_json(args.out, {"size": args.size, "batch": args.batch, "rows": rows})


if __name__ == "__main__":
  main()
