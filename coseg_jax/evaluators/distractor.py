"""The distractor test: does a model segment what two images share, or what it recognises?

Every image of the evaluated groups, at the model's input size S x S, gets the object of
an image of ANOTHER group pasted over it (``data.paste``, as the real-photo recipe's
training composites are made) and is co-segmented twice:

* with another image of its own group: the target is its own object, the pasted one is
  a distractor;
* with another image of the pasted object's group: the target is the pasted object,
  its own object is the distractor.

A model that ignores the other image (``attention="none"``, a saliency model, a fixed
box) gives one map P for both pairs. The two objects A and B are disjoint and
|P u A| >= |P|, so J(P, A) + J(P, B) <= |P n A| / |P| + |P n B| / |P| <= 1: the mean
of the two targets' Jaccard is at most 50 % for every composite, hence on average. A
score above 50 can only come from using the other image: co-segmentation.

Scored at S x S (where the composite is made): per-image Jaccard and precision for each
target, averaged within the class of the composite's own object, then over classes.
"""

import dataclasses
import time

import numpy as np
import tqdm

from coseg_jax import group, maps, metrics
from coseg_jax.constants import THRESHOLD
from coseg_jax.data import paste, pipeline, resize
from coseg_jax.errors import BadValue
from coseg_jax.evaluators import groups as group_protocol

TARGETS = ("own", "pasted")  # the target object of each of a composite's two pairs
TRIES = 5  # donors tried per image before it is left out (the paste found no place)
SEED = 0  # the composites of every evaluation: the same for every model


@dataclasses.dataclass
class Composites:
  """Composites of a dataset's groups and the images they are paired with.

  images: uint8 [M + T, S, S, 3], the M plain images of the groups then the T composites;
  labels: uint8 [T, S, S] (0 background, ``paste.OWN``, ``paste.PASTED``); classes: the
  class name of each composite's own object [T]; partners: int [T, 2], the plain image
  (index into ``images``) paired with each composite for the own / the pasted target.
  """
  images: np.ndarray
  labels: np.ndarray
  classes: list
  partners: np.ndarray

  def pairs(self, target):
    """int [T, 2]: (composite, partner) indices into ``images`` for ``target``."""
    count = len(self.labels)
    first = len(self.images) - count
    return np.stack([np.arange(first, first + count), self.partners[:, TARGETS.index(target)]],
                    axis=1)

  def targets(self, target):
    """uint8 [T, S, S]: 1 on the ``target`` object."""
    value = paste.OWN if target == "own" else paste.PASTED
    return (self.labels == value).astype(np.uint8)


def _other(indices, exclude, rng):
  choices = [k for k in indices if k != exclude]
  return choices[rng.integers(len(choices))]


def render(groups, size, seed=SEED):
  """``Composites`` of ``groups`` (dicts of ``pipeline.iterate_groups``: name, images,
  masks, inputs), deterministic given ``seed``. Images with an empty mask are not used as
  a base (they have no own target) nor as a donor. Raises if fewer than two groups or a
  group with fewer than two images with an object."""
  groups = list(groups)
  if len(groups) < 2:
    raise BadValue(f"the distractor test needs at least two groups (the pasted object "
                   f"comes from another one); got {len(groups)}")
  rng = np.random.default_rng(seed)
  items = [(g, i) for g, grp in enumerate(groups) for i in range(len(grp["inputs"]))]
  index = {item: k for k, item in enumerate(items)}
  with_object = {g: [index[g, i] for i, m in enumerate(grp["masks"]) if m.any()]
                 for g, grp in enumerate(groups)}
  few = [groups[g]["name"] for g, found in with_object.items() if len(found) < 2]
  if few:
    raise BadValue(f"groups {few} have fewer than two images with an object: the "
                   "distractor test pairs each composite with another image of the group")
  composites, labels, classes, partners = [], [], [], []
  for g, grp in enumerate(groups):
    donors = [d for h, found in with_object.items() if h != g for d in found]
    for k in with_object[g]:
      made = _composite(groups, items, donors, k, size, rng)
      if made is None:
        continue
      image, label, donor = made
      composites.append(image)
      labels.append(label)
      classes.append(grp["name"])
      partners.append((_other(with_object[g], k, rng),
                       _other(with_object[items[donor][0]], donor, rng)))
  plain = np.concatenate([grp["inputs"] for grp in groups])
  return Composites(np.concatenate([plain, np.stack(composites)]), np.stack(labels), classes,
                    np.asarray(partners, np.int32))


