"""Writes the VOC 2012 co-segmentation pair lists (train, val, test) of a local VOCdevkit
and prints their sizes (docs/data.md).

  python -m coseg_jax.apps.voc_pairs --root=/data/VOCdevkit --out_dir=pairs/voc2012
"""

from absl import flags

from coseg_jax.apps import cli
from coseg_jax.data import voc

PAPER = {"train": "over 160k", "val": "46,973", "test": "37,700"}  # pairs in the paper


def define(fv):
  """The command's flags."""
  flags.DEFINE_string("root", None, "VOCdevkit or VOC2012 folder.", flag_values=fv)
  flags.DEFINE_string("out_dir", None, "Where to write {train,val,test}.txt.", flag_values=fv)
  flags.DEFINE_integer("split_seed", 0, "Seed of the val/test split.", flag_values=fv)
  flags.DEFINE_string("index_file", "", "JSON cache of per-image class sets.", flag_values=fv)


def export(fv, args):
  cli.no_arguments(args)
  counts = voc.export_pairs(fv.root, fv.out_dir, split_seed=fv.split_seed,
                            cache_file=fv.index_file or None)
  for split, count in counts.items():
    print(f"{split:5s} {count:7d} pairs (paper: {PAPER[split]}) -> {fv.out_dir}/{split}.txt")


def main(argv=None):
  cli.main(define, export, argv, __doc__)


if __name__ == "__main__":
  main()
