"""Framework ratio: CoSegNet in JAX (jit) against its PyTorch twin, same weights, same process.

  python -m bench.bench_framework                                # CA, FCA, CSA; forward + train
  python -m bench.bench_framework --attention csa --modes train --repeats 7
  python -m bench.bench_framework --torch-compile                # also torch.compile (inductor)

For each attention and mode, at 224x224 with a batch of 4 pairs (8 images through the
Siamese encoder/decoder):

* forward: the pair forward in eval mode. JAX: ``jax.jit(model.apply)``; torch: the
  twin in ``eval()`` under ``torch.inference_mode()``.
* train: one full optimisation step. JAX: ``train_lib.train_step`` jitted by
  ``train_lib.compile_steps`` (1-device mesh, the train state donated) with the
  defaults of configs/default.py (dropout 0.2, Adam 1e-5, weight decay 5e-4);
  torch: the twin in ``train()`` mode with the same dropout, ``pair_loss``,
  ``backward()`` and ``torch.optim.Adam(lr, eps, weight_decay)``.

Both start from identical weights (``torch_twin.load_variables``) and identical inputs
(NHWC for JAX, NCHW for torch, converted outside the timed region). Each framework uses
the same number of threads: XLA's CPU client uses one intra-op thread per core it may
run on, torch gets ``torch.set_num_threads`` of the same count. Repetitions alternate
between the frameworks (the order rotates every round) so that load from other
processes on a shared machine hits all of them alike; the first ``--warmup`` rounds
(compilation) are dropped and the median of the rest is reported as pairs/s.
Ratio = JAX pairs/s / torch pairs/s (> 1: JAX is faster). Results go to a JSON file.
"""

import argparse
import copy
import functools
import os
import time

import jax
import numpy as np
import optax

from bench.common import OPS, print_table, write_json
from coseg_jax import config as config_lib
from coseg_jax import losses, models
from coseg_jax.training import trainer as train_lib

ATTENTIONS = ("ca", "fca", "csa")
MODES = ("forward", "train")


def make_config(attention, image_size, batch_size, dtype="float32"):
  config = config_lib.default_config()
  config.model.attention = attention
  config.model.dtype = dtype
  config.data.image_size = image_size
  config.batch_size = batch_size
  return config


def make_batch(batch_size, image_size, seed=0):
  """Random pairs (normalised-like images) and masks with some void pixels."""
  rng = np.random.default_rng(seed)
  shape = (batch_size, image_size, image_size)
  images = rng.normal(size=(2,) + shape + (3,)).astype(np.float32)
  masks = rng.choice(np.array([0, 1, losses.IGNORE], np.int32), size=(2,) + shape,
                     p=[0.6, 0.35, 0.05])
  return {"image_a": images[0], "image_b": images[1], "mask_a": masks[0], "mask_b": masks[1]}


class CompileCounter:
  """Wraps a function to be jitted: counts its traces (each new trace is a compile)."""

  def __init__(self, fn):
    self.fn, self.traces = fn, 0

  def __call__(self, *args, **kwargs):
    self.traces += 1
    return self.fn(*args, **kwargs)


class JaxRunner:
  """The JAX side: ``forward()`` / ``train()`` run one step and wait for its result.

  ``train`` is the project's step (``train_lib.compile_steps``: sharded, donated state);
  with ``user_step`` it is a step written the way a user writes one: ``jax.value_and_grad``
  of ``losses.pair_loss`` over ``model.apply`` and ``optax.adam``, jitted.
  """

  def __init__(self, config, model, batch, ops="fast", user_step=False):
    self.model = model = model.clone(ops=OPS[ops])
    self.sharding = train_lib.Sharding.create()
    state = train_lib.create_state(config, model, jax.random.key(config.seed))
    # host copy first: the train step donates (and so invalidates) the state's buffers
    self.host_variables = jax.device_get({"params": state.params,
                                          "batch_stats": state.batch_stats})
    self.variables = jax.device_put(self.host_variables)
    self.state = self.sharding.replicate(state)
    self.batch = self.sharding.put_batch(batch)
    self._forward_fn = CompileCounter(functools.partial(model.apply, train=False))
    self.forward_step = jax.jit(self._forward_fn)
    if user_step:
      self._train_fn = CompileCounter(user_train_step(model, config))
      self.train_step = jax.jit(self._train_fn)
      tx = optax.adam(config.train.learning_rate)
      # committed to the device as the step's outputs are, so that the second call does not
      # trace again
      self.state = jax.device_put((self.variables["params"], self.variables["batch_stats"],
                                   tx.init(self.variables["params"]), jax.random.key(0)),
                                  jax.devices()[0])
    else:
      self._train_fn = None
      self.train_step, _ = train_lib.compile_steps(model, config, self.sharding)

  def forward(self):
    jax.block_until_ready(self.forward_step(self.variables, self.batch["image_a"],
                                        self.batch["image_b"]))

  def train(self):
    self.state, step_metrics = self.train_step(self.state, self.batch)
    jax.block_until_ready((self.state, step_metrics))

  def compiles(self):
    counts = {"forward": self._forward_fn.traces}
    if self._train_fn is not None:
      counts["train"] = self._train_fn.traces
    return counts


