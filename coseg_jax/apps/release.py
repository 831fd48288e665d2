r"""Releases a trained run as one file and writes its model card (``coseg_jax.release``).

  python -m coseg_jax.apps.release --checkpoint=runs/cpu_frozen --out=release/coseg_fca.npz \
      --reports=runs/heldout/eval_pascal_voc10_coseg_test.json,runs/heldout/eval_msrc_cow_test.json

writes ``coseg_fca.npz`` (what ``coseg-segment --checkpoint`` and ``eval.py --checkpoint``
load) and ``coseg_fca.md``, the model card: the model, its training data and step, the
VGG16 weights it needs (file name, sha256, where they come from), the held-out numbers of
the given ``eval.py`` reports (each with its baselines), and the known limits.
"""

import json
import pathlib

from absl import flags

from coseg_jax import files, maps, release, runs
from coseg_jax.apps import cli
from coseg_jax.constants import STRIDE
from coseg_jax.errors import BadValue
from coseg_jax.evaluators import report as report_lib
from coseg_jax.models.coseg import SKIPS

VGG16_SOURCE = (
    "The Oxford VGG16 ImageNet weights (Simonyan & Zisserman; CC BY 4.0) in torchvision's "
    "layout (keys `features.N.weight/bias`, OIHW float32), with Caffe's preprocessing folded "
    "into conv1_1 so that it takes torchvision's normalisation. In this project's development "
    "data it is `../shared/data/vgg16_features_oxford.pth` (its README describes it). "
    "Elsewhere, convert the Oxford VGG16 to that layout the same way; the sha256 above "
    "identifies the exact file, and `coseg-segment` refuses any other with one line.")
LIMITS = (
    "Trained on 10 (or fewer) PASCAL classes of the VOC10 co-segmentation set: a few hundred "
    "photos. Objects of classes it never saw are found less well: the recipe scored 56 and "
    "51 (class-average Jaccard, partner gate) on five PASCAL classes held out of training, "
    "against 86 on MSRC cows, a training class (docs/results.md §8).",
    "A photo that shares nothing with its group still gets a mask (its most salient part), "
    "and without the partner gate the model barely follows the other photos (the "
    "distractor test's partner effect is 1–4 of 100).",
    "Not the paper's training (VOC 2012, whole network at 512 px): a CPU recipe "
    "(configs/cpu_frozen.py).",
)
# what a perfect decision per cell scores on VOC10 (class-average Jaccard, docs/results.md §3)
CELL_ORACLE = {8: 58.5, 16: 76.5, 32: 86.1}


def resolution_limit(config):
  """The known limit that the cells the model decides on set, for ``config``'s model."""
  taps = SKIPS[config["model"].get("skip", "")]
  stride = STRIDE >> len(taps)  # each skip is one pooling finer than the one before it
  cells = config["data"]["image_size"] // stride
  skips = " and ".join(taps) + (" skips" if len(taps) > 1 else " skip")
  where = f"{taps[-1]}'s cells (the {skips})" if taps else "pool5's cells"
  oracle = CELL_ORACLE.get(cells)
  cap = (f"; even a perfect decision per cell scores about {oracle} Jaccard on VOC10 "
         "(docs/results.md, the cell oracle)") if oracle else ""
  return (f"It decides on {where}, {cells} x {cells} at {config['data']['image_size']} px: "
          "masks are rounded at object edges, and thin or cluttered objects (chairs, "
          f"bicycles) are found only in part{cap}.")


def define(fv):
  flags.DEFINE_string("checkpoint", None, "The run: a workdir, a checkpoints/ or best folder, "
                      "or a step folder.", flag_values=fv)
  flags.DEFINE_string("out", None, "The released file (.npz); the model card is written "
                      "beside it (.md).", flag_values=fv)
  flags.DEFINE_string("vgg16_weights", None, "The VGG16 weights the run was trained with "
                      "(default: its config.init.vgg16_weights).", flag_values=fv)
  flags.DEFINE_list("reports", [], "eval.py JSON reports of this run to quote in the model "
                    "card (held-out numbers with their baselines).", flag_values=fv)
  flags.DEFINE_string("threshold", None, "The file's config.eval.threshold, which "
                      "coseg-segment and eval.py use unless told otherwise: a number in (0, 1), "
                      "'adaptive' or 'otsu'. Default: the run's.", flag_values=fv)
  flags.mark_flags_as_required(["checkpoint", "out"], flag_values=fv)


