"""Groups of images with ground-truth masks stored as folders (iCoseg, MSRC, Internet, ...).

Three layouts, detected automatically (or named explicitly):

``separate`` (iCoseg, PASCAL-VOC10 co-seg)::

  root/images/<group>/<name>.jpg    root/masks/<group>/<name>.png

  (the mask folder may also be called ground_truth, groundtruth or gt; a single
  group may keep its files directly in images/ and masks/)

``groundtruth`` (Internet, MSRC)::

  root/<group>/<name>.jpg           root/<group>/GroundTruth/<name>.png

  (or root itself is one group: root/<name>.jpg, root/GroundTruth/<name>.png)

``plain`` (inference only, no masks)::

  root/<group>/<name>.jpg           or root/<name>.jpg (one group)

A group is named after its folder. Images and masks are matched by file stem
(``img_1001.jpg`` <-> ``img_1001.png``). An image without a mask, a mask without an
image, or an image and mask of different sizes is an error naming the files, or,
with ``on_mismatch="skip"``, is left out with a warning and recorded in
``FolderDataset.skipped``. Files without an image extension and hidden files are
ignored.
"""

import dataclasses
import itertools
import pathlib
import warnings

import numpy as np

from coseg_jax.data import images
from coseg_jax.errors import BadValue

LAYOUTS = ("auto", "separate", "groundtruth", "plain")
MISMATCH_POLICIES = ("error", "skip")
_MASK_DIR_NAMES = ("masks", "ground_truth", "groundtruth", "gt")
_GROUNDTRUTH_DIR = "groundtruth"
_LAYOUT_HELP = """expected one of these layouts:
  separate:    root/images/<group>/<name>.jpg + root/masks/<group>/<name>.png
  groundtruth: root/<group>/<name>.jpg + root/<group>/GroundTruth/<name>.png
  plain:       root/<group>/<name>.jpg or root/<name>.jpg (no masks)"""


@dataclasses.dataclass(frozen=True)
class Group:
  """The files of one group; ``masks`` is None for a layout without masks."""
  name: str
  images: tuple
  masks: tuple | None


@dataclasses.dataclass(frozen=True)
class FolderDataset:
  """The groups found under ``root`` and what was left out (``on_mismatch="skip"``)."""
  root: pathlib.Path
  layout: str
  groups: tuple
  skipped: tuple  # human-readable reasons, one per left-out file

  @property
  def has_masks(self):
    return all(g.masks is not None for g in self.groups)


def _child(folder, name):
  """The sub-folder of ``folder`` whose name equals ``name`` case-insensitively, or None."""
  matches = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == name]
  return matches[0] if matches else None


def _image_files(folder):
  return sorted(p for p in folder.iterdir() if p.is_file() and images.is_image_file(p))


def _subfolders(folder):
  return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _mask_root(root):
  for name in _MASK_DIR_NAMES:
    found = _child(root, name)
    if found is not None:
      return found
  return None


def detect_layout(root):
  """The layout of ``root`` (see the module docstring); raises if none fits."""
  root = pathlib.Path(root)
  if _child(root, "images") is not None and _mask_root(root) is not None:
    return "separate"
  if _child(root, _GROUNDTRUTH_DIR) is not None or any(
      _child(sub, _GROUNDTRUTH_DIR) is not None for sub in _subfolders(root)):
    return "groundtruth"
  if _image_files(root) or any(_image_files(sub) for sub in _subfolders(root)):
    return "plain"
  raise images.MissingDataError(f"no images found in {root}; {_LAYOUT_HELP}")


def _by_stem(files, folder):
  """{stem: path}; two files with one stem in a folder are ambiguous -> error."""
  stems = {}
  for path in files:
    if path.stem in stems:
      raise images.MaskMismatchError(
          f"{folder}: {stems[path.stem].name} and {path.name} have the same name stem, so "
          "which one pairs with its image/mask is ambiguous; remove or rename one")
    stems[path.stem] = path
  return stems


