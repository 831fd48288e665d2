"""Measures the embedded synthetic co-segmentation set: the objectness-oracle Jaccard of
pairs (and groups) and the render speed (docs/data.md).

  python -m coseg_jax.apps.synthetic_stats --pairs=256 --groups=16
"""

import time

from absl import flags
from PIL import Image

from coseg_jax.apps import cli
from coseg_jax.data import synthetic


def define(fv):
  """The command's flags."""
  flags.DEFINE_integer("pairs", 1000, "Pairs to measure.", flag_values=fv)
  flags.DEFINE_integer("image_size", 128, "Image side S.", flag_values=fv)
  flags.DEFINE_integer("num_categories", 6, "Object categories K.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Content seed.", flag_values=fv)
  flags.DEFINE_enum("split", "test", list(synthetic.SPLIT_STREAMS), "Split.", flag_values=fv)
  flags.DEFINE_integer("groups", 0, "Also score the oracle on this many groups.", flag_values=fv)
  flags.DEFINE_integer("group_size", 8, "Images per group.", flag_values=fv)
  flags.DEFINE_string("preview", "", "Write a contact sheet PNG of 6 pairs here.", flag_values=fv)


def measure(fv, args):
  cli.no_arguments(args)
  pairs = synthetic.SyntheticPairs(fv.pairs, fv.image_size, fv.num_categories,
                                   fv.seed, fv.split)
  start = time.perf_counter()
  jaccard = synthetic.objectness_oracle_jaccard(pairs)
  seconds = time.perf_counter() - start
  pooled = synthetic.objectness_oracle_jaccard(pairs, pooled=True)
  where = f"({fv.image_size} px, K={fv.num_categories}, seed {fv.seed})"
  print(f"objectness-oracle Jaccard over {fv.pairs} {fv.split} pairs {where}: "
        f"{jaccard:.4f} mean per image, {pooled:.4f} pooled")
  print(f"render speed: {fv.pairs / seconds:.1f} pairs/s (one thread)")
  if fv.groups:
    group_jaccard = synthetic.group_objectness_oracle_jaccard(
        fv.groups, seed=fv.seed, split=fv.split, image_size=fv.image_size,
        num_categories=fv.num_categories, group_size=fv.group_size)
    print(f"objectness-oracle Jaccard over {fv.groups} {fv.split} groups of "
          f"{fv.group_size} {where}: {group_jaccard:.4f} per image, then per group")
  if fv.preview:
    Image.fromarray(synthetic.contact_sheet(pairs, min(6, fv.pairs))).save(fv.preview)
    print(f"wrote {fv.preview}")


def main(argv=None):
  cli.main(define, measure, argv, __doc__)


if __name__ == "__main__":
  main()
