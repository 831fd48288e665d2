"""The embedded demo: the synthetic co-segmentation set, small and CPU-friendly.

  python train.py --config configs/demo.py --workdir runs/demo
  python eval.py --config configs/demo.py --workdir runs/demo

Demo-only encoder preset: VGG16's five stages and stride 32, but one conv per stage
with BatchNorm and fewer channels, trained from scratch (no download). The paper
configs (ca/fca/csa.py) stay faithful to §3.5.
"""

from coseg_jax import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.batch_size = 8
  config.model.attention = "csa"
  config.model.encoder_widths = (32, 64, 64, 128, 128)
  config.model.encoder_convs = (1, 1, 1, 1, 1)
  config.model.encoder_batch_norm = True
  config.model.decoder_widths = (64, 32, 16, 16)
  config.model.dropout_rate = 0.0
  config.data.dataset = "synthetic"
  config.data.image_size = 128  # stride-32 features: 4x4 cells; at 96 px the shapes are too coarse
  config.data.num_threads = 2
  config.data.synthetic.num_pairs = 256
  config.train.num_steps = 1000
  config.train.learning_rate = 1e-3
  config.train.weight_decay = 0.0
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  return config
