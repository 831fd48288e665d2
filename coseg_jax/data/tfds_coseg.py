r"""TFDS builders of the co-segmentation datasets, read through ``tfds.data_source``.

Optional extra ``[tfds]`` (tensorflow-datasets, array_record); TensorFlow is NOT needed:
every feature is a ``tfds.features.Tensor`` (``tfds.features.Image`` would need TF to
encode), records are written as ``array_record`` and read back as numpy by
``tfds.data_source`` with random access, which ``coseg_jax.data.pipeline`` maps with grain
like its other sources. Nothing is downloaded: both builders read a manual directory.

* ``voc2012_coseg/<S>``: a local VOCdevkit (``coseg_jax.data.voc``). One record per image
  of each split (train, val, test = the seeded halves of val.txt), in sorted id order:
  ``id``, ``image`` uint8 [S, S, 3] (bilinear), ``labels`` uint8 [S, S] (VOC class
  indices, nearest, 255 void) and ``classes`` bool [20] (the classes present at full
  size). The split's ids and class sets are also kept in the dataset metadata, from which
  the pair index is rebuilt with ``voc.all_pairs`` (or ``voc.read_pairs`` for a pair list):
  the same pairs and masks as ``dataset="voc"``, at S x S.
* ``coseg_folder/<name>_<S>``: a folder benchmark in any layout of
  ``coseg_jax.data.folders`` (iCoseg, MSRC, Internet, PASCAL-VOC10 co-seg, your own). One
  split, ``groups``, one record per image, group by group: ``group``, ``file``, ``image``
  uint8 [S, S, 3], ``mask`` uint8 [S, S] (1 object, 0 not, 255 everywhere for a layout
  without masks) and ``full_mask`` uint8 [H, W] at the file's size (zlib), so that group
  evaluation still scores at the original resolution. The pairs are every unordered pair
  within each group (``folders.group_pairs``), for every split.

Build (``voc2012_coseg`` has a config per size in ``SIZES``, and takes any other size;
``coseg_folder`` configs are named by ``--name`` and the size, one per benchmark folder)::

  python -m coseg_jax.apps.tfds_build --dataset=voc2012_coseg --size=512 \
      --manual_dir=/data/VOCdevkit --data_dir=~/tensorflow_datasets
  python -m coseg_jax.apps.tfds_build --dataset=coseg_folder --name=icoseg --size=512 \
      --manual_dir=/data/iCoseg --data_dir=~/tensorflow_datasets

then train or evaluate with ``--config.data.dataset=tfds
--config.data.tfds.name=voc2012_coseg/512 --config.data.tfds.data_dir=~/tensorflow_datasets``.
"""

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from coseg_jax.constants import IGNORE
from coseg_jax.data import folders
from coseg_jax.data import images
from coseg_jax.data import resize
from coseg_jax.data import voc
from coseg_jax.errors import BadValue

SIZES = (64, 128, 256, 512)
FOLDER_SPLIT = "groups"
FILE_FORMAT = "array_record"
VOC_SPLIT_SEED = 0  # the seed of voc.split_ids that the voc2012_coseg builder uses
_VERSION = tfds.core.Version("1.0.0")


class SizeConfig(tfds.core.BuilderConfig):
  """A builder config: images and masks stored at ``size`` x ``size``; folder options."""

  def __init__(self, *, size, layout="auto", on_mismatch="error", **kwargs):
    super().__init__(**kwargs)
    self.size, self.layout, self.on_mismatch = int(size), layout, on_mismatch


def _array(*shape):
  """A uint8 array feature stored as raw bytes (``Encoding.BYTES``): without it TFDS writes
  one int64 per value, 17x slower to read back (measured at 512 x 512 x 3)."""
  return tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES)


