"""A released model: a trained run as one ``.npz`` file that ``coseg-segment --checkpoint``
and ``eval.py --checkpoint`` load, for people who do not want to train.

The file holds the run's variables (``params/...``, ``batch_stats/...``) and a JSON
``meta`` entry: its format, the run's config, the step, the package versions, and the
encoder. A run trained with a frozen VGG16 (``config.train.freeze_encoder``, the CPU
recipe) leaves the encoder out: the file records the sha256 of the VGG16 weights it was
trained with, and loading it needs that file (``vgg16_weights``, by default the path the
run used); weights with another hash are refused in one line naming both hashes. A run
that trained its encoder keeps it in the file.

``apps/release.py`` writes it, with a model card beside it (``<file>.md``).
"""

import hashlib
import json
import os
import pathlib
import zipfile

from flax import traverse_util
import ml_collections
import numpy as np

from coseg_jax import config as config_lib, models, weights
from coseg_jax.errors import UserError

FORMAT = "coseg_jax.release/1"
META = "meta"
ENCODER = "encoder"


def sha256(path):
  """The sha256 of a file, hex."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def encoder_matches(variables, vgg16_weights, widths):
  """True if the encoder of ``variables`` is exactly the VGG16 of the file ``vgg16_weights``."""
  given = weights.load_torchvision_vgg16(vgg16_weights, widths)
  ours = variables["params"][ENCODER]
  return all(np.array_equal(np.asarray(ours[name][leaf]), np.asarray(given[name][leaf]))
             for name in given for leaf in given[name])


def write(path, config, variables, step, vgg16_weights=None, extra=None):
  """Writes the released file. With ``config.train.freeze_encoder`` the encoder is left out
  and ``vgg16_weights`` (the file it was trained with, checked against the variables) is
  recorded by its sha256. Returns the meta dict."""
  variables = {k: dict(v) for k, v in variables.items()}
  meta = {"format": FORMAT, "config": config.to_dict(), "step": step, **(extra or {})}
  if config.train.freeze_encoder:
    if not vgg16_weights or not os.path.isfile(vgg16_weights):
      raise FileNotFoundError(f"vgg16 weights {vgg16_weights!r}: no such file (the frozen "
                              "encoder is recorded by the hash of the file it came from)")
    if not encoder_matches(variables, vgg16_weights, tuple(config.model.encoder_widths)):
      raise weights.WeightFileError(f"{vgg16_weights}: not the encoder of this run (give the "
                                    "VGG16 weights it was trained with)")
    meta["encoder"] = {"sha256": sha256(vgg16_weights),
                       "file": pathlib.Path(vgg16_weights).name}
    variables["params"].pop(ENCODER)
  flat = traverse_util.flatten_dict(variables, sep="/")
  arrays = {key: np.asarray(value) for key, value in flat.items()}
  with open(path, "wb") as f:  # np.savez would add ".npz" to a path without it
    np.savez(f, **arrays, **{META: np.array(json.dumps(meta, default=str))})
  return meta


def read_meta(path):
  """The meta dict of a released file, or None for any other .npz (e.g. ported weights)."""
  try:
    with np.load(path, allow_pickle=False) as data:
      if META not in data.files:
        return None
      meta = json.loads(str(data[META]))
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"cannot read {path}: {e}") from e
  return meta if meta.get("format") == FORMAT else None


def is_release(path):
  """True for a released model of this package; False for any other file, readable or not
  (an empty or corrupt .npz is left to the loader of the authors' checkpoints to name)."""
  path = pathlib.Path(path)
  if path.suffix != ".npz" or not path.is_file():
    return False
  try:
    return read_meta(path) is not None
  except UserError:
    return False


def load(path, vgg16_weights=None):
  """(config, model, variables) of a released file.

  ``vgg16_weights``: the encoder's weights when the file leaves it out (default: the path
  the run was trained with); their sha256 must be the one the file records.
  """
  meta = read_meta(path)
  if meta is None:
    raise UserError(f"{path} is not a coseg_jax released model (no {FORMAT!r} meta entry)")
  config = ml_collections.ConfigDict(config_lib.migrate(meta["config"]))
  model = models.build(config.model)
  with np.load(path, allow_pickle=False) as data:
    flat = {tuple(key.split("/")): data[key] for key in data.files if key != META}
  variables = traverse_util.unflatten_dict(flat)
  if "encoder" in meta:
    variables["params"][ENCODER] = _encoder(path, meta["encoder"], config,
                                            vgg16_weights or config.init.vgg16_weights)
  return config, model, variables


def _encoder(path, recorded, config, vgg16_weights):
  """The frozen encoder's params from ``vgg16_weights``, checked against the recorded hash."""
  if not vgg16_weights or not os.path.isfile(vgg16_weights):
    raise FileNotFoundError(
        f"{path} needs the VGG16 weights it was trained with ({recorded['file']}, sha256 "
        f"{recorded['sha256'][:12]}...; see its model card): no such file {vgg16_weights!r} "
        "(give it with --vgg16_weights)")
  found = sha256(vgg16_weights)
  if found != recorded["sha256"]:
    raise weights.WeightFileError(
        f"{path} was trained with VGG16 weights sha256 {recorded['sha256'][:12]}... "
        f"({recorded['file']}), but {vgg16_weights} has sha256 {found[:12]}...: give the "
        "weights its model card names")
  return weights.load_torchvision_vgg16(vgg16_weights, tuple(config.model.encoder_widths))
