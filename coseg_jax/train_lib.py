"""Training and evaluation of CoSegNet (§3.5): sharded jit steps, Orbax checkpoints, logs.

Modelled on the Flax ImageNet example: ``train_and_evaluate(config, workdir)`` builds
the data iterators, the model and the state, then runs one ``jax.jit``-compiled step per
batch over a data-parallel ``Mesh`` of every device (batch axis sharded, parameters and
optimizer state replicated, the state donated). On several hosts call
``jax.distributed.initialize()`` first (train.py does with ``--multihost``); each host
then reads its own slice of every global batch.
"""

import dataclasses
import functools
import importlib.metadata
import json
import os
import time
from typing import Any

from flax.training import train_state
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

import coseg_jax
from coseg_jax import losses, metrics, models, weights
from coseg_jax.constants import DATASETS, STRIDE
from coseg_jax.data import pipeline
from coseg_jax.feature_cache import FeatureCache
from coseg_jax.logging_utils import MetricWriter

ENCODER = "encoder"
MODEL_INPUTS = ("image_a", "image_b", "features_a", "features_b", "mask_a", "mask_b")


class TrainState(train_state.TrainState):
  """Parameters, optimizer state, BatchNorm statistics and the base dropout key.

  ``rng`` holds raw key data (uint32), which checkpoints as a plain array.
  """
  batch_stats: Any
  rng: jax.Array


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; training stopped before saving anything from it."""


# ----------------------------------------------------------------------------- config
def validate_config(config):
  """Fails at start-up, naming the key, on a value that would fail later."""
  from coseg_jax.models.attention import ATTENTIONS  # pylint: disable=g-import-not-at-top
  checks = [
      ("model.attention", config.model.attention in ATTENTIONS, sorted(ATTENTIONS)),
      ("model.dtype", config.model.dtype in models.DTYPES, sorted(models.DTYPES)),
      ("data.dataset", config.data.dataset in DATASETS, " | ".join(DATASETS)),
      ("data.image_size", config.data.image_size > 0 and config.data.image_size % STRIDE == 0,
       f"a positive multiple of {STRIDE}"),
      ("batch_size", config.batch_size > 0, "a positive integer"),
      ("train.num_steps", config.train.num_steps > 0, "a positive integer"),
      ("train.learning_rate", config.train.learning_rate > 0, "a positive number"),
      ("train.log_every", config.train.log_every > 0, "a positive integer"),
      ("train.checkpoint_every", config.train.checkpoint_every > 0, "a positive integer"),
  ]
  for key, ok, expected in checks:
    if not ok:
      value = functools.reduce(lambda c, k: c[k], key.split("."), config)
      raise ValueError(f"config.{key} = {value!r} is invalid: expected {expected}")
  if config.train.cache_features and not config.train.freeze_encoder:
    raise ValueError("config.train.cache_features=True needs config.train.freeze_encoder=True "
                     "(features of a trained encoder change every step)")
  if config.train.freeze_encoder and config.model.encoder_batch_norm:
    raise ValueError("config.train.freeze_encoder=True with config.model.encoder_batch_norm=True "
                     "is not supported: freezing is meant for the pretrained VGG16")
  for key in ("vgg16_weights", "reference_checkpoint"):
    if config.init[key] and not os.path.isfile(config.init[key]):
      raise FileNotFoundError(f"config.init.{key}: no such file {config.init[key]}")


# ----------------------------------------------------------------------------- state
def make_optimizer(train_config):
  """Adam (§3.5) with torch-style L2 weight decay; the encoder gets no update if frozen."""
  tx = optax.chain(optax.add_decayed_weights(train_config.weight_decay),
                   optax.adam(train_config.learning_rate, eps=train_config.adam_eps))
  if not train_config.freeze_encoder:
    return tx
  labels = lambda params: {k: "frozen" if k == ENCODER else "trained" for k in params}
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def create_state(config, model, rng):
  """Initial TrainState: encoder from ``config.init.vgg16_weights``, or every variable from
  ``config.init.reference_checkpoint`` (fine-tuning a released model), if set."""
  init_rng, dropout_rng = jax.random.split(rng)
  variables = weights.init_variables(model, init_rng, config.data.image_size,
                                     config.init.vgg16_weights or None,
                                     config.init.reference_checkpoint or None)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           tx=make_optimizer(config.train),
                           batch_stats=variables["batch_stats"],
                           rng=jax.random.key_data(dropout_rng))


# ----------------------------------------------------------------------------- steps
def pixel_counts(logits, mask):
  """Per-image ``metrics.counts`` of the argmax predictions, inside jit."""
  return metrics.counts(logits.argmax(-1) == 1, mask, xp=jax.numpy)


def train_step(state, batch, *, model, freeze_encoder):
  """One Adam step on a batch of pairs: cross-entropy on both images (§3.5)."""
  dropout_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  frozen = {ENCODER: state.params[ENCODER]} if freeze_encoder else {}
  trained = {k: v for k, v in state.params.items() if k not in frozen}

  if "features_a" in batch:  # cached frozen-encoder features
    inputs = (jax.numpy.concatenate([batch["features_a"], batch["features_b"]]),)
    method = models.CoSegNet.decode_pair
  else:
    inputs, method = (batch["image_a"], batch["image_b"]), None

  def loss_fn(trained_params):
    variables = {"params": {**trained_params, **frozen}, "batch_stats": state.batch_stats}
    (logits_a, logits_b), updates = model.apply(
        variables, *inputs, train=True, mutable=["batch_stats"], rngs={"dropout": dropout_rng},
        method=method)
    loss = losses.pair_loss(logits_a, logits_b, batch["mask_a"], batch["mask_b"])
    return loss, (updates["batch_stats"], logits_a, logits_b)

  (loss, (batch_stats, logits_a, logits_b)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(trained)
  grads = {**grads, **jax.tree.map(jax.numpy.zeros_like, frozen)}
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  c = pixel_counts(logits_a, batch["mask_a"])
  c = jax.tree.map(lambda x, y: (x + y).sum(), c, pixel_counts(logits_b, batch["mask_b"]))
  return state, {"loss": loss, **c}


def eval_step(variables, batch, *, model):
  """Per-image metric counts [2B] (A images then B images) of the pair model in eval mode."""
  logits_a, logits_b = model.apply(variables, batch["image_a"], batch["image_b"])
  a, b = pixel_counts(logits_a, batch["mask_a"]), pixel_counts(logits_b, batch["mask_b"])
  return jax.tree.map(lambda x, y: jax.numpy.concatenate([x, y]), a, b)


# ----------------------------------------------------------------------------- sharding
@dataclasses.dataclass(frozen=True)
class Sharding:
  """A 1-D data-parallel mesh over every device of every process."""
  mesh: Mesh

  @classmethod
  def create(cls):
    return cls(Mesh(np.asarray(jax.devices()), ("data",)))

  @property
  def data(self):
    return NamedSharding(self.mesh, P("data"))

  @property
  def replicated(self):
    return NamedSharding(self.mesh, P())

  def check_batch_size(self, batch_size):
    devices = self.mesh.devices.size
    if batch_size % devices:
      raise ValueError(f"config.batch_size={batch_size} does not divide over {devices} devices "
                       f"({jax.process_count()} processes): use a multiple of {devices}")

  def put_batch(self, local_batch):
    """This host's slice of a global batch -> global model inputs sharded on the batch axis."""
    return {k: jax.make_array_from_process_local_data(self.data, v)
            for k, v in local_batch.items() if k in MODEL_INPUTS}

  def replicate(self, tree):
    """A host-local pytree (identical on every host) -> replicated global arrays."""
    def put(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, self.replicated, lambda index: x[index])
    return jax.tree.map(put, tree)


