"""PyTorch twins of ``CoSegNet``, for parity tests and weight exchange with PyTorch.

torch is an optional extra (``pip install 'coseg_jax[torch]'``): ``import coseg_jax``
never imports this module. The twins are plain PyTorch (no torchvision), NCHW, split
like the flax model into ``encode`` -> ``attend`` -> ``combine`` -> ``decode``, and
their pair forward runs both images as one batch of 2B:

* ``CoSegNetTorch``: the paper's network (§3); its encoder is an ``nn.Sequential``
  named ``features`` with torchvision's indices, so a torchvision VGG16 state_dict
  loads into it;
* ``ReferenceCoSegNetTorch``: the authors' released code, with the exact state_dict
  keys of its checkpoints (docs/reference.md).

``variables_to_state_dict`` / ``state_dict_to_variables`` convert full flax variables
(params and batch_stats) to and from a twin's state_dict; NHWC <-> NCHW here, and
HWIO <-> OIHW in ``coseg_jax.weights``. One known difference is left as is: in training
torch's BatchNorm updates ``running_var`` with the unbiased batch variance, flax's with
the biased one (a factor n / (n - 1), n = pixels per channel in the batch).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from coseg_jax import weights
from coseg_jax.constants import IGNORE
from coseg_jax.errors import BadValue
from coseg_jax.models.attention import REDUCTIONS
from coseg_jax.models.decoder import PAPER_DECODER_WIDTHS
from coseg_jax.models.vgg import VGG16_LAYOUT, VGG16_WIDTHS, conv_channels

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torch convention; flax momentum = 1 - 0.1


def to_nchw(x):
  """NHWC numpy/jax array -> float32 NCHW torch tensor."""
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def to_nhwc(x):
  """NCHW torch tensor -> NHWC numpy array."""
  return x.detach().cpu().numpy().transpose(0, 2, 3, 1)


def vgg16_features(widths=VGG16_WIDTHS):
  """torchvision's ``vgg16().features`` (conv3x3 + ReLU, max-pools) at torchvision's indices."""
  layers, channels, in_channels = [], iter(conv_channels(widths)), 3
  for item in VGG16_LAYOUT:
    if item == "M":
      layers.append(nn.MaxPool2d(2, 2))
    else:
      out_channels = next(channels)
      layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
      in_channels = out_channels
  return nn.Sequential(*layers)


def global_average_pool(f):
  return f.mean(dim=(2, 3))


def scale_channels(f, alpha):
  return f * alpha[:, :, None, None]


class ChannelAttention(nn.Module):
  """CA, eq. (1)–(4): alpha = sigmoid(W^T GAP(f) + b); an image gets the other's alpha."""

  def __init__(self, features=512):
    super().__init__()
    self.fc = nn.Linear(features, features)

  def forward(self, f):
    return torch.sigmoid(self.fc(global_average_pool(f)))

  def combine(self, own, context):
    del own
    return context

  def attend(self, f, alpha):
    return scale_channels(f, alpha)


class FusedChannelAttention(ChannelAttention):
  """FCA, eq. (5)–(7): alpha_C = sigmoid(W_f^T (alpha_A + alpha_B) + b_f) for both images."""

  def __init__(self, features=512):
    super().__init__(features)
    self.fuse = nn.Linear(features, features)

  def combine(self, own, context):
    return torch.sigmoid(self.fuse(own + context))


class ChannelSpatialAttention(ChannelAttention):
  """CSA, eq. (8)–(13): f' = alpha^c_other (.) sigmoid(channel mean of f) (.) f."""

  def attend(self, f, alpha):
    return scale_channels(f, alpha) * torch.sigmoid(f.mean(dim=1, keepdim=True))


class NoAttention(nn.Module):
  """Encoder + decoder only (the paper's Pixel Objectness baseline)."""

  def __init__(self, features=512):
    super().__init__()
    del features

  def forward(self, f):
    return torch.ones(f.shape[:2], dtype=f.dtype)

  def combine(self, own, context):
    del own
    return context

  def attend(self, f, alpha):
    del alpha
    return f


ATTENTIONS = {
    "ca": ChannelAttention,
    "fca": FusedChannelAttention,
    "csa": ChannelSpatialAttention,
    "none": NoAttention,
}


def upsample2x(x):
  return F.interpolate(x, scale_factor=2, mode="nearest")


class PaperDecoder(nn.Module):
  """§3.5: per width upsample -> conv3x3 -> ReLU -> BatchNorm -> dropout; upsample -> conv."""

  def __init__(self, in_channels, widths=PAPER_DECODER_WIDTHS, num_classes=2, dropout_rate=0.2):
    super().__init__()
    self.depth = len(widths)
    for i, (c_in, c_out) in enumerate(zip((in_channels,) + tuple(widths), tuple(widths))):
      setattr(self, f"conv_{i}", nn.Conv2d(c_in, c_out, 3, padding=1))
      setattr(self, f"bn_{i}", nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM))
    setattr(self, f"conv_{self.depth}", nn.Conv2d(widths[-1], num_classes, 3, padding=1))
    self.dropout = nn.Dropout(dropout_rate)

  def forward(self, x):
    for i in range(self.depth):
      x = getattr(self, f"conv_{i}")(upsample2x(x))
      x = self.dropout(getattr(self, f"bn_{i}")(F.relu(x)))
    return getattr(self, f"conv_{self.depth}")(upsample2x(x))


