"""Evaluation of the pair model on batches of pairs: the jitted step and the pooled scores.

Used by validation during training and by ``eval.py``'s pair modes; it needs no
optimizer. Every batch is dispatched before any result is fetched, so the device never
waits for the host between batches.
"""

import functools

import jax
from jax.experimental import multihost_utils
import numpy as np
import tqdm

from coseg_jax import metrics
from coseg_jax.errors import BadValue


def pixel_counts(logits, mask):
  """Per-image ``metrics.counts`` of the argmax predictions, inside jit."""
  return metrics.counts(logits.argmax(-1) == 1, mask, xp=jax.numpy)


def eval_step(variables, batch, *, model):
  """Per-image metric counts [2B] (A images then B images) of the pair model in eval mode."""
  logits_a, logits_b = model.apply(variables, batch["image_a"], batch["image_b"])
  a, b = pixel_counts(logits_a, batch["mask_a"]), pixel_counts(logits_b, batch["mask_b"])
  return jax.tree.map(lambda x, y: jax.numpy.concatenate([x, y]), a, b)


def compile_eval_step(model, sharding):
  """``eval_step`` jitted over ``sharding``'s mesh (variables replicated, batch sharded)."""
  return jax.jit(functools.partial(eval_step, model=model),
                 in_shardings=(sharding.replicated, sharding.data),
                 out_shardings=sharding.replicated)


def evaluate(step, variables, batches, sharding, max_batches=0, desc="validation",
             show_progress=True):
  """Pooled and mean-per-image precision/Jaccard of the pair model over ``batches``."""
  dispatched = []
  bar = tqdm.tqdm(desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                  disable=not show_progress or jax.process_index() != 0)
  for i, batch in enumerate(batches):
    if max_batches and i >= max_batches:
      break
    valid = batch["valid"]
    if jax.process_count() > 1:
      valid = multihost_utils.process_allgather(valid, tiled=True)
    # counts are the A images, then the B images (replicated on every host)
    dispatched.append((step(variables, sharding.put_batch(batch)), np.concatenate([valid, valid])))
    bar.update(1)
  bar.close()
  if not dispatched:
    raise BadValue("the evaluation split produced no batch (is it smaller than batch_size?)")
  fetched = jax.device_get([counts for counts, _ in dispatched])
  c = metrics.concat([{k: np.asarray(v)[valid] for k, v in counts.items()}
                      for counts, (_, valid) in zip(fetched, dispatched)])
  per_image = metrics.per_image(c)
  pooled = metrics.pooled(c)
  return {"jaccard": pooled["jaccard"], "precision": pooled["precision"],
          "mean_image_jaccard": float(per_image["jaccard"].mean()), "images": len(c["union"])}
