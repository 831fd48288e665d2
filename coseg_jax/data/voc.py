"""PASCAL VOC 2012 co-segmentation pairs (paper §4.1, after Li et al. 2018).

Reads a local ``VOCdevkit/VOC2012`` (nothing is downloaded)::

  VOC2012/
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png      palette PNG: 0 background, 1..20 classes, 255 void
    ImageSets/Segmentation/train.txt, val.txt

Two images form a pair when they share at least one of the 20 object classes
(background is not a class); each image's co-segmentation mask is the union of the
pixels of the shared classes (1), other pixels 0, and VOC's void border pixels stay
255 ("ignore": no loss, not counted by the metrics). Pairs are all unordered pairs
``(a, b)``, ``a < b`` in the sorted id order, of a split's images:

* ``train``: the images of ``train.txt``;
* ``val`` / ``test``: ``val.txt`` is permuted with a fixed seed and cut into its
  first ``len // 2`` images (724 of 1449) and the rest (725), as in the paper.

Pairs come from an index of the classes present in each image, computed once from
the PNGs (optionally cached as a JSON file). Pair lists can be written to and read
from text files, one ``<id_a> <id_b>`` per line, so that a run can be repeated or
compared with another framework on exactly the same pairs.
"""

import dataclasses
import json
import os
import pathlib

import numpy as np
from PIL import Image
import tqdm

from coseg_jax.constants import IGNORE as VOID, SPLITS
from coseg_jax.data import images
from coseg_jax.errors import BadValue

CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")  # label k (1..20) is CLASS_NAMES[k - 1]; 0 is background
_LAYOUT = """expected a PASCAL VOC 2012 folder laid out as
  VOC2012/JPEGImages/<id>.jpg
  VOC2012/SegmentationClass/<id>.png
  VOC2012/ImageSets/Segmentation/train.txt and val.txt
(root may be the VOC2012 folder, the VOCdevkit folder holding it, or the folder holding VOCdevkit)"""


class PairListError(BadValue):
  """A pair list file names unknown images or images that share no class."""


def find_root(root):
  """The ``VOC2012`` folder at or under ``root``; raises ``MissingDataError`` if absent.

  The error lists every missing file or folder of the expected layout.
  """
  root = pathlib.Path(root).expanduser()
  for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
    if (candidate / "JPEGImages").is_dir():
      root = candidate
      break
  needed = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt",
            "ImageSets/Segmentation/val.txt")
  missing = [str(root / name) for name in needed if not (root / name).exists()]
  if missing:
    raise images.MissingDataError(
        f"incomplete PASCAL VOC 2012 folder {root}: missing {', '.join(missing)}; {_LAYOUT}")
  return root


def read_image_set(root, name):
  """Image ids of ``ImageSets/Segmentation/<name>.txt`` (e.g. train, val), in file order."""
  path = find_root(root) / "ImageSets" / "Segmentation" / f"{name}.txt"
  if not path.is_file():
    raise images.MissingDataError(f"{path}: no such image set file; {_LAYOUT}")
  return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def split_ids(root, split, seed=0):
  """Sorted image ids of ``split``: train, or the val/test halves of ``val.txt``."""
  if split not in SPLITS:
    raise BadValue(f"unknown VOC split {split!r}; expected one of {SPLITS}")
  if split == "train":
    return sorted(read_image_set(root, "train"))
  ids = np.random.default_rng(seed).permutation(sorted(read_image_set(root, "val"))).tolist()
  half = len(ids) // 2
  return sorted(ids[:half] if split == "val" else ids[half:])


def read_labels(path):
  """A SegmentationClass PNG -> uint8 [H, W] labels (0 background, 1..20, 255 void)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise images.MissingDataError(f"{path}: no such segmentation PNG; {_LAYOUT}")
  try:
    with Image.open(path) as img:
      if img.mode not in ("P", "L"):
        raise images.ImageReadError(
            f"{path}: mode {img.mode!r}, expected a palette ('P') or grey ('L') PNG of "
            "VOC class indices (0 background, 1..20 classes, 255 void)")
      labels = np.asarray(img, np.uint8)
  except (OSError, SyntaxError) as e:
    raise images.ImageReadError(f"{path}: cannot read segmentation PNG ({e})") from e
  bad = np.setdiff1d(np.unique(labels), np.r_[np.arange(len(CLASS_NAMES) + 1), VOID])
  if bad.size:
    raise images.ImageReadError(
        f"{path}: label values {bad.tolist()} are not VOC classes (0..20 or 255 void)")
  return labels


def image_classes(labels):
  """The sorted object classes (1..20) present in a label map."""
  present = np.unique(labels)
  return tuple(int(c) for c in present if 0 < c <= len(CLASS_NAMES))


def class_index(root, ids, cache_file=None):
  """{id: sorted tuple of classes present} for ``ids``, read from the PNGs.

  With ``cache_file``, entries found there are reused and the file is (re)written
  with any newly computed ones: a small JSON file ``{"classes": {id: [k, ...]}}``.
  """
  root = find_root(root)
  cache_file = pathlib.Path(cache_file) if cache_file else None
  cached = {}
  if cache_file and cache_file.is_file():
    try:
      cached = {k: tuple(v) for k, v in json.loads(cache_file.read_text())["classes"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise BadValue(f"{cache_file}: not a VOC class index cache ({e}); delete it to rebuild") from e
  missing = [image_id for image_id in ids if image_id not in cached]
  computed = {image_id: image_classes(read_labels(root / "SegmentationClass" / f"{image_id}.png"))
              for image_id in tqdm.tqdm(missing, desc="VOC class index", unit="mask",
                                        leave=False, dynamic_ncols=True, delay=2)}
  cached.update(computed)
  if cache_file and computed:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"classes": {k: list(v) for k, v in sorted(cached.items())}}))
    os.replace(partial, cache_file)  # a reader never sees half a file
  return {image_id: cached[image_id] for image_id in ids}


def class_matrix(index, ids):
  """bool [len(ids), 20]: whether image i contains class k + 1."""
  matrix = np.zeros((len(ids), len(CLASS_NAMES)), bool)
  for row, image_id in enumerate(ids):
    matrix[row, [c - 1 for c in index[image_id]]] = True
  return matrix


def all_pairs(index, ids):
  """int32 [P, 2] positions (a < b) in ``ids`` of every pair sharing a class."""
  matrix = class_matrix(index, ids).astype(np.int32)
  shares = np.triu(matrix @ matrix.T > 0, k=1)
  return np.stack(np.nonzero(shares), axis=1).astype(np.int32)


def write_pairs(path, ids, pairs):
  """Writes pairs as ``<id_a> <id_b>`` lines (a header comment line first)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [f"# coseg_jax VOC2012 co-segmentation pairs: {len(pairs)} pairs, <id_a> <id_b>"]
  lines += [f"{ids[a]} {ids[b]}" for a, b in pairs]
  path.write_text("\n".join(lines) + "\n")


