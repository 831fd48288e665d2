r"""Evaluates a trained CoSegNet: the paper's per-class tables, printed and saved as JSON.

  python eval.py --workdir runs/demo                        # config from the run's config.json
  python eval.py --config configs/csa.py --checkpoint runs/csa/best \
      --config.data.dataset=folder --config.data.root=/data/pascal_voc10_coseg \
      --config.data.groups=Aero,Bus --modes=pairwise,group_mean
  python eval.py --config configs/reference_ca.py --checkpoint reference_ca.npz \
      --config.data.dataset=folder --config.data.root=/data/msrc_cow

Modes (default by dataset): pairs, pairs_all_foreground (voc, synthetic); pairwise,
group_mean, group_min, all_foreground, center_box (folder, synthetic). See docs/evaluation.md.
The data is checked before any work, and the report is written after every finished
mode. Errors print one line (``--debug`` shows the traceback).
"""

from absl import app, flags
from ml_collections import config_flags

from coseg_jax import cli, evaluate, logging_utils

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py); default: the run's config.json.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint, config.json).")
flags.DEFINE_string("checkpoint", None, "A checkpoint step folder, a checkpoints/ folder (its "
                    "latest step), best (the best validated step) or a released .npz/.pkl file.")
flags.DEFINE_list("modes", None, f"Some of {', '.join(evaluate.MODES)}; default by dataset.")
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split of the pairs / groups.")
flags.DEFINE_integer("chunk_size", 8, "Images (or pairs) per compiled call in the group modes.")
flags.DEFINE_string("out", None, "JSON report path; default <workdir>/eval_<dataset>_<split>.json.")
flags.DEFINE_bool("debug", False, cli.DEBUG_HELP)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging_utils.default_to_warnings()
  if not (FLAGS.workdir or FLAGS.checkpoint):
    raise app.UsageError("give --workdir or --checkpoint")
  cli.run(evaluate_and_print, FLAGS.debug)


def evaluate_and_print():
  if FLAGS.chunk_size < 1:
    raise ValueError(f"--chunk_size={FLAGS.chunk_size}: expected a positive integer")
  report = evaluate.run(config=FLAGS.config, workdir=FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                        modes=FLAGS.modes, split=FLAGS.split, chunk_size=FLAGS.chunk_size,
                        out=FLAGS.out)
  print(evaluate.format_report(report))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_absl_flags)
