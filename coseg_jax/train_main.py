"""Trains CoSegNet.

  python train.py --config configs/csa.py --workdir runs/csa [--config.batch_size=8 ...]

Resumes from the latest checkpoint in --workdir. On several hosts, start the same
command on every host with --multihost (jax.distributed.initialize reads the
coordinator address, process count and id from the environment or the cluster).
"""

from absl import app, flags
import jax
from ml_collections import config_flags

from coseg_jax import logging_utils, train_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and pictures.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() before training.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging_utils.default_to_warnings()
  if FLAGS.multihost:
    jax.distributed.initialize()
  train_lib.validate_config(FLAGS.config)
  train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def run():
  """The ``coseg-train`` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