def release_run(checkpoint, out, vgg16_weights=None, reports=(), log=print, threshold=None):
  """Writes the released file and its model card; returns their paths. ``threshold``, if
  given, replaces the run's ``config.eval.threshold`` in the file (a setting chosen after
  the run was trained)."""
  out = pathlib.Path(out)
  if out.suffix != ".npz":
    raise BadValue(f"--out={out}: a released model is a .npz file")
  files.check_writable_file(out, "the released model")
  if threshold is not None:
    threshold = str(maps.parse_threshold(threshold, "--threshold"))
  loaded = [read_report(path) for path in reports]
  found = runs.resolve(checkpoint=checkpoint)
  if found.released:
    raise BadValue(f"--checkpoint={checkpoint}: give a training run, not a released file")
  config, _, variables, step_dir = runs.load_checkpoint(found, warn=log)
  if threshold is not None:
    config.eval.threshold = threshold
  weights_path = vgg16_weights or config.init.vgg16_weights
  meta = release.write(out, config, variables, int(step_dir.name), weights_path,
                       {"run": str(found.run_dir)})
  card = out.with_suffix(".md")
  card.write_text(model_card(out, meta, loaded))
  log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) and its model card {card}")
  return out, card


def _cue(config):
  if not config["model"].get("cue"):
    return ""
  return (f" with the correspondence cue (`model.cue={config['model']['cue']!r}`: where each "
          "photo matches the others, docs/model.md)")


def read_report(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise BadValue(f"--reports: cannot read {path}: {e}") from e


def model_card(path, meta, reports):
  """The model card (Markdown) of a released file."""
  config = meta["config"]
  data = config["data"]
  lines = [f"# {path.name}", "",
           f"A co-segmentation model of coseg_jax ({release.FORMAT}): "
           f"`{config['model']['attention']}` attention{_cue(config)}, {data['image_size']} x "
           f"{data['image_size']} input, trained {meta['step']} steps "
           f"(`configs/cpu_frozen.py`-style run `{pathlib.Path(meta['run']).name}`).", "",
           "```bash",
           f"coseg-segment --checkpoint={path.name} --images=my_photos/ --out=out/",
           "```", "", segment_defaults(config), "", "## Training data", "",
           f"`{data['root']}`, groups: {data['groups'] or 'all'} (PASCAL-VOC10 co-segmentation "
           "set of Faktor & Irani: PASCAL VOC / Flickr photos, research use).", ""]
  lines += _encoder_section(meta)
  lines += ["## Held-out numbers", ""]
  lines += [_report_lines(r, meta["run"]) for r in reports] or ["No eval.py report was given.",
                                                                 ""]
  limits = (LIMITS[0], resolution_limit(config), *LIMITS[1:])
  lines += ["## Known limits", ""] + [f"- {limit}" for limit in limits] + [""]
  return "\n".join(lines)


def segment_defaults(config):
  """How ``coseg-segment`` treats the maps of this file unless told otherwise."""
  settings = config.get("eval", {})
  threshold = settings.get("threshold", "0.5")
  refine = settings.get("refine", "")
  refined = (f" It refines each map with the photo (`--refine={refine}`; `--refine=` turns it "
             "off).") if refine else ""
  if not settings.get("partner_gate", False):
    return (f"`coseg-segment` thresholds the maps with `--threshold={threshold}`, as the run "
            "was evaluated; `--partner_gate` keeps what resembles the other photos' "
            f"foreground.{refined}")
  return (f"`coseg-segment` thresholds the maps with `--threshold={threshold}` and the partner "
          "gate, which keeps what resembles the other photos' foreground, as the run was "
          "evaluated. The gate helps where photos hold other objects as well, and can cut "
          "pieces off a lone object (`--nopartner_gate` turns it off; docs/results.md §5)."
          f"{refined}")


def _encoder_section(meta):
  if "encoder" not in meta:
    return ["## Encoder", "", "The encoder was trained with the rest and is in the file.", ""]
  encoder = meta["encoder"]
  return ["## Encoder: VGG16 weights needed", "",
          f"The file leaves the frozen VGG16 encoder out. It needs `{encoder['file']}`, sha256 "
          f"`{encoder['sha256']}` (`--vgg16_weights=PATH`; by default the path of the "
          "training run).", "", VGG16_SOURCE, ""]


def _whose(report, run):
  """'this run', or the other run (e.g. the same recipe trained on fewer classes)."""
  checkpoint = pathlib.Path(report["checkpoint"]).resolve()
  if checkpoint.is_relative_to(pathlib.Path(run).resolve()):
    return "this run"
  return f"another run, `{checkpoint}`"


def _report_lines(report, run):
  header = (f"`eval.py` report: {report['dataset']} ({report['split']}), threshold "
            f"{report['threshold']}, groups {report['config']['data'].get('groups') or 'all'}, "
            f"of {_whose(report, run)}")
  return "\n".join([header, "", "```", report_lib.format_report(report), "```", ""])


def run_release(fv, args):
  cli.no_arguments(args)
  release_run(fv.checkpoint, fv.out, fv.vgg16_weights, fv.reports, threshold=fv.threshold)


def main(argv=None):
  cli.main(define, run_release, argv, __doc__)


if __name__ == "__main__":
  main()