class SiameseTwin(nn.Module):
  """The pair forward shared by the twins; subclasses define encode/attend/combine/decode."""
  unmapped_prefixes = ()  # state_dict keys with no flax counterpart

  def load_variables(self, variables):
    """Loads flax variables, all or nothing; only ``unmapped_prefixes`` keys stay as they are."""
    state = variables_to_state_dict(variables)
    expected = {key: value.shape for key, value in self.state_dict().items()
                if not key.startswith(self.unmapped_prefixes)}
    weights.check_state_dict(state, expected, f"variables for {type(self).__name__}")
    self.load_state_dict(state, strict=False)
    return self

  def forward(self, img_a, img_b):
    """NCHW images [B, 3, H, W] -> (logits_a, logits_b) [B, 2, H, W], as one batch of 2B."""
    f = self.encode(torch.cat([img_a, img_b]))
    alpha = self.attend(f)
    alpha_a, alpha_b = alpha.chunk(2)
    logits = self.decode(f, self.combine(alpha, torch.cat([alpha_b, alpha_a])))
    return logits.chunk(2)


class CoSegNetTorch(SiameseTwin):
  """Twin of ``CoSegNet(attention, encoder_widths, decoder_widths, num_classes, dropout_rate)``."""

  def __init__(self, attention="csa", encoder_widths=VGG16_WIDTHS,
               decoder_widths=PAPER_DECODER_WIDTHS, num_classes=2, dropout_rate=0.2):
    super().__init__()
    if attention not in ATTENTIONS:
      raise BadValue(f"attention must be one of {sorted(ATTENTIONS)}, got {attention!r}")
    self.features = vgg16_features(encoder_widths)
    self.learner = ATTENTIONS[attention](encoder_widths[-1])
    self.decoder = PaperDecoder(encoder_widths[-1], decoder_widths, num_classes, dropout_rate)

  def encode(self, x):
    return self.features(x)

  def attend(self, f):
    return self.learner(f)

  def combine(self, own, context):
    return self.learner.combine(own, context)

  def decode(self, f, alpha):
    return self.decoder(self.learner.attend(f, alpha))


class ConvBlock(nn.Module):
  """The released code's conv block: reflect-pad -> conv (bias) [-> BatchNorm] [-> ReLU]."""

  def __init__(self, in_channels, out_channels, kernel_size, norm=True, relu=True):
    super().__init__()
    self.pad = nn.ReflectionPad2d(kernel_size // 2)
    self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)
    self.norm = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if norm else None
    self.activation = nn.ReLU() if relu else None

  def forward(self, x):
    x = self.conv(self.pad(x))
    x = x if self.norm is None else self.norm(x)
    return x if self.activation is None else self.activation(x)


class ResBlock(nn.Module):
  def __init__(self, dim):
    super().__init__()
    self.model = nn.Sequential(ConvBlock(dim, dim, 3), ConvBlock(dim, dim, 3, relu=False))

  def forward(self, x):
    return x + self.model(x)


class ResBlocks(nn.Module):
  def __init__(self, n_res, dim):
    super().__init__()
    self.model = nn.Sequential(*[ResBlock(dim) for _ in range(n_res)])

  def forward(self, x):
    return self.model(x)


