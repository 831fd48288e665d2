"""A procedural co-segmentation set: the default data, learnable on a CPU, no downloads.

Each image shows 1-3 objects on a cluttered, textured background. An object belongs
to one of K categories (K <= 10), and categories differ in shape, colour and surface
texture (``CATEGORIES``); instances vary in size, position, rotation, aspect, shade and
texture frequency, and may occlude each other (each stays at least a third visible).

Pairs: the two images share one category (sometimes two), present in both; most images
also hold distractor objects of categories that appear in that image only. The mask
of an image is the pixels of the shared categories, so segmenting every object (the
"objectness" answer) scores a Jaccard index well below 1: see
``objectness_oracle_jaccard`` and docs/data.md.

Groups: N images of which a configurable fraction hold one common category, which
the masks mark; the other objects are distractors, each kept to a few images.

Everything is a pure function of (seed, split, index): ``SyntheticPairs(...)[i]`` is
the same array on every call and machine, and any image size works (geometry is
drawn in units of the image side).
"""

import dataclasses

import numpy as np
from PIL import Image

from coseg_jax.errors import BadValue


SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
CATEGORIES = (  # (shape, RGB colour, texture); category k is CATEGORIES[k].
    ("disc", (225, 35, 35), "stripes"),
    ("square", (35, 170, 60), "solid"),
    ("triangle", (40, 75, 230), "checker"),
    ("star", (240, 205, 30), "dots"),
    ("cross", (205, 45, 200), "rings"),
    ("ring", (30, 200, 215), "solid"),
    ("hexagon", (250, 125, 20), "stripes"),
    ("heart", (120, 45, 180), "dots"),
    ("crescent", (250, 150, 185), "checker"),
    ("bar", (130, 75, 35), "rings"),
)
_OBJECT_COUNT_PROBS = (0.1, 0.35, 0.55)  # P(1, 2, 3 objects in an image)
_DISTRACTOR_PROB = 0.95  # an extra object is a distractor, else one more shared instance
_TWO_SHARED_PROB = 0.1  # a pair shares two categories instead of one
_MIN_VISIBLE = 0.35  # smallest visible fraction of an object under occlusion
_LAYOUT_TRIES = 20
_SHAPE_REACH = 1.15  # every shape lies within this radius in object coordinates


def _regular_polygon(n):
  def inside(u, v):
    theta = np.arctan2(v, u) % (2 * np.pi / n) - np.pi / n
    return np.hypot(u, v) * np.cos(theta) <= np.cos(np.pi / n)
  return inside


def _star(u, v):
  return np.hypot(u, v) <= 0.42 + 0.58 * ((np.cos(5 * np.arctan2(v, u)) + 1) / 2) ** 2


def _heart(u, v):
  x, y = 1.15 * u, -1.15 * v + 0.25
  return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


SHAPES = {  # inside tests in object coordinates, the object filling about the unit disc
    "disc": lambda u, v: u * u + v * v <= 1,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,
    "triangle": _regular_polygon(3),
    "star": _star,
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95))
                          | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),
    "ring": lambda u, v: (u * u + v * v <= 1) & (u * u + v * v >= 0.3),
    "hexagon": _regular_polygon(6),
    "heart": _heart,
    "crescent": lambda u, v: (u * u + v * v <= 1) & ((u - 0.5) ** 2 + v * v >= 0.6),
    "bar": lambda u, v: (np.abs(u) <= 1) & (np.abs(v) <= 0.38),
}


def _texture(name, u, v, rng):
  """A [0, 1] surface pattern in object coordinates."""
  freq, phase = rng.uniform(4.0, 6.5), rng.uniform(0, 2 * np.pi)
  if name == "solid":
    return np.ones_like(u)
  if name == "stripes":
    return (np.sin(freq * (u + v) + phase) > 0).astype(np.float32)
  if name == "checker":
    return ((np.floor(freq / 2 * u + phase) + np.floor(freq / 2 * v)) % 2).astype(np.float32)
  if name == "dots":
    fu, fv = (freq / 2 * u + phase) % 1 - 0.5, (freq / 2 * v) % 1 - 0.5
    return (fu * fu + fv * fv > 0.06).astype(np.float32)
  if name == "rings":
    return (np.sin(1.6 * freq * np.hypot(u, v) + phase) > 0).astype(np.float32)
  raise BadValue(f"unknown texture {name!r}")