def _match(name, image_folder, mask_folder, problems):
  """The ``Group`` of ``image_folder`` with masks from ``mask_folder``; adds mismatches to ``problems``."""
  if not image_folder.is_dir():
    problems.extend(f"mask {m} has no image (no folder {image_folder})" for m in _image_files(mask_folder))
    return Group(name, (), ())
  image_files = _by_stem(_image_files(image_folder), image_folder)
  if mask_folder is None:
    return Group(name, tuple(image_files.values()), None)
  if not mask_folder.is_dir():
    problems.append(f"group {name}: images in {image_folder} but no mask folder {mask_folder}")
    return Group(name, (), ())
  mask_files = _by_stem(_image_files(mask_folder), mask_folder)
  for stem in sorted(set(mask_files) - set(image_files)):
    problems.append(f"mask {mask_files[stem]} has no image {image_folder / stem}.*")
  pairs = []
  for stem, image_path in image_files.items():
    if stem not in mask_files:
      problems.append(f"image {image_path} has no mask {mask_folder / stem}.*")
      continue
    image_hw, mask_hw = images.pair_sizes(image_path, mask_files[stem])
    try:
      images.check_sizes(image_path, image_hw, mask_files[stem], mask_hw)
    except images.MaskMismatchError as e:
      problems.append(str(e))
      continue
    pairs.append((image_path, mask_files[stem]))
  return Group(name, tuple(p for p, _ in pairs), tuple(m for _, m in pairs))


def _folders(root, layout):
  """[(group name, image folder, mask folder or None)] of ``root`` in ``layout``."""
  if layout == "separate":
    image_root, mask_root = _child(root, "images"), _mask_root(root)
    if image_root is None or mask_root is None:
      raise images.MissingDataError(
          f"{root}: layout 'separate' needs an images/ and a masks/ folder; {_LAYOUT_HELP}")
    if _image_files(image_root):
      return [(root.name, image_root, mask_root)]
    named = [(sub.name, sub, mask_root / sub.name) for sub in _subfolders(image_root)]
    return named + [(sub.name, image_root / sub.name, sub) for sub in _subfolders(mask_root)
                    if not (image_root / sub.name).is_dir()]
  if layout == "groundtruth":
    if _child(root, _GROUNDTRUTH_DIR) is not None:
      return [(root.name, root, _child(root, _GROUNDTRUTH_DIR))]
    return [(sub.name, sub, _child(sub, _GROUNDTRUTH_DIR) or sub / "GroundTruth")
            for sub in _subfolders(root) if _image_files(sub)]
  if _image_files(root):
    return [(root.name, root, None)]
  return [(sub.name, sub, None) for sub in _subfolders(root) if _image_files(sub)]


def parse_groups(groups):
  """A comma-separated string or a sequence of group names -> list ([] means all)."""
  if isinstance(groups, str):
    groups = groups.split(",")
  return [g.strip() for g in (groups or ()) if g.strip()]


