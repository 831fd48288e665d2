"""Builds a co-segmentation dataset as TFDS array_record files, without TensorFlow
(extra ``[tfds]``; docs/data.md).

  python -m coseg_jax.apps.tfds_build --dataset=voc2012_coseg --size=512 \
      --manual_dir=/data/VOCdevkit
  python -m coseg_jax.apps.tfds_build --dataset=coseg_folder --name=icoseg --size=512 \
      --manual_dir=/data/iCoseg
"""

from absl import flags

from coseg_jax.apps import cli
from coseg_jax.data import folders


def define(fv):
  """The command's flags."""
  flags.DEFINE_enum("dataset", None, ["voc2012_coseg", "coseg_folder"], "What to build.", flag_values=fv)
  flags.DEFINE_string("manual_dir", None, "VOCdevkit, or the benchmark folder.", flag_values=fv)
  flags.DEFINE_string("data_dir", "", "TFDS data dir; default ~/tensorflow_datasets.", flag_values=fv)
  flags.DEFINE_integer("size", 512, "Stored image size S.", flag_values=fv)
  flags.DEFINE_string("name", "", "coseg_folder: the config name, e.g. icoseg.", flag_values=fv)
  flags.DEFINE_enum("layout", "auto", list(folders.LAYOUTS), "coseg_folder: the folder layout.", flag_values=fv)
  flags.DEFINE_enum("on_mismatch", "error", list(folders.MISMATCH_POLICIES),
                    "coseg_folder: an image without its mask -> error or skip.", flag_values=fv)
  flags.mark_flags_as_required(["dataset", "manual_dir"], flag_values=fv)


def build(fv, args):
  cli.no_arguments(args)
  from coseg_jax.data import tfds_coseg  # pylint: disable=g-import-not-at-top
  name = tfds_coseg.build(fv.dataset, fv.manual_dir, fv.data_dir or None,
                          size=fv.size, name=fv.name, layout=fv.layout,
                          on_mismatch=fv.on_mismatch)
  print(f"built {name}: --config.data.dataset=tfds --config.data.tfds.name={name}"
        + (f" --config.data.tfds.data_dir={fv.data_dir}" if fv.data_dir else ""))


def main(argv=None):
  cli.main(define, build, argv, __doc__)


if __name__ == "__main__":
  main()
