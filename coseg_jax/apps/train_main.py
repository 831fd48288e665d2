"""Trains CoSegNet.

  python train.py --config configs/csa.py --workdir runs/csa [--config.batch_size=8 ...]

Resumes from the newest intact checkpoint in --workdir, with the run's own config: a
restart whose config differs is refused naming the keys (``--allow_config_changes``
lets a resumed run change the keys of ``coseg_jax.training.workdir.SAFE_CHANGES``, such as
train.num_steps). One training at a time holds the workdir. Ctrl-C or SIGTERM
finishes the current step, saves it and exits with 130 or 143 (before the first
step, while views are encoded, it stops at once); rerun to resume.
Errors print one line (``--debug`` shows the traceback). On several hosts, start the
same command on every host with --multihost (jax.distributed.initialize reads the
coordinator address, process count and id from the environment or the cluster).
"""

import sys

from absl import flags
from ml_collections import config_flags

from coseg_jax.apps import cli


def define(fv):
  """The command's flags."""
  config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                  lock_config=True, flag_values=fv)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and pictures.", flag_values=fv)
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() before training.", flag_values=fv)
  flags.DEFINE_bool("allow_config_changes", False, "Resume although safe keys of the config "
                    "(train.num_steps, log/eval/checkpoint intervals, ...) differ from the run's.", flag_values=fv)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=fv)


def train(fv, args):
  cli.no_arguments(args)
  import jax  # pylint: disable=g-import-not-at-top
  from coseg_jax.training import trainer as train_lib  # pylint: disable=g-import-not-at-top
  config = fv.config  # loads the config file: a bad file or key fails here
  if fv.multihost:
    jax.distributed.initialize()
  try:
    train_lib.train_and_evaluate(config, fv.workdir, fv.allow_config_changes)
  except train_lib.Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)


def run(argv=None):
  """The ``coseg-train`` console script and ``python train.py``."""
  cli.main(define, train, argv, __doc__)


if __name__ == "__main__":
  run()
