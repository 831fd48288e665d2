"""Co-saliency metrics (S-, E-, F-measure, MAE) of a folder of 8-bit maps
``<pred>/<group>/<stem>.png`` against a folder dataset's masks (extra ``[sod]``;
``coseg_jax.evaluators.saliency``).

  python -m coseg_jax.apps.scores --pred=pred/UFO/iCoseg --gt=/data/iCoseg
"""

import json

from absl import flags

from coseg_jax.apps import cli
from coseg_jax.data import folders
from coseg_jax.evaluators import saliency


def define(fv):
  """The command's flags."""
  flags.DEFINE_string("pred", None, "The pred/<method>/<dataset> folder.", flag_values=fv)
  flags.DEFINE_string("gt", None, "The dataset folder (coseg_jax.data.folders).", flag_values=fv)
  flags.DEFINE_enum("layout", "auto", list(folders.LAYOUTS), "The dataset's folder layout.", flag_values=fv)
  flags.mark_flags_as_required(["pred", "gt"], flag_values=fv)


def score(fv, args):
  cli.no_arguments(args)
  print(json.dumps(saliency.score_folder(fv.pred, fv.gt, fv.layout), indent=2))


def main(argv=None):
  cli.main(define, score, argv, __doc__)


if __name__ == "__main__":
  main()