def scan(root, *, layout="auto", groups=None, on_mismatch="error"):
  """Finds the groups of images (and masks) under ``root`` -> ``FolderDataset``.

  Args:
    root: the dataset folder.
    layout: one of ``LAYOUTS``; "auto" detects it.
    groups: group names to keep (comma-separated string or list); None/"" keeps all.
      An unknown name raises ``ValueError`` listing the available ones.
    on_mismatch: "error" raises ``MaskMismatchError`` for an image without a mask,
      a mask without an image or a size mismatch; "skip" leaves such files out with
      a warning and lists them in ``FolderDataset.skipped``.
  """
  root = pathlib.Path(root).expanduser()
  if layout not in LAYOUTS:
    raise BadValue(f"unknown folder layout {layout!r}; expected one of {LAYOUTS}")
  if on_mismatch not in MISMATCH_POLICIES:
    raise BadValue(f"unknown on_mismatch {on_mismatch!r}; expected one of {MISMATCH_POLICIES}")
  if not root.is_dir():
    raise images.MissingDataError(f"dataset folder {root} does not exist; {_LAYOUT_HELP}")
  layout = detect_layout(root) if layout == "auto" else layout
  folders = _folders(root, layout)
  if not folders:
    raise images.MissingDataError(f"no groups of images found in {root} (layout {layout}); {_LAYOUT_HELP}")
  wanted = parse_groups(groups)
  available = [name for name, _, _ in folders]
  unknown = [g for g in wanted if g not in available]
  if unknown:
    raise BadValue(f"unknown group(s) {', '.join(unknown)} in {root}; available groups: "
                   f"{', '.join(available)}")
  problems = []
  found = [_match(name, image_folder, mask_folder, problems)
           for name, image_folder, mask_folder in folders if not wanted or name in wanted]
  if problems and on_mismatch == "error":
    raise images.MaskMismatchError(
        f"{len(problems)} image/mask mismatch(es) in {root}:\n  " + "\n  ".join(problems)
        + "\n(pass on_mismatch='skip' to leave these files out)")
  if problems:
    warnings.warn(f"{root}: left out {len(problems)} file(s) without a partner or with a size "
                  "mismatch:\n  " + "\n  ".join(problems[:20]), stacklevel=2)
  kept = tuple(g for g in found if g.images)
  if not kept:
    raise images.MissingDataError(f"no usable images left in {root} (layout {layout})")
  return FolderDataset(root=root, layout=layout, groups=kept, skipped=tuple(problems))


def load_group(group):
  """Reads a group -> dict name, files (image file names), images (uint8 [H,W,3] list),
  masks (bool [H,W] list, or None without masks)."""
  if group.masks is None:
    loaded = [(images.read_image(p), None) for p in group.images]
  else:
    loaded = [images.read_image_and_mask(p, m) for p, m in zip(group.images, group.masks)]
  return {
      "name": group.name,
      "files": [p.name for p in group.images],
      "images": [image for image, _ in loaded],
      "masks": None if group.masks is None else [mask for _, mask in loaded],
  }


def group_pairs(groups):
  """int32 [P, 3] rows (group, i, j), i < j: every unordered pair within each group."""
  rows = [(g, i, j) for g, group in enumerate(groups)
          for i, j in itertools.combinations(range(len(group.images)), 2)]
  return np.asarray(rows, np.int32).reshape(-1, 3)


@dataclasses.dataclass(frozen=True, eq=False)
class FolderPairs:
  """All unordered pairs within each group, addressable by index.

  ``pairs[k]`` -> dict ``image_a``/``image_b``: uint8 [H, W, 3] at the file's size,
  ``mask_a``/``mask_b``: uint8 [H, W] 0/1 (all 255 = ignore when the layout has no
  masks), ``index``: k.
  """
  groups: tuple
  pairs: np.ndarray

  @classmethod
  def from_dataset(cls, dataset):
    return cls(groups=dataset.groups, pairs=group_pairs(dataset.groups))

  def __len__(self):
    return len(self.pairs)

  def names(self, k):
    """(group name, file name a, file name b) of pair ``k``."""
    g, i, j = self.pairs[k]
    group = self.groups[g]
    return group.name, group.images[i].name, group.images[j].name

  def _read(self, group, i):
    if group.masks is None:
      image = images.read_image(group.images[i])
      return image, np.full(image.shape[:2], 255, np.uint8)
    image, mask = images.read_image_and_mask(group.images[i], group.masks[i])
    return image, mask.astype(np.uint8)

  def __getitem__(self, k):
    g, i, j = self.pairs[k]
    image_a, mask_a = self._read(self.groups[g], i)
    image_b, mask_b = self._read(self.groups[g], j)
    return {"image_a": image_a, "image_b": image_b, "mask_a": mask_a, "mask_b": mask_b,
            "index": np.int32(k)}
