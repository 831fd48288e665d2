"""Cell oracle: the best Jaccard a map of c x c cells can score against the ground truth.

  python -m bench.cell_oracle --root ../shared/data/pascal_voc10_coseg --cells 8,16,32
  python -m bench.cell_oracle --root ../shared/data/msrc_cow --cells 8,16,32 --json out.json

The model resizes an image to S x S and its pool5 map has S/32 x S/32 cells; a decoder
that could only paint each cell with one value scores at most what this oracle scores.
For every ground-truth mask (bool, H x W, the file's full resolution):

1. average the mask over a c x c grid of equal cells (area average: ``cells``), by
   default with fractional cell borders (``--resample area``: a pixel cut by a cell
   border counts in both cells by the fraction of it inside each);
2. upsample the c x c map bilinearly back to H x W, as the evaluation does
   (``coseg_jax.maps.to_original_size``, PIL bilinear, half-pixel centres);
3. threshold at 0.5 (foreground where > 0.5, ``coseg_jax.maps.binarize``) and
   score it against the mask with ``coseg_jax.metrics`` (an empty union scores 1).

Per-image Jaccard is averaged within each class, then over classes (the "Average" row
of the paper's tables, ``metrics.group_means`` / ``metrics.class_average``).

Other ``--resample`` modes, for comparison: ``split`` (integer cell borders,
``np.array_split``), ``box`` (PIL's BOX resize to c x c) and ``square`` (the mask resized
bilinearly to the model's S x S input, S = 32 c, then averaged over 32 x 32 blocks).
"""

import argparse
import time

import numpy as np
from PIL import Image

from bench.common import print_table, write_json
from coseg_jax import constants, maps, metrics
from coseg_jax.data import folders, images

RESAMPLE = ("area", "split", "box", "square")
POOL5_STRIDE = 32


def area_weights(n, c):
  """float64 [c, n]: row k is the fraction of each of n pixels inside cell k, over the cell size.

  Cell k spans [k n / c, (k + 1) n / c) in pixel units; pixel i spans [i, i + 1).
  """
  edges = np.arange(c + 1) * n / c
  lo = np.clip(edges[:-1, None] - np.arange(n)[None], 0, 1)
  hi = np.clip(edges[1:, None] - np.arange(n)[None], 0, 1)
  return (hi - lo) / (n / c)


def split_weights(n, c):
  """float64 [c, n]: integer cell borders (``np.array_split``), each row a mean over its pixels."""
  weights = np.zeros((c, n))
  for k, part in enumerate(np.array_split(np.arange(n), c)):
    weights[k, part] = 1 / len(part)
  return weights


def cells(mask, c, resample="area"):
  """float32 [c, c]: the foreground fraction of each cell of a bool [H, W] mask."""
  mask = np.asarray(mask, np.float64)
  height, width = mask.shape
  if resample in ("area", "split"):
    weights = area_weights if resample == "area" else split_weights
    return (weights(height, c) @ mask @ weights(width, c).T).astype(np.float32)
  image = Image.fromarray(mask.astype(np.float32))
  if resample == "box":
    return np.asarray(image.resize((c, c), Image.Resampling.BOX), np.float32)
  if resample == "square":
    size = c * POOL5_STRIDE
    square = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.float32)
    return square.reshape(c, POOL5_STRIDE, c, POOL5_STRIDE).mean(axis=(1, 3))
  raise ValueError(f"unknown resample {resample!r}; expected one of {RESAMPLE}")


def oracle_prediction(mask, c, resample="area"):
  """bool [H, W]: the c x c cell map of ``mask`` upsampled bilinearly and thresholded at 0.5."""
  upsampled = maps.to_original_size(cells(mask, c, resample), np.shape(mask))
  return maps.binarize(upsampled, constants.THRESHOLD)


def oracle_counts(masks, c, resample="area"):
  """``metrics.counts`` of the oracle of each bool mask in ``masks`` (a list of [H, W])."""
  return metrics.concat([
      metrics.counts(oracle_prediction(m, c, resample)[None], np.asarray(m, np.uint8)[None])
      for m in masks])


def read_masks(root, groups=None):
  """{group name: [bool [H, W] masks]} of a folder dataset (``coseg_jax.data.folders``)."""
  dataset = folders.scan(root, groups=groups)
  if not dataset.has_masks:
    raise images.MissingDataError(f"{root} has no ground-truth masks")
  return {g.name: [images.read_image_and_mask(i, m)[1] for i, m in zip(g.images, g.masks)]
          for g in dataset.groups}


def class_table(masks_by_group, c, resample="area"):
  """(``metrics.group_means`` table, ``metrics.class_average``) of the c x c oracle."""
  counts = [oracle_counts(masks, c, resample) for masks in masks_by_group.values()]
  names = [name for name, masks in masks_by_group.items() for _ in masks]
  table = metrics.group_means(metrics.concat(counts), names)
  return table, metrics.class_average(table)


def run(masks_by_group, grid_sizes, resample_modes):
  """{resample: {c: {"classes": table, "average": ...}}} for every mode and grid size."""
  results = {}
  for resample in resample_modes:
    for c in grid_sizes:
      table, average = class_table(masks_by_group, c, resample)
      results.setdefault(resample, {})[str(c)] = {"classes": table, "average": average}
  return results


def print_results(results, groups):
  """One table per resample mode: a row per class, a Jaccard (%) column per grid size."""
  for resample, by_grid in results.items():
    print(f"\nresample={resample}: class-average Jaccard (%) of the c x c cell oracle")
    rows = [{"class": g, "images": next(iter(by_grid.values()))["classes"][g]["images"],
             **{f"{c}x{c}": round(100 * r["classes"][g]["jaccard"], 1) for c, r in by_grid.items()}}
            for g in groups]
    rows.append({"class": "Average", "images": sum(r["images"] for r in rows),
                 **{f"{c}x{c}": round(100 * r["average"]["jaccard"], 1)
                    for c, r in by_grid.items()}})
    print_table(rows, ["class", "images", *(f"{c}x{c}" for c in by_grid)])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", required=True, help="a folder dataset with masks")
  parser.add_argument("--cells", default="8,16,32", help="comma-separated grid sizes c")
  parser.add_argument("--groups", default="", help="comma-separated classes (default: all)")
  parser.add_argument("--resample", default="area",
                      help=f"comma-separated modes of {RESAMPLE}, or 'all'")
  parser.add_argument("--json", default="bench/results/cell_oracle.json")
  args = parser.parse_args(argv)
  grid_sizes = [int(c) for c in args.cells.split(",") if c.strip()]
  modes = RESAMPLE if args.resample == "all" else folders.parse_groups(args.resample)
  start = time.perf_counter()
  masks_by_group = read_masks(args.root, args.groups or None)
  results = run(masks_by_group, grid_sizes, modes)
  print_results(results, list(masks_by_group))
  print(f"\n{sum(map(len, masks_by_group.values()))} masks, {time.perf_counter() - start:.1f} s")
  write_json(args.json, {"args": vars(args), "results": results})


if __name__ == "__main__":
  main()
