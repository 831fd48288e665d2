"""The real-photo recipe as the library sees it: ``config.recipe`` names this module.

A recipe module offers the hooks ``coseg_jax.config`` documents (``add_config``,
``CHECKS``, ``check``, ``train_data``, ``gate``, ``gate_by_default``); this one adds

* ``config.data.views.*``: train on cached features of augmented views and composites
  (``views``, ``view_cache``) instead of the pair pipeline;
* ``config.eval.partner_gate``: the partner gate (``partner_gate.GATE``) on the model's
  maps in the default modes of folder data (``group_mean_gate``, ...) and in
  ``coseg-segment``.

It imports nothing heavy at the top, so that loading a config file stays light.
"""

import numbers

import ml_collections

from coseg_jax.errors import BadValue

NAME = __name__


def add_config(config):
  """Adds the recipe's keys to ``config`` (a ``default_config()``) and names the recipe."""
  config.recipe = NAME
  views = config.data.views = ml_collections.ConfigDict()
  views.enabled = False  # train on cached features of augmented views and composites
  views.crops = 2  # scaled crops per image (besides the whole image and its mirror)
  views.composites = 2  # per image: another group's object pasted in (a distractor)
  views.min_scale = 0.4  # smallest crop, as a fraction of the image's area
  views.negatives = 0.0  # fraction of training pairs with no group in common
  # per image: its object pasted into two photos of two other groups (pairs.py)
  views.pasted_pairs = 0
  views.pasted = 0.0  # fraction of training pairs that are such pasted pairs
  views.lacking = 0.0  # fraction: a photo with its object, a partner lacking its class
  views.cache_dir = ""  # where encoded views are kept; "" = ~/.cache/coseg_jax/views
  # the partner gate on the model's maps in the default modes of folder data and in
  # coseg-segment
  config.eval.partner_gate = False
  return config


def _fraction(value):
  return not isinstance(value, bool) and 0 <= value <= 1


def _count(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


# (key, test, what is expected), as coseg_jax.config.CHECKS
CHECKS = (
    ("data.views.enabled", lambda v: isinstance(v, bool), "True or False"),
    ("data.views.crops", _count, "an integer >= 0"),
    ("data.views.composites", _count, "an integer >= 0"),
    ("data.views.min_scale", lambda v: not isinstance(v, bool) and 0 < v <= 1,
     "a number in (0, 1]"),
    ("data.views.negatives", _fraction, "a fraction in [0, 1]"),
    ("data.views.pasted_pairs", _count, "an integer >= 0"),
    ("data.views.pasted", _fraction, "a fraction in [0, 1]"),
    ("data.views.lacking", _fraction, "a fraction in [0, 1]"),
    ("eval.partner_gate", lambda v: isinstance(v, bool), "True or False"),
)


def check(config):
  """Raises ``ValueError`` on recipe keys that do not go with the rest of ``config``."""
  if config.data.views.enabled and not (config.train.cache_features
                                        and config.data.dataset == "folder"):
    raise BadValue("config.data.views.enabled=True needs config.data.dataset='folder' and "
                   "config.train.cache_features=True (the views are encoded once)")


def train_data(config, model, variables):
  """This host's endless batches of cached view pairs with ``config.data.views.enabled``,
  else None (the library's pair pipeline)."""
  if not config.data.views.enabled:
    return None
  # pylint: disable=g-import-not-at-top
  import jax
  from coseg_jax.data import pipeline
  from coseg_jax.proj.real_photos import pairs, view_cache, views
  data = config.data
  dataset = pipeline.folder_dataset(data)
  view_config = views.ViewConfig.from_data_config(data, config.seed)
  rendered, features = view_cache.view_features(dataset, view_config, model, variables,
                                                data.views.cache_dir)
  return pairs.sampler(config, dataset, rendered, features, model, variables,
                       batch_size=config.batch_size, seed=config.seed,
                       negatives=data.views.negatives, shard_index=jax.process_index(),
                       shard_count=jax.process_count())


def gate():
  """The partner gate, for ``segment_group``'s ``gate`` and the gated evaluation modes."""
  from coseg_jax.proj.real_photos.partner_gate import GATE  # pylint: disable=g-import-not-at-top
  return GATE


def gate_by_default(config):
  return config.eval.partner_gate
