"""Cached encoder features for training with a frozen encoder (``config.train.cache_features``).

With the encoder frozen its features depend on the image alone, so each distinct
(resized, flipped) image is encoded once: a batch of pairs becomes a batch of features
``f_A``, ``f_B`` for ``CoSegNet.decode_pair``, and a training step costs the attention
learner and decoder only. Images are recognised by a digest of their bytes; the cache
keeps the most recently used ``max_entries`` feature maps on the host.

``view_features`` encodes the augmented views and composites of ``coseg_jax.proj.real_photos.views``
once and keeps them on disk, for ``config.data.views``.
"""

import collections
import dataclasses
import functools
import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from coseg_jax import group
from coseg_jax.data import folders
from coseg_jax.proj.real_photos import views
from coseg_jax.models.coseg import CoSegNet


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, variables, images):
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


# ----------------------------------------------------------------------------- views
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
  bounds = group.chunks(len(images), chunk_size)
  out = []
  for start, stop in progress(bounds) if progress else bounds:
    f = _encode(model, encoder, group.pad(images[start:stop], chunk_size))
    out.append(jax.tree.map(lambda x, k=stop - start: np.asarray(x)[:k], f))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *out)


# Views encoded per compiled call: 8 ran at 5.9 views/s against 5.4 for 16 on the 2-core
# CPU (the VGG16 forward at 256 px; bench/bench_encode.py, docs/performance.md §4).
ENCODE_CHUNK = 8


def encode_images(model, variables, images, chunk_size=ENCODE_CHUNK, desc="encode"):
  """uint8 [N, S, S, 3] -> float16 encoder features [N, h, w, C] (a dict of such with a
  skip), with a progress bar."""
  progress = functools.partial(tqdm.tqdm, desc=desc, leave=False)
  features = encode_chunks(model, encoder_variables(variables), images, chunk_size, progress)
  return jax.tree.map(lambda x: x.astype(np.float16), features)


def _digest(*parts):
  h = hashlib.blake2b(digest_size=12)
  for part in parts:
    h.update(part if isinstance(part, bytes) else json.dumps(part, default=str).encode())
  return h.hexdigest()


def default_cache_dir():
  """``$XDG_CACHE_HOME/coseg_jax/views`` (``~/.cache/coseg_jax/views``)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "coseg_jax", "views")


def file_digests(dataset):
  """[(path under the dataset's root, digest of the file's bytes)] of every image and mask:
  the same for a copy of the data elsewhere or with new times, different if a byte changes."""
  root = pathlib.Path(dataset.root).absolute()
  return [(str(p.absolute().relative_to(root)), _digest(p.read_bytes()))
          for g in dataset.groups for p in (*g.images, *g.masks)]


def view_cache_path(dataset, what, model, variables, cache_dir=""):
  """``<cache_dir>/views-<key>.npz``: the key covers the files (``file_digests``), ``what``
  is rendered (any JSON-able description), the encoder and its weights."""
  files = file_digests(dataset)
  encoder = jax.tree.leaves(variables["params"]["encoder"])
  encoder_config = (model.encoder_widths, model.encoder_convs, model.encoder_batch_norm)
  if model.skip:  # only then: caches of models without a skip keep their names
    encoder_config += (model.skip,)
  key = _digest(files, what, encoder_config, *(np.asarray(x).tobytes() for x in encoder))
  return os.path.join(cache_dir or default_cache_dir(), f"views-{key}.npz")


def _cached_views(path, render, model, variables):
  """(Views, float16 features) read from ``path``, or rendered, encoded and written there."""
  if os.path.isfile(path):
    with np.load(path) as saved:
      arrays = {k: saved[k] for k in saved.files}
    features = loaded_features(arrays)
    return views.Views(images=None, **arrays), features
  rendered = render()
  # Encoded in float32 whatever the model's compute dtype: on the CPU, XLA's bfloat16
  # convolutions are slower than its float32 ones.
  features = encode_images(model.clone(dtype=jnp.float32), variables, rendered.images,
                           desc="encode views")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = f"{path}.{os.getpid()}.tmp.npz"
  try:
    np.savez(partial, **saved_features(features),
             **{k: getattr(rendered, k) for k in VIEW_FIELDS})
    os.replace(partial, path)
  except BaseException:  # a full disk, an interrupt: no partial file left behind
    if os.path.exists(partial):
      os.remove(partial)
    raise
  return rendered, features


def view_features(dataset, view_config, model, variables, cache_dir=""):
  """(``views.Views``, float16 features [V, h, w, C], a dict of such with a skip) of a
  folder dataset's views.

  Rendered and encoded once, then read from ``<cache_dir>/views-<key>.npz``
  (``view_cache_path``): the key covers what the features depend on (not the attention
  or decoder, so their ablations share one cache). Written atomically: a killed build
  leaves no partial cache. The views' ``images`` are not kept (None when read from the
  cache).
  """
  def render():
    return views.render([folders.load_group(g) for g in dataset.groups], view_config)
  path = view_cache_path(dataset, dataclasses.asdict(view_config), model, variables, cache_dir)
  return _cached_views(path, render, model, variables)


VIEW_FIELDS = ("labels", "source", "own", "pasted")  # cached with the features (not the images)
SKIP_PREFIX = "features_"  # the cache's name of a skip's features, e.g. features_pool4


def saved_features(features):
  """Encoder features -> the cache's arrays: ``features`` (pool5) and ``features_<skip>``."""
  if not isinstance(features, dict):
    return {"features": features}
  return {"features": features["pool5"],
          **{SKIP_PREFIX + k: v for k, v in features.items() if k != "pool5"}}


def loaded_features(arrays):
  """The inverse of ``saved_features``: pops the features out of a cache's arrays."""
  skips = {k[len(SKIP_PREFIX):]: arrays.pop(k) for k in list(arrays) if k.startswith(SKIP_PREFIX)}
  pool5 = arrays.pop("features")
  return {"pool5": pool5, **skips} if skips else pool5
