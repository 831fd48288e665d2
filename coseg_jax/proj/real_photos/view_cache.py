"""The real-photo recipe's views, rendered and encoded once and kept on disk
(``config.data.views.cache_dir``), under a key of what the features depend on."""

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax.data import folders
from coseg_jax.errors import BadValue
from coseg_jax.proj.real_photos import row_files, views
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
  """``<cache_dir>/views-<key>``, a folder of ``.npy`` files: the key covers the files
  (``file_digests``), ``what`` is rendered (any JSON-able description), the encoder and its
  weights."""
  files = file_digests(dataset)
  encoder = jax.tree.leaves(variables["params"]["encoder"])
  encoder_config = (model.encoder_widths, model.encoder_convs, model.encoder_batch_norm)
  if model.skip:  # only then: caches of models without a skip keep their names
    encoder_config += (model.skip,)
  key = digest(files, what, encoder_config, *(np.asarray(x).tobytes() for x in encoder))
  return os.path.join(cache_dir or default_cache_dir(), f"views-{key}")


def cached_views(path, rows, model, variables):
  """(Views, float16 features) of the cache folder ``path``; if it is not there yet, the
  views ``rows()`` yields (as ``views.view_rows``) are encoded and written there first.

  The views' labels and features are ``row_files.RowFile``s (read by rows from disk). The
  views are streamed: rendered once to count them, then again a chunk at a time into the
  encoder, their features and labels written to disk as they come (rendering is < 0.5 %
  of the time: docs/performance.md §4). So neither building nor reading the cache holds
  the views' images or features in memory. A cache of an earlier version
  (``<path>.npz``) is rewritten as such a folder once.
  """
  if not os.path.isdir(path):
    if os.path.isfile(path + ".npz"):
      _write_atomically(path, functools.partial(_from_npz, path + ".npz"))
      os.remove(path + ".npz")
    else:
      _write_atomically(path, functools.partial(_encode_views, rows, model, variables))
  return read_cache(path)


def rows_of(dataset, make_rows, config):
  """A callable that returns ``make_rows(groups, config)`` of the dataset's groups (loaded
  once, on the first call)."""
  groups = []

  def rows():
    if not groups:
      groups.extend(folders.load_group(g) for g in dataset.groups)
    return make_rows(groups, config)
  return rows


def read_cache(path):
  """(``views.Views`` without images, features) of a cache folder, read by rows."""
  arrays = {}
  for name in sorted(os.listdir(path)):
    key = name.removesuffix(".npy")
    if key == "labels" or key.startswith("features"):
      arrays[key] = row_files.RowFile(os.path.join(path, name))
    else:
      arrays[key] = np.load(os.path.join(path, name))
  missing = set(VIEW_FIELDS + ("features",)) - set(arrays)
  if missing:
    raise BadValue(f"{path}: not a complete view cache (no {', '.join(sorted(missing))}); "
                   "delete it to encode the views again")
  features = loaded_features(arrays)
  return views.Views(images=None, **arrays), features


def _write_atomically(path, write):
  """``write(folder)`` into a temporary folder, then renamed to ``path``: a killed or
  failed build (a full disk) leaves nothing; of two runs building it at once, the first
  rename wins and the other run reads that one."""
  partial = f"{path}.{os.getpid()}.tmp"
  try:
    os.makedirs(partial)
    write(partial)
    try:
      os.rename(partial, path)
    except OSError:
      if not os.path.isdir(path):
        raise
  finally:
    shutil.rmtree(partial, ignore_errors=True)


def _encode_views(rows, model, variables, folder):
  count = sum(1 for _ in rows())
  labels, indices, writers = [], [], []

  def images():  # the views' images, their labels and indices written aside
    for image, view_labels, *index in rows():
      if not labels:
        labels.append(row_files.RowWriter(os.path.join(folder, "labels.npy"),
                                          (count,) + view_labels.shape, np.uint8))
      labels[0].write(view_labels[None])
      indices.append(index)
      yield image

  def open_writers(first):
    def writer(name, x):
      writers.append(row_files.RowWriter(os.path.join(folder, name + ".npy"),
                                         (count,) + x.shape[1:], np.float16))
      return writers[-1]
    return unsaved_features({k: writer(k, x) for k, x in saved_features(first).items()})
  # Encoded in float32 whatever the model's compute dtype: on the CPU, XLA's bfloat16
  # convolutions are slower than its float32 ones.
  encode_images(model.clone(dtype=jnp.float32), variables, images(), desc="encode views",
                out=open_writers, count=count)
  for w in labels + writers:
    w.close()  # checks that every row was written
  for k, column in zip(VIEW_FIELDS[1:], np.asarray(indices, np.int32).reshape(-1, 3).T):
    np.save(os.path.join(folder, k + ".npy"), column)


def _from_npz(npz, folder):
  with np.load(npz) as saved:
    for k in saved.files:  # one array in memory at a time
      np.save(os.path.join(folder, k + ".npy"), saved[k])


def view_features(dataset, view_config, model, variables, cache_dir=""):
  """(``views.Views``, float16 features [V, h, w, C], a dict of such with a skip) of a
  folder dataset's views.

  Rendered and encoded once, then read by rows from ``<cache_dir>/views-<key>/``
  (``view_cache_path``, ``cached_views``): the key covers what the features depend on (not
  the attention or decoder, so their ablations share one cache). Written atomically: a
  killed build leaves no partial cache. The views' ``images`` are not kept (None).
  """
  path = view_cache_path(dataset, dataclasses.asdict(view_config), model, variables, cache_dir)
  return cached_views(path, rows_of(dataset, views.view_rows, view_config), model, variables)


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
  return unsaved_features({k: arrays.pop(k) for k in list(arrays) if k.startswith("features")})


def unsaved_features(saved):
  """The cache's arrays of features -> encoder features (pool5, or a dict with a skip)."""
  skips = {k[len(SKIP_PREFIX):]: v for k, v in saved.items() if k.startswith(SKIP_PREFIX)}
  return {"pool5": saved["features"], **skips} if skips else saved["features"]