def user_train_step(model, config):
  """(params, batch_stats, opt_state, rng), batch -> the next ones and the loss: a training
  step as a user writes it, with nothing from ``coseg_jax.training``."""
  tx = optax.adam(config.train.learning_rate)

  def loss_fn(params, batch_stats, batch, rng):
    (logits_a, logits_b), updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["image_a"], batch["image_b"],
        train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    loss = losses.pair_loss(logits_a, logits_b, batch["mask_a"], batch["mask_b"])
    return loss, updates["batch_stats"]

  def step(state, batch):
    params, batch_stats, opt_state, rng = state
    rng, dropout_rng = jax.random.split(rng)
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, batch, dropout_rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state, rng), loss
  return step


class TorchRunner:
  """The PyTorch twin with the same weights; ``compiled`` wraps it in ``torch.compile``."""

  def __init__(self, config, host_variables, batch, compiled=False, channels_last=False,
               device="cpu"):
    import torch  # pylint: disable=g-import-not-at-top
    from coseg_jax.interop import torch_twin as tt  # pylint: disable=g-import-not-at-top
    self.torch, self.tt, self.device = torch, tt, torch.device(device)
    torch.backends.cudnn.benchmark = True  # cuDNN picks its algorithms as XLA autotunes
    m = config.model
    twin = tt.CoSegNetTorch(m.attention, tuple(m.encoder_widths), tuple(m.decoder_widths),
                            dropout_rate=m.dropout_rate).load_variables(host_variables)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.twin = twin.to(self.device, memory_format=memory_format)
    # bfloat16 as JAX runs it: float32 parameters and optimizer state, bfloat16 compute
    self.autocast = torch.autocast(self.device.type, torch.bfloat16,
                                   enabled=m.dtype == "bfloat16" and self.device.type != "cpu")
    self.eval_twin = copy.deepcopy(self.twin).eval()
    t = config.train
    self.optimizer = torch.optim.Adam(self.twin.parameters(), lr=t.learning_rate, eps=t.adam_eps,
                                      weight_decay=t.weight_decay)
    self.a, self.b = (tt.to_nchw(batch[k]).to(self.device).contiguous(memory_format=memory_format)
                      for k in ("image_a", "image_b"))
    self.mask_a, self.mask_b = (torch.from_numpy(batch[k]).to(self.device)
                                for k in ("mask_a", "mask_b"))
    self._eval_call, self._train_call = self.eval_twin, self.twin
    if compiled:
      self._eval_call, self._train_call = torch.compile(self.eval_twin), torch.compile(self.twin)

  def forward(self):
    with self.torch.inference_mode(), self.autocast:
      self._eval_call(self.a, self.b)
    if self.device.type == "cuda":
      self.torch.cuda.synchronize(self.device)

  def train(self):
    self.twin.train()
    self.optimizer.zero_grad(set_to_none=True)
    with self.autocast:
      logits_a, logits_b = self._train_call(self.a, self.b)
      loss = self.tt.pair_loss(logits_a.float(), logits_b.float(), self.mask_a, self.mask_b)
    loss.backward()
    self.optimizer.step()
    loss.item()


def interleaved(runners, mode, warmup, repeats, log=print):
  """{name: [seconds]} of ``repeats`` timed rounds after ``warmup`` rounds; within a round
  every runner runs once, the order rotating from round to round."""
  names = list(runners)
  times = {name: [] for name in names}
  for round_ in range(warmup + repeats):
    shift = round_ % len(names)
    for name in names[shift:] + names[:shift]:
      start = time.perf_counter()
      getattr(runners[name], mode)()
      seconds = time.perf_counter() - start
      if round_ >= warmup:
        times[name].append(seconds)
      log(f"  {mode:7s} round {round_:2d} {name:14s} {seconds:8.3f} s"
          + ("  (warm-up)" if round_ < warmup else ""))
  return times


