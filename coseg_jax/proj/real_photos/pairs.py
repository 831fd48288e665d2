"""Training pairs that reward following the partner (issue 28), beside ``views``' pairs.

Two kinds, each a fraction of the training pairs (``config.data.views.pasted`` and
``config.data.views.lacking``; 0 = off, the recipe's draws unchanged):

* **pasted pairs**: one object (any class, its mask) pasted into two photos of two other
  classes, the two photos unrelated to each other. The pasted object is the only thing
  the two images share, so it is both targets and each photo's own object is background:
  nothing but the partner says which object to segment, and the same object instance on
  both sides is what a correspondence cue (``model.cue="correlation"``) can match.
  ``config.data.views.pasted_pairs`` such pairs are rendered per image with an object
  (as the donor), encoded once and cached like the views (``pasted_features``).
* **lacking pairs**: a plain view whose own object is visible, with a partner that shows
  none of its class; its target is all background although it holds a salient object.
  (``data.views.negatives`` also pairs views with nothing in common, but draws the first
  view among all views, composites included.)

The other pairs (1 - pasted - lacking of them) are drawn as ``views.PairSampler`` draws
them, ``data.views.negatives`` of those with nothing in common.

Targets come from ``views.targets`` (what the other view also shows is foreground), so
they follow from the labels: tests/test_pairs.py checks them.
"""

import dataclasses

import jax
import numpy as np

from coseg_jax.data import resize
from coseg_jax.data.paste import OWN, paste
from coseg_jax.errors import BadValue
from coseg_jax.proj.real_photos import row_files, view_cache, views

TRIES = 5  # bases tried per pasted pair before it is left out


@dataclasses.dataclass(frozen=True)
class PastedConfig:
  """How many pasted pairs each image gives as the donor (``data.views.pasted_pairs``)."""
  size: int
  pairs_per_image: int = 1
  seed: int = 0


def _mirrored(image, mask, rng):
  return (image[:, ::-1], mask[:, ::-1]) if rng.uniform() < 0.5 else (image, mask)


def _pasted_view(base, donor, size, rng):
  """``donor`` = (image, mask) pasted into the whole frame of ``base`` -> (image, labels)."""
  base_image, base_mask = _mirrored(resize.resize_image(base[0], size),
                                    resize.resize_mask(base[1], size), rng)
  return paste(base_image, base_mask, *_mirrored(*donor, rng), rng)


def render_pasted(groups, config):
  """Pasted pairs of ``groups`` in memory: ``views.collect(pasted_rows(groups, config))``."""
  return views.collect(pasted_rows(groups, config))


def pasted_rows(groups, config):
  """Yields the views of the pasted pairs of ``groups`` (dicts with "images" and "masks",
  as ``folders.load_group``) as ``views.view_rows`` does; views 2k and 2k + 1 are the two
  sides of pair k.

  For each image with an object (the donor), ``config.pairs_per_image`` times: two photos
  of two different groups, neither the donor's, each with the donor's object pasted in
  (its own place, size and mirroring). Deterministic given ``config.seed``; needs at
  least three groups.
  """
  if len(groups) < 3:
    raise BadValue("config.data.views.pasted_pairs > 0 needs at least three groups (the "
                   f"object and two unrelated photos); got {len(groups)}")
  items = [(g, image, mask) for g, group in enumerate(groups)
           for image, mask in zip(group["images"], group["masks"])]
  rng = np.random.default_rng(config.seed)
  any_rows = False
  for g, image, mask in items:
    if not mask.any():
      continue
    others = [k for k, item in enumerate(items) if item[0] != g]
    for _ in range(config.pairs_per_image):
      pair = _pasted_pair(items, others, (image, mask), config.size, rng)
      for view, base in pair or ():
        any_rows = True
        yield (*view, base, items[base][0], g)
  if not any_rows:
    raise BadValue("no pasted pair could be rendered (no image has an object mask)")


def _pasted_pair(items, others, donor, size, rng):
  """[((image, labels), base index)] * 2: the donor in two photos of two other groups."""
  for _ in range(TRIES):
    first = others[rng.integers(len(others))]
    second = [k for k in others if items[k][0] != items[first][0]]
    if not second:
      return None
    second = second[rng.integers(len(second))]
    pair = [(_pasted_view(items[k][1:], donor, size, rng), k) for k in (first, second)]
    if all(view is not None for view, _ in pair):
      return pair
  return None


