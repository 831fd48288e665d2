"""Cached encoder features for training with a frozen encoder (``config.train.cache_features``).

With the encoder frozen its features depend on the image alone, so each distinct
(resized, flipped) image is encoded once: a batch of pairs becomes a batch of features
``f_A``, ``f_B`` for ``CoSegNet.decode_pair``, and a training step costs the attention
learner and decoder only. Images are recognised by a digest of their bytes; the cache
keeps the most recently used ``max_entries`` feature maps on the host.

``encode_images`` encodes a set of images chunk by chunk, for what encodes its own
training images once (the real-photo recipe's views).
"""

import collections
import functools
import hashlib

import jax
import numpy as np
import tqdm

from coseg_jax import group
from coseg_jax.errors import BadValue
from coseg_jax.models.coseg import CoSegNet


@functools.partial(jax.jit, static_argnums=0)
def encode(model, variables, images):
  """``CoSegNet.encode``, jitted: images [K, S, S, 3] -> features [K, h, w, C]."""
  return model.apply(variables, images, method=CoSegNet.encode)


class FeatureCache:
  """Replaces the images of a pair batch by their (cached) frozen-encoder features."""

  def __init__(self, model, variables, max_entries=50_000, chunk_size=4):
    self.model, self.max_entries, self.chunk_size = model, max_entries, chunk_size
    self.variables = encoder_variables(variables)
    self.entries = collections.OrderedDict()
    self.hits = self.misses = 0

  def encode(self, images):
    """Images [N, S, S, 3] (uint8, or normalised float) -> encoder features [N, h, w, C]
    (numpy), through the cache. Only the images not in the cache are encoded,
    ``chunk_size`` at a time."""
    keys = [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]
    missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
    if missing:
      rows = [keys.index(k) for k in missing]
      features = encode_chunks(self.model, self.variables, images[rows], self.chunk_size)
      for i, k in enumerate(missing):
        self.entries[k] = group.rows(features, i)
    self.misses += len(missing)
    self.hits += len(keys) - len(missing)
    out = jax.tree.map(lambda *rows: np.stack(rows), *(self.entries[k] for k in keys))
    for k in keys:
      self.entries.move_to_end(k)
    while len(self.entries) > self.max_entries:
      self.entries.popitem(last=False)
    return out

  def __call__(self, batch):
    """A pair batch -> ``{"features_a", "features_b", "mask_a", "mask_b"}``."""
    features = self.encode(np.concatenate([batch["image_a"], batch["image_b"]]))
    n = len(batch["image_a"])
    return {"features_a": group.rows(features, slice(None, n)),
            "features_b": group.rows(features, slice(n, None)), "mask_a": batch["mask_a"],
            "mask_b": batch["mask_b"]}


# ----------------------------------------------------------------------------- encoding
def encoder_variables(variables):
  """The encoder's parameters of a model's variables, and its batch statistics if any."""
  encoder = {"params": {"encoder": variables["params"]["encoder"]}}
  if "encoder" in variables.get("batch_stats", {}):
    encoder["batch_stats"] = {"encoder": variables["batch_stats"]["encoder"]}
  return encoder


def encode_chunks(model, encoder, images, chunk_size, progress=None):
  """Images [N, S, S, 3] -> float32 encoder features [N, h, w, C] (numpy; a dict of such
  with a skip), ``chunk_size`` at a time, the last chunk padded (one compiled shape);
  ``progress`` wraps the chunks."""
  chunks = group.map_chunks(functools.partial(encode, model, encoder), images, chunk_size,
                            progress)
  out = [jax.tree.map(lambda x, k=k: np.asarray(x)[:k], f) for f, k in chunks]
  return jax.tree.map(lambda *xs: np.concatenate(xs), *out)


# Views encoded per compiled call: the fastest on the 2-core CPU (the VGG16 forward at
# 256 px; python -m bench.bench_encode, docs/performance.md §4).
ENCODE_CHUNK = 8


def encode_images(model, variables, images, chunk_size=ENCODE_CHUNK, desc="encode", out=None,
                  count=None):
  """uint8 images -> float16 encoder features [N, h, w, C] (a dict of such with a skip),
  ``chunk_size`` at a time with a progress bar, the last chunk padded (one compiled shape).

  ``images`` is an array [N, S, S, 3] or an iterable of ``count`` images [S, S, 3], taken a
  chunk at a time. The features are filled chunk by chunk (only one chunk is ever in
  float32) into what ``out(rows)`` makes from the first chunk's features (their row shapes
  are ``rows``, a tree of [1, h, w, C] arrays): arrays, or writers of files on disk
  (``write(rows)``), so that the features are never all in memory; it is returned.
  """
  count = len(images) if count is None else count
  encoder, filled, start = encoder_variables(variables), None, 0
  chunks = tqdm.tqdm(_stacked_chunks(images, chunk_size), total=-(-count // chunk_size),
                     desc=desc, leave=False)
  for chunk in chunks:
    k = len(chunk)
    f = encode(model, encoder, group.pad(chunk, chunk_size))
    f = jax.tree.map(lambda x, k=k: np.asarray(x)[:k].astype(np.float16), f)
    if filled is None:
      filled = (out or functools.partial(_in_memory, count))(group.rows(f, slice(0, 1)))
    jax.tree.map(lambda o, x, s=start: _put(o, s, x), filled, f)
    start += k
  if start != count:
    raise BadValue(f"{start} images encoded, {count} expected")
  return filled


def _stacked_chunks(images, chunk_size):
  """[K, S, S, 3] arrays of up to ``chunk_size`` images taken from an iterable."""
  chunk = []
  for image in images:
    chunk.append(image)
    if len(chunk) == chunk_size:
      yield np.stack(chunk)
      chunk = []
  if chunk:
    yield np.stack(chunk)


def _in_memory(n, rows):
  return jax.tree.map(lambda x: np.empty((n,) + x.shape[1:], np.float16), rows)


def _put(target, start, rows):
  """Rows written at ``start`` of an array, or appended by a writer (``write``)."""
  if hasattr(target, "write"):
    target.write(rows)
  else:
    target[start:start + len(rows)] = rows