def read_pairs(path, index, ids):
  """Reads a pair list written by ``write_pairs`` -> int32 [P, 2] positions in ``ids``.

  Raises ``PairListError`` naming the line for an unknown id, or for a pair that
  shares no class (its masks would be empty).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise images.MissingDataError(f"{path}: no such pair list file")
  position = {image_id: i for i, image_id in enumerate(ids)}
  pairs = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    fields = line.split("#")[0].split()
    if not fields:
      continue
    if len(fields) != 2:
      raise PairListError(f"{path}:{number}: expected '<id_a> <id_b>', got {line!r}")
    for image_id in fields:
      if image_id not in position:
        raise PairListError(f"{path}:{number}: image id {image_id!r} is not in this split "
                            f"({len(ids)} images)")
    if not set(index[fields[0]]) & set(index[fields[1]]):
      raise PairListError(f"{path}:{number}: {fields[0]} and {fields[1]} share no VOC class")
    pairs.append((position[fields[0]], position[fields[1]]))
  return np.asarray(pairs, np.int32).reshape(-1, 2)


def cosegmentation_mask(labels, shared):
  """uint8 mask of the ``shared`` classes: 1 on them, 0 elsewhere, 255 on void pixels."""
  mask = np.isin(labels, shared).astype(np.uint8)
  mask[labels == VOID] = VOID
  return mask


def read_example(root, image_id):
  """(uint8 [H, W, 3] image, uint8 [H, W] labels) of ``image_id`` in the VOC2012 folder ``root``."""
  image_path = root / "JPEGImages" / f"{image_id}.jpg"
  label_path = root / "SegmentationClass" / f"{image_id}.png"
  image, labels = images.read_image(image_path), read_labels(label_path)
  images.check_sizes(image_path, image.shape[:2], label_path, labels.shape)
  return image, labels


@dataclasses.dataclass(frozen=True, eq=False)
class VOCPairs:
  """The co-segmentation pairs of one split, addressable by index.

  ``pairs[i]`` -> dict ``image_a``/``image_b``: uint8 [H, W, 3] at the file's size,
  ``mask_a``/``mask_b``: uint8 [H, W] (0, 1, 255 void), ``index``: i.
  """
  root: pathlib.Path
  ids: tuple
  index: dict
  pairs: np.ndarray

  def __len__(self):
    return len(self.pairs)

  def names(self, i):
    """The image ids of pair ``i``."""
    a, b = self.pairs[i]
    return self.ids[a], self.ids[b]

  def __getitem__(self, i):
    id_a, id_b = self.names(i)
    shared = sorted(set(self.index[id_a]) & set(self.index[id_b]))
    sample = {"index": np.int32(i)}
    for side, image_id in (("a", id_a), ("b", id_b)):
      image, labels = read_example(self.root, image_id)
      sample[f"image_{side}"] = image
      sample[f"mask_{side}"] = cosegmentation_mask(labels, shared)
    return sample


def load_pairs(root, split, *, split_seed=0, cache_file=None, pairs_file=None):
  """The ``VOCPairs`` of ``split``; from ``pairs_file`` when given, else all pairs."""
  root = find_root(root)
  ids = split_ids(root, split, split_seed)
  missing = [str(root / "JPEGImages" / f"{i}.jpg") for i in ids
             if not (root / "JPEGImages" / f"{i}.jpg").is_file()]
  if missing:
    raise images.MissingDataError(
        f"{len(missing)} image(s) of the VOC {split} split are missing, e.g. {missing[:3]}; {_LAYOUT}")
  index = class_index(root, ids, cache_file)
  pairs = read_pairs(pairs_file, index, ids) if pairs_file else all_pairs(index, ids)
  return VOCPairs(root=root, ids=tuple(ids), index=index, pairs=pairs)


def export_pairs(root, out_dir, *, split_seed=0, cache_file=None):
  """Writes ``<out_dir>/{train,val,test}.txt`` pair lists; returns {split: count}."""
  counts = {}
  for split in SPLITS:
    dataset = load_pairs(root, split, split_seed=split_seed, cache_file=cache_file)
    write_pairs(pathlib.Path(out_dir) / f"{split}.txt", dataset.ids, dataset.pairs)
    counts[split] = len(dataset)
  return counts