class Voc2012Coseg(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 co-segmentation images, labels and class sets (paper §4.1)."""

  VERSION = _VERSION
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("manual_dir: a local VOCdevkit (or its VOC2012 folder) from "
                                  "the official VOC2012 trainval tar (see docs/data.md)")
  BUILDER_CONFIGS = [SizeConfig(name=str(s), size=s, description=f"{s}x{s}") for s in SIZES]

  def _info(self):
    size = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "image": _array(size, size, 3),
            "labels": _array(size, size),
            "classes": tfds.features.Tensor(shape=(len(voc.CLASS_NAMES),), dtype=np.bool_)}),
        metadata=tfds.core.MetadataDict(), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    root = voc.find_root(dl_manager.manual_dir)
    self.info.metadata.update(kind="voc", size=self.builder_config.size,
                              split_seed=VOC_SPLIT_SEED)
    generators = {}
    for split in voc.SPLITS:
      dataset = voc.load_pairs(root, split, split_seed=VOC_SPLIT_SEED)
      self.info.metadata[split] = {"ids": list(dataset.ids),
                                   "classes": [list(dataset.index[i]) for i in dataset.ids]}
      generators[split] = self._generate_examples(root, dataset.ids, dataset.index)
    return generators

  def _generate_examples(self, root, ids, index):
    size = self.builder_config.size
    for n, image_id in enumerate(ids):
      image, labels = voc.read_example(root, image_id)
      classes = np.zeros(len(voc.CLASS_NAMES), bool)
      classes[[c - 1 for c in index[image_id]]] = True
      yield f"{n:07d}", {"id": image_id, "image": resize.resize_image(image, size),
                         "labels": resize.resize_mask(labels, size), "classes": classes}


class CosegFolder(tfds.core.GeneratorBasedBuilder):
  """Groups of images and masks from a benchmark folder (``coseg_jax.data.folders``)."""

  VERSION = _VERSION
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("manual_dir: the benchmark folder in one of the layouts of "
                                  "coseg_jax.data.folders (see docs/data.md)")

  def _info(self):
    size = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            "group": tfds.features.Text(), "file": tfds.features.Text(),
            "image": _array(size, size, 3), "mask": _array(size, size),
            "full_mask": tfds.features.Tensor(shape=(None, None), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.ZLIB)}),
        metadata=tfds.core.MetadataDict(), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    dataset = folders.scan(dl_manager.manual_dir, layout=config.layout,
                           on_mismatch=config.on_mismatch)
    self.info.metadata.update(
        kind="folder", size=config.size, layout=dataset.layout, has_masks=dataset.has_masks,
        groups=[g.name for g in dataset.groups],
        files=[[p.name for p in g.images] for g in dataset.groups])
    return {FOLDER_SPLIT: self._generate_examples(dataset)}

  def _generate_examples(self, dataset):
    size, n = self.builder_config.size, 0
    for group in dataset.groups:
      loaded = folders.load_group(group)
      masks = loaded["masks"] or [None] * len(loaded["images"])
      for name, image, mask in zip(loaded["files"], loaded["images"], masks):
        full = (np.full(image.shape[:2], IGNORE, np.uint8) if mask is None
                else mask.astype(np.uint8))
        yield f"{n:07d}", {"group": group.name, "file": name,
                           "image": resize.resize_image(image, size),
                           "mask": resize.resize_mask(full, size), "full_mask": full}
        n += 1


def folder_config(name, size, layout="auto", on_mismatch="error"):
  """The ``coseg_folder`` config ``<name>_<size>`` (any name: one per benchmark folder)."""
  return SizeConfig(name=f"{name}_{size}", size=size, layout=layout, on_mismatch=on_mismatch,
                    description=f"{name} at {size}x{size}")


def build(dataset, manual_dir, data_dir, *, size, name="", layout="auto", on_mismatch="error"):
  """Builds ``voc2012_coseg/<size>`` or ``coseg_folder/<name>_<size>`` -> its TFDS name."""
  folder = pathlib.Path(manual_dir).expanduser()
  if not folder.is_dir() or not any(folder.iterdir()):
    raise images.MissingDataError(f"manual_dir {manual_dir} is not a folder or is empty: give "
                                  "the VOCdevkit or the benchmark folder to build from")
  if dataset == "voc2012_coseg":
    config = (str(size) if size in SIZES
              else SizeConfig(name=str(size), size=size, description=f"{size}x{size}"))
    builder = Voc2012Coseg(config=config, data_dir=data_dir, file_format=FILE_FORMAT)
  elif dataset == "coseg_folder":
    if not name:
      raise BadValue("coseg_folder needs a name for the folder (e.g. icoseg, msrc)")
    builder = CosegFolder(config=folder_config(name, size, layout, on_mismatch),
                          data_dir=data_dir, file_format=FILE_FORMAT)
  else:
    raise BadValue(f"unknown TFDS dataset {dataset!r}; expected voc2012_coseg or coseg_folder")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(folder)))
  return f"{builder.name}/{builder.builder_config.name}"


# ----------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class Stored:
  """A built dataset: its name, metadata and TFDS builder (random-access splits)."""
  name: str
  metadata: dict
  builder: object

  @property
  def kind(self):
    return self.metadata["kind"]

  def split(self, split, skip=()):
    """The data source holding ``split`` (a folder dataset has one for every split);
    the features in ``skip`` are left undecoded."""
    return self.builder.as_data_source(
        split=FOLDER_SPLIT if self.kind == "folder" else split,
        decoders={name: tfds.decode.SkipDecoding() for name in skip} or None)


def load(name, data_dir=""):
  """The built dataset ``name`` (e.g. "voc2012_coseg/512") in ``data_dir`` -> ``Stored``."""
  location = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
  try:
    builder = tfds.builder(name, data_dir=str(pathlib.Path(data_dir).expanduser()) if data_dir
                           else None)
    if not builder.is_prepared():
      raise FileNotFoundError("not built")
  except (FileNotFoundError, ValueError, tfds.core.registered.DatasetNotFoundError) as e:
    raise images.MissingDataError(
        f"config.data.tfds.name={name!r}: no such built TFDS dataset in {location} ({e}); "
        "build it with python -m coseg_jax.apps.tfds_build (see docs/data.md)") from e
  metadata = dict(builder.info.metadata)
  return Stored(name, metadata, builder)


def voc_pairs(stored, split, pairs_file=None):
  """(ids, {id: classes}, int32 [P, 2] pairs) of a VOC split, as ``voc.load_pairs`` gives."""
  entry = stored.metadata[split]
  ids = list(entry["ids"])
  index = {i: tuple(c) for i, c in zip(ids, entry["classes"])}
  pairs = voc.read_pairs(pairs_file, index, ids) if pairs_file else voc.all_pairs(index, ids)
  return ids, index, pairs


def folder_pairs(stored):
  """int32 [P, 2] record positions of every unordered pair within each group."""
  files = stored.metadata["files"]
  groups = [folders.Group(name, tuple(names), None)
            for name, names in zip(stored.metadata["groups"], files)]
  offsets = np.cumsum([0] + [len(names) for names in files])
  rows = folders.group_pairs(groups)
  return np.stack([offsets[rows[:, 0]] + rows[:, 1], offsets[rows[:, 0]] + rows[:, 2]],
                  axis=1).astype(np.int32).reshape(-1, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsPairs:
  """The pairs of one split of a built dataset, addressable like ``voc.VOCPairs``.

  ``pairs[i]`` -> dict ``image_a``/``image_b`` uint8 [S, S, 3], ``mask_a``/``mask_b``
  uint8 [S, S] (0, 1, 255 ignore), ``index``: i. ``classes`` (VOC only) holds each
  record's class set, from which a pair's mask is the union of its shared classes.
  """
  records: object
  pairs: np.ndarray
  image_names: tuple
  classes: tuple | None

  def __len__(self):
    return len(self.pairs)

  def names(self, i):
    """The image names (VOC ids, or group/file) of pair ``i``."""
    a, b = self.pairs[i]
    return self.image_names[a], self.image_names[b]

  def _side(self, position, shared):
    record = self.records[int(position)]
    if self.classes is None:
      return record["image"], record["mask"]
    return record["image"], voc.cosegmentation_mask(record["labels"], shared)

  def __getitem__(self, i):
    a, b = self.pairs[i]
    shared = (sorted(set(self.classes[a]) & set(self.classes[b])) if self.classes is not None
              else None)
    image_a, mask_a = self._side(a, shared)
    image_b, mask_b = self._side(b, shared)
    return {"image_a": image_a, "image_b": image_b, "mask_a": mask_a, "mask_b": mask_b,
            "index": np.int32(i)}


def pair_source(config, split):
  """``TfdsPairs`` of ``split`` for a resolved ``config.data`` with dataset "tfds"."""
  stored = load(config.tfds.name, config.tfds.data_dir)
  records = stored.split(split, skip=() if stored.kind == "voc" else ("full_mask",))
  if stored.kind == "voc":
    if stored.metadata["split_seed"] != config.voc.split_seed:
      raise BadValue(f"config.data.voc.split_seed={config.voc.split_seed}: {stored.name} was "
                     f"built with the val/test split seed {stored.metadata['split_seed']}")
    pairs_file = f"{config.voc.pairs_dir}/{split}.txt" if config.voc.pairs_dir else None
    ids, index, pairs = voc_pairs(stored, split, pairs_file)
    return TfdsPairs(records, pairs, tuple(ids), tuple(index[i] for i in ids))
  names = tuple(f"{g}/{f}" for g, files in zip(stored.metadata["groups"], stored.metadata["files"])
                for f in files)
  return TfdsPairs(records, folder_pairs(stored), names, None)


def kind(config):
  """"voc" or "folder": what the built dataset of ``config.tfds.name`` holds."""
  return load(config.tfds.name, config.tfds.data_dir).kind


def iterate_groups(config):
  """Yields the groups of a built folder dataset like ``pipeline.iterate_groups``.

  ``images`` are the stored S x S images; ``masks`` are at the files' original size
  (None for a layout without masks); ``inputs`` are resized to ``config.image_size``.
  """
  stored = load(config.tfds.name, config.tfds.data_dir)
  if stored.kind != "folder":
    raise BadValue(f"config.data.tfds.name={stored.name!r} holds VOC 2012 pairs, which have "
                   "no groups; use a coseg_folder dataset")
  records, start = stored.split(FOLDER_SPLIT), 0
  for name, files in zip(stored.metadata["groups"], stored.metadata["files"]):
    group = [records[n] for n in range(start, start + len(files))]
    start += len(files)
    stored_images = [r["image"] for r in group]
    yield {"name": name, "files": list(files), "images": stored_images,
           "masks": [r["full_mask"].astype(bool) for r in group]
           if stored.metadata["has_masks"] else None,
           "inputs": np.stack([resize.resize_image(image, config.image_size)
                                for image in stored_images])}
