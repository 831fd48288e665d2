"""The paper's CA model (§3), trained on PASCAL VOC 2012 pairs at 512x512 (§3.5, §4.1).

  python train.py --config configs/ca.py --workdir runs/ca --config.data.root=/path/to/VOCdevkit \
      --config.init.vgg16_weights=vgg16-397923af.pth
"""

from coseg_jax import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.model.attention = "ca"
  return config
