"""The guided-filter refinement of a run's group maps (``maps.guided_filter``) for several
window radii and regularisers, against no refinement, and for several thresholds, from one
pass of the model.

  python bench/refine_sweep.py --workdir runs/heldout --root ../shared/data/pascal_voc10_coseg \
      --groups Aero,Bicycle,Bird,Boat,Bottle --radii 0.03,0.0625,0.125 --eps 0.001,0.01,0.1

Class-average Jaccard (%) of ``group_mean`` at the original resolution, per setting and
threshold (``--threshold adaptive,0.3,0.5``; ``--radii ''`` for thresholds alone). Choose the setting on classes you do
not report (e.g. the run's training classes), then score it with ``eval.py
--config.eval.refine=guided --config.eval.refine_radius=R --config.eval.refine_eps=E``.
"""

import argparse
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0])  # the repository root, for bench.common
# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from bench.common import print_table, write_json
from coseg_jax import maps, metrics, runs
from coseg_jax.data import pipeline
from coseg_jax.evaluators import groups as group_protocol, modes
# pylint: enable=g-import-not-at-top,wrong-import-position


def group_maps(workdir, root, groups, chunk_size):
  """[(group name, full-size maps, images, masks)] of ``group_mean`` on a folder dataset."""
  config, model, variables = runs.load_run(workdir=workdir)
  config.data.dataset, config.data.root, config.data.groups = "folder", root, groups
  segment = group_protocol.segmenter(modes.MODES["group_mean"], model, variables, chunk_size)
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
    if refine is not None:
      full = [refine(p, image) for p, image in zip(full, images)]
    counts.append(group_protocol.full_size_counts(full, masks, threshold))
    names += [name] * len(masks)
  return metrics.class_average(metrics.group_means(metrics.concat(counts), names))["jaccard"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--groups", default="")
  parser.add_argument("--radii", default="0.03,0.0625,0.125")
  parser.add_argument("--eps", default="0.001,0.01,0.1")
  parser.add_argument("--threshold", default="adaptive",
                      help="thresholds, comma-separated: 'adaptive' or numbers in (0, 1)")
  parser.add_argument("--chunk-size", type=int, default=8)
  parser.add_argument("--out", default="bench/results/refine_sweep.json")
  args = parser.parse_args()
  thresholds = [maps.parse_threshold(t) for t in args.threshold.split(",")]
  settings = [("none", None, None)] + [
      ("guided", float(radius), float(eps)) for radius in filter(None, args.radii.split(","))
      for eps in args.eps.split(",")]
  found = group_maps(args.workdir, args.root, args.groups, args.chunk_size)
  rows = []
  for threshold in thresholds:
    for refine, radius, eps in settings:
      start = time.perf_counter()
      refiner = None if refine == "none" else maps.refiner(refine, radius, eps)
      jaccard = score(found, refiner, threshold)
      rows.append({"threshold": threshold, "refine": refine, "radius": radius, "eps": eps,
                   "group_mean J": f"{100 * jaccard:.1f}",
                   "seconds": f"{time.perf_counter() - start:.1f}"})
  print_table(rows, ["threshold", "refine", "radius", "eps", "group_mean J", "seconds"])
  write_json(args.out, {"args": vars(args), "rows": rows,
                        "images": int(np.sum([len(f[3]) for f in found]))})


if __name__ == "__main__":
  main()