def pasted_features(dataset, config, model, variables, cache_dir=""):
  """(Views of ``render_pasted``, float16 features) of a folder dataset, rendered and
  encoded once, then read from their own cache file beside the views' (same key rules)."""
  what = {"pasted_pairs": dataclasses.asdict(config)}
  path = view_cache.view_cache_path(dataset, what, model, variables, cache_dir)
  return view_cache.cached_views(path, view_cache.rows_of(dataset, pasted_rows, config),
                                 model, variables)


def join(first, second):
  """Two ``views.Views`` (or their features) one after the other; labels and features are
  ``row_files.Stacked`` (read by rows, not copied into one array)."""
  if isinstance(first, views.Views):
    fields = [f.name for f in dataclasses.fields(views.Views)]
    images = None if first.images is None or second.images is None else np.concatenate(
        [first.images, second.images])
    return views.Views(images, row_files.Stacked(first.labels, second.labels),
                       *(np.concatenate([getattr(first, k), getattr(second, k)])
                         for k in fields[2:]))
  return jax.tree.map(row_files.Stacked, first, second)


def has_object(labels, chunk=256):
  """bool [V]: which views show their own object (labels read ``chunk`` rows at a time)."""
  return np.concatenate([(labels[i:i + chunk] == OWN).any((1, 2))
                         for i in range(0, len(labels), chunk)])


class RecipePairSampler(views.PairSampler):
  """``views.PairSampler`` that also draws pasted pairs (fraction ``pasted``; rows
  ``pasted_rows`` [P, 2] of the views) and lacking pairs (fraction ``lacking``). With both
  fractions 0 its batches are ``views.PairSampler``'s."""

  def __init__(self, views_, features, *, pasted=0.0, lacking=0.0, pasted_rows=None, **kwargs):
    super().__init__(views_, features, **kwargs)
    self.pasted, self.lacking = pasted, lacking
    self.pasted_rows = np.zeros((0, 2), int) if pasted_rows is None else np.asarray(pasted_rows)
    if pasted + lacking > 1:
      raise BadValue(f"config.data.views.pasted + lacking = {pasted + lacking}: at most 1")
    if pasted and not len(self.pasted_rows):
      raise BadValue(f"config.data.views.pasted = {pasted} needs pasted pairs: set "
                     "config.data.views.pasted_pairs > 0")
    v = views_
    self.plain = np.flatnonzero((v.pasted == views.NONE) & has_object(v.labels))
    self.without = {g: np.flatnonzero((v.own != g) & (v.pasted != g)) for g in self.groups}
    if lacking and not len(self.plain):
      raise BadValue(f"config.data.views.lacking = {lacking} needs plain views with an object")

  def _pair(self, rng):
    if not (self.pasted or self.lacking):
      return super()._pair(rng)
    u = rng.uniform()
    if u < self.pasted:
      a, b = self.pasted_rows[rng.integers(len(self.pasted_rows))]
      return (a, b) if rng.uniform() < 0.5 else (b, a)
    if u < self.pasted + self.lacking:
      a = rng.choice(self.plain)
      return a, rng.choice(self.without[self.views.own[a]])
    return super()._pair(rng)


def sampler(config, dataset, rendered, features, model, variables, **kwargs):
  """The recipe's pair sampler for ``config``: ``rendered`` views and their ``features``,
  plus the pasted pairs when ``config.data.views.pasted_pairs`` > 0. ``kwargs`` go to
  ``views.PairSampler`` (batch_size, seed, negatives, shard_index, shard_count)."""
  settings = config.data.views
  pasted_rows = None
  if settings.pasted_pairs:
    pasted_config = PastedConfig(int(config.data.image_size), settings.pasted_pairs,
                                 int(config.seed))
    extra, extra_features = pasted_features(dataset, pasted_config, model, variables,
                                            settings.cache_dir)
    offset = len(rendered.labels)
    pasted_rows = offset + np.arange(len(extra.labels)).reshape(-1, 2)
    rendered, features = join(rendered, extra), join(features, extra_features)
  return RecipePairSampler(rendered, features, pasted=settings.pasted, lacking=settings.lacking,
                           pasted_rows=pasted_rows, **kwargs)
