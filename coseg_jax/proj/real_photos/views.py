"""Augmented views and composites of a folder dataset, for training on cached features.

A training choice of the CPU recipe (``configs/cpu_frozen.py``), not the paper's: with a
frozen encoder each view's features are computed once (``coseg_jax.training.feature_cache``), so
the views must be drawn before training. Every image of every group gives

* its whole frame and its left-right mirror;
* ``crops`` scaled crops (a random ``min_scale``..1 of the area, aspect 3/4..4/3,
  mirrored with p = 1/2) that keep at least a third of the object;
* ``composites``: the whole frame or a crop with the object of an image of ANOTHER
  group pasted over it with its mask (a random 30–60 % of the side, anywhere such that
  half of the image's own object stays visible).

A view is an S x S image and a label map (0 background, 1 the image's own object, 2 the
pasted object) with the group of each object. A training pair (``PairSampler``) takes
two views of different source images; the target of each is the union of its objects
whose group the OTHER view also shows. So in a pair of a composite and a plain view of
its group the pasted distractor is background, in a pair with a view of the donor's
group it is the target, and in a pair with no group in common (``negatives``) both
targets are empty: only what the two images share is foreground, which is what the
attention has to find.
"""

import dataclasses

import numpy as np

from coseg_jax import group
from coseg_jax.data import resize
from coseg_jax.data.paste import OWN, PASTED, paste
from coseg_jax.errors import BadValue

NONE = -1  # no pasted object
ASPECTS = (3 / 4, 4 / 3)
MIN_KEPT = 1 / 3  # a crop keeps at least this fraction of the object
TRIES = 20


@dataclasses.dataclass(frozen=True)
class ViewConfig:
  """What views each image gives (``config.data.views``, checked by ``coseg_jax.config``)."""
  size: int
  crops: int = 2
  composites: int = 2
  min_scale: float = 0.4
  seed: int = 0

  @classmethod
  def from_data_config(cls, data_config, seed):
    settings = data_config.views
    return cls(size=int(data_config.image_size), crops=settings.crops,
               composites=settings.composites, min_scale=settings.min_scale, seed=int(seed))


@dataclasses.dataclass
class Views:
  """Views of a dataset: images uint8 [V, S, S, 3] (or None), labels uint8 [V, S, S] (0/1/2),
  source int32 [V] (image index), own / pasted int32 [V] (group of label 1 / 2, or NONE)."""
  images: np.ndarray
  labels: np.ndarray
  source: np.ndarray
  own: np.ndarray
  pasted: np.ndarray


def _resized(image, mask, size):
  """uint8 image -> [S, S, 3] (bilinear), bool mask -> [S, S] (nearest)."""
  return resize.resize_image(image, size), resize.resize_mask(mask, size)


def _random_crop(image, mask, rng, min_scale):
  """A crop (as image, mask views) keeping >= MIN_KEPT of the object, or None."""
  height, width = mask.shape
  total = mask.sum()
  for _ in range(TRIES):
    area = rng.uniform(min_scale, 1) * height * width
    aspect = np.exp(rng.uniform(*np.log(ASPECTS)))
    h = int(round(min(height, np.sqrt(area / aspect))))
    w = int(round(min(width, np.sqrt(area * aspect))))
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    crop = mask[top:top + h, left:left + w]
    if total == 0 or crop.sum() >= MIN_KEPT * total:
      return image[top:top + h, left:left + w], crop
  return None


def _mirror(image, mask, rng):
  if rng.uniform() < 0.5:
    return image[:, ::-1], mask[:, ::-1]
  return image, mask


def _base_views(image, mask, rng, config):
  """[(image, bool mask)] at S x S: whole, mirrored, then ``config.crops`` crops."""
  whole = _resized(image, mask, config.size)
  views = [whole, (whole[0][:, ::-1], whole[1][:, ::-1])]
  for _ in range(config.crops):
    crop = _random_crop(image, mask, rng, config.min_scale)
    views.append(_resized(*_mirror(*(crop or (image, mask)), rng), config.size))
  return views


def _items(groups):
  """[(group index, image, mask)] of every image of ``groups``."""
  return [(g, image, mask) for g, group in enumerate(groups)
          for image, mask in zip(group["images"], group["masks"])]


def collect(rows):
  """``Views`` of view rows (image, labels, source, own, pasted), as ``view_rows`` yields."""
  images, labels, *indices = zip(*rows)
  return Views(np.stack(images), np.stack(labels), *(np.asarray(x, np.int32) for x in indices))


