"""The input pipeline: pair datasets -> resized, flipped, sharded uint8 batches.

``build(data_config, split=..., batch_size=..., seed=...)`` returns an iterator of
batches of pairs, each a dict of numpy arrays (B = ``batch_size // shard_count``)::

  image_a, image_b  uint8 [B, S, S, 3]    RGB; the jitted steps normalise them
                                          (``CoSegNet.encode``)
  mask_a, mask_b    uint8 [B, S, S]       1 co-segmented object, 0 not, 255 ignore
  index             int32 [B]             pair index in the split's pair list (-1: padding)
  valid             bool [B]              False for padding pairs (last eval batch)

Images are resized to S x S with bilinear filtering (PIL, antialiased when shrinking),
masks with nearest neighbour. "train" is endless: the pairs are reshuffled every
epoch and each image is flipped left-right independently with probability 1/2 (if
``flip``). "val" and "test" are one pass in a fixed order without flipping; their last
global batch is padded to full size with ``valid=False`` pairs whose masks are all
255, so every pair is seen exactly once and every batch has the same shape.

The iterator is a ``grain.DatasetIterator``: ``get_state()`` returns a small JSON-able
dict and ``set_state(state)`` restores it, after which the batches are bit-identical
to those of an uninterrupted run (the order is a pure function of ``seed``). Worker
threads (``num_threads``) fill a buffer of ``prefetch`` batches ahead of use.

With ``shard_count`` hosts, host ``shard_index`` gets rows ``[shard_index * B,
(shard_index + 1) * B)`` of every global batch of ``batch_size`` pairs, so the
concatenation over hosts is exactly the unsharded batch.

``iterate_groups(data_config, split=...)`` yields whole groups for group
co-segmentation and evaluation.
"""

import functools
import math

import grain
import numpy as np

from coseg_jax import config as config_lib
from coseg_jax.constants import IGNORE, SPLITS
from coseg_jax.data import folders
from coseg_jax.data import synthetic
from coseg_jax.data import voc
from coseg_jax.data import resize
from coseg_jax.errors import BadValue, MissingExtra


def _check_split(split):
  if split not in SPLITS:
    raise BadValue(f"split={split!r}: expected one of {SPLITS}")


def _tfds():
  """``coseg_jax.data.tfds_coseg``; a one-line error when the [tfds] extra is missing."""
  try:
    from coseg_jax.data import tfds_coseg  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise MissingExtra(f"config.data.dataset='tfds' needs the [tfds] extra (pip install "
                       f"'coseg_jax[tfds]'): {e}") from e
  return tfds_coseg


def dataset_kind(data_config):
  """"synthetic", "voc" or "folder": the data behind ``data_config`` (a "tfds" dataset
  holds VOC pairs or folder groups)."""
  config = config_lib.resolve_data(data_config)
  return _tfds().kind(config) if config.dataset == "tfds" else config.dataset


def folder_dataset(config):
  return folders.scan(config.root, layout=config.folder.layout, groups=config.groups or None,
                      on_mismatch=config.folder.on_mismatch)


def _eval_positions(num_pairs, count):
  """Evenly spaced ``count`` of the positions 0..num_pairs-1 (all if ``count`` is 0 or more)."""
  if not count or count >= num_pairs:
    return np.arange(num_pairs)
  return np.linspace(0, num_pairs - 1, count).round().astype(int)


def pair_source(data_config, split):
  """All pairs of ``split`` as a sequence of raw samples (uint8 images at file size).

  VOC uses its train / val / test splits; a folder dataset has one set of pairs
  (all unordered pairs within each group) for every split; the synthetic set has a
  disjoint stream of pairs per split. A "tfds" dataset holds VOC or folder pairs,
  stored at its build size (``tfds_coseg.TfdsPairs``).
  """
  _check_split(split)
  config = config_lib.resolve_data(data_config)
  evaluating = split != "train"
  if config.dataset == "synthetic":
    count = config.synthetic.num_pairs if evaluating else config.synthetic.num_train_pairs
    return synthetic.SyntheticPairs(count, config.image_size, config.synthetic.num_categories,
                                    config.synthetic.seed, split)
  if config.dataset == "tfds":
    return _tfds().pair_source(config, split)
  if config.dataset == "voc":
    pairs_file = f"{config.voc.pairs_dir}/{split}.txt" if config.voc.pairs_dir else None
    return voc.load_pairs(config.root, split, split_seed=config.voc.split_seed,
                          cache_file=config.voc.index_file or None, pairs_file=pairs_file)
  dataset = folder_dataset(config)
  if not dataset.has_masks and not evaluating:
    raise BadValue(f"{config.root}: layout {dataset.layout!r} has no masks, so it cannot be "
                   "used for training")
  return folders.FolderPairs.from_dataset(dataset)


def _example(source, size, index):
  """Pair ``index`` of ``source`` resized, as uint8 images and masks."""
  sample = source[index]
  return {
      "image_a": resize.resize_image(sample["image_a"], size),
      "image_b": resize.resize_image(sample["image_b"], size),
      "mask_a": resize.resize_mask(sample["mask_a"], size),
      "mask_b": resize.resize_mask(sample["mask_b"], size),
      "index": np.int32(index),
      "valid": np.bool_(True),
  }


