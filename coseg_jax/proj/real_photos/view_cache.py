"""The real-photo recipe's views, rendered and encoded once and kept on disk
(``config.data.views.cache_dir``), under a key of what the features depend on."""

import dataclasses
import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax.data import folders
from coseg_jax.proj.real_photos import views
from coseg_jax.training.feature_cache import encode_images


def digest(*parts):
  """A hex digest of ``parts`` (bytes, or anything JSON-able)."""
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
  return [(str(p.absolute().relative_to(root)), digest(p.read_bytes()))
          for g in dataset.groups for p in (*g.images, *g.masks)]


def view_cache_path(dataset, what, model, variables, cache_dir=""):
  """``<cache_dir>/views-<key>.npz``: the key covers the files (``file_digests``), ``what``
  is rendered (any JSON-able description), the encoder and its weights."""
  files = file_digests(dataset)
  encoder = jax.tree.leaves(variables["params"]["encoder"])
  encoder_config = (model.encoder_widths, model.encoder_convs, model.encoder_batch_norm)
  if model.skip:  # only then: caches of models without a skip keep their names
    encoder_config += (model.skip,)
  key = digest(files, what, encoder_config, *(np.asarray(x).tobytes() for x in encoder))
  return os.path.join(cache_dir or default_cache_dir(), f"views-{key}.npz")


def cached_views(path, render, model, variables):
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
  return cached_views(path, render, model, variables)


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