def thread_info(threads):
  import torch  # pylint: disable=g-import-not-at-top
  return {"affinity_cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
          "torch_interop_threads": torch.get_num_threads() and torch.get_num_interop_threads(),
          "xla_threads": threads, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--attention", default=",".join(ATTENTIONS), help="comma-separated")
  parser.add_argument("--modes", default=",".join(MODES), help="forward,train")
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batch-size", type=int, default=4, help="pairs per step")
  parser.add_argument("--dtype", default="float32",
                      help="compute dtype (bfloat16: float32 parameters and optimizer "
                      "state; torch on a GPU under autocast, on the CPU float32)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (compilation)")
  parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is kept")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch threads (0 = the cores this process may use, as XLA does)")
  parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
  parser.add_argument("--torch-channels-last", action="store_true",
                      help="also time eager torch with channels_last tensors")
  parser.add_argument("--no-torch", action="store_true", help="time JAX alone")
  parser.add_argument("--torch-device", default="cpu", help="cpu or cuda (a GPU's run)")
  parser.add_argument("--jax-variants", default="",
                      help="also time the model built with these ops (ablation), comma-"
                      f"separated from {tuple(OPS)[1:]}: xla = lax convs and flax max-pool "
                      "(XLA's own gradients); kernel_only / pool_only = one rewrite each")
  parser.add_argument("--user-step", action="store_true",
                      help="also time a train step written as a user writes one "
                      "(value_and_grad over model.apply, optax.adam), with the default ops "
                      "and, if 'xla' is among --jax-variants, with conv.XLA")
  parser.add_argument("--out", default="bench/results/framework.json")
  args = parser.parse_args(argv)

  import torch  # pylint: disable=g-import-not-at-top
  cores = len(os.sched_getaffinity(0))
  torch.set_num_threads(args.threads or cores)
  attentions = args.attention.split(",")
  modes = args.modes.split(",")
  info = thread_info(cores)
  print(f"threads: {info}")
  batch = make_batch(args.batch_size, args.image_size)
  rows = []
  for attention in attentions:
    config = make_config(attention, args.image_size, args.batch_size, args.dtype)
    model = models.build(config.model)
    runners = {"jax": JaxRunner(config, model, batch)}
    variants = args.jax_variants.split(",") if args.jax_variants else []
    for variant in variants:
      runners[f"jax_{variant}"] = JaxRunner(config, model, batch, variant)
    if args.user_step:
      for variant in ["fast"] + [v for v in variants if v == "xla"]:
        runners[f"user_{variant}"] = JaxRunner(config, model, batch, variant, user_step=True)
    if not args.no_torch:
      runners["torch"] = TorchRunner(config, runners["jax"].host_variables, batch,
                                     device=args.torch_device)
      if args.torch_channels_last:
        runners["torch_cl"] = TorchRunner(config, runners["jax"].host_variables, batch,
                                          channels_last=True)
      if args.torch_compile:
        runners["torch_compile"] = TorchRunner(config, runners["jax"].host_variables, batch,
                                               compiled=True)
    for mode in modes:
      print(f"{attention} {mode}:")
      try:
        times = interleaved(runners, mode, args.warmup, args.repeats)
      except Exception as e:  # pylint: disable=broad-except
        if "torch_compile" not in runners:
          raise
        print(f"torch.compile failed ({type(e).__name__}: {e}); timing without it")
        runners.pop("torch_compile")
        times = interleaved(runners, mode, args.warmup, args.repeats)
      row = {"attention": attention, "mode": mode, "runners": list(times)}
      for name, seconds in times.items():
        row[f"{name}_s"] = float(np.median(seconds))
        row[f"{name}_pairs_per_s"] = args.batch_size / float(np.median(seconds))
        row[f"{name}_all_s"] = [float(s) for s in seconds]
      for name in times:
        if name != "jax":
          row[f"jax_over_{name}"] = row["jax_pairs_per_s"] / row[f"{name}_pairs_per_s"]
      rows.append(row)
    compiles = runners["jax"].compiles()
    print(f"jax compiles after all rounds: {compiles}")
    for row in rows:
      if row["attention"] == attention:
        row["jax_compiles"] = compiles.get(row["mode"], 0)
    del runners
  print()
  names = list(dict.fromkeys(n for row in rows for n in row["runners"]))
  columns = ["attention", "mode"] + [f"{n}_pairs_per_s" for n in names] + [
      f"jax_over_{n}" for n in names[1:]]
  print_table(rows, columns)
  write_json(args.out, {"args": vars(args), "threads": info, "rows": rows,
                        "load_average": os.getloadavg()})


if __name__ == "__main__":
  main()
