"""Helpers shared by the PyTorch parity tests (test_torch_parity.py, test_reference.py)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import torch

from coseg_jax.interop import torch_twin as tt
from coseg_jax.losses import IGNORE, pair_loss
from coseg_jax.preprocessing import NORMALISED_RANGE

SIZE = 64
WIDTHS = (8, 16, 32, 32, 64)  # VGG16's depth and strides with fewer channels: fast on CPU
TOL = 1e-4


def rel_err(x, ref):
  """max |x - ref| / max |ref|."""
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  return np.abs(x - ref).max() / np.abs(ref).max()


def images(n, seed):
  """n random float images [n, SIZE, SIZE, 3], normalised: within ``NORMALISED_RANGE``."""
  x = np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 3))
  return np.clip(x, *NORMALISED_RANGE).astype(np.float32)


def grad_errors(grads, ref):
  """{key: max |g - ref| / max |ref|}, the denominator at least 1e-6 of the largest gradient
  (biases of convs followed by train-mode BatchNorm have a zero gradient)."""
  floor = 1e-6 * max(np.abs(g).max() for g in ref.values())
  return {key: np.abs(grads[key] - ref[key]).max() / max(np.abs(ref[key]).max(), floor)
          for key in ref}


def train_step(model, variables, twin, seed=5):
  """One training step on one pair (dropout off, BatchNorm in train mode), both frameworks, float64.

  Returns (jax, torch) dicts: loss, grads {torch key: array}, stats {BatchNorm buffer
  key: array after the step}. Float64 because in float32 a ReLU input within rounding
  of zero can take the other branch in one framework (seen: 1 of 65k in conv4_2 with
  real widths), which moves upstream gradients by percents with identical networks.
  """
  a, b = np.split(images(2, seed), 2)
  labels = np.random.default_rng(seed).choice([0, 1, IGNORE], size=(2, SIZE, SIZE))
  mask_a, mask_b = np.split(labels.astype(np.int32), 2)
  with jax.enable_x64(True):
    model64 = model.clone(dtype=jnp.float64)
    variables64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), variables)

    def loss_fn(params):
      (logits_a, logits_b), state = model64.apply(
          {"params": params, "batch_stats": variables64["batch_stats"]}, a, b, train=True,
          mutable=["batch_stats"])
      return pair_loss(logits_a, logits_b, mask_a, mask_b), state["batch_stats"]

    (loss, stats), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        variables64["params"])
  twin64 = copy.deepcopy(twin).double().train()
  logits_a, logits_b = twin64(tt.to_nchw(a).double(), tt.to_nchw(b).double())
  ref_loss = tt.pair_loss(logits_a, logits_b, torch.from_numpy(mask_a), torch.from_numpy(mask_b))
  ref_loss.backward()

  def mapped(named):
    return {key: value.detach().numpy() for key, value in named
            if not key.startswith(twin.unmapped_prefixes) and "num_batches" not in key}
  got = {"loss": float(loss),
         "grads": mapped(tt.variables_to_state_dict({"params": grads}).items()),
         "stats": mapped(tt.variables_to_state_dict({"batch_stats": stats}).items())}
  ref = {"loss": ref_loss.item(),
         "grads": mapped((k, p.grad) for k, p in twin64.named_parameters(remove_duplicate=False)),
         "stats": mapped(twin64.named_buffers(remove_duplicate=False))}
  return got, ref
