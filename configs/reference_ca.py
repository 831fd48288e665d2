"""The authors' released CA model (docs/reference.md): CA-MLP attention, their decoder, 512x512.

Its checkpoints (e.g. ``epoch1iter5000.pkl``) load with
``coseg_jax.init_variables(model, rng, 512, reference_checkpoint=PATH)``:

  python -m coseg_jax.apps.port_weights --format=reference epoch1iter5000.pkl reference_ca.npz
"""

from coseg_jax import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.model.attention = "ca_mlp"  # GAP, Linear(512, 4096), tanh, Linear(4096, 512), sigmoid
  config.model.decoder_type = "reference"  # 2 residual blocks, 5 x (upsample, conv5x5), conv7x7
  config.model.dropout_rate = 0.0  # the reference decoder has no dropout
  config.data.image_size = 512  # the released checkpoints were trained at 512x512
  return config
