"""The pair protocol: the pair model over the pairs of a split (VOC 2012 val/test, the
synthetic pairs, or every pair within each group of a folder dataset), scored at the
model's input size S x S (masks resized nearest, as in training): the pooled Jaccard
(the single VOC number of §4.3), the pooled precision and the mean per-image Jaccard,
counted by ``evaluators.steps.evaluate``."""

import time

import jax
import jax.numpy as jnp

from coseg_jax import metrics
from coseg_jax.evaluators import steps
from coseg_jax.parallel import Sharding, build_data


def all_foreground_step(variables, batch):
  """``steps.eval_step``'s counts [2B] when every pixel is predicted foreground."""
  del variables
  def counts(mask):
    return metrics.counts(jnp.ones(mask.shape, bool), mask, xp=jnp)
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), counts(batch["mask_a"]),
                      counts(batch["mask_b"]))


def evaluate(config, model, variables, split, modes, on_result=None):
  """{mode name: ``steps.evaluate`` result + "seconds"} over the pairs of ``split``."""
  sharding = Sharding.create()
  sharding.check_batch_size(config.batch_size)
  variables = sharding.replicate(variables)
  results = {}
  for mode in modes:
    step = (steps.compile_eval_step(model, sharding) if mode.is_model
            else jax.jit(all_foreground_step))
    start = time.perf_counter()
    result = steps.evaluate(step, variables, build_data(config, split, 0), sharding,
                            desc=mode.name)
    results[mode.name] = {**result, "seconds": time.perf_counter() - start}
    if on_result:
      on_result(mode.name, results[mode.name])
  return results
