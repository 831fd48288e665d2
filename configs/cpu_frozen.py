"""CPU recipe on real data: frozen real VGG16, attention learner and decoder trained.

Trains on some classes of a folder dataset and leaves the others unseen, as the paper's
iCoseg experiment (§4.1, Table 3):

  python train.py --config configs/cpu_frozen.py --workdir runs/voc10_frozen \\
      --config.data.root=../shared/data/pascal_voc10_coseg \\
      --config.init.vgg16_weights=../shared/data/vgg16_features_oxford.pth
  python eval.py --config configs/cpu_frozen.py --workdir runs/voc10_frozen \
      --config.data.root=../shared/data/pascal_voc10_coseg \
      --config.data.groups=Bus,Car,Cat,Chair,Cow
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 8
  config.model.attention = "fca"  # the paper's best on unseen objects (§4.3)
  config.model.dropout_rate = 0.2
  config.init.vgg16_weights = ""  # set: a torchvision VGG16 .pth or ported .npz
  config.data.dataset = "folder"
  config.data.root = ""  # set: e.g. ../shared/data/pascal_voc10_coseg
  config.data.groups = "Aero,Bicycle,Bird,Boat,Bottle"  # training classes
  config.data.image_size = 128
  config.data.num_threads = 2
  config.data.max_eval_pairs = 64  # validation on a fixed subset of the training classes' pairs
  config.train.freeze_encoder = True
  config.train.cache_features = True
  config.train.num_steps = 300
  config.train.learning_rate = 1e-3
  config.train.weight_decay = 5e-4
  config.train.log_every = 20
  config.train.eval_every = 300
  config.train.checkpoint_every = 300
  return config
