"""The jitted train and eval steps take the pipeline's uint8 images and normalise them on
the device: the same results as normalised float32 batches, a quarter of the transfer."""

import functools

import jax
import numpy as np
import pytest

from coseg_jax import models, preprocess
from coseg_jax.training import trainer as train_lib
from coseg_jax.evaluators import steps as eval_steps
from coseg_jax.data import pipeline
from tiny import tiny_config

pytestmark = pytest.mark.slow  # compiles full train and eval steps twice


def _batches():
  config = tiny_config()
  batch = next(pipeline.build(config.data, split="train", batch_size=2, seed=0))
  normalised = {**batch, "image_a": preprocess(batch["image_a"]),
                "image_b": preprocess(batch["image_b"])}
  return config, batch, normalised


def test_train_step_normalises_uint8_on_the_device():
  config, batch, normalised = _batches()
  assert batch["image_a"].dtype == batch["image_b"].dtype == np.uint8
  model = models.build(config.model)
  state = train_lib.create_state(config, model, jax.random.key(0))
  step = jax.jit(functools.partial(train_lib.train_step, model=model, freeze_encoder=False))
  program = step.lower(state, batch).as_text()
  assert "tensor<2x64x64x3xui8>" in program and "tensor<2x64x64x3xf32>" not in program.split(
      "func.func public @main")[1].split("\n")[0]
  (state_u8, metrics_u8), (state_f32, metrics_f32) = step(state, batch), step(state, normalised)
  np.testing.assert_allclose(metrics_u8["loss"], metrics_f32["loss"], rtol=1e-6)
  # Adam's moments hold the gradients (its first step moves every parameter by about lr
  # whatever the gradient's size, so the parameters are no test of them)
  jax.tree.map(_close_to_largest, state_u8.opt_state, state_f32.opt_state)


def _close_to_largest(a, b):
  a, b = np.asarray(a), np.asarray(b)
  np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(np.abs(b).max(), 1e-30))


def test_eval_step_normalises_uint8_on_the_device():
  config, batch, normalised = _batches()
  model = models.build(config.model)
  state = train_lib.create_state(config, model, jax.random.key(1))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  step = jax.jit(functools.partial(eval_steps.eval_step, model=model))
  jax.tree.map(np.testing.assert_array_equal, step(variables, batch),
               step(variables, normalised))
