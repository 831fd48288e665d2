"""Runs a tiny training job in its own process (device count and distribution are per process).

  python tests/train_driver.py --workdir W --steps N [--devices D]
      [--process-id I --num-processes P --port PORT] [--kill-after-checkpoint S]
      [--nan-at-step S] [--checkpoint-every C] [--allow-config-changes]

Writes the final train state (params, batch_stats, opt_state, step, rng) to
``<workdir>/final_state.npz`` (process 0 only), keyed by pytree path.
``--kill-after-checkpoint S`` SIGKILLs the process from a watcher thread as soon as
checkpoint S exists: a real crash in the middle of training, for the resume test.
``--nan-at-step S`` feeds step S a batch whose images are NaN (a corrupt input), so the
loss becomes NaN at exactly that step, for the non-finite-loss test. A run stopped by
SIGINT / SIGTERM exits with ``train_lib.Interrupted``'s code (130 / 143), as train.py does.
"""

import argparse
import os
import signal
import sys
import threading
import time

import tiny


def tiny_config(steps):
  """tests/tiny.py's config, in batches of 4 pairs (they divide over 4 devices), with
  dropout (exercises the per-step dropout key) and a checkpoint every 2 steps."""
  config = tiny.tiny_config(synthetic={"num_pairs": 8}, prefetch=2)
  config.seed = 3
  config.batch_size = 4
  config.model.dropout_rate = 0.3
  config.train.num_steps = steps
  config.train.checkpoint_every = 2
  config.eval.max_batches = 1  # the validation at the end: one batch is enough to run it
  return config


def kill_after(path):
  while not os.path.isdir(path):
    time.sleep(0.01)
  os.kill(os.getpid(), signal.SIGKILL)


def poison_train_batch(train_lib, step):
  """Makes ``train_lib``'s training iterator yield NaN images at ``step`` (1-based)."""
  build_data = train_lib.build_data

  def poisoned(config, split, seed):
    batches = build_data(config, split, seed)
    if split != "train":
      return batches
    take = batches.__next__

    class Poisoned:
      get_state, set_state = batches.get_state, batches.set_state
      count = 0

      def __next__(self):
        batch = take()
        self.count += 1
        if self.count == step:
          batch = {**batch, "image_a": batch["image_a"] * float("nan")}
        return batch
    return Poisoned()

  train_lib.build_data = poisoned


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--devices", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--kill-after-checkpoint", type=int, default=0)
  parser.add_argument("--learning-rate", type=float, default=0)
  parser.add_argument("--nan-at-step", type=int, default=0)
  parser.add_argument("--adam-eps", type=float, default=0)
  parser.add_argument("--checkpoint-every", type=int, default=0)
  parser.add_argument("--allow-config-changes", action="store_true")
  args = parser.parse_args()
  # Single-threaded kernels: runs then agree bit for bit even on a loaded machine. LLVM's
  # -O0, as tests/conftest.py: compiling is most of these short runs' time.
  os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={args.devices} "
                             "--xla_cpu_multi_thread_eigen=false "
                             "--xla_backend_optimization_level=0")
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_default_matmul_precision", "float32")
  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                               num_processes=args.num_processes, process_id=args.process_id)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from coseg_jax.training import trainer as train_lib  # pylint: disable=g-import-not-at-top

  config = tiny_config(args.steps)
  if args.learning_rate:
    config.train.learning_rate = args.learning_rate
  if args.adam_eps:
    config.train.adam_eps = args.adam_eps
  if args.checkpoint_every:
    config.train.checkpoint_every = args.checkpoint_every
  if args.nan_at_step:
    poison_train_batch(train_lib, args.nan_at_step)
  if args.kill_after_checkpoint:
    target = os.path.join(args.workdir, "checkpoints", str(args.kill_after_checkpoint))
    threading.Thread(target=kill_after, args=(target,), daemon=True).start()
  try:
    state = train_lib.train_and_evaluate(config, args.workdir, args.allow_config_changes)
  except train_lib.Interrupted as e:
    print(e, flush=True)
    sys.exit(e.exit_code)
  saved = {"params": state.params, "batch_stats": state.batch_stats,
           "opt_state": state.opt_state, "step": state.step, "rng": state.rng}
  flat = {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(saved)[0]}
  if jax.process_index() == 0:
    np.savez(os.path.join(args.workdir, "final_state.npz"), **flat)
  print(f"done: process {jax.process_index()} of {jax.process_count()}, "
        f"{jax.device_count()} devices, step {int(state.step)}")


if __name__ == "__main__":
  main()
