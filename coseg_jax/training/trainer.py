"""Training and evaluation of CoSegNet (§3.5): sharded jit steps, Orbax checkpoints, logs.

Modelled on the Flax ImageNet example: ``train_and_evaluate(config, workdir)`` builds
the data iterators, the model and the state, then runs one ``jax.jit``-compiled step per
batch over a data-parallel ``Mesh`` of every device (batch axis sharded, parameters and
optimizer state replicated, the state donated). On several hosts call
``jax.distributed.initialize()`` first (train.py does with ``--multihost``); each host
then reads its own slice of every global batch.

The host never waits for a step: step metrics stay on the device until a log step or a
save, and the next batch is put on the device while the current step runs. Before every
save the losses since the last check are fetched and checked, so the newest checkpoint
is always one trained on finite losses. SIGINT (Ctrl-C) and SIGTERM (a preemption) finish
the current step, save it and raise ``Interrupted`` (exit code 128 + signal number);
before the first step (encoding views, compiling) they raise it at once.
"""

import functools
import importlib.metadata
import os
import signal
import sys
import threading
import time
from typing import Any

from flax.training import train_state
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

import coseg_jax
from coseg_jax import checkpoints, group, losses, metrics, models, weights
from coseg_jax import config as config_lib
from coseg_jax.errors import UserError
from coseg_jax.evaluators import common as evaluators, modes as modes_lib, steps as eval_steps
from coseg_jax.training import workdir as workdir_lib
from coseg_jax.training.feature_cache import FeatureCache
from coseg_jax.training.metric_log import MetricWriter, read_jsonl
from coseg_jax.parallel import Sharding, build_data

ENCODER = "encoder"


class TrainState(train_state.TrainState):
  """Parameters, optimizer state, BatchNorm statistics and the base dropout key.

  ``rng`` holds raw key data (uint32), which checkpoints as a plain array.
  """
  batch_stats: Any
  rng: jax.Array


class NonFiniteLossError(UserError, FloatingPointError):
  """The loss became NaN or infinite; training stopped before saving anything from it."""