def _padding(size):
  """A pair that fills the last eval batch: black images, all-ignore masks, valid=False."""
  image, mask = np.zeros((size, size, 3), np.uint8), np.full((size, size), IGNORE, np.uint8)
  return {"image_a": image, "image_b": image, "mask_a": mask, "mask_b": mask,
          "index": np.int32(-1), "valid": np.bool_(False)}


def _flip(example, rng):
  """Flips image a (with its mask) and image b (with its) left-right, each with p = 1/2."""
  example = dict(example)
  for side in ("a", "b"):
    if rng.uniform() < 0.5:
      example[f"image_{side}"] = example[f"image_{side}"][:, ::-1]
      example[f"mask_{side}"] = example[f"mask_{side}"][:, ::-1]
  return example


def _load_or_pad(source, positions, size, index):
  return _example(source, size, positions[index]) if index < len(positions) else _padding(size)


def dataset(data_config, *, split, batch_size, seed, shard_index=0, shard_count=1):
  """The batches of ``build`` as a ``grain.MapDataset`` (``len`` = batches per pass).

  Same arguments as ``build``; for "train" the length is practically infinite.
  """
  _check_split(split)
  config = config_lib.resolve_data(data_config)
  if not 0 <= shard_index < shard_count:
    raise BadValue(f"shard_index={shard_index}, shard_count={shard_count}: expected "
                   "0 <= shard_index < shard_count")
  if batch_size <= 0 or batch_size % shard_count:
    raise BadValue(f"batch_size={batch_size}: expected a positive multiple of "
                   f"shard_count={shard_count} (it is the global batch size)")
  if not 0 <= seed < 2**32:
    raise BadValue(f"seed={seed}: expected an integer in [0, 2**32)")
  source = pair_source(config, split)
  if not len(source):
    raise BadValue(f"no pairs in the {split} split of {config.dataset} {config.root}")
  size = config.image_size
  if split == "train":
    pairs = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat()
    pairs = pairs.map(functools.partial(_example, source, size))
    if config.flip:
      pairs = pairs.random_map(_flip, seed=seed)
  else:
    positions = _eval_positions(len(source), config.max_eval_pairs)
    padded = math.ceil(len(positions) / batch_size) * batch_size
    pairs = grain.MapDataset.range(padded).map(
        functools.partial(_load_or_pad, source, positions, size))
  local = batch_size // shard_count
  batches = pairs.batch(local, drop_remainder=True)
  return batches[shard_index::shard_count]


def build(data_config, *, split, batch_size, seed, shard_index=0, shard_count=1):
  """An iterator of pair batches (see the module docstring) with get_state/set_state.

  Args:
    data_config: ``config.data`` (an ``ml_collections.ConfigDict`` or dict; keys and
      defaults in ``coseg_jax.config.default_config``).
    split: "train" (endless, shuffled, flipped), "val" or "test" (one pass, fixed
      order, no flip, last batch padded with ``valid=False``).
    batch_size: the global batch size, a multiple of ``shard_count``.
    seed: the order and flip seed, an integer in [0, 2**32).
    shard_index: this host's index, in [0, shard_count).
    shard_count: the number of hosts; each gets ``batch_size // shard_count`` rows of
      every global batch.

  Returns:
    a ``grain.DatasetIterator`` of dict batches, prefetched by worker threads.
  """
  config = config_lib.resolve_data(data_config)
  batches = dataset(config, split=split, batch_size=batch_size, seed=seed,
                    shard_index=shard_index, shard_count=shard_count)
  options = grain.ReadOptions(num_threads=config.num_threads, prefetch_buffer_size=config.prefetch)
  return iter(batches.to_iter_dataset(options))


def _with_inputs(group, size):
  """Adds ``inputs``: the group's images resized to S x S, uint8 [N, S, S, 3]."""
  group["inputs"] = np.stack([resize.resize_image(image, size) for image in group["images"]])
  return group


def iterate_groups(data_config, *, split="test"):
  """Yields each group of a folder or synthetic dataset as a dict.

  Keys: ``name`` (str), ``files`` (file names), ``images`` (uint8 [H, W, 3] list at
  the file's size), ``masks`` (bool [H, W] list, or None for a layout without masks),
  ``inputs`` (uint8 [N, S, S, 3]: the images resized for the model).
  Synthetic groups (``synthetic.num_groups`` of ``synthetic.group_size`` images) depend on
  ``split``; folder groups are the same for every split. A "tfds" folder dataset gives its
  stored S x S ``images`` and its masks at the original size (``tfds_coseg.iterate_groups``).
  """
  _check_split(split)
  config = config_lib.resolve_data(data_config)
  if config.dataset == "tfds":
    yield from _tfds().iterate_groups(config)
    return
  if config.dataset == "voc":
    raise BadValue("iterate_groups: VOC 2012 has no groups; use dataset 'folder' or "
                   "'synthetic' (VOC pairs come from build())")
  if config.dataset == "synthetic":
    settings = config.synthetic
    for index in range(settings.num_groups):
      group = synthetic.render_group(
          index, seed=settings.seed, split=split, image_size=config.image_size,
          num_categories=settings.num_categories, group_size=settings.group_size,
          common_fraction=settings.common_fraction)
      yield _with_inputs(group, config.image_size)
    return
  for group in folder_dataset(config).groups:
    yield _with_inputs(folders.load_group(group), config.image_size)
