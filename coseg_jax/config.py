"""Every config key with its default, the one check of a config, and the migration of old runs.

``default_config()`` is the paper's settings (§3.5, §4.1); the files of configs/ start
from it and change some keys (``python train.py --config configs/csa.py``).
``validate(config)`` refuses, naming the key, a value that would fail later: an unknown
or missing key, a bad number or name, a missing file or folder, keys that do not go
together. ``resolve_data(data_config)`` fills a partial ``config.data`` with the defaults
and checks it (the data pipeline calls it). ``migrate(saved)`` turns the config.json of
a run trained before the data keys were grouped (``data.view_crops``, ...) into today's.

A research recipe (``coseg_jax/proj/``) keeps its own keys: ``config.recipe`` names its
module (``""``: none), which the library imports by name (``load_recipe``) and never
otherwise. The module offers

* ``add_config(config)``: adds its keys to a ``default_config()`` and sets
  ``config.recipe`` (its config files call it);
* ``CHECKS`` (as ``config.CHECKS``) and ``check(config)`` (keys that go together);
* ``train_data(config, model, variables)``: this host's training batches, as the train
  step takes them, or None for the library's pair pipeline;
* ``gate()``: the step after the model of the gated evaluation modes and of
  ``coseg-segment --partner_gate`` (``group.segment_group``'s ``gate``), and
  ``gate_by_default(config)``: whether the default modes and ``coseg-segment`` use it.

Imports nothing heavy at the top, so loading a config file stays light.
"""

import copy
import importlib
import importlib.util
import os
import pathlib

import ml_collections
import numpy as np

from coseg_jax import maps
from coseg_jax.constants import DATASETS, SPLITS, STRIDE
from coseg_jax.errors import BadValue