class Interrupted(Exception):
  """SIGINT or SIGTERM stopped training after saving the current step (``step``), or
  before the first step (``step=None``: setting up, e.g. encoding views; nothing to save)."""

  def __init__(self, signum, step, workdir):
    self.exit_code = 128 + signum
    name = signal.Signals(signum).name
    if step is None:
      super().__init__(f"{name}: stopped before the first step of {workdir}; nothing to save "
                       "(finished view encodings stay cached); run the same command to start")
    else:
      super().__init__(f"{name}: stopped after step {step}, saved in "
                       f"{os.path.join(workdir, 'checkpoints', str(step))}; run the same "
                       "command again to resume")


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
def train_step(state, batch, *, model, freeze_encoder, foreground_weight=1.0):
  """One Adam step on a batch of pairs: cross-entropy on both images (§3.5)."""
  dropout_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  frozen = {ENCODER: state.params[ENCODER]} if freeze_encoder else {}
  trained = {k: v for k, v in state.params.items() if k not in frozen}

  if "features_a" in batch:  # cached frozen-encoder features
    features = group.concatenate([batch["features_a"], batch["features_b"]])
    # cached views are stored as float16
    inputs = (jax.tree.map(lambda x: x.astype(jax.numpy.float32), features),)
    method = models.CoSegNet.decode_pair
  else:
    inputs = (batch["image_a"], batch["image_b"])
    method = None

  def loss_fn(trained_params):
    variables = {"params": {**trained_params, **frozen}, "batch_stats": state.batch_stats}
    (logits_a, logits_b), updates = model.apply(
        variables, *inputs, train=True, mutable=["batch_stats"], rngs={"dropout": dropout_rng},
        method=method)
    loss = losses.pair_loss(logits_a, logits_b, batch["mask_a"], batch["mask_b"],
                            foreground_weight)
    return loss, (updates["batch_stats"], logits_a, logits_b)

  (loss, (batch_stats, logits_a, logits_b)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(trained)
  grads = {**grads, **jax.tree.map(jax.numpy.zeros_like, frozen)}
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  c = eval_steps.pixel_counts(logits_a, batch["mask_a"])
  c = jax.tree.map(lambda x, y: (x + y).sum(), c,
                   eval_steps.pixel_counts(logits_b, batch["mask_b"]))
  return state, {"loss": loss, **c}


def compile_steps(model, config, sharding):
  """The jitted train and eval steps over ``sharding``'s mesh; the train state is donated."""
  train = jax.jit(
      functools.partial(train_step, model=model, freeze_encoder=config.train.freeze_encoder,
                        foreground_weight=config.train.foreground_weight),
      in_shardings=(sharding.replicated, sharding.data),
      out_shardings=(sharding.replicated, sharding.replicated),
      donate_argnums=0)
  return train, eval_steps.compile_eval_step(model, sharding)


# ----------------------------------------------------------------------------- loop
def versions():
  """The versions of the libraries a run was trained with, and its devices, for config.json."""
  return {"versions": package_versions(), "devices": jax.device_count(),
          "processes": jax.process_count()}


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


def write_run_info(workdir, config, allow_config_changes=False):
  """``<workdir>/config.json``, refused if it differs from a saved one (``workdir``)."""
  workdir_lib.write_config(workdir, config, allow_config_changes, versions())


class StopSignals:
  """``with StopSignals(workdir) as stop``: once ``stop.stepping()`` is called, SIGINT /
  SIGTERM set ``stop.signum`` instead of killing and a second signal stops at once
  (KeyboardInterrupt); before it (setting up: encoding views, compiling) a signal raises
  ``Interrupted`` at once, as there is no step to finish. Only in the main thread of a
  single-process run (several hosts would stop at different steps)."""

  def __init__(self, workdir):
    self.signum = None
    self.workdir = workdir
    self._stepping = False
    self._previous = {}

  def stepping(self):
    """From now on a signal finishes the current step instead of stopping at once."""
    self._stepping = True

  def __enter__(self):
    if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if not self._stepping:
      raise Interrupted(signum, None, self.workdir)
    if self.signum is not None:
      raise KeyboardInterrupt
    self.signum = signum
    print(f"\n{signal.Signals(signum).name}: finishing the current step and saving it "
          "(send it again to stop at once)", file=sys.stderr, flush=True)

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def check_finite(window, checkpoints_):
  """Raises ``NonFiniteLossError`` naming the first step of ``window`` with a bad loss.

  ``window``: [(step, device metrics)] not yet checked; fetching the losses waits for them.
  """
  if not window:
    return
  losses_ = jax.device_get([m["loss"] for _, m in window])
  bad = [(step, float(loss)) for (step, _), loss in zip(window, losses_) if not np.isfinite(loss)]
  if bad:
    step, loss = bad[0]
    checkpoints.finish(checkpoints_)  # an asynchronous save of the last good step completes
    last = checkpoints_.latest_step()
    kept = f"the last good checkpoint (step {last}) is intact" if last is not None else \
        "no checkpoint had been written yet"
    raise NonFiniteLossError(f"loss is {loss} at step {step}: training stopped; {kept}. "
                             "Lower config.train.learning_rate or check the data.")


def summarise_window(window):
  """Mean loss and pooled pixel metrics over the fetched metrics of the steps since the last log."""
  total = {k: sum(float(m[k]) for m in window) for k in metrics.COUNTS}
  return {"loss": float(np.mean([m["loss"] for m in window])),
          **metrics.pooled({k: np.asarray([v]) for k, v in total.items()})}


def train_and_evaluate(config, workdir, allow_config_changes=False):
  """Trains ``config`` in ``workdir``, resuming from its newest intact checkpoint.

  Returns the final state. Raises ``workdir.WorkdirError`` (locked workdir, changed
  config), ``checkpoints.CheckpointError`` (a checkpoint that cannot be written or
  read), ``NonFiniteLossError`` and ``Interrupted``, each with a one-line message.
  """
  config_lib.validate(config)
  primary = jax.process_index() == 0
  workdir = workdir_lib.make(workdir)
  with workdir_lib.Lock(workdir, enabled=primary) as lock:
    if lock.taken_over:
      print(f"warning: took over the lock of a training run that is gone "
            f"(host {lock.taken_over['host']}, pid {lock.taken_over['pid']})", file=sys.stderr)
    if primary:
      write_run_info(workdir, config, allow_config_changes)
    with StopSignals(workdir) as stop:
      return _train(config, workdir, primary, stop)


def _train(config, workdir, primary, stop):
  """The loop of ``train_and_evaluate`` in a locked workdir with its config written."""
  sharding = Sharding.create()
  sharding.check_batch_size(config.batch_size)
  model = models.build(config.model)
  state = create_state(config, model, jax.random.key(config.seed))
  host_params = jax.tree.map(np.asarray, {"params": state.params})
  state = sharding.replicate(state)
  recipe = config_lib.load_recipe(config.recipe)
  own_data = recipe.train_data(config, model, host_params) if hasattr(recipe, "train_data") \
      else None
  train_data = build_data(config, "train", config.seed) if own_data is None else own_data
  checkpoints_ = checkpoints.manager(workdir, config.train.keep_checkpoints)
  start, restored, data_state = checkpoints.restore_latest(
      checkpoints_, jax.tree.map(ocp.utils.to_shape_dtype_struct, state),
      warn=lambda message: print(message, file=sys.stderr) if primary else None)
  if start:
    state = restored
    train_data.set_state(data_state)
    if primary:
      print(f"resumed from step {start} in {workdir}")

  train, evaluate_step = compile_steps(model, config, sharding)
  also = during_training(config)
  cache = None
  if config.train.cache_features and own_data is None:  # a recipe's batches come encoded
    cache = FeatureCache(model, host_params)
  put = lambda b: sharding.put_batch(cache(b) if cache else b)
  num_steps = config.train.num_steps
  writer = MetricWriter(workdir, enabled=primary, resume_step=start)
  bar = tqdm.tqdm(total=num_steps, initial=start, disable=not primary, dynamic_ncols=True,
                  desc="train")
  window, window_start = [], time.perf_counter()  # [(step, device metrics)] since the last log
  stop.stepping()
  try:
    batch = put(next(train_data)) if start < num_steps else None
    for step in range(start + 1, num_steps + 1):
      state, step_metrics = train(state, batch)
      window.append((step, step_metrics))
      last = step == num_steps
      validate = bool(config.train.eval_every and step % config.train.eval_every == 0) or last
      interrupted = stop.signum is not None
      save = step % config.train.checkpoint_every == 0 or validate or interrupted
      data_state = train_data.get_state() if save else None  # before the next batch is read
      if not (last or interrupted):
        batch = put(next(train_data))  # copied to the device while the step runs
      bar.update(1)
      if step % config.train.log_every == 0 or last or interrupted:
        _log(window, config, writer, bar, checkpoints_, window_start)
        window, window_start = [], time.perf_counter()
      if save:
        check_finite(window, checkpoints_)  # before validating or saving this state
      val_jaccard = None
      if validate:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        result = eval_steps.evaluate(evaluate_step, variables,
                                     build_data(config, config.eval.split, 0), sharding,
                                     config.eval.max_batches, show_progress=primary)
        logged = {f"val_{k}": v for k, v in result.items()}
        if also is not None:
          logged.update({f"val_{m}_jaccard": evaluators.jaccard(r)
                         for m, r in also.run(model, variables).items()})
        writer.write(step, logged)
        val_jaccard = result["jaccard"]
      if save:
        checkpoints.save(checkpoints_, step, state, data_state, val_jaccard)
      if interrupted:
        checkpoints.finish(checkpoints_)
        raise Interrupted(stop.signum, step, workdir)
    checkpoints.finish(checkpoints_)
  finally:
    bar.close()
    writer.close()
  if primary:
    from coseg_jax import plots  # pylint: disable=g-import-not-at-top
    plots.training_curves(read_jsonl(writer.jsonl_path), os.path.join(workdir, "curves.png"))
  return state


def during_training(config):
  """The evaluator of ``config.eval.during_training`` on ``config.eval.split``, or None."""
  name = config.eval.during_training
  if not name:
    return None
  mode = modes_lib.MODES[name]
  return evaluators.build(mode.protocol, config, [name], split=config.eval.split)


def _log(window, config, writer, bar, checkpoints_, window_start):
  """Fetches and checks the window's metrics, writes their summary and the pairs/s.

  The time is read after the fetch, which waits for the window's last step: steps are
  dispatched asynchronously, so the time to dispatch them says nothing.
  """
  check_finite(window, checkpoints_)
  summary = summarise_window(jax.device_get([m for _, m in window]))
  summary["pairs_per_s"] = len(window) * config.batch_size / (time.perf_counter() - window_start)
  writer.write(window[-1][0], {f"train_{k}": v for k, v in summary.items()})
  bar.set_postfix(loss=f"{summary['loss']:.4f}", pairs_s=f"{summary['pairs_per_s']:.2f}")
