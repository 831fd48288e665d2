"""Instant group co-segmentation (§3.4, Algorithm 1) and the pairwise protocol it replaces.

``segment_group`` runs in O(N): every image is encoded once and gives its attention
alpha_i (Algorithm 1, lines 2–4); the attentions are reduced over the group (line 5:
mean = Group Average Attention, or min = Group Minimum Attention); every image is
decoded with the reduced attention (lines 6–8). What each variant does with the
reduced attention alpha_g:

* CA:  f'_i = alpha_g (.) f_i. Algorithm 1 averages all N attentions, each image's own
  included, so a group of two is *not* the pair forward (where an image only gets the
  other's attention).
* FCA: alpha_C = sigmoid(W_f (2 alpha_g) + b_f) for every image, the fused input
  scaled by two so that a group of two with the mean equals the pair forward (eq. 5).
* CSA: f'_i = alpha_g (.) alpha^s_i (.) f_i, each image keeping its own spatial map.
* none: the attention is ignored (Pixel Objectness).

``leave_one_out=True`` gives image i the reduction of the *other* images' attentions
(FCA fuses alpha_i with it), so a group of two equals the pair forward for every
variant. A group of one co-segments the image with its own attention (with or
without leave-one-out, there being no other image).

A model with a correspondence cue (``CoSegNet(cue="correlation")``) also gives every image
its foreground prototypes; image i is decoded with the mean of the *other* images'
prototypes (always leaving itself out: total minus own, O(N); ``reduce_prototypes``), so
a group of two gives each image the other's, as the pair forward does.

Images run through fixed-size chunks (the last one padded), vmapped over the group
axis, so one compiled function serves every N and device memory depends on the
chunk size, not on N.

Both protocols return foreground probabilities; ``coseg_jax.maps.binarize`` makes masks.
A ``gate`` (e.g. the real-photo recipe's partner gate,
``coseg_jax.proj.real_photos.partner_gate.GATE``) is a step after the model that sees the
pool5 features: an object with ``group(features [N, h, w, C], probs [N, S, S]) -> probs``
and ``pair(features, probs, partner_features, partner_probs) -> probs``.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax.errors import BadValue
from coseg_jax.models.attention import reduce_group
from coseg_jax.models.coseg import CoSegNet, check_images, pool5
from coseg_jax.models.correspondence import reduce_prototypes
from coseg_jax.preprocessing import NORMALISED_RANGE

RANGE_SLACK = 1e-3  # rounding of images normalised in another framework


def as_group(images):
  """A list or array of N images -> uint8 or float32 [N, H, W, 3], checked.

  uint8 images are RGB 0..255, sent to the device as they are and normalised there
  (``CoSegNet.encode``); float images must be normalised already (within
  ``NORMALISED_RANGE``). Any other dtype (int arrays, nested lists of numbers, bool), a
  float image outside that range (e.g. 0..255) and NaN or infinite pixels raise a
  ``ValueError`` naming the image index.
  """
  if len(images) == 0:
    raise BadValue("empty group: segment_group needs at least one image")
  images = [np.asarray(image) for image in images]
  shapes = sorted({image.shape for image in images})
  if len(shapes) > 1:
    raise BadValue(f"all images of a group must have the same shape (resize them first), "
                   f"got {len(shapes)} different shapes: {shapes[:5]}")
  for i, image in enumerate(images):
    check_values(image, i)
  images = np.stack(images)
  check_images(images, "group images")
  return images if images.dtype == np.uint8 else images.astype(np.float32)


def check_values(image, index):
  """Raises a ValueError naming image ``index`` unless it is uint8, or finite normalised float."""
  if image.dtype == np.uint8:
    return
  if not np.issubdtype(image.dtype, np.floating):
    raise BadValue(f"image {index}: dtype {image.dtype} is neither uint8 RGB (0..255, "
                   "preprocessed for you) nor float normalised with coseg_jax.preprocess; "
                   "convert it, e.g. np.asarray(image, np.uint8)")
  finite = np.isfinite(image)
  if not finite.all():
    raise BadValue(f"image {index}: {image.size - finite.sum()} NaN or infinite pixel values")
  low, high = NORMALISED_RANGE
  if image.size and (image.min() < low - RANGE_SLACK or image.max() > high + RANGE_SLACK):
    raise BadValue(f"image {index}: float values in [{image.min():.3g}, {image.max():.3g}] are "
                   f"outside the normalised range [{low:.2f}, {high:.2f}]: give uint8 RGB "
                   "(preprocessed for you) or normalise with coseg_jax.preprocess")


def chunks(n, chunk_size):
  """[(start, stop)] of the chunks of ``chunk_size`` that cover ``range(n)``."""
  if chunk_size < 1:
    raise BadValue(f"chunk_size must be >= 1, got {chunk_size}")
  return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def pad(x, size):
  """Pads axis 0 of x to ``size`` by repeating its first row (valid data, discarded later)."""
  if len(x) == size:
    return x
  return np.concatenate([x, np.repeat(x[:1], size - len(x), axis=0)])


def map_chunks(fn, x, chunk_size, progress=None):
  """Yields (``fn(chunk)``, the chunk's number of rows) for the chunks of ``chunk_size``
  rows of ``x``, the last one padded (``pad``), so that a jitted ``fn`` compiles once for
  any length; each chunk is dispatched when the previous one has been taken. ``progress``
  wraps the chunks (e.g. ``tqdm.tqdm``)."""
  bounds = chunks(len(x), chunk_size)
  for start, stop in progress(bounds) if progress else bounds:
    yield fn(pad(x[start:stop], chunk_size)), stop - start


def batch_of_one(f):
  """Encoder features of one image as a batch of one."""
  return jax.tree.map(lambda x: x[None], f)


def concatenate(features):
  """A list of encoder features (arrays, or dicts of arrays) -> one, along axis 0."""
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *features)


def rows(f, index):
  """Rows ``index`` of encoder features (an array, or a dict of arrays with a skip)."""
  return jax.tree.map(lambda x: x[index], f)


@functools.partial(jax.jit, static_argnums=0)
def encode_chunk(model: CoSegNet, variables, images):
  """vmap over a chunk of images -> (features [K, h, w, C] or a dict of such with a skip,
  own attention [K, C])."""
  def one(image):
    f = model.apply(variables, image[None], method=CoSegNet.encode)
    return rows(f, 0), model.apply(variables, f, method=CoSegNet.attend)[0]
  return jax.vmap(one)(images)


@functools.partial(jax.jit, static_argnums=0)
def decode_chunk(model: CoSegNet, variables, features, own, context, partner=None):
  """vmap over a chunk: combine(own, context), attend and decode -> P(foreground) [K, H, W].
  ``partner``: the partner prototypes [K, P, C] of a model with a cue, else None."""
  def one(f, own_alpha, context_alpha, partner):
    alpha = model.apply(variables, own_alpha[None], context_alpha[None], method=CoSegNet.combine)
    partner = None if partner is None else partner[None]
    logits = model.apply(variables, batch_of_one(f), alpha, partner=partner,
                         method=CoSegNet.decode)
    return jax.nn.softmax(logits[0], axis=-1)[..., 1]
  return jax.vmap(one)(features, own, context, partner)


@functools.partial(jax.jit, static_argnums=0)
def prototype_chunk(model: CoSegNet, variables, features):
  """vmap over a chunk of encoder features -> the cue's prototypes [K, P, C]."""
  one = lambda f: model.apply(variables, batch_of_one(f), method=CoSegNet.prototypes)[0]
  return jax.vmap(one)(features)


def group_prototypes(model, variables, features, n):
  """The cue's prototypes [N, P, C] of a group's per-chunk features (None without a cue)."""
  if not model.cue:
    return None
  return np.concatenate([np.asarray(prototype_chunk(model, variables, f))
                         for f in features])[:n]


def group_attention(model, variables, images, chunk_size=8):
  """Algorithm 1, lines 2–4: (list of per-chunk feature maps, own attention [N, C])."""
  features, alphas = [], []
  encode = functools.partial(encode_chunk, model, variables)
  for (f, alpha), count in map_chunks(encode, as_group(images), chunk_size):
    features.append(f)
    alphas.append(np.asarray(alpha)[:count])
  return features, np.concatenate(alphas)


def segment_group(model, variables, images, reduce="mean", chunk_size=8, leave_one_out=False,
                  gate=None):
  """Instant group co-segmentation of N images (Algorithm 1).

  Args:
    model: a ``CoSegNet``.
    variables: its variables (eval mode: BatchNorm running statistics are used).
    images: N images of one shape [H, W, 3], H and W multiples of 32; uint8 RGB is
      preprocessed, float must be torchvision-normalised already (``as_group`` refuses
      other dtypes, values outside the normalised range and non-finite pixels).
    reduce: "mean" (Group Average Attention), "min" (Group Minimum Attention) or a
      function [M, C] attentions -> [C] context attention (see ``reduce_group``).
    chunk_size: images per compiled call; bounds device memory.
    leave_one_out: attend image i with the reduction over the other images.
    gate: a step after the model (module docstring), or None.

  Returns:
    float32 [N, H, W] foreground probabilities (``coseg_jax.maps.binarize`` -> masks).
  """
  features, alphas = group_attention(model, variables, images, chunk_size)
  context = reduce_group(alphas, reduce, leave_one_out)
  own = alphas if leave_one_out else context
  prototypes = group_prototypes(model, variables, features, len(alphas))
  partners = None if prototypes is None else reduce_prototypes(prototypes)
  probs = []
  for f, (start, stop) in zip(features, chunks(len(alphas), chunk_size)):
    partner = None if partners is None else pad(partners[start:stop], chunk_size)
    p = decode_chunk(model, variables, f, pad(own[start:stop], chunk_size),
                     pad(context[start:stop], chunk_size), partner)
    probs.append(np.asarray(p)[:stop - start])
  probs = np.concatenate(probs)
  if gate is not None:
    f = pool5(concatenate(features))[:len(alphas)]
    probs = np.asarray(gate.group(f, probs), np.float32)
  return probs


@functools.partial(jax.jit, static_argnums=0)
def pair_chunk(model: CoSegNet, variables, images_a, images_b):
  """The pair model on a chunk of pairs -> P(foreground) of both images [K, H, W] each."""
  logits_a, logits_b = model.apply(variables, images_a, images_b)
  return jax.nn.softmax(logits_a)[..., 1], jax.nn.softmax(logits_b)[..., 1]


def segment_pairwise(model, variables, images, chunk_size=8, encode_once=False, gate=None):
  """The O(N^2) protocol (Tables 1–3, 5): every unordered pair through the pair model.

  Each image's foreground probability is averaged over its N-1 pairs. Needs N >= 2.
  ``encode_once=True`` gives the same result faster: every image is encoded once and
  only the decoder runs per pair (image i decoded with ``combine(alpha_i, alpha_j)``,
  what the pair forward gives it in eval mode), so the quadratic part costs N(N-1)
  decoder passes instead of N(N-1) encoder and decoder passes. ``gate`` gates every
  pair's map (``decode_pairs``; it implies ``encode_once``).
  Returns the averaged probabilities float32 [N, H, W].
  """
  images = as_group(images)
  n = len(images)
  if n < 2:
    raise BadValue(f"segment_pairwise needs at least 2 images, got {n}")
  if encode_once or gate is not None:
    total = _decoded_pairs(model, variables, images, chunk_size, gate)
  else:
    total = _pair_model_pairs(model, variables, images, chunk_size)
  return (total / (n - 1)).astype(np.float32)


def _pair_model_pairs(model, variables, images, chunk_size):
  """Sum over its pairs of each image's P(foreground), every pair through the pair model."""
  pairs = np.array(list(itertools.combinations(range(len(images)), 2)))
  total = np.zeros(images.shape[:3], np.float64)
  for start, stop in chunks(len(pairs), chunk_size):
    chunk = pad(pairs[start:stop], chunk_size)
    prob_a, prob_b = pair_chunk(model, variables, images[chunk[:, 0]], images[chunk[:, 1]])
    k = stop - start
    np.add.at(total, chunk[:k, 0], np.asarray(prob_a)[:k])
    np.add.at(total, chunk[:k, 1], np.asarray(prob_b)[:k])
  return total


def _decoded_pairs(model, variables, images, chunk_size, gate=None):
  """``_pair_model_pairs`` from features encoded once: a decoder pass per ordered pair."""
  ordered = np.array(list(itertools.permutations(range(len(images)), 2)))
  total = np.zeros(images.shape[:3], np.float64)
  for start, probs in decode_pairs(model, variables, images, ordered, chunk_size, gate):
    np.add.at(total, ordered[start:start + len(probs), 0], probs)
  return total


def decode_pairs(model, variables, images, pairs, chunk_size=8, gate=None):
  """Image ``pairs[k, 0]`` co-segmented with image ``pairs[k, 1]`` as the pair forward
  does in eval mode, with every image encoded once and a decoder pass per pair
  (``combine(alpha_own, alpha_other)``). Yields (k of the chunk's first pair,
  P(foreground) float32 [K, H, W]) chunk by chunk, so memory is bounded by the chunk.
  ``gate``: each map gated with its partner's features and map (``gate.pair``), the
  partner's map from a second decoder pass. A model with a cue compares each image with
  its partner's prototypes, as the pair forward does."""
  features, alphas = group_attention(model, variables, images, chunk_size)
  prototypes = group_prototypes(model, variables, features, len(alphas))
  of = lambda index: None if prototypes is None else prototypes[index]  # the cue's partners
  features = concatenate(features)
  for start, stop in chunks(len(pairs), chunk_size):
    own, other = pad(np.asarray(pairs[start:stop]), chunk_size).T
    f_own, f_other = rows(features, own), rows(features, other)
    probs = decode_chunk(model, variables, f_own, alphas[own], alphas[other], of(other))
    if gate is not None:
      partner = decode_chunk(model, variables, f_other, alphas[other], alphas[own], of(own))
      probs = gate.pair(pool5(f_own), probs, pool5(f_other), partner)
    yield start, np.asarray(probs)[:stop - start]