def default_config():
  """The whole config tree with the paper's settings, every key documented once."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # parameter init, dropout and data order
  config.recipe = ""  # a research recipe's module (its own keys and hooks); "" = none
  config.batch_size = 8  # global batch of image *pairs*, split over all devices
  config.model = _model()
  config.init = ml_collections.ConfigDict()
  config.init.vgg16_weights = ""  # torchvision VGG16 state_dict (.pth) or ported .npz; "" = random
  config.init.reference_checkpoint = ""  # released reference-model checkpoint: loads everything
  config.data = _data()
  config.train = _train()
  config.eval = ml_collections.ConfigDict()
  config.eval.split = "val"  # split used for validation during training
  config.eval.max_batches = 0  # cap on validation batches (0 = the whole split)
  config.eval.threshold = "0.5"  # group modes: binarise maps at this number, "adaptive" or "otsu"
  config.eval.chunk_size = 8  # images (or pairs) per compiled call in the group modes
  config.eval.modes = ""  # evaluation modes, comma-separated; "" = the dataset's defaults
  # a mode also scored at every validation during training on config.eval.split (e.g.
  # "group_mean"), logged as val_<mode>_jaccard; "" = the pair validation only
  config.eval.during_training = ""
  # group modes and coseg-segment: "" | "guided" (maps.guided_filter) | "crf" (maps.dense_crf,
  # needs the crf extra), each at the image's size
  config.eval.refine = ""
  config.eval.refine_radius = maps.GUIDED_RADIUS  # guided: window radius, of the longer side
  config.eval.refine_eps = maps.GUIDED_EPS  # guided: the filter's regulariser (guide in [0, 1])
  config.eval.crf_sxy = maps.CRF_SXY  # crf: appearance kernel's width, of the longer side
  config.eval.crf_srgb = maps.CRF_SRGB  # crf: its colour width (0..255)
  config.eval.crf_compat = maps.CRF_COMPAT  # crf: its weight
  return config


def _model():
  model = ml_collections.ConfigDict()
  # "ca" | "fca" | "csa" (§3.1–3.3) | "ca_mlp" (the released model) | "none" (Pixel Objectness)
  model.attention = "csa"
  model.encoder_widths = (64, 128, 256, 512, 512)  # VGG16 stage widths (torchvision)
  model.encoder_convs = (2, 2, 3, 3, 3)  # convs per stage (VGG16)
  model.encoder_batch_norm = False  # BatchNorm after every encoder conv (not VGG16)
  model.decoder_widths = (256, 128, 64, 32)  # §3.5 decoder convs before the 2-class conv
  model.dropout_rate = 0.2  # dropout after every decoder block (§3; rate not in the paper)
  model.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay float32)
  model.decoder_type = "paper"  # "paper" (§3.5) | "reference" (the authors' released code)
  # "" (the paper) | "pool4" | "pool3" (pool4 and pool3): attended maps into the decoder (recipe)
  model.skip = ""
  model.cue = ""  # "" (the paper) | "correlation": where each image matches its partner (recipe)
  return model


def _data():
  data = ml_collections.ConfigDict()
  data.dataset = "voc"  # "voc" (PASCAL VOC 2012 pairs, §4.1) | "folder" | "tfds" | "synthetic"
  data.root = ""  # voc: VOCdevkit or VOC2012 folder; folder: the dataset folder
  data.groups = ""  # folder: group names to use (comma-separated or list); "" = all
  data.image_size = 512  # S: images and masks are resized to S x S (§3.5)
  data.flip = True  # train: random left-right flip of each image independently
  data.num_threads = 4  # worker threads that read and preprocess batches
  data.prefetch = 4  # batches prepared ahead of use
  data.max_eval_pairs = 0  # val/test: evaluate an evenly spaced subset of the pairs; 0 = all
  data.folder = ml_collections.ConfigDict()
  data.folder.layout = "auto"  # "auto" | "separate" | "groundtruth" | "plain"
  data.folder.on_mismatch = "error"  # image/mask mismatch -> "error" | "skip" (warn, count)
  data.voc = ml_collections.ConfigDict()
  data.voc.split_seed = 0  # seed of the 724/725 val/test split of VOC2012 val
  data.voc.pairs_dir = ""  # read pairs from <dir>/<split>.txt; "" = all sharing pairs
  data.voc.index_file = ""  # JSON cache of per-image class sets; "" = no cache
  data.tfds = ml_collections.ConfigDict()
  data.tfds.name = ""  # a built dataset, e.g. "voc2012_coseg/512" (coseg_jax/data/tfds_coseg.py)
  data.tfds.data_dir = ""  # its TFDS data dir; "" = ~/tensorflow_datasets
  data.synthetic = ml_collections.ConfigDict()
  data.synthetic.num_categories = 6  # object categories K (2..10)
  data.synthetic.num_train_pairs = 100_000  # distinct train pairs (then repeated)
  data.synthetic.num_pairs = 512  # pairs of the val and test splits
  data.synthetic.seed = 0  # content seed (the build seed only orders/flips)
  data.synthetic.group_size = 8  # groups: images per group
  data.synthetic.num_groups = 16  # groups: groups per split
  data.synthetic.common_fraction = 1.0  # groups: fraction of images with the common category
  return data


def _train():
  train = ml_collections.ConfigDict()
  train.num_steps = 100_000  # optimisation steps
  train.learning_rate = 1e-5  # Adam (§3.5)
  train.foreground_weight = 1.0  # loss weight of foreground pixels (1 = the paper's)
  train.adam_eps = 1e-8  # Adam's epsilon (the torch and optax default)
  train.weight_decay = 5e-4  # L2 added to the gradient before Adam, as torch's Adam does
  train.freeze_encoder = False  # keep the VGG16 encoder fixed (no gradient, no update)
  train.cache_features = False  # with freeze_encoder: encode each distinct image once
  train.log_every = 50  # steps between logged training metrics
  train.eval_every = 2000  # steps between validations (0 = only at the end)
  train.checkpoint_every = 1000  # steps between checkpoints
  train.keep_checkpoints = 3  # most recent checkpoints kept (plus the best by val Jaccard)
  return train


def load_recipe(name):
  """The recipe module named ``name`` (``config.recipe``; see the module docstring), or
  None for ``""``."""
  if not name:
    return None
  try:
    module = importlib.import_module(name)
  except ImportError as e:
    raise BadValue(f"config.recipe = {name!r}: cannot import it ({e})") from e
  if not hasattr(module, "add_config"):
    raise BadValue(f"config.recipe = {name!r} is not a recipe module: it has no add_config")
  return module


def defaults(recipe=""):
  """``default_config()`` with the keys of ``recipe`` (a module name, ``config.recipe``)."""
  config = default_config()
  module = load_recipe(recipe)
  if module is not None:
    module.add_config(config)
  return config


def recipe_gate(config):
  """The gate of ``config``'s recipe (``gate()``), or None when it offers none."""
  recipe = load_recipe(config.get("recipe", ""))
  return recipe.gate() if hasattr(recipe, "gate") else None


def gate_by_default(config):
  """Whether ``config``'s recipe gates the default modes and ``coseg-segment``."""
  recipe = load_recipe(config.get("recipe", ""))
  return bool(hasattr(recipe, "gate_by_default") and recipe.gate_by_default(config))