def compile_steps(model, config, sharding):
  """The jitted train and eval steps over ``sharding``'s mesh; the train state is donated."""
  train = jax.jit(
      functools.partial(train_step, model=model, freeze_encoder=config.train.freeze_encoder),
      in_shardings=(sharding.replicated, sharding.data),
      out_shardings=(sharding.replicated, sharding.replicated),
      donate_argnums=0)
  evaluate = jax.jit(functools.partial(eval_step, model=model),
                     in_shardings=(sharding.replicated, sharding.data),
                     out_shardings=sharding.replicated)
  return train, evaluate


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_managers(workdir, config):
  """Latest-K manager and best-by-validation-Jaccard manager (both Orbax)."""
  def manager(name, **options):
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), name), item_names=("state", "data"),
        options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False,
                                             **options))
  latest = manager("checkpoints", max_to_keep=config.train.keep_checkpoints)
  best = manager("best", max_to_keep=1, best_fn=lambda m: m["val_jaccard"], best_mode="max")
  return latest, best


def save(manager, step, state, data_state, metrics_=None):
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data=ocp.args.JsonSave(data_state)),
               metrics=metrics_)


def restore(manager, step, abstract_state):
  """(state, data iterator state) of checkpoint ``step``, laid out like ``abstract_state``."""
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
  return restored["state"], restored["data"]


def load_variables(checkpoint_dir, step=None):
  """{"params", "batch_stats"} of a checkpoint written by training, without a model.

  ``checkpoint_dir`` is a workdir (its latest checkpoint), its ``checkpoints``/``best``
  folder, or one step folder ``.../checkpoints/<step>``.
  """
  path = os.path.abspath(checkpoint_dir)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if os.path.isdir(os.path.join(path, "state")):  # one step folder
    path, step = os.path.dirname(path), int(os.path.basename(path))
  elif os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  with ocp.CheckpointManager(path, item_names=("state", "data")) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {path}")
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  state = state["state"]
  return {"params": state["params"], "batch_stats": state["batch_stats"]}


# ----------------------------------------------------------------------------- loop
def build_data(config, split, seed):
  """This host's iterator over its slice of the global batches of ``split``."""
  return pipeline.build(config.data, split=split, batch_size=config.batch_size, seed=seed,
                        shard_index=jax.process_index(), shard_count=jax.process_count())


