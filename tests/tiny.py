"""The one tiny model and training configuration the tests share (VGG16's five stages and
stride 32 with few channels, 64 px images: fast on a CPU)."""

import pathlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = 64
ENCODER_WIDTHS = (8, 8, 16, 16, 16)
DECODER_WIDTHS = (16, 8, 8, 8)
# keyword arguments of CoSegNet for the tiny model
SMALL = dict(encoder_widths=ENCODER_WIDTHS, decoder_widths=DECODER_WIDTHS)


def attentions():
  """The four attentions as test parameters: FCA (the recipe's) in every tier, the other
  three marked slow, so ``make test-fast`` checks one attention and the full suite all."""
  import pytest  # pylint: disable=g-import-not-at-top
  return ["fca"] + [pytest.param(a, marks=pytest.mark.slow) for a in ("ca", "csa", "none")]


def images(seed, n=2, size=SIZE):
  """n preprocessed random uint8 images [n, size, size, 3]."""
  from coseg_jax import preprocess  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  return preprocess(rng.randint(0, 256, (n, size, size, 3)).astype(np.uint8))


def tiny_config(**overrides):
  """configs/default.py with the tiny CSA model on 64 px synthetic data (4 pairs, 2 groups
  of 3 images), 2 steps of batch 2 without dropout, logging and saving every step.

  ``overrides`` are ``config.data`` keys (``image_size=96``, ``dataset="folder"``,
  ``synthetic={"num_groups": 1}``, ...); a group given as a dict updates its keys.
  """
  from coseg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.default_config()
  config.batch_size = 2
  config.model.attention = "csa"
  config.model.encoder_widths = ENCODER_WIDTHS
  config.model.decoder_widths = DECODER_WIDTHS
  config.model.dropout_rate = 0.0
  config.data.dataset = "synthetic"
  config.data.image_size = SIZE
  config.data.synthetic.num_pairs = 4
  config.data.synthetic.num_groups = 2
  config.data.synthetic.group_size = 3
  config.data.num_threads = 1
  config.data.prefetch = 1
  config.data.update(overrides)
  config.train.num_steps = 2
  config.train.learning_rate = 1e-3
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.checkpoint_every = 1
  return config
