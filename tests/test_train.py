"""Training: multi-device and multi-host equivalence, exact resume after SIGKILL, NaN stop."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from coseg_jax import checkpoints
from coseg_jax.training import trainer as train_lib
from coseg_jax.training.metric_log import read_jsonl
from tiny import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, "tests", "train_driver.py")
STEPS = 4  # the resume test: killed after checkpoint 2, resumed to the end
EQUIVALENCE_STEPS = 2
LEARNING_RATE = 1e-3  # tests/train_driver.py's
# Adam divides each update by |gradient|, so float-level differences in near-zero
# gradients (the decoder's conv biases, whose effect the following BatchNorm mostly
# cancels) become learning-rate-sized steps when the summation order changes with the
# device count. A larger epsilon keeps the comparison meaningful; the resume test,
# which must be bit-exact, uses the default.
EQUIVALENCE = ("--steps", EQUIVALENCE_STEPS, "--adam-eps", 1e-3)


def launch(workdir, *extra):
  env = {**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"}
  env.pop("XLA_FLAGS", None)
  return subprocess.Popen([sys.executable, DRIVER, "--workdir", str(workdir), *map(str, extra)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=REPO)


def run(workdir, *extra, expect_rc=0):
  process = launch(workdir, *extra)
  output, _ = process.communicate(timeout=600)
  assert process.returncode == expect_rc, output[-4000:]
  return output


def final_state(workdir):
  with np.load(os.path.join(workdir, "final_state.npz")) as data:
    return {k: data[k] for k in data.files}


def assert_same_training(a, b):
  """The same train state: every array of it compared.

  Parameters within 1% of one learning-rate step per step taken (Adam moves each by
  about lr); gradients (Adam's first moment and the root of its second, the gradients'
  RMS) and BatchNorm statistics, which after the first step see those slightly
  different parameters, within 1e-3 of each array's largest value; the step, Adam's
  step count and the dropout key exactly.
  """
  assert a.keys() == b.keys()
  assert a["['step']"] == b["['step']"] == EQUIVALENCE_STEPS
  for key in a:
    x, y = a[key].astype(np.float64), b[key].astype(np.float64)
    if ".nu" in key:
      x, y = np.sqrt(x), np.sqrt(y)
    difference = np.abs(x - y).max()
    if key.startswith("['params']"):
      assert difference < 0.01 * LEARNING_RATE * EQUIVALENCE_STEPS, key
    elif ".mu" in key or ".nu" in key:
      assert difference / max(np.abs(x).max(), 1e-12) < 1e-3, key
    elif key.startswith("['batch_stats']"):
      # Running means near zero (the first decoder BatchNorm's are ~1e-4) carry float32
      # noise of the cross-device reduction order: 1e-2 of the largest value.
      assert difference / max(np.abs(x).max(), 1e-12) < 1e-2, key
    else:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_device")
  run(workdir, "--devices", 1, *EQUIVALENCE)
  return workdir


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
  """Data-parallel over 2 devices: the same sharded step as over 4 or 400, at half the
  compile and run time of 4 on the 2-core CI machine."""
  workdir = tmp_path_factory.mktemp("two_devices")
  output = run(workdir, "--devices", 2, *EQUIVALENCE)
  assert "2 devices" in output
  return workdir


@pytest.mark.slow
def test_two_devices_equal_one_device(one_device, two_devices):
  assert_same_training(final_state(one_device), final_state(two_devices))
  loss = lambda w: [r["train_loss"] for r in read_jsonl(os.path.join(w, "metrics.jsonl"))
                    if "train_loss" in r]
  assert len(loss(one_device)) == EQUIVALENCE_STEPS
  np.testing.assert_allclose(loss(one_device), loss(two_devices), rtol=1e-5)


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, two_devices):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  processes = [launch(tmp_path, "--devices", 1, "--num-processes", 2,
                      "--process-id", i, "--port", port, *EQUIVALENCE) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output[-4000:]
  assert "process 1 of 2, 2 devices" in outputs[1]
  assert_same_training(final_state(two_devices), final_state(tmp_path))
  # Only process 0 logs: one record per step, one TensorBoard event file, one config.
  steps = [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "train_loss" in r]
  assert steps == list(range(1, EQUIVALENCE_STEPS + 1))
  assert len(os.listdir(tmp_path / "tensorboard")) == 1
  run_info = json.loads((tmp_path / "config.json").read_text())
  assert run_info["processes"] == 2 and run_info["versions"]["orbax-checkpoint"]
  assert os.listdir(tmp_path / "checkpoints") == [str(EQUIVALENCE_STEPS)]


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(tmp_path_factory):
  uninterrupted, killed = tmp_path_factory.mktemp("uninterrupted"), tmp_path_factory.mktemp("killed")
  run(uninterrupted, "--steps", STEPS)
  run(killed, "--steps", STEPS, "--kill-after-checkpoint", 2, expect_rc=-signal.SIGKILL)
  assert not os.path.exists(killed / "final_state.npz")
  assert "2" in os.listdir(killed / "checkpoints")
  assert f"step {STEPS}" in run(killed, "--steps", STEPS)
  steps = [r["step"] for r in read_jsonl(killed / "metrics.jsonl") if "train_loss" in r]
  assert steps == list(range(1, STEPS + 1))  # one row per step, none replayed twice
  expected, resumed = final_state(uninterrupted), final_state(killed)
  assert expected.keys() == resumed.keys()
  for key in expected:  # params, BatchNorm statistics, Adam state, step and key: bit-exact
    np.testing.assert_array_equal(resumed[key], expected[key], err_msg=key)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
  output = run(tmp_path, "--steps", STEPS, "--nan-at-step", 3, expect_rc=1)
  assert "loss is nan at step 3: training stopped" in output
  assert "the last good checkpoint (step 2) is intact" in output
  assert os.listdir(tmp_path / "checkpoints") == ["2"]
  _, variables = checkpoints.load_variables(checkpoints.resolve(tmp_path))  # still loads
  assert "encoder" in variables["params"]


def test_batch_that_does_not_divide_the_devices(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh  # pylint: disable=g-import-not-at-top
  fake = train_lib.Sharding(Mesh(np.asarray(jax.devices()).reshape(-1), ("data",)))
  object.__setattr__(fake, "mesh", type("M", (), {"devices": np.zeros(4)})())
  fake.check_batch_size(8)  # divides: no error
  with pytest.raises(ValueError, match="batch_size=6 does not divide over 4 devices"):
    fake.check_batch_size(6)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_state(tmp_path):
  sys.path.insert(0, os.path.join(REPO, "tests"))
  from train_driver import tiny_config  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  config = tiny_config(steps=2)
  config.model.dtype = "bfloat16"
  state = train_lib.train_and_evaluate(config, str(tmp_path))
  dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state, state.batch_stats))
            if np.issubdtype(x.dtype, np.floating)}
  assert dtypes == {np.dtype("float32")}
  losses = [r["train_loss"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "train_loss" in r]
  assert len(losses) == 2 and all(np.isfinite(losses))
  model = train_lib.models.build(config.model)
  x = jax.numpy.zeros((1, 64, 64, 3))
  f = model.apply({"params": state.params}, x, method=model.encode)
  assert f.dtype == jax.numpy.bfloat16


@pytest.mark.slow
def test_a_group_mode_is_logged_at_validation(tmp_path):
  """config.eval.during_training: the held-out groups scored at every validation."""
  config = tiny_config()
  config.eval.during_training = "group_mean"
  config.eval.max_batches = 1
  config.train.eval_every = 1
  train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  logged = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "val_jaccard" in r]
  assert [r["step"] for r in logged] == [1, 2]
  assert all(0 <= r["val_group_mean_jaccard"] <= 1 for r in logged)