def render(groups, config):
  """All views of ``groups`` (dicts with "images" and "masks", as ``folders.load_group``),
  in memory: ``collect(view_rows(groups, config))``."""
  return collect(view_rows(groups, config))


def view_rows(groups, config):
  """Yields the views of ``groups`` one at a time, as (image uint8 [S, S, 3], labels uint8
  [S, S], source, own, pasted): what the view cache streams into the encoder.

  Deterministic given ``config.seed``. Composites need at least two groups.
  """
  if config.composites and len(groups) < 2:
    raise BadValue("config.data.views.composites > 0 needs at least two groups (the pasted "
                   f"object comes from another group); got {len(groups)}")
  items = _items(groups)
  rng = np.random.default_rng(config.seed)
  donors = {g: [k for k, item in enumerate(items) if item[0] != g and item[2].any()]
            for g in range(len(groups))}
  for index, (g, image, mask) in enumerate(items):
    bases = _base_views(image, mask, rng, config)
    for view_image, view_mask in bases:
      yield view_image, view_mask.astype(np.uint8) * OWN, index, g, NONE
    for _ in range(config.composites):
      donor = items[donors[g][rng.integers(len(donors[g]))]]
      base_image, base_mask = bases[rng.integers(len(bases))]
      pasted = paste(base_image, base_mask, *_mirror(donor[1], donor[2], rng), rng)
      if pasted is not None:
        yield (*pasted, index, g, donor[0])


def targets(labels, own, pasted, other_own, other_pasted):
  """uint8 [S, S] target of a view given the groups the other view shows: its objects of
  a shared group are 1, the rest 0."""
  shared = {g for g in (other_own, other_pasted) if g != NONE}
  keep = [value for value, g in ((OWN, own), (PASTED, pasted)) if g in shared]
  return np.isin(labels, keep).astype(np.uint8)


class PairSampler:
  """Endless batches of view pairs -> features and targets (see the module docstring).

  Each pair: a group uniformly, a view showing it (own or pasted object), and a view of
  another source image showing it too; with probability ``negatives`` the second view
  instead shows none of the first's groups. The batches are a pure function of
  (``seed``, step): ``get_state``/``set_state`` hold the step. Host ``shard_index`` of
  ``shard_count`` gets its rows of every global batch.
  """

  def __init__(self, views, features, *, batch_size, seed, negatives=0.0, shard_index=0,
               shard_count=1):
    self.views, self.features = views, features
    self.batch_size, self.seed, self.negatives = batch_size, seed, negatives
    self.rows = slice(shard_index * batch_size // shard_count,
                      (shard_index + 1) * batch_size // shard_count)
    self.step = 0
    self.groups = np.unique(views.own)
    self.showing = {g: np.flatnonzero((views.own == g) | (views.pasted == g))
                    for g in self.groups}
    for g, shown in self.showing.items():
      if len(np.unique(views.source[shown])) < 2:
        raise BadValue(f"group {g} has views of a single image: a pair needs two images")

  def _pair(self, rng):
    v = self.views
    g = self.groups[rng.integers(len(self.groups))]
    a = rng.choice(self.showing[g])
    if rng.uniform() < self.negatives:
      shown = [g for g in (v.own[a], v.pasted[a]) if g != NONE]
      pool = np.flatnonzero(~np.isin(v.own, shown) & ~np.isin(v.pasted, shown))
      if len(pool):
        return a, rng.choice(pool)
    pool = self.showing[g][v.source[self.showing[g]] != v.source[a]]
    return a, rng.choice(pool)

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, self.step])
    self.step += 1
    pairs = np.asarray([self._pair(rng) for _ in range(self.batch_size)])[self.rows]
    a, b = pairs[:, 0], pairs[:, 1]
    v = self.views
    mask_a = [targets(v.labels[i], v.own[i], v.pasted[i], v.own[j], v.pasted[j])
              for i, j in zip(a, b)]
    mask_b = [targets(v.labels[j], v.own[j], v.pasted[j], v.own[i], v.pasted[i])
              for i, j in zip(a, b)]
    return {"features_a": group.rows(self.features, a),
            "features_b": group.rows(self.features, b),
            "mask_a": np.stack(mask_a), "mask_b": np.stack(mask_b)}

  def get_state(self):
    return {"step": self.step}

  def set_state(self, state):
    self.step = int(state["step"])