def _composite(groups, items, donors, k, size, rng):
  """(image, labels, donor item) of item ``k`` with the object of one of ``donors``
  (items of the other groups), or None."""
  g, i = items[k]
  base_mask = resize.resize_mask(groups[g]["masks"][i], size).astype(bool)
  for _ in range(TRIES):
    donor = donors[rng.integers(len(donors))]
    h, j = items[donor]
    pasted = paste.paste(groups[g]["inputs"][i], base_mask, groups[h]["images"][j],
                         groups[h]["masks"][j], rng)
    if pasted is not None and (pasted[1] == paste.OWN).any():
      return (*pasted, donor)
  return None


def segmenter(mode, model, variables, chunk_size=8, gate=None):
  """fn(images [M, S, S, 3], pairs [P, 2]) -> P(foreground) [P, S, S] of each pair's first
  image: co-segmented with its second (``group.decode_pairs``, gated with ``gate`` if
  ``mode.gate``), or by a baseline that sees the first image alone."""
  if not mode.is_model:
    single = group_protocol.segmenter(mode, model, variables, chunk_size)
    return lambda images, pairs: single(images[pairs[:, 0]])
  gate = group_protocol.mode_gate(mode, gate)

  def segment(images, pairs):
    chunks = group.decode_pairs(model, variables, images, pairs, chunk_size, gate)
    total = -(-len(pairs) // chunk_size)
    return np.concatenate([probs for _, probs in tqdm.tqdm(
        chunks, desc="distractor pairs", total=total, leave=False, dynamic_ncols=True)])
  return segment


def run(data_config, split, segmenters, on_result=None, threshold=THRESHOLD):
  """{mode name: ``evaluate`` result + "seconds"} for {mode name: ``segmenter``}; the
  composites are made once (seed ``SEED``), so every mode and model sees the same ones."""
  groups = list(tqdm.tqdm(pipeline.iterate_groups(data_config, split=split), desc="groups",
                          unit="group", leave=False, dynamic_ncols=True))
  composites = render(groups, data_config.image_size)
  results = {}
  for name, segment in segmenters.items():
    start = time.perf_counter()
    results[name] = {**evaluate(composites, segment, threshold),
                     "seconds": time.perf_counter() - start}
    if on_result:
      on_result(name, results[name])
  return results


def evaluate(composites, segment, threshold=THRESHOLD):
  """Scores ``segment`` (fn(images, pairs) -> P(foreground) [P, S, S]) on ``composites``.

  Returns {"own" / "pasted": {"classes": ``metrics.group_means`` table, "average"},
  "average": {"jaccard", "precision"}: the mean of the two targets' class averages (at
  most 0.5 for a segmenter that ignores the partner), "partner_effect": {"classes": {class:
  value}, "average"}, "images": T}. The partner effect of a composite is how much each
  object's Jaccard rises when the partner shows its class rather than the other one,
  ((J(P_own, A) - J(P_pasted, A)) + (J(P_pasted, B) - J(P_own, B))) / 2 with P_x the map
  of the pair whose target is x, A its own object and B the pasted one: 0 for every
  partner-blind segmenter, 1 for a perfect co-segmenter.
  """
  pairs = np.concatenate([composites.pairs(t) for t in TARGETS])
  probs = np.split(segment(composites.images, pairs), len(TARGETS))  # one encoding pass
  predicted = {t: maps.binarize(target_probs, threshold)
               for t, target_probs in zip(TARGETS, probs)}
  counts = {(t, u): metrics.counts(predicted[t], composites.targets(u))
            for t in TARGETS for u in TARGETS}  # (pair's target, object scored)
  result = {}
  for t in TARGETS:
    table = metrics.group_means(counts[t, t], composites.classes)
    result[t] = {"classes": table, "average": metrics.class_average(table)}
  result["average"] = {k: float(np.mean([result[t]["average"][k] for t in TARGETS]))
                       for k in ("jaccard", "precision")}
  j = {key: metrics.per_image(c)["jaccard"] for key, c in counts.items()}
  effect = (j["own", "own"] - j["pasted", "own"] + j["pasted", "pasted"] - j["own", "pasted"]) / 2
  classes = np.asarray(composites.classes)
  by_class = {c: float(effect[classes == c].mean()) for c in dict.fromkeys(composites.classes)}
  result["partner_effect"] = {"classes": by_class,
                              "average": float(np.mean(list(by_class.values())))}
  result["images"] = len(composites.labels)
  return result
