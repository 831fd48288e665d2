"""The evaluation report: JSON written after every finished mode, and its text tables.

The report is {"dataset", "split", "checkpoint", "step", "run_dir", "modes" (names),
"threshold", "results": {mode name: result}, "config"}; each protocol's results are
described in its module (``evaluators.pairs``, ``groups``, ``distractor``).
"""

import json
import pathlib

import numpy as np

from coseg_jax import files
from coseg_jax.constants import THRESHOLD
from coseg_jax.evaluators import distractor, modes as modes_lib


def _names(report, protocol):
  return [m for m in report["modes"] if modes_lib.MODES[m].protocol == protocol]


def default_out_path(report):
  """``<run_dir>/eval_<dataset>_<split>.json``."""
  return str(pathlib.Path(report["run_dir"]) / f"eval_{report['dataset']}_{report['split']}.json")


def check_writable(path):
  """Raises, before any work, if a report cannot be written to ``path``."""
  files.check_writable_file(path, "the report")


def write_report(report, path):
  """Writes the report as JSON to ``path`` (folders created) and returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, default=str)
  return str(path)


def _text_table(header, rows):
  """Right-aligned columns; the first column left-aligned."""
  cells = [header] + rows
  widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
  return "\n".join("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                             for i, (v, w) in enumerate(zip(row, widths))) for row in cells)


def _refined(report):
  return f", maps refined ({report['refine']})" if report.get("refine") else ""


def _percent(value):
  return f"{100 * value:.2f}"


SOD_COLUMNS = ("s_measure", "e_max", "e_mean", "e_adaptive", "f_max", "f_mean", "f_adaptive",
               "mae")


def sod_table(results, modes):
  """Text lines of the co-saliency metrics of ``modes`` that have them ([] if none)."""
  scored = [m for m in modes if "sod" in results[m]]
  if not scored:
    return []
  rows = [[m] + [f"{results[m]['sod'][c]:.4f}" for c in SOD_COLUMNS] for m in scored]
  return ["", "Co-saliency metrics of the saved 8-bit maps (sod_metrics, per image then "
          "over all images):", _text_table(["mode", *SOD_COLUMNS], rows)]


def format_report(report):
  """The report as text: a pair-mode table and per-class Jaccard / precision tables."""
  results = report["results"]
  lines = [f"{report['dataset']} ({report['split']} split), checkpoint step {report['step']}: "
           f"{report['checkpoint']}"]
  pair_modes = _names(report, "pairs")
  if pair_modes:
    rows = [[m, _percent(results[m]["jaccard"]), _percent(results[m]["precision"]),
             _percent(results[m]["mean_image_jaccard"]), results[m]["images"],
             f"{results[m]['seconds']:.1f}"] for m in pair_modes]
    lines += ["", "Pairs at the model's input size (pooled over all images):", _text_table(
        ["mode", "Jaccard", "precision", "mean image Jaccard", "images", "seconds"], rows)]
  group_modes = _names(report, "groups")
  if group_modes:
    classes = list(results[group_modes[0]]["classes"])
    for key, title in (("jaccard", "Jaccard"), ("precision", "Precision")):
      rows = [[c] + [_percent(results[m]["classes"][c][key]) for m in group_modes]
              for c in classes]
      rows.append(["Average"] + [_percent(results[m]["average"][key]) for m in group_modes])
      lines += ["", f"{title} (%) at the original resolution, threshold "
                f"{report.get('threshold', THRESHOLD)}{_refined(report)}, per image then per "
                "class:",
                _text_table(["class"] + group_modes, rows)]
    lines += ["", _text_table(["", *group_modes], [["seconds"] + [
        f"{results[m]['seconds']:.1f}" for m in group_modes]])]
    lines += sod_table(results, group_modes)
  lines += distractor_table(report)
  return "\n".join(lines)


def distractor_table(report):
  """Text lines of the distractor modes ([] if none ran): per class of the composites' own
  objects, the Jaccard of each target, their mean and the partner effect."""
  modes = _names(report, "distractor")
  if not modes:
    return []
  results = report["results"]
  columns = [(m, t) for m in modes for t in (*distractor.TARGETS, "mean", "effect")]

  def cell(m, t, c):  # c: a class, or None for the average over classes
    if t == "effect":
      effect = results[m]["partner_effect"]
      return effect["average"] if c is None else effect["classes"][c]
    if t == "mean":
      return np.mean([cell(m, u, c) for u in distractor.TARGETS])
    table = results[m][t]
    return table["average"]["jaccard"] if c is None else table["classes"][c]["jaccard"]
  classes = list(results[modes[0]]["own"]["classes"])
  rows = [[c or "Average", *[_percent(cell(m, t, c)) for m, t in columns]]
          for c in (*classes, None)]
  header = ["class", *[f"{'model' if m == 'distractor' else m.removeprefix('distractor_')} {t}"
                       for m, t in columns]]
  return ["", f"Distractor test at S x S, threshold {report.get('threshold')}: each image "
          "with another class's object pasted in; target = what its partner shows "
          f"({results[modes[0]]['images']} composites). Jaccard (%) of each target and their "
          "mean (<= 50 for a model blind to the partner), and the partner effect (%: 0 when "
          "blind, 100 for a perfect co-segmenter):", _text_table(header, rows)]
