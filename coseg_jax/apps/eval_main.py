r"""Evaluates a trained CoSegNet: the paper's per-class tables, printed and saved as JSON.

  python eval.py --workdir runs/demo                        # config from the run's config.json
  python eval.py --config configs/csa.py --checkpoint runs/csa/best \
      --config.data.dataset=folder --config.data.root=/data/pascal_voc10_coseg \
      --config.data.groups=Aero,Bus --config.eval.modes=pairwise,group_mean
  python eval.py --config configs/reference_ca.py --checkpoint reference_ca.npz \
      --config.data.dataset=folder --config.data.root=/data/msrc_cow

Modes (default by dataset): pairs, pairs_all_foreground (voc, synthetic); pairwise,
group_mean, group_min, all_foreground, center_box (folder, synthetic); on request the
distractor test (distractor, distractor_center_box, distractor_all_foreground: does the
model use the other image?). See docs/evaluation.md.

  python eval.py --workdir runs/csa --config configs/csa.py --config.data.dataset=folder \
      --config.data.root=/data/iCoseg --config.eval.modes=group_mean --save_maps=pred \
      --method=csa --config.eval.threshold=adaptive  # maps in pred/csa/iCoseg/... + S/E/F/MAE

The settings are ``config.eval``'s (``modes``, ``threshold``, ``chunk_size``): give them as
``--config.eval.*`` with ``--config``, or, for a run's own config.json, as ``--modes``,
``--threshold`` and ``--chunk_size``. The data is checked before any work, and the report is
written after every finished mode. Errors print one line (``--debug`` shows the traceback).
"""

from absl import flags
from ml_collections import config_flags

from coseg_jax import maps
from coseg_jax.apps import cli
from coseg_jax.errors import BadValue
from coseg_jax.evaluators import evaluate, modes, report as report_lib


def define(fv):
  """The command's flags; the evaluation settings are ``config.eval``'s."""
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (configs/*.py); default: the run's config.json.",
      lock_config=True, flag_values=fv)
  flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint, config.json).",
                      flag_values=fv)
  flags.DEFINE_string("checkpoint", None, "A checkpoint step folder, a checkpoints/ folder (its "
                      "latest step), best (the best validated step) or a released .npz/.pkl "
                      "file.", flag_values=fv)
  flags.DEFINE_list("modes", None, f"Overrides config.eval.modes: some of "
                    f"{', '.join(modes.MODES)}.", flag_values=fv)
  flags.DEFINE_integer("chunk_size", None, "Overrides config.eval.chunk_size.", flag_values=fv)
  flags.DEFINE_string("threshold", None, "Overrides config.eval.threshold: a number in (0, 1), "
                      "'adaptive' (min(mean + std, 0.8) per map, as SSNM / UFO) or 'otsu' (per map).",
                      flag_values=fv)
  flags.DEFINE_string("vgg16_weights", None, "A released model (coseg_jax.release) without its "
                      "encoder: the VGG16 weights it was trained with (default: the path it "
                      "records).", flag_values=fv)
  flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split of the pairs / groups.",
                    flag_values=fv)
  flags.DEFINE_string("out", None, "JSON report path; default "
                      "<workdir>/eval_<dataset>_<split>.json.", flag_values=fv)
  flags.DEFINE_string("save_maps", None, "Group modes: write 8-bit foreground maps to "
                      "DIR/<method>/<dataset>/<group>/<image>.png and score them (S/E/F-measure, "
                      "MAE; needs the [sod] extra).", flag_values=fv)
  flags.DEFINE_string("method", "coseg_jax", "The <method> folder name of --save_maps (with "
                      "several modes: <method>_<mode>).", flag_values=fv)


def evaluate_and_print(fv, args):
  cli.no_arguments(args)
  if not (fv.workdir or fv.checkpoint):
    raise flags.Error("give --workdir or --checkpoint")
  if fv.chunk_size is not None and fv.chunk_size < 1:
    raise BadValue(f"--chunk_size={fv.chunk_size}: expected a positive integer")
  if fv.threshold is not None:
    maps.parse_threshold(fv.threshold, "--threshold")
  result = evaluate.run(config=fv.config, workdir=fv.workdir, checkpoint=fv.checkpoint,
                        modes=fv.modes, split=fv.split, chunk_size=fv.chunk_size,
                        threshold=fv.threshold, save_maps=fv.save_maps, method=fv.method,
                        out=fv.out, vgg16_weights=fv.vgg16_weights)
  print(report_lib.format_report(result))


def run(argv=None):
  """The ``coseg-eval`` console script and ``python eval.py``."""
  cli.main(define, evaluate_and_print, argv, __doc__)


if __name__ == "__main__":
  run()
