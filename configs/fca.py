"""The paper's FCA model (§3), trained on PASCAL VOC 2012 pairs at 512x512 (§3.5, §4.1).

  python train.py --config configs/fca.py --workdir runs/fca --config.data.root=/path/to/VOCdevkit \
      --config.init.vgg16_weights=vgg16-397923af.pth
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.attention = "fca"
  return config
