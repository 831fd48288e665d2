"""The paper's CSA model (§3), trained on PASCAL VOC 2012 pairs at 512x512 (§3.5, §4.1).

  python train.py --config configs/csa.py --workdir runs/csa --config.data.root=/path/to/VOCdevkit \
      --config.init.vgg16_weights=vgg16-397923af.pth
"""

from coseg_jax import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.model.attention = "csa"
  return config
