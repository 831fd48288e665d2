"""Shared defaults: the paper's settings (§3.5, §4.1). Experiment configs override these.

  python train.py --config configs/csa.py --workdir runs/csa --config.batch_size=8
"""

import ml_collections

from coseg_jax.data import pipeline


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0  # parameter init, dropout and data order
  config.batch_size = 8  # global batch of image *pairs*, split over all devices

  config.model = ml_collections.ConfigDict()
  config.model.attention = "csa"  # "ca" | "fca" | "csa" | "none" (§3.1–3.3; none = Pixel Objectness)
  config.model.encoder_widths = (64, 128, 256, 512, 512)  # VGG16 stage widths (torchvision)
  config.model.encoder_convs = (2, 2, 3, 3, 3)  # convs per stage (VGG16)
  config.model.encoder_batch_norm = False  # BatchNorm after every encoder conv (not VGG16)
  config.model.decoder_widths = (256, 128, 64, 32)  # §3.5 decoder convs before the 2-class conv
  config.model.dropout_rate = 0.2  # dropout after every decoder block (§3; rate not in the paper)
  config.model.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay float32)
  config.model.decoder_type = "paper"  # "paper" (§3.5) | "reference" (the authors' released code)

  config.init = ml_collections.ConfigDict()
  config.init.vgg16_weights = ""  # torchvision VGG16 state_dict (.pth) or ported .npz; "" = random
  config.init.reference_checkpoint = ""  # released reference-model checkpoint: loads everything

  # Every data key, documented, is in coseg_jax/data/pipeline.py:default_config.
  config.data = pipeline.default_config()
  config.data.dataset = "voc"  # PASCAL VOC 2012 pairs (§4.1)
  config.data.image_size = 512  # §3.5

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 100_000  # optimisation steps
  config.train.learning_rate = 1e-5  # Adam (§3.5)
  config.train.foreground_weight = 1.0  # loss weight of foreground pixels (1 = the paper's)
  config.train.adam_eps = 1e-8  # Adam's epsilon (the torch and optax default)
  config.train.weight_decay = 5e-4  # L2 added to the gradient before Adam, as torch's Adam does
  config.train.freeze_encoder = False  # keep the VGG16 encoder fixed (no gradient, no update)
  config.train.cache_features = False  # with freeze_encoder: encode each distinct image once
  config.train.log_every = 50  # steps between logged training metrics
  config.train.eval_every = 2000  # steps between validations (0 = only at the end)
  config.train.checkpoint_every = 1000  # steps between checkpoints
  config.train.keep_checkpoints = 3  # most recent checkpoints kept (plus the best by val Jaccard)

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "val"  # split used for validation during training
  config.eval.max_batches = 0  # cap on validation batches (0 = the whole split)
  return config