def load_file(path):
  """``get_config()`` of a config file such as configs/csa.py, loaded by path (as ``--config``
  loads it: configs/ is not a package)."""
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# ----------------------------------------------------------------------------- checks
def _is_int(value):
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _count(value):
  return _is_int(value) and value >= 0


def _positive(value):
  return _is_int(value) and value > 0


# (key, test, what is expected) for every value a key may hold.
CHECKS = (
    ("seed", lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    ("batch_size", _positive, "a positive integer"),
    ("model.dropout_rate", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("model.encoder_widths", lambda v: all(_positive(w) for w in v), "positive integers"),
    ("model.encoder_convs", lambda v: all(_positive(w) for w in v), "positive integers"),
    ("model.decoder_widths", lambda v: all(_positive(w) for w in v), "positive integers"),
    ("data.dataset", lambda v: v in DATASETS, " | ".join(DATASETS)),
    ("data.flip", lambda v: isinstance(v, bool), "True or False"),
    ("data.num_threads", _count, "an integer >= 0 (0 = prepare batches in the calling thread)"),
    ("data.prefetch", _count, "an integer >= 0"),
    ("data.max_eval_pairs", _count, "an integer >= 0 (0 = all)"),
    ("data.voc.split_seed", _count, "an integer >= 0"),
    ("data.synthetic.num_train_pairs", _positive, "a positive integer"),
    ("data.synthetic.num_pairs", _positive, "a positive integer"),
    ("data.synthetic.seed", _count, "an integer >= 0"),
    ("data.synthetic.group_size", lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    ("data.synthetic.num_groups", _positive, "a positive integer"),
    ("data.synthetic.common_fraction", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("train.num_steps", _positive, "a positive integer"),
    ("train.learning_rate", lambda v: np.isfinite(v) and v > 0, "a positive number"),
    ("train.adam_eps", lambda v: np.isfinite(v) and v > 0, "a positive number"),
    ("train.weight_decay", lambda v: np.isfinite(v) and v >= 0, "a number >= 0"),
    ("train.foreground_weight", lambda v: np.isfinite(v) and v > 0, "a positive number"),
    ("train.log_every", _positive, "a positive integer"),
    ("train.eval_every", _count, "an integer >= 0 (0 = at the end)"),
    ("train.checkpoint_every", _positive, "a positive integer"),
    ("train.keep_checkpoints", lambda v: _is_int(v) and v >= 1,
     "an integer >= 1 (the newest checkpoints kept)"),
    ("eval.max_batches", _count, "an integer >= 0 (0 = all)"),
    ("eval.chunk_size", _positive, "a positive integer"),
    ("eval.modes", lambda v: isinstance(v, str), "mode names, comma-separated ('' = defaults)"),
    ("eval.refine_radius", lambda v: 0 < v <= 1, "a fraction of the image side in (0, 1]"),
    ("eval.refine_eps", lambda v: np.isfinite(v) and v > 0, "a positive number"),
    ("eval.crf_sxy", lambda v: 0 < v <= 1, "a fraction of the image side in (0, 1]"),
    ("eval.crf_srgb", lambda v: np.isfinite(v) and v > 0, "a positive number"),
    ("eval.crf_compat", lambda v: np.isfinite(v) and v >= 0, "a number >= 0"),
)


def _module_checks():
  """The checks whose allowed values live with what they name, imported here (not at the
  top) so that loading a config file stays light."""
  # pylint: disable=g-import-not-at-top
  from coseg_jax import models
  from coseg_jax.data import folders, synthetic
  from coseg_jax.evaluators.modes import MODES
  from coseg_jax.models.attention import ATTENTIONS
  from coseg_jax.models.coseg import DECODERS, SKIPS
  from coseg_jax.models.correspondence import CUES
  names = (("model.attention", sorted(ATTENTIONS)), ("model.dtype", sorted(models.DTYPES)),
           ("model.decoder_type", DECODERS), ("data.folder.layout", folders.LAYOUTS),
           ("data.folder.on_mismatch", folders.MISMATCH_POLICIES),
           ("eval.split", SPLITS))
  most = len(synthetic.CATEGORIES)
  return (*((key, lambda v, allowed=allowed: v in allowed, " | ".join(allowed))
            for key, allowed in names),
          ("data.synthetic.num_categories", lambda v: _is_int(v) and 2 <= v <= most,
           f"an integer in 2..{most}"),
          ("data.image_size", models.is_size, f"a positive multiple of {STRIDE}"),
          ("eval.threshold", maps.is_threshold, "'adaptive', 'otsu' or a number in (0, 1)"),
          ("eval.refine", lambda v: v in maps.REFINERS, " | ".join(map(repr, maps.REFINERS))),
          ("model.skip", lambda v: v in SKIPS, " | ".join(map(repr, SKIPS))),
          ("eval.during_training", lambda v: v == "" or v in MODES,
           f"'' or a mode: {' | '.join(MODES)}"),
          ("model.cue", lambda v: v in CUES, " | ".join(map(repr, CUES))))


def _get(tree, key):
  for part in key.split("."):
    tree = tree[part]
  return tree


def _check_values(config, prefix="", checks=()):
  """Raises ``ValueError`` naming the first key under ``prefix`` with a bad value (``checks``:
  a recipe's, besides the library's)."""
  for key, test, expected in (*CHECKS, *_module_checks(), *checks):
    if not key.startswith(prefix):
      continue
    value = _get(config, key)
    try:
      ok = test(value)
    except TypeError:
      ok = False
    if not ok:
      raise BadValue(f"config.{key} = {value!r} is invalid: expected {expected}")


def _check_keys(given, defaults, name, complete):
  """Raises ``ValueError`` naming a key of ``given`` not in ``defaults`` (at any level), a
  group given as a value, and with ``complete`` a key of ``defaults`` that is missing."""
  for key, value in given.items():
    if key not in defaults:
      renamed = (f" (now {name}.{RENAMED[key]})" if name == "config.data" and key in RENAMED
                 and not isinstance(value, dict) else "")
      raise BadValue(f"unknown config key {name}.{key}{renamed}; known keys of {name}: "
                     f"{sorted(defaults)}")
    if isinstance(defaults[key], dict):
      if not isinstance(value, dict):
        raise BadValue(f"{name}.{key} = {value!r} is invalid: expected a group of keys "
                       f"{sorted(defaults[key])}")
      _check_keys(value, defaults[key], f"{name}.{key}", complete)
  missing = sorted(set(defaults) - set(given)) if complete else []
  if missing:
    raise BadValue(f"config key(s) {', '.join(f'{name}.{k}' for k in missing)} missing "
                   "(coseg_jax/config.py lists every key)")


def _check_data_needs(data):
  """A dataset's required keys that are empty."""
  if data.dataset == "tfds" and not data.tfds.name:
    raise BadValue("config.data.tfds.name is empty: dataset 'tfds' needs a built dataset "
                   "such as voc2012_coseg/512 (see docs/data.md)")
  if data.dataset in ("voc", "folder") and not data.root:
    raise BadValue(f"config.data.root is empty: dataset {data.dataset!r} needs the folder "
                   "holding it (see docs/data.md)")


def _check_files(config, training):
  """Raises ``FileNotFoundError`` naming a key whose file or folder does not exist."""
  data = config.data
  folders = [("data.root", data.root if data.dataset in ("voc", "folder") else ""),
             ("data.tfds.data_dir", data.tfds.data_dir if data.dataset == "tfds" else ""),
             ("data.voc.pairs_dir", data.voc.pairs_dir if data.dataset in ("voc", "tfds") else "")]
  for key, path in folders:
    if path and not os.path.isdir(os.path.expanduser(path)):
      raise FileNotFoundError(f"config.{key} = {path!r}: no such folder")
  for key in ("vgg16_weights", "reference_checkpoint") if training else ():
    if config.init[key] and not os.path.isfile(config.init[key]):
      raise FileNotFoundError(f"config.init.{key} = {config.init[key]!r}: no such file")


def _check_together(config):
  """Raises ``ValueError`` on keys that do not go together."""
  if config.train.cache_features and not config.train.freeze_encoder:
    raise BadValue("config.train.cache_features=True needs config.train.freeze_encoder=True "
                   "(features of a trained encoder change every step)")
  if config.model.skip and config.model.decoder_type != "paper":
    raise BadValue(f"config.model.skip={config.model.skip!r} needs "
                   "config.model.decoder_type='paper' (the reference decoder has no skip)")
  if config.model.cue and config.model.decoder_type != "paper":
    raise BadValue(f"config.model.cue={config.model.cue!r} needs "
                   "config.model.decoder_type='paper'")
  if config.train.freeze_encoder and config.model.encoder_batch_norm:
    raise BadValue("config.train.freeze_encoder=True with config.model.encoder_batch_norm=True "
                   "is not supported: freezing is meant for the pretrained VGG16")


def _plain(config):
  return config.to_dict() if hasattr(config, "to_dict") else copy.deepcopy(dict(config))


def validate(config, training=True):
  """Refuses ``config`` (a whole config) at start-up on the first key that would fail later.

  Raises ``ValueError`` for an unknown, missing or bad key and ``FileNotFoundError`` for a
  missing file or folder, one line naming the key and the value. ``training=False``
  (evaluation) does not need the ``config.init`` weight files.
  """
  recipe = load_recipe(config.get("recipe", ""))
  _check_keys(_plain(config), defaults(config.get("recipe", "")).to_dict(), "config",
              complete=True)
  _check_values(config, checks=getattr(recipe, "CHECKS", ()))
  _check_data_needs(config.data)
  _check_together(config)
  if hasattr(recipe, "check"):
    recipe.check(config)
  _check_files(config, training)


def _merged(defaults, given):
  """``given`` over ``defaults``, group by group (keys of ``given`` only are kept)."""
  merged = {**defaults, **given}
  for key, value in defaults.items():
    if isinstance(value, dict) and isinstance(given.get(key), dict):
      merged[key] = _merged(value, given[key])
  return merged


def resolve_data(data_config):
  """``data_config`` (``config.data``, a ConfigDict or dict; groups may be partial) over the
  defaults -> a complete ``ml_collections.ConfigDict``; an unknown key or a bad value
  raises ``ValueError`` naming it. A group of keys the library does not have (a recipe's,
  such as ``views``) is kept as it is: ``validate`` checks it with the recipe's checks."""
  given, data_defaults = _plain(data_config), _data().to_dict()
  own = {k: v for k, v in given.items() if k in data_defaults or not isinstance(v, dict)}
  _check_keys(own, data_defaults, "config.data", complete=False)
  data = ml_collections.ConfigDict(_merged(data_defaults, given))
  _check_values(ml_collections.ConfigDict({"data": data}), prefix="data.")
  _check_data_needs(data)
  return data


# ----------------------------------------------------------------------------- migration
# config.data keys of runs trained before the data keys were grouped -> today's key
RENAMED = {
    "layout": "folder.layout", "on_mismatch": "folder.on_mismatch",
    "voc_split_seed": "voc.split_seed", "voc_pairs_dir": "voc.pairs_dir",
    "voc_index_file": "voc.index_file",
    "tfds_name": "tfds.name", "tfds_data_dir": "tfds.data_dir",
    "num_categories": "synthetic.num_categories",
    "num_train_pairs": "synthetic.num_train_pairs", "num_pairs": "synthetic.num_pairs",
    "synthetic_seed": "synthetic.seed", "group_size": "synthetic.group_size",
    "num_groups": "synthetic.num_groups", "common_fraction": "synthetic.common_fraction",
    "views": "views.enabled", "view_crops": "views.crops",
    "view_composites": "views.composites", "view_min_scale": "views.min_scale",
    "view_negatives": "views.negatives", "view_cache_dir": "views.cache_dir",
}
# Runs saved before config.recipe existed have the real-photo recipe's keys
# (data.views, eval.partner_gate) whatever their config: those that turned it on are its
# runs, the others lose its keys.
LEGACY_RECIPE = "coseg_jax.proj.real_photos.recipe"
# deleted config.data keys -> the value that did nothing (a run with another cannot be
# reproduced by today's code)
DELETED = {"view_permute": 0.0, "view_copastes": 0, "view_shared": 0.0}


def migrate(saved):
  """A run's saved config (a dict, as in its config.json) -> today's keys, as a dict.

  The flat ``config.data`` keys of older runs move into their groups (``RENAMED``), the
  deleted keys (``DELETED``) are dropped when they hold the value that did nothing, a run
  from before ``config.recipe`` gets ``LEGACY_RECIPE`` if it used it, and keys the run's
  code did not have yet take their defaults. A config with today's keys
  comes back unchanged. A deleted key with another value raises ``ValueError`` naming it.
  """
  config = copy.deepcopy(dict(saved))
  data = dict(config.get("data", {}))
  for key, inert in DELETED.items():
    if key in data and data.pop(key) != inert:
      raise BadValue(f"config.data.{key} = {saved['data'][key]!r}: this run used a removed "
                     f"feature (only {inert!r} is supported); use the code it was trained with")
  moved = {new: data.pop(old) for old, new in RENAMED.items()
           if old in data and not isinstance(data[old], dict)}  # data.views is a group now
  for new, value in moved.items():
    group, key = new.split(".")
    data.setdefault(group, {})[key] = value
  config["data"] = data
  if "recipe" not in config:
    evaluation = config.setdefault("eval", {})
    if data.get("views", {}).get("enabled") or evaluation.get("partner_gate"):
      config["recipe"] = LEGACY_RECIPE
    else:
      data.pop("views", None)
      evaluation.pop("partner_gate", None)
  return _merged(defaults(config.get("recipe", "")).to_dict(), config)
