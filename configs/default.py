"""Shared defaults: the paper's settings (§3.5, §4.1). Experiment configs override these.

  python train.py --config configs/csa.py --workdir runs/csa --config.batch_size=8

Every key, with its default and what it means, is in coseg_jax/config.py:default_config.
"""

from coseg_jax import config as config_lib


def get_config():
  return config_lib.default_config()