class ReferenceDecoder(nn.Module):
  """``Decoder(n_res=2, dim=512, output_dim=2, activ='relu', pad_type='reflect')`` of the
  released code: ResBlocks, 5 x (upsample, conv5x5 halving the channels), conv7x7."""

  def __init__(self, dim=512, n_res=2, n_up=5, output_dim=2):
    super().__init__()
    layers = [ResBlocks(n_res, dim)]
    for _ in range(n_up):
      layers += [nn.Upsample(scale_factor=2), ConvBlock(dim, dim // 2, 5)]
      dim //= 2
    layers.append(ConvBlock(dim, output_dim, 7, norm=False, relu=False))
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


class VGG16(nn.Module):
  """torchvision's VGG16 module layout: ``features`` and ``classifier``."""

  def __init__(self, widths=VGG16_WIDTHS, hidden=4096, num_classes=1000):
    super().__init__()
    self.features = vgg16_features(widths)
    self.classifier = nn.Sequential(
        nn.Linear(widths[-1] * 7 * 7, hidden), nn.ReLU(), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, num_classes))


class ReferenceCoSegNetTorch(SiameseTwin):
  """The authors' released CA model, with their checkpoints' state_dict keys.

  Twin of ``CoSegNet(attention="ca_mlp", decoder_type="reference")``. ``features_map``
  is ``pretrained_model.features`` (shared modules, so both key sets are saved);
  ``pretrained_model.classifier`` is unused. ``classifier_hidden`` only shrinks that
  unused classifier for tests.
  """
  unmapped_prefixes = weights.REFERENCE_UNUSED

  def __init__(self, encoder_widths=VGG16_WIDTHS, hidden=4096, num_classes=2,
               classifier_hidden=4096):
    super().__init__()
    self.pretrained_model = VGG16(encoder_widths, classifier_hidden)
    self.features_map = self.pretrained_model.features
    self.mlp1 = nn.Linear(encoder_widths[-1], hidden)
    self.mlp2 = nn.Linear(hidden, encoder_widths[-1])
    self.dec = ReferenceDecoder(encoder_widths[-1], output_dim=num_classes)

  def encode(self, x):
    return self.features_map(x)

  def attend(self, f):
    return torch.sigmoid(self.mlp2(torch.tanh(self.mlp1(global_average_pool(f)))))

  def combine(self, own, context):
    del own
    return context

  def decode(self, f, alpha):
    return self.dec(scale_channels(f, alpha))


def reduce_group(alphas, reduce="mean", leave_one_out=False):
  """Algorithm 1, line 5 on [N, C]: mean or min over the group (or over the others)."""
  if reduce not in REDUCTIONS:
    raise BadValue(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
  def op(x):
    return x.mean(dim=0) if reduce == "mean" else x.min(dim=0).values
  n = alphas.shape[0]
  if not leave_one_out or n == 1:
    return op(alphas).expand_as(alphas)
  index = torch.arange(n)
  return torch.stack([op(alphas[index != i]) for i in range(n)])


@torch.no_grad()
def segment_group(model, images, reduce="mean", leave_one_out=False):
  """Instant group co-segmentation (Algorithm 1): NCHW images -> P(foreground) [N, H, W].

  Same semantics as ``coseg_jax.group.segment_group``: without leave-one-out every
  image is combined with the group reduction as both its own and the context
  attention, with leave-one-out with its own attention and the others' reduction.
  """
  if model.training:
    raise BadValue("segment_group runs in eval mode: call model.eval() first")
  f = model.encode(images)
  alphas = model.attend(f)
  context = reduce_group(alphas, reduce, leave_one_out)
  own = alphas if leave_one_out else context
  return model.decode(f, model.combine(own, context)).softmax(dim=1)[:, 1]


def cross_entropy(logits, labels):
  """``coseg_jax.losses.cross_entropy`` for NCHW logits: mean over pixels not labelled 255."""
  valid = labels != IGNORE
  losses = F.cross_entropy(logits, torch.where(valid, labels, 0).long(), reduction="none")
  return (losses * valid).sum() / valid.sum().clamp(min=1)


def pair_loss(logits_a, logits_b, mask_a, mask_b):
  """``coseg_jax.losses.pair_loss``: cross-entropy of image A plus that of image B."""
  return cross_entropy(logits_a, mask_a) + cross_entropy(logits_b, mask_b)


def paper_module_name(module):
  """Flax module path of the paper model -> the twin's module name (encoder: torchvision's)."""
  if module[0] == "encoder":
    return f"features.{module[1].split('_')[1]}"
  return ".".join(module)


def _module_name(variables):
  """The twin layout of ``variables``: the reference decoder's residual blocks tell it apart."""
  paths = [path for _, path in weights.flatten_variables(variables)]
  return (weights.reference_module_name if any(p[:2] == ("decoder", "res_0") for p in paths)
          else paper_module_name)


def variables_to_state_dict(variables):
  """Flax variables (any of "params", "batch_stats") -> the twin's state_dict (torch tensors).

  The layout (paper or reference) follows the variables. BatchNorm layers get
  ``num_batches_tracked = 0``; load into a twin with its ``load_variables``.
  """
  state = {}
  for key, value in weights.variables_to_torch(variables, _module_name(variables)).items():
    state[key] = torch.from_numpy(value)
    if key.endswith(".running_mean"):
      state[key.replace(".running_mean", ".num_batches_tracked")] = torch.tensor(0)
  return state


def state_dict_to_variables(state_dict, model, source="state_dict"):
  """A twin's state_dict -> float32 numpy variables of ``model`` (a ``CoSegNet``).

  The layout follows ``model.decoder_type``. Keys may carry ``nn.DataParallel``'s
  ``module.`` prefix; ``num_batches_tracked`` (and for the reference layout
  ``pretrained_model.*``) is ignored. Any missing, unexpected or mis-shaped key raises
  ``WeightFileError`` naming all of them, before anything is converted.
  """
  state = {key: value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
           for key, value in state_dict.items()}
  if model.decoder_type == "reference":
    return weights.variables_from_torch(state, model, weights.reference_module_name, source,
                                        weights.REFERENCE_UNUSED)
  return weights.variables_from_torch(state, model, paper_module_name, source)
