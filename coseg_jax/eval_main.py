r"""Evaluates a trained CoSegNet: the paper's per-class tables, printed and saved as JSON.

  python eval.py --workdir runs/demo                        # config from the run's config.json
  python eval.py --config configs/csa.py --checkpoint runs/csa/best \
      --config.data.dataset=folder --config.data.root=/data/pascal_voc10_coseg \
      --config.data.groups=Aero,Bus --modes=pairwise,group_mean
  python eval.py --config configs/reference_ca.py --checkpoint reference_ca.npz \
      --config.data.dataset=folder --config.data.root=/data/msrc_cow

Modes (default by dataset): pairs, pairs_all_foreground (voc, synthetic); pairwise,
group_mean, group_min, all_foreground, center_box (folder, synthetic); on request the
distractor test (distractor, distractor_center_box, distractor_all_foreground: does the
model use the other image?). See docs/evaluation.md.

  python eval.py --workdir runs/csa --config configs/csa.py --config.data.dataset=folder \
      --config.data.root=/data/iCoseg --modes=group_mean --save_maps pred --method csa \
      --threshold=adaptive       # maps in pred/csa/iCoseg/<group>/<image>.png + S/E/F/MAE

The data is checked before any work, and the report is written after every finished
mode. Errors print one line (``--debug`` shows the traceback).
"""

from absl import app, flags
from ml_collections import config_flags

from coseg_jax import cli, evaluate, logging_utils, sod_metrics

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
flags.DEFINE_string("threshold", "0.5", "Group modes: binarise maps at this value, or "
                    "'adaptive' (min(mean + std, 0.8) per image, as SSNM / UFO).")
flags.DEFINE_string("save_maps", None, "Group modes: write 8-bit foreground maps to "
                    "DIR/<method>/<dataset>/<group>/<image>.png and score them (S/E/F-measure, "
                    "MAE; needs the [sod] extra).")
flags.DEFINE_string("method", "coseg_jax", "The <method> folder name of --save_maps (with "
                    "several modes: <method>_<mode>).")
flags.DEFINE_bool("debug", False, cli.DEBUG_HELP)

flags.register_validator("threshold", sod_metrics.is_threshold,
                         "--threshold: expected 'adaptive' or a number in (0, 1)")


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
                        threshold=FLAGS.threshold, save_maps=FLAGS.save_maps,
                        method=FLAGS.method, out=FLAGS.out)
  print(evaluate.format_report(report))


def run():
  """The ``coseg-eval`` console script."""
  app.run(main, flags_parser=cli.parse_absl_flags)


if __name__ == "__main__":
  run()
