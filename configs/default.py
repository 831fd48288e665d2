"""Shared defaults: the paper's settings (§3.5, §4.1). Experiment configs override these.

  python train.py --config configs/csa.py --workdir runs/csa --config.batch_size=8
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0  # parameter init, dropout and data order
  config.batch_size = 8  # global batch of image *pairs*, split over all devices

  config.model = ml_collections.ConfigDict()
  config.model.attention = "csa"  # "ca" | "fca" | "csa" | "none" (§3.1–3.3; none = Pixel Objectness)
  config.model.encoder_widths = (64, 128, 256, 512, 512)  # VGG16 stage widths (torchvision)
  config.model.decoder_widths = (256, 128, 64, 32)  # §3.5 decoder convs before the 2-class conv
  config.model.dropout_rate = 0.2  # dropout after every decoder block (§3; rate not in the paper)
  config.model.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay float32)

  config.init = ml_collections.ConfigDict()
  config.init.vgg16_weights = ""  # torchvision VGG16 state_dict (.pth) or ported .npz; "" = random

  config.data = ml_collections.ConfigDict()
  config.data.dataset = "voc"  # "voc" (VOC2012 pairs) | "folder" (group folders) | "synthetic"
  config.data.root = ""  # VOCdevkit (or its VOC2012) for voc; dataset root for folder
  config.data.groups = ""  # folder only: comma-separated groups to use ("" = all)
  config.data.image_size = 512  # square input size (§3.5: 512x512); a multiple of 32
  config.data.flip = True  # random horizontal flip of each training image independently
  config.data.num_threads = 4  # loader worker threads
  config.data.prefetch = 4  # batches prepared ahead of the accelerator
  config.data.num_categories = 6  # synthetic only: object categories
  config.data.num_pairs = 256  # synthetic only: pairs in each of the val/test splits

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 100_000  # optimisation steps
  config.train.learning_rate = 1e-5  # Adam (§3.5)
  config.train.weight_decay = 5e-4  # L2 added to the gradient before Adam, as torch's Adam does
  config.train.freeze_encoder = False  # keep the VGG16 encoder fixed (no gradient, no update)
  config.train.log_every = 50  # steps between logged training metrics
  config.train.eval_every = 2000  # steps between validations (0 = only at the end)
  config.train.checkpoint_every = 1000  # steps between checkpoints
  config.train.keep_checkpoints = 3  # most recent checkpoints kept (plus the best by val Jaccard)

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "val"  # split used for validation during training
  config.eval.max_batches = 0  # cap on validation batches (0 = the whole split)
  return config
