"""Loading a trained model: a run (workdir / checkpoint) or a released file -> (config,
model, variables). The one loader that ``eval.py``, ``segment`` and user code share;
it imports nothing from training.

  config, model, variables = coseg_jax.runs.load_run(checkpoint="runs/cpu_frozen")

``checkpoint`` is anything ``checkpoints.resolve`` takes: a workdir (its latest step), a
``checkpoints/`` or ``best/`` folder, a step folder, a released model of this package
(``coseg_jax.release``: a .npz that carries its config) or a released checkpoint of the
authors' code (.npz/.pkl/.pth). A run's config is its ``config.json`` (written by
training), unless one is given.
"""

import json
import pathlib

from flax import traverse_util
import ml_collections

from coseg_jax import checkpoints, models, release, weights
from coseg_jax import config as config_lib
from coseg_jax.constants import STRIDE
from coseg_jax.errors import BadValue, UserError

RELEASED_IMAGE_SIZE = 512  # the released reference checkpoints were trained at 512x512


def read_config(run_dir):
  """The training config saved as ``<run_dir>/config.json`` -> ``ml_collections.ConfigDict``
  with today's keys (``coseg_jax.config.migrate``: older runs have flat data keys).

  A missing, unreadable or foreign file raises an error naming it.
  """
  path = pathlib.Path(run_dir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"run config not found: {path} (train.py writes it; or pass the "
                            "experiment config with --config configs/X.py)")
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read the run config {path}: {e}") from e
  if not isinstance(saved, dict) or "config" not in saved:
    keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
    raise UserError(f"{path} has no 'config' key (keys: {keys}); is it a coseg_jax run "
                    "config?")
  return ml_collections.ConfigDict(config_lib.migrate(saved["config"]))


def check_variables(model, variables, source):
  """Raises ``weights.WeightFileError`` naming the keys where ``variables`` do not fit ``model``."""
  expected = {k: v.shape for k, v in traverse_util.flatten_dict(
      weights.variable_shapes(model, STRIDE), sep="/").items()}
  try:
    weights.check_state_dict(traverse_util.flatten_dict(variables, sep="/"), expected, source)
  except weights.WeightFileError as e:
    raise weights.WeightFileError(f"{e}\n  (config.model differs from the model that wrote "
                                  "the checkpoint: evaluate with that run's config)") from e


def released_run(path, config=None):
  """(config, model, variables) of a released reference checkpoint file (docs/reference.md).

  Without ``config`` the model is ``weights.reference_model()`` at its 512x512 input, with
  the other keys at their defaults.
  """
  if config is None:
    config = config_lib.default_config()
    config.model.attention, config.model.decoder_type = "ca_mlp", "reference"
    config.data.image_size = RELEASED_IMAGE_SIZE
    model = weights.reference_model()
  else:
    model = models.build(config.model)
  return config, model, weights.load_reference_checkpoint(path, model)


def load_checkpoint(found, config=None, warn=print, vgg16_weights=None):
  """(config, model, variables, what was read) of a ``checkpoints.resolve`` result.

  ``config`` (e.g. from ``--config``) wins; without it the run's config.json (or the
  released model's own config) is read. A run's unreadable newest step is skipped for the
  newest intact one (``warn`` names it). ``vgg16_weights``: the encoder of a released model
  that leaves it out (``release.load``).
  """
  if found.released and release.is_release(found.path):
    own, model, variables = release.load(found.path, vgg16_weights)
    if config is not None:
      model = models.build(config.model)
      check_variables(model, variables, str(found.path))
    return config or own, model, variables, found.path
  if found.released:
    return (*released_run(found.path, config), found.path)
  config = read_config(found.run_dir) if config is None else config
  model = models.build(config.model)
  step_dir, variables = checkpoints.load_variables(found, warn)
  check_variables(model, variables, str(step_dir))
  return config, model, variables, step_dir


def resolve(workdir=None, checkpoint=None):
  """``checkpoints.resolve`` of ``checkpoint`` (in run ``workdir``), or of ``workdir``."""
  if workdir is None and checkpoint is None:
    raise BadValue("give a workdir or a checkpoint")
  return checkpoints.resolve(checkpoint or workdir, run_dir=workdir if checkpoint else None)


def load_run(workdir=None, checkpoint=None, config=None, warn=print, vgg16_weights=None):
  """(config, model, variables) of a trained run, or of a released checkpoint file.

  ``workdir`` alone is the run's latest step; beside ``checkpoint`` it is the run folder
  holding config.json. A missing checkpoint raises ``checkpoints.CheckpointError``, a
  missing config.json ``FileNotFoundError``, each naming the path.
  """
  return load_checkpoint(resolve(workdir, checkpoint), config, warn, vgg16_weights)[:3]
