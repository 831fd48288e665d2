"""The model's one BatchNorm (the ``vgg*_bn`` encoders, both decoders).

torch's defaults, so that ported weights and statistics behave as in PyTorch: running
statistics updated with momentum 0.1 (flax's ``momentum`` is the weight of the old value,
0.9) and epsilon 1e-5.
"""

import functools

import flax.linen as nn

BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