def _background(rng, size):
  """float32 [S, S, 3] in [0, 1]: muted colour field, a texture and thin clutter."""
  cells = rng.integers(2, 6)
  grey = rng.uniform(0.25, 0.75)
  field = 0.55 * grey + 0.45 * rng.uniform(0, 1, (cells, cells, 3))
  image = np.asarray(Image.fromarray((field * 255).astype(np.uint8)).resize(
      (size, size), Image.Resampling.BILINEAR), np.float32) / 255
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  kind = rng.integers(3)
  if kind == 0:  # soft stripes
    angle = rng.uniform(0, np.pi)
    image *= 1 + 0.08 * np.sin(rng.uniform(20, 60) * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
  elif kind == 1:  # blotches
    blotch = np.asarray(Image.fromarray((rng.uniform(0, 1, (12, 12)) * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC), np.float32) / 255
    image *= 0.85 + 0.3 * blotch[..., None]
  for _ in range(rng.integers(3, 9)):  # clutter: thin lines and small specks
    colour = 0.5 * grey + 0.5 * rng.uniform(0, 1, 3)
    if rng.uniform() < 0.6:
      (x0, y0), angle = rng.uniform(0, 1, 2), rng.uniform(0, np.pi)
      dist = np.abs((xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle))
      along = np.abs((xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle))
      where = (dist < max(0.6 / size, rng.uniform(0.003, 0.01))) & (along < rng.uniform(0.1, 0.5))
    else:
      (x0, y0), radius = rng.uniform(0, 1, 2), rng.uniform(0.01, 0.035)
      where = (xx - x0) ** 2 + (yy - y0) ** 2 < radius ** 2
    image[where] = colour
  return image


def _place(rng, size, category):
  """One object instance -> (rows, cols) slices of its bounding box, its inside mask
  and its colours [h, w, 3] within that box."""
  shape, colour, texture = CATEGORIES[category]
  radius = rng.uniform(0.16, 0.28)
  cx, cy = rng.uniform(0.12, 0.88, 2)
  angle, aspect = rng.uniform(0, 2 * np.pi), rng.uniform(0.85, 1.2)
  reach = _SHAPE_REACH * radius * max(aspect, 1 / aspect)  # every shape lies within this
  rows = slice(max(0, int((cy - reach) * size)), min(size, int((cy + reach) * size) + 2))
  cols = slice(max(0, int((cx - reach) * size)), min(size, int((cx + reach) * size) + 2))
  yy, xx = np.mgrid[rows, cols].astype(np.float32)
  x, y = (xx + 0.5) / size - cx, (yy + 0.5) / size - cy
  u = (np.cos(angle) * x + np.sin(angle) * y) / (radius * aspect)
  v = (-np.sin(angle) * x + np.cos(angle) * y) / (radius / aspect)
  inside = SHAPES[shape](u, v)
  shade = np.clip(np.asarray(colour, np.float32) / 255 * rng.uniform(0.8, 1.1)
                  + rng.uniform(-0.06, 0.06, 3), 0, 1)
  light = 1 + 0.12 * (np.cos(rng.uniform(0, 2 * np.pi)) * u + np.sin(rng.uniform(0, 2 * np.pi)) * v)
  pattern = 0.62 + 0.38 * _texture(texture, u, v, rng)
  return (rows, cols), inside, np.clip(shade * (pattern * light)[..., None], 0, 1)


def _render(rng, size, categories):
  """Draws ``categories`` (back to front) -> uint8 image [S, S, 3], int8 labels (-1 = none)."""
  for _ in range(_LAYOUT_TRIES):
    image = _background(rng, size)
    labels = np.full((size, size), -1, np.int8)
    owners = np.full((size, size), -1, np.int16)
    areas = []
    for n, category in enumerate(categories):
      box, inside, colours = _place(rng, size, category)
      image[box][inside] = colours[inside]
      labels[box][inside] = category
      owners[box][inside] = n
      areas.append(inside.sum())
    visible = np.bincount(owners[owners >= 0], minlength=len(categories))
    if all(v >= _MIN_VISIBLE * max(a, 1) and v > 0 for v, a in zip(visible, areas)):
      break
  image += 0.015 * rng.standard_normal(image.shape, dtype=np.float32)
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), labels


def _num_objects(rng, minimum):
  return max(minimum, 1 + rng.choice(3, p=_OBJECT_COUNT_PROBS))


def _check(num_categories, size):
  if not 2 <= num_categories <= len(CATEGORIES):
    raise BadValue(f"num_categories={num_categories}: expected 2..{len(CATEGORIES)}")
  if size < 16:
    raise BadValue(f"image_size={size}: expected at least 16 pixels")


def _rng(seed, split, index):
  if split not in SPLIT_STREAMS:
    raise BadValue(f"unknown split {split!r}; expected one of {tuple(SPLIT_STREAMS)}")
  return np.random.default_rng([seed, SPLIT_STREAMS[split], index])


def render_pair(index, *, seed=0, split="train", image_size=128, num_categories=6):
  """Pair ``index`` -> dict image_a/image_b (uint8 [S, S, 3]), labels_a/labels_b (int8
  [S, S] category per pixel, -1 background) and shared (tuple of shared categories)."""
  _check(num_categories, image_size)
  rng = _rng(seed, split, index)
  order = rng.permutation(num_categories)
  num_shared = 2 if num_categories >= 4 and rng.uniform() < _TWO_SHARED_PROB else 1
  shared, others = order[:num_shared], order[num_shared:]
  pair = {"shared": tuple(int(c) for c in sorted(shared))}
  for side, pool in (("a", others[0::2]), ("b", others[1::2])):
    objects = list(shared)
    for _ in range(_num_objects(rng, num_shared) - num_shared):
      distractor = len(pool) and rng.uniform() < _DISTRACTOR_PROB
      objects.append(rng.choice(pool) if distractor else rng.choice(shared))
    rng.shuffle(objects)
    pair[f"image_{side}"], pair[f"labels_{side}"] = _render(rng, image_size, objects)
  return pair


@dataclasses.dataclass(frozen=True)
class SyntheticPairs:
  """``num_pairs`` synthetic pairs of one split, addressable by index.

  ``pairs[i]`` -> dict ``image_a``/``image_b``: uint8 [S, S, 3], ``mask_a``/``mask_b``:
  uint8 [S, S] (1 on the shared categories), ``index``: i.
  """
  num_pairs: int
  image_size: int = 128
  num_categories: int = 6
  seed: int = 0
  split: str = "train"

  def __post_init__(self):
    _check(self.num_categories, self.image_size)
    if self.split not in SPLIT_STREAMS:
      raise BadValue(f"unknown split {self.split!r}; expected one of {tuple(SPLIT_STREAMS)}")

  def __len__(self):
    return self.num_pairs

  def render(self, i):
    if not 0 <= i < self.num_pairs:
      raise IndexError(f"pair {i} out of range 0..{self.num_pairs - 1}")
    return render_pair(int(i), seed=self.seed, split=self.split, image_size=self.image_size,
                       num_categories=self.num_categories)

  def __getitem__(self, i):
    pair = self.render(i)
    shared = list(pair["shared"])
    return {"image_a": pair["image_a"], "image_b": pair["image_b"],
            "mask_a": np.isin(pair["labels_a"], shared).astype(np.uint8),
            "mask_b": np.isin(pair["labels_b"], shared).astype(np.uint8),
            "index": np.int32(i)}


def render_group(index, *, seed=0, split="test", image_size=128, num_categories=6,
                 group_size=8, common_fraction=1.0):
  """Group ``index`` -> dict name, files, images (uint8 [S, S, 3] list), masks (bool
  [S, S] list, the common category), labels (int8 [S, S] list, category per pixel,
  -1 background) and common (the common category).

  ``round(common_fraction * group_size)`` images (at least 2) hold the common
  category; every other category appears in at most a third of the images.
  """
  _check(num_categories, image_size)
  if group_size < 2 or not 0 < common_fraction <= 1:
    raise BadValue(f"group_size={group_size}, common_fraction={common_fraction}: expected "
                   "group_size >= 2 and 0 < common_fraction <= 1")
  rng = _rng(seed, split, index)
  order = rng.permutation(num_categories)
  common, others = int(order[0]), [int(c) for c in order[1:]]
  holders = set(rng.permutation(group_size)[:max(2, round(common_fraction * group_size))].tolist())
  uses = dict.fromkeys(others, 0)
  cap = max(1, group_size // 3)
  group = {"name": f"synthetic_{split}_{index:05d}", "common": common, "files": [], "images": [],
           "masks": [], "labels": []}
  for n in range(group_size):
    objects = [common] if n in holders else []
    for _ in range(_num_objects(rng, 1) - len(objects)):
      free = [c for c in others if uses[c] < cap and c not in objects]
      if free and (rng.uniform() < _DISTRACTOR_PROB or not objects):
        objects.append(int(rng.choice(free)))
        uses[objects[-1]] += 1
      elif objects:
        objects.append(objects[0])
    if not objects:  # every distractor used up: a lone extra instance of the rarest one
      objects.append(min(others, key=uses.get))
    rng.shuffle(objects)
    image, labels = _render(rng, image_size, objects)
    group["files"].append(f"{n:03d}.png")
    group["images"].append(image)
    group["masks"].append(labels == common)
    group["labels"].append(labels)
  return group


def objectness_oracle_jaccard(pairs, num_pairs=None, pooled=False):
  """Jaccard of predicting every object pixel as foreground.

  The co-segmentation mask is a subset of the object pixels, so this is
  |mask| / |objects| per image, averaged over both images of the first ``num_pairs``
  pairs; ``pooled=True``: the pixels of all those images pooled (eval.py's "pairs"
  Jaccard), sum |mask| / sum |objects|.
  """
  shared, objects = [], []
  for i in range(min(num_pairs or len(pairs), len(pairs))):
    pair = pairs.render(i)
    for side in ("a", "b"):
      labels = pair[f"labels_{side}"]
      shared.append(np.isin(labels, pair["shared"]).sum())
      objects.append((labels >= 0).sum())
  shared, objects = np.asarray(shared, np.float64), np.maximum(objects, 1)
  return float(shared.sum() / objects.sum() if pooled else np.mean(shared / objects))


def group_objectness_oracle_jaccard(num_groups, **group_options):
  """The oracle on ``render_group`` groups 0..num_groups-1, scored as eval.py's group
  tables: per-image Jaccard averaged within each group, then over groups."""
  per_group = []
  for index in range(num_groups):
    group = render_group(index, **group_options)
    per_group.append(np.mean([mask.sum() / max((labels >= 0).sum(), 1)
                              for mask, labels in zip(group["masks"], group["labels"])]))
  return float(np.mean(per_group))


def contact_sheet(pairs, num_pairs):
  """uint8 image: one row per pair, image A | mask A | image B | mask B."""
  rows = []
  for i in range(num_pairs):
    sample = pairs[i]
    cells = [sample["image_a"], np.repeat(sample["mask_a"][..., None] * 255, 3, -1),
             sample["image_b"], np.repeat(sample["mask_b"][..., None] * 255, 3, -1)]
    rows.append(np.concatenate(cells, axis=1))
  return np.concatenate(rows, axis=0)
