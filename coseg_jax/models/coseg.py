"""CoSegNet: Siamese VGG16 encoder -> semantic attention learner -> Siamese decoder (Fig. 2).

The model is split into the two parts of Algorithm 1 so that the pair forward and
instant group co-segmentation (``coseg_jax.group``) run the same code:
``encode`` -> ``attend`` (own attention) -> ``combine`` (with the context attention)
-> ``decode``.
"""

from typing import Sequence, Union

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from coseg_jax.constants import STRIDE
from coseg_jax.errors import BadValue
from coseg_jax.models import conv
from coseg_jax.models.attention import ATTENTIONS, scale_channels, spatial_attention
from coseg_jax.models.correspondence import CUES, CorrelationCue
from coseg_jax.models.decoder import PAPER_DECODER_WIDTHS, Decoder
from coseg_jax.models.reference import ReferenceDecoder
from coseg_jax.models.vgg import VGG16_CONVS, VGG16_WIDTHS, VGG16Encoder
from coseg_jax.preprocessing import model_input

DECODERS = ("paper", "reference")
# model.skip -> the encoder maps fed to the decoder besides pool5, coarse to fine: "" is the
# paper (no skip connection); "pool4" and "pool3" are the recipe's options.
SKIPS = {"": (), "pool4": ("pool4",), "pool3": ("pool4", "pool3")}


def pool5(f):
  """The pool5 map of encoder features: ``f`` itself, or ``f["pool5"]`` with a skip."""
  return f["pool5"] if isinstance(f, dict) else f


def is_size(size):
  """True for an image side the encoder takes: a positive multiple of its stride (32)."""
  return (isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0
          and size % STRIDE == 0)


def check_size(size, name="image_size"):
  """Raises a ValueError naming ``name`` unless ``size`` is a positive multiple of 32."""
  if not is_size(size):
    raise BadValue(f"{name}={size!r}: expected a positive multiple of {STRIDE} (the "
                   "encoder's stride)")


def check_images(x, name="images"):
  """Raises a ValueError naming the problem unless x is [B, H, W, 3] with H, W multiples of 32."""
  if x.ndim != 4 or x.shape[-1] != 3:
    raise BadValue(f"{name} must be [B, H, W, 3] (NHWC, RGB), got shape {tuple(x.shape)}")
  if not (is_size(x.shape[1]) and is_size(x.shape[2])):
    raise BadValue(f"{name}: height and width must be positive multiples of {STRIDE} "
                   f"(the encoder's stride), got {x.shape[1]}x{x.shape[2]}")


