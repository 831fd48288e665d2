"""The refinements of a run's group maps, the guided filter (``maps.guided_filter``) and the
dense CRF (``maps.dense_crf``), for several settings, against no refinement, and for
several thresholds, from one pass of the model.

  python -m bench.refine_sweep --workdir runs/heldout --root ../shared/data/pascal_voc10_coseg \
      --groups Aero,Bicycle,Bird,Boat,Bottle --radii 0.03,0.0625,0.125 --eps 0.001,0.01,0.1 \
      --crf-sxy 0.05,0.1 --crf-srgb 5,13 --crf-compat 3,5 --mode group_mean_gate

Class-average Jaccard (%) of ``--mode`` (``group_mean``, or ``group_mean_gate``) at the
original resolution, per setting and threshold (``--threshold adaptive,0.3,0.5``; ``--radii
''`` leaves the guided filter out, ``--crf-sxy ''`` the CRF). Choose the setting on classes
you do not report (e.g. the run's training classes), then score it with ``eval.py
--config.eval.refine=guided --config.eval.refine_radius=R --config.eval.refine_eps=E`` (or
``--config.eval.refine=crf --config.eval.crf_sxy=... crf_srgb=... crf_compat=...``).
"""

import argparse
import time

import numpy as np

from bench.common import print_table, write_json
from coseg_jax import config as config_lib, maps, metrics, runs
from coseg_jax.data import pipeline
from coseg_jax.evaluators import groups as group_protocol, modes


def group_maps(workdir, root, groups, chunk_size, mode="group_mean"):
  """[(group name, full-size maps, images, masks)] of ``mode`` on a folder dataset."""
  config, model, variables = runs.load_run(workdir=workdir)
  config.data.dataset, config.data.root, config.data.groups = "folder", root, groups
  segment = group_protocol.segmenter(modes.MODES[mode], model, variables, chunk_size,
                                     config_lib.recipe_gate(config))
  found = []
  for g in pipeline.iterate_groups(config.data):
    probs = segment(g["inputs"])
    full = [maps.to_original_size(p, m.shape) for p, m in zip(probs, g["masks"])]
    found.append((g["name"], full, g["images"], g["masks"]))
  return found


def score(found, refine, threshold):
  """Class-average Jaccard of the maps, refined by ``refine`` (or not)."""
  counts, names = [], []
  for name, full, images, masks in found:
    decided = [maps.decide(p, image, threshold, refine)[1] for p, image in zip(full, images)]
    counts.append(group_protocol.mask_counts(decided, masks))
    names += [name] * len(masks)
  return metrics.class_average(metrics.group_means(metrics.concat(counts), names))["jaccard"]


def numbers(text):
  return [float(v) for v in filter(None, text.split(","))]


def settings(args):
  """[(refiner name, its keyword arguments)]: none, then the guided and CRF grids."""
  guided = [("guided", {"radius": r, "eps": e})
            for r in numbers(args.radii) for e in numbers(args.eps)]
  crf = [("crf", {"sxy": x, "srgb": c, "compat": w}) for x in numbers(args.crf_sxy)
         for c in numbers(args.crf_srgb) for w in numbers(args.crf_compat)]
  return [("", {})] + guided + crf


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--groups", default="")
  parser.add_argument("--radii", default="0.03,0.0625,0.125")
  parser.add_argument("--eps", default="0.001,0.01,0.1")
  parser.add_argument("--crf-sxy", default="", help="CRF appearance widths, of the longer side")
  parser.add_argument("--crf-srgb", default=str(maps.CRF_SRGB))
  parser.add_argument("--crf-compat", default=str(maps.CRF_COMPAT))
  parser.add_argument("--mode", default="group_mean", choices=("group_mean", "group_mean_gate"))
  parser.add_argument("--threshold", default="adaptive",
                      help="thresholds, comma-separated: 'adaptive', 'otsu' or numbers in (0, 1)")
  parser.add_argument("--chunk-size", type=int, default=8)
  parser.add_argument("--out", default="bench/results/refine_sweep.json")
  args = parser.parse_args()
  thresholds = [maps.parse_threshold(t) for t in args.threshold.split(",")]
  found = group_maps(args.workdir, args.root, args.groups, args.chunk_size, args.mode)
  rows = []
  for threshold in thresholds:
    for refine, params in settings(args):
      start = time.perf_counter()
      refiner = maps.refiner(refine, **params) if refine else None
      jaccard = score(found, refiner, threshold)
      rows.append({"threshold": threshold, "refine": refine or "none",
                   "settings": " ".join(f"{k}={v:g}" for k, v in params.items()),
                   f"{args.mode} J": f"{100 * jaccard:.1f}",
                   "seconds": f"{time.perf_counter() - start:.1f}"})
  print_table(rows, ["threshold", "refine", "settings", f"{args.mode} J", "seconds"])
  write_json(args.out, {"args": vars(args), "rows": rows,
                        "images": int(np.sum([len(f[3]) for f in found]))})


if __name__ == "__main__":
  main()
