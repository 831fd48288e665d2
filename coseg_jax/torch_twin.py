"""A PyTorch twin of ``CoSegNet`` (§3), for parity tests and weight exchange with PyTorch.

torch is an optional extra (``pip install 'coseg_jax[torch]'``): ``import coseg_jax``
never imports this module. The twin is plain PyTorch (no torchvision), NCHW, split like
the flax model into ``encode`` -> ``attend`` -> ``combine`` -> ``decode``, and its pair
forward runs both images as one batch of 2B. Its encoder is an ``nn.Sequential`` named
``features`` with torchvision's indices, so a torchvision VGG16 state_dict loads into it.

``variables_to_state_dict`` / ``state_dict_to_variables`` convert full flax variables
(params and batch_stats) to and from the twin's state_dict; NHWC <-> NCHW and
HWIO <-> OIHW happen only here. One known difference is left as is: in training
torch's BatchNorm updates ``running_var`` with the unbiased batch variance, flax's with
the biased one (a factor n / (n - 1), n = pixels per channel in the batch).
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import traverse_util
from torch import nn
from torch.nn import functional as F

from coseg_jax.losses import IGNORE
from coseg_jax.models.attention import REDUCTIONS
from coseg_jax.models.decoder import PAPER_DECODER_WIDTHS
from coseg_jax.models.vgg import VGG16_LAYOUT, VGG16_WIDTHS, conv_channels
from coseg_jax.weights import check_state_dict, strip_prefix

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
  """§3.5: (upsample -> conv3x3 -> ReLU -> BatchNorm -> dropout) per width, then upsample -> conv."""

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
      raise ValueError(f"attention must be one of {sorted(ATTENTIONS)}, got {attention!r}")
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


def reduce_group(alphas, reduce="mean", leave_one_out=False):
  """Algorithm 1, line 5 on [N, C]: mean or min over the group (or over the others)."""
  if reduce not in REDUCTIONS:
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
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
    raise ValueError("segment_group runs in eval mode: call model.eval() first")
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


_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def torch_key(collection, path):
  """Flax variable (collection, module path + leaf) -> the twin's state_dict key."""
  module, leaf = path[:-1], path[-1]
  if module[0] == "encoder":
    module = ("features", module[1].split("_")[1])
  return ".".join(module + (_LEAF_NAMES[collection, leaf],))


_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0)}  # HWIO -> OIHW, (in, out) -> (out, in)
_FROM_TORCH = {4: (2, 3, 1, 0), 2: (1, 0)}


def _axes(table, ndim):
  return table.get(ndim, tuple(range(ndim)))


def torch_shape(shape):
  """Shape of a flax variable in torch's layout."""
  return tuple(shape[axis] for axis in _axes(_TO_TORCH, len(shape)))


def to_torch_layout(x):
  """HWIO conv kernel -> OIHW, (in, out) dense kernel -> (out, in); vectors unchanged."""
  return x.transpose(_axes(_TO_TORCH, x.ndim))


def from_torch_layout(x):
  """Inverse of ``to_torch_layout``."""
  return x.transpose(_axes(_FROM_TORCH, x.ndim))


def _flat(variables):
  return {(collection, path): value for collection, tree in variables.items()
          for path, value in traverse_util.flatten_dict(dict(tree)).items()}


def variables_to_state_dict(variables):
  """Flax variables ({"params", "batch_stats"}) -> the twin's state_dict (torch tensors).

  BatchNorm layers get ``num_batches_tracked = 0`` so that ``load_state_dict`` is strict.
  """
  state = {}
  for (collection, path), value in _flat(variables).items():
    key = torch_key(collection, path)
    state[key] = torch.from_numpy(np.array(to_torch_layout(np.asarray(value))))
    if key.endswith(".running_mean"):
      state[key.replace(".running_mean", ".num_batches_tracked")] = torch.tensor(0)
  return state


def variable_shapes(model, image_size=64):
  """Shapes of ``model``'s variables (no computation): {"params": ..., "batch_stats": ...}."""
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  rng = jax.random.key(0)
  return jax.eval_shape(lambda a, b: model.init({"params": rng, "dropout": rng}, a, b), x, x)


def state_dict_to_variables(state_dict, model, source="state_dict"):
  """The twin's state_dict -> flax variables of ``model`` (a ``CoSegNet``), numpy arrays.

  Keys may carry ``nn.DataParallel``'s ``module.`` prefix; ``num_batches_tracked`` is
  ignored. Any missing, unexpected or mis-shaped key raises ``WeightFileError`` naming
  all of them, before anything is converted.
  """
  state = {key: np.asarray(value.detach().cpu().numpy() if torch.is_tensor(value) else value)
           for key, value in strip_prefix(dict(state_dict)).items()
           if not key.endswith(".num_batches_tracked")}
  template = _flat(variable_shapes(model))
  keys = {torch_key(*name): name for name in template}
  check_state_dict(state, {key: torch_shape(template[name].shape) for key, name in keys.items()},
                   source)
  variables = {}
  for key, (collection, path) in keys.items():
    value = np.ascontiguousarray(from_torch_layout(state[key]), np.float32)
    variables.setdefault(collection, {})[path] = value
  return {collection: traverse_util.unflatten_dict(tree) for collection, tree in variables.items()}