def evaluate(evaluate_step, variables, batches, sharding, max_batches=0):
  """Pooled and mean-per-image precision/Jaccard of the pair model over ``batches``."""
  collected = []
  for i, batch in enumerate(batches):
    if max_batches and i >= max_batches:
      break
    counts = evaluate_step(variables, sharding.put_batch(batch))  # replicated on every host
    valid = batch["valid"]
    if jax.process_count() > 1:
      valid = multihost_utils.process_allgather(valid, tiled=True)
    valid = np.concatenate([valid, valid])  # counts are the A images, then the B images
    collected.append({k: np.asarray(v)[valid] for k, v in counts.items()})
  if not collected:
    raise ValueError("the evaluation split produced no batch (is it smaller than batch_size?)")
  c = metrics.concat(collected)
  per_image = metrics.per_image(c)
  pooled = metrics.pooled(c)
  return {"jaccard": pooled["jaccard"], "precision": pooled["precision"],
          "mean_image_jaccard": float(per_image["jaccard"].mean()), "images": len(c["union"])}


# the packages whose versions a run records besides coseg_jax's (distribution names)
RECORDED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain")


def package_versions():
  """{package: installed version, or None when it is not installed}."""
  versions = {"coseg_jax": coseg_jax.__version__}
  for name in RECORDED_PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def write_run_info(workdir, config):
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"config": config.to_dict(), "versions": package_versions(),
               "devices": jax.device_count(), "processes": jax.process_count()},
              f, indent=2, default=str)


def _check_finite(loss, step, latest):
  if not np.isfinite(loss):
    latest.wait_until_finished()  # an asynchronous save of the last good step completes
    last = latest.latest_step()
    kept = f"the last good checkpoint (step {last}) is intact" if last is not None else \
        "no checkpoint had been written yet"
    raise NonFiniteLossError(f"loss is {loss} at step {step}: training stopped; {kept}. "
                             "Lower config.train.learning_rate or check the data.")


def train_and_evaluate(config, workdir):
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns the state."""
  os.makedirs(workdir, exist_ok=True)
  sharding = Sharding.create()
  sharding.check_batch_size(config.batch_size)
  model = models.build(config.model)
  primary = jax.process_index() == 0
  if primary:
    write_run_info(workdir, config)

  state = create_state(config, model, jax.random.key(config.seed))
  state = sharding.replicate(state)
  train_data = build_data(config, "train", config.seed)
  latest, best = checkpoint_managers(workdir, config)
  start = latest.latest_step() or 0
  if start:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state, data_state = restore(latest, start, abstract)
    train_data.set_state(data_state)
    if primary:
      print(f"resumed from step {start} in {workdir}")

  train, evaluate_step = compile_steps(model, config, sharding)
  cache = None
  if config.train.cache_features:
    cache = FeatureCache(model, jax.tree.map(lambda x: np.asarray(x.addressable_data(0)),
                                             {"params": state.params}))
  writer = MetricWriter(workdir, enabled=primary)
  bar = tqdm.tqdm(total=config.train.num_steps, initial=start, disable=not primary,
                  dynamic_ncols=True, desc="train")
  window, window_start = [], time.perf_counter()
  for step in range(start + 1, config.train.num_steps + 1):
    batch = next(train_data)
    state, step_metrics = train(state, sharding.put_batch(cache(batch) if cache else batch))
    step_metrics = jax.device_get(step_metrics)
    _check_finite(float(step_metrics["loss"]), step, latest)
    window.append(step_metrics)
    bar.update(1)
    if step % config.train.log_every == 0 or step == config.train.num_steps:
      pairs_per_s = len(window) * config.batch_size / (time.perf_counter() - window_start)
      summary = summarise_window(window)
      summary["pairs_per_s"] = pairs_per_s
      writer.write(step, {f"train_{k}": v for k, v in summary.items()})
      bar.set_postfix(loss=f"{summary['loss']:.4f}", pairs_s=f"{pairs_per_s:.2f}")
      window, window_start = [], time.perf_counter()
    last = step == config.train.num_steps
    if (config.train.eval_every and step % config.train.eval_every == 0) or last:
      variables = {"params": state.params, "batch_stats": state.batch_stats}
      result = evaluate(evaluate_step, variables, build_data(config, config.eval.split, 0),
                        sharding, config.eval.max_batches)
      writer.write(step, {f"val_{k}": v for k, v in result.items()})
      save(best, step, state, train_data.get_state(), {"val_jaccard": result["jaccard"]})
    if step % config.train.checkpoint_every == 0 or last:
      save(latest, step, state, train_data.get_state())
  bar.close()
  latest.wait_until_finished()
  best.wait_until_finished()
  writer.close()
  if primary:
    from coseg_jax import plots  # pylint: disable=g-import-not-at-top
    plots.training_curves(writer.jsonl_path, os.path.join(workdir, "curves.png"))
  return state


def summarise_window(window):
  """Mean loss and pooled pixel metrics over the steps since the last log."""
  total = {k: sum(float(m[k]) for m in window) for k in metrics.COUNTS}
  return {"loss": float(np.mean([m["loss"] for m in window])),
          **metrics.pooled({k: np.asarray([v]) for k, v in total.items()})}