class CoSegNet(nn.Module):
  """The co-segmentation network of §3 with attention "ca" | "fca" | "csa" | "none".

  ``attention`` may also be a learner class of your own: a flax module built as
  ``learner(features, dtype=dtype)`` with the three methods of ``models.attention``
  (``__call__``, ``combine``, ``attend``; docs/extending.md has an example).

  ``apply(variables, img_a, img_b, train=False) -> (logits_a, logits_b)``: images
  [B, H, W, 3] float32 torchvision-normalised (``coseg_jax.preprocess``), logits
  [B, H, W, 2] float32 (class 1 = foreground). Both images of a pair go through the
  encoder and decoder as one batch of 2B (a Siamese network with shared weights), so
  in training BatchNorm normalises over both images of every pair.

  ``decoder_type="paper"`` is §3.5's decoder (``decoder_widths``, ``dropout_rate``);
  ``"reference"`` is the decoder of the authors' released code (``models.reference``),
  which with ``attention="ca_mlp"`` loads their checkpoints (docs/reference.md).

  ``skip="pool4"`` (a recipe option, not the paper) also feeds pool4 to the paper decoder,
  attended by the same attention as pool5: f4' = sigmoid(W_4 alpha + b_4) (.) f4, where
  alpha is what ``decode`` attends pool5 with (the partner's for CA, the fused one for
  FCA), so the finer features too depend on the partner. ``encode`` then returns
  ``{"pool5": f, "pool4": f4}``; ``attend`` and the gates read ``pool5(features)``.
  ``skip="pool3"`` adds pool3 the same way (f3' = sigmoid(W_3 alpha + b_3) (.) f3) to pool4.

  ``cue="correlation"`` (a recipe option, not the paper; ``models.correspondence``) also
  gives the decoder, beside the attended pool5 features, K channels saying how much each
  location matches the partner's foreground prototypes (``cue_prototypes`` = K): the
  pair forward compares each image with the other's prototypes, ``decode`` takes them as
  ``partner`` ([B, K, C], from ``prototypes``; ``coseg_jax.group`` reduces them over a
  group).

  ``ops`` (``models.conv``): ``conv.FAST`` (default) gives every reverse-mode gradient
  (``jax.grad`` of any loss) the fast CPU kernel and max-pool gradients; ``conv.XLA`` is
  for forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``). Same variables.
  """
  attention: Union[str, type] = "csa"
  encoder_widths: Sequence[int] = VGG16_WIDTHS
  encoder_convs: Sequence[int] = VGG16_CONVS
  encoder_batch_norm: bool = False
  decoder_widths: Sequence[int] = PAPER_DECODER_WIDTHS
  num_classes: int = 2
  dropout_rate: float = 0.2
  dtype: jnp.dtype = jnp.float32
  decoder_type: str = "paper"
  skip: str = ""
  cue: str = ""
  cue_prototypes: int = 4
  ops: conv.Ops = conv.FAST

  def setup(self):
    if isinstance(self.attention, str) and self.attention not in ATTENTIONS:
      raise BadValue(f"attention must be one of {sorted(ATTENTIONS)} or a learner class, "
                     f"got {self.attention!r}")
    if self.decoder_type not in DECODERS:
      raise BadValue(f"decoder_type must be one of {DECODERS}, got {self.decoder_type!r}")
    if self.skip not in SKIPS or (self.skip and self.decoder_type != "paper"):
      raise BadValue(f"skip must be one of {tuple(SKIPS)} (a skip needs decoder_type='paper'"
                     f"), got skip={self.skip!r} with decoder_type={self.decoder_type!r}")
    if self.cue not in CUES or (self.cue and self.decoder_type != "paper"):
      raise BadValue(f"cue must be one of {CUES} (a cue needs decoder_type='paper'), got "
                     f"cue={self.cue!r} with decoder_type={self.decoder_type!r}")
    if self.cue:
      self.correlation = CorrelationCue(self.cue_prototypes, dtype=self.dtype)
    self.encoder = VGG16Encoder(self.encoder_widths, self.encoder_convs,
                                self.encoder_batch_norm, dtype=self.dtype, taps=self.taps,
                                ops=self.ops)
    # W_4 and W_3, made when first used; W_4's name has no suffix so that the checkpoints of
    # pool4-only models load
    if self.taps:
      self.skip_attention = nn.Dense(self.encoder_widths[3], dtype=self.dtype)
      self.skip_attention_pool3 = nn.Dense(self.encoder_widths[2], dtype=self.dtype)
    learner = ATTENTIONS[self.attention] if isinstance(self.attention, str) else self.attention
    self.learner = learner(self.encoder_widths[-1], dtype=self.dtype)
    if self.decoder_type == "reference":
      self.decoder = ReferenceDecoder(num_classes=self.num_classes, dtype=self.dtype,
                                      ops=self.ops)
    else:
      self.decoder = Decoder(self.decoder_widths, self.num_classes, self.dropout_rate,
                             dtype=self.dtype, ops=self.ops)

  @property
  def taps(self):
    """The encoder maps the decoder reads besides pool5, coarse to fine (``SKIPS``)."""
    return SKIPS.get(self.skip, ())

  def encode(self, x, train: bool = False):
    """[B, H, W, 3] -> pool5 feature map f [B, H/32, W/32, C] (with ``skip``, the dict
    ``{"pool5": f, "pool4": [B, H/16, W/16, C4]}``, and pool3 [B, H/8, W/8, C3]). uint8 RGB images are
    normalised here (``model_input``: batches travel to the device as uint8); float
    images must be torchvision-normalised already."""
    check_images(x)
    return self.encoder(model_input(x).astype(self.dtype), train=train)

  def attend(self, f):
    """The image's own channel attention alpha [B, C] (eq. 1–2, 8–9; ones for "none")."""
    return self.learner(pool5(f))

  def spatial_attention(self, f):
    """alpha^s [B, h, w, 1] of features f, eq. (10)–(11): the map a CSA model multiplies its
    features by (the other learners do not use it; for them it pictures the features)."""
    return spatial_attention(pool5(f))

  def combine(self, own, context):
    """Channel attention applied to an image given its own and the context alpha (eq. 3–5)."""
    return self.learner.combine(own, context)

  def prototypes(self, f):
    """The cue's foreground prototypes of each image [B, K, C] (``cue`` only)."""
    return self.correlation.prototypes(pool5(f))

  def correspondence(self, f, partner):
    """The cue c [B, h, w, K] of features f against partner prototypes [B, K, C] (``cue``
    only; ``models.correspondence.cue_map`` pictures it)."""
    return self.correlation(pool5(f), partner)

  def decode(self, f, alpha, train: bool = False, partner=None):
    """Attend f with alpha (eq. 3–4, 6–7, 12–13) and decode to logits [B, H, W, 2].

    With ``cue``, ``partner`` holds the partner prototypes [B, K, C] and the cue
    [B, h, w, K] is concatenated to the attended features."""
    attended = self.learner.attend(pool5(f), alpha)
    if self.cue:
      if partner is None:
        raise BadValue(f"cue={self.cue!r}: decode needs the partner prototypes "
                       "(partner=[B, K, C], from CoSegNet.prototypes)")
      attended = jnp.concatenate([attended, self.correspondence(f, partner)], axis=-1)
    if not self.taps:
      return self.decoder(attended, train=train)
    gates = (self.skip_attention, self.skip_attention_pool3)
    skips = [scale_channels(f[tap], nn.sigmoid(gate(alpha)))
             for tap, gate in zip(self.taps, gates)]
    return self.decoder(attended, skips, train=train)

  def __call__(self, img_a, img_b, train: bool = False):
    check_images(img_a, "img_a")
    check_images(img_b, "img_b")
    if img_a.shape != img_b.shape:
      raise BadValue(f"img_a and img_b must have the same shape, got {tuple(img_a.shape)} "
                     f"and {tuple(img_b.shape)}")
    return self.decode_pair(self.encode(jnp.concatenate([img_a, img_b]), train=train), train)

  def decode_pair(self, f, train: bool = False):
    """Pair forward from encoder features ``f`` = [f_A; f_B] ([2B, h, w, C], or such a dict
    with ``skip``) -> logits A, B.

    Used directly when the encoder is frozen and its features are cached.
    """
    alpha = self.attend(f)
    alpha_a, alpha_b = jnp.split(alpha, 2)
    context = jnp.concatenate([alpha_b, alpha_a])  # each image gets the other's attention
    partner = None
    if self.cue:  # each image gets the other's prototypes
      prototypes_a, prototypes_b = jnp.split(self.prototypes(f), 2)
      partner = jnp.concatenate([prototypes_b, prototypes_a])
    logits = self.decode(f, self.combine(alpha, context), train=train, partner=partner)
    return tuple(jnp.split(logits, 2))
