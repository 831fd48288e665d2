r"""Evaluates a trained CoSegNet: the paper's per-class tables, printed and saved as JSON.

  python eval.py --workdir runs/demo                        # config from the run's config.json
  python eval.py --config configs/csa.py --checkpoint runs/csa/best \
      --config.data.dataset=folder --config.data.root=/data/pascal_voc10_coseg \
      --config.data.groups=Aero,Bus --modes=pairwise,group_mean

Modes (default by dataset): pairs, pairs_all_foreground (voc, synthetic); pairwise,
group_mean, group_min, all_foreground, center_box (folder, synthetic). See docs/evaluation.md.
"""

from absl import app, flags
from ml_collections import config_flags

from coseg_jax import evaluate, logging_utils

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py); default: the run's config.json.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint, config.json).")
flags.DEFINE_string("checkpoint", None, "A checkpoint step folder, or a checkpoints/ or best/ "
                    "folder (its latest step).")
flags.DEFINE_list("modes", None, f"Some of {', '.join(evaluate.MODES)}; default by dataset.")
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split of the pairs / groups.")
flags.DEFINE_integer("chunk_size", 8, "Images (or pairs) per compiled call in the group modes.")
flags.DEFINE_string("out", None, "JSON report path; default <workdir>/eval_<dataset>_<split>.json.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging_utils.default_to_warnings()
  if not (FLAGS.workdir or FLAGS.checkpoint):
    raise app.UsageError("give --workdir or --checkpoint")
  report = evaluate.run(config=FLAGS.config, workdir=FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                        modes=FLAGS.modes, split=FLAGS.split, chunk_size=FLAGS.chunk_size)
  print(evaluate.format_report(report))
  print(f"wrote {evaluate.write_report(report, FLAGS.out or evaluate.default_out_path(report))}")


def run():
  """The ``coseg-eval`` console script."""
  app.run(main)


if __name__ == "__main__":
  run()
