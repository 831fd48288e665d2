"""Cached encoder features for training with a frozen encoder (``config.train.cache_features``).

With the encoder frozen its features depend on the image alone, so each distinct
(resized, flipped) image is encoded once: a batch of pairs becomes a batch of features
``f_A``, ``f_B`` for ``CoSegNet.decode_pair``, and a training step costs the attention
learner and decoder only. Images are recognised by a digest of their bytes; the cache
keeps the most recently used ``max_entries`` feature maps on the host.
"""

import collections
import functools
import hashlib

import jax
import numpy as np

from coseg_jax.models.coseg import CoSegNet


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, variables, images):
  return model.apply(variables, images, method=CoSegNet.encode)


class FeatureCache:
  """Replaces the images of a pair batch by their (cached) frozen-encoder features."""

  def __init__(self, model, variables, max_entries=50_000):
    self.model, self.max_entries = model, max_entries
    self.variables = {"params": {"encoder": variables["params"]["encoder"]}}
    if "encoder" in variables.get("batch_stats", {}):
      self.variables["batch_stats"] = {"encoder": variables["batch_stats"]["encoder"]}
    self.entries = collections.OrderedDict()
    self.hits = self.misses = 0

  def encode(self, images):
    """float32 [N, S, S, 3] -> encoder features [N, h, w, C] (numpy), through the cache."""
    keys = [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]
    missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
    if missing:
      rows = [keys.index(k) for k in missing]
      padded = images[rows + rows[:1] * (len(images) - len(rows))]  # one shape: one compile
      features = np.asarray(_encode(self.model, self.variables, padded))
      for k, f in zip(missing, features):
        self.entries[k] = f
    self.misses += len(missing)
    self.hits += len(keys) - len(missing)
    out = np.stack([self.entries[k] for k in keys])
    for k in keys:
      self.entries.move_to_end(k)
    while len(self.entries) > self.max_entries:
      self.entries.popitem(last=False)
    return out

  def __call__(self, batch):
    """A pair batch -> ``{"features_a", "features_b", "mask_a", "mask_b"}``."""
    features = np.split(self.encode(np.concatenate([batch["image_a"], batch["image_b"]])), 2)
    return {"features_a": features[0], "features_b": features[1], "mask_a": batch["mask_a"],
            "mask_b": batch["mask_b"]}
