"""Training runs, checkpoints and command lines under faults: nothing lost, every bad input named.

A changed config on restart, two runs on one workdir, bad numbers, a corrupt newest
checkpoint, SIGTERM, a full disk, replayed metrics, and the one-line errors of every
command line.
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from coseg_jax import checkpoints, group, models, runs, weights
from coseg_jax.training import trainer as train_lib, workdir
from coseg_jax.apps import cli, port_weights, segment, voc_pairs
from coseg_jax.evaluators import evaluate
from coseg_jax.proj.real_photos import recipe
from coseg_jax.training.metric_log import read_jsonl
import test_evaluators as evaluate_tests
from test_segment import noise
from train_driver import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4  # checkpoints at steps 2 and 4 (tiny_config saves every 2 steps)


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
  path = tmp_path_factory.mktemp("run4")
  train_lib.train_and_evaluate(tiny_config(STEPS), str(path))
  return path


@pytest.fixture
def run_copy(run4, tmp_path):
  path = tmp_path / "run"
  shutil.copytree(run4, path)
  return path


def snapshot(path):
  """{relative path: bytes} of every file under ``path``."""
  return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
          if p.is_file()}


def corrupt(step_dir):
  """Overwrites every file of the step's train state with garbage of the same length."""
  for p in (step_dir / "state").rglob("*"):
    if p.is_file():
      p.write_bytes(b"\x00garbage" * (p.stat().st_size // 8 + 1))


def train_steps(path):
  return [r["step"] for r in read_jsonl(path / "metrics.jsonl") if "train_loss" in r]


# ----------------------------------------------------------------------------- 1: config
@pytest.mark.slow
def test_changed_config_is_refused_before_anything_is_written(run_copy):
  before = snapshot(run_copy)
  config = tiny_config(STEPS)
  config.model.attention = "fca"
  with pytest.raises(workdir.WorkdirError, match=r"model.attention: 'csa' -> 'fca'.*refusing"):
    train_lib.train_and_evaluate(config, str(run_copy), allow_config_changes=True)
  longer = tiny_config(STEPS + 2)
  with pytest.raises(workdir.WorkdirError,
                     match=r"train.num_steps: 4 -> 6: pass --allow_config_changes"):
    train_lib.train_and_evaluate(longer, str(run_copy))
  assert snapshot(run_copy) == before  # config.json, checkpoints and logs untouched
  assert runs.load_run(workdir=run_copy)[0].model.attention == "csa"
  safe = tiny_config(STEPS)
  safe.train.log_every = 2
  train_lib.train_and_evaluate(safe, str(run_copy), allow_config_changes=True)
  saved = json.loads((run_copy / "config.json").read_text())
  assert saved["config"]["train"]["log_every"] == 2
  assert saved["changes"] == [{"train.log_every": [1, 2]}]


@pytest.mark.slow
def test_a_start_that_failed_before_any_checkpoint_can_be_corrected(tmp_path):
  wrong = tiny_config(STEPS)
  wrong.data.dataset = "folder"
  wrong.data.root = str(tmp_path)  # no images in it: fails after config.json is written
  with pytest.raises(FileNotFoundError, match="no images found"):
    train_lib.train_and_evaluate(wrong, str(tmp_path / "run"))
  assert (tmp_path / "run" / "config.json").is_file()
  fixed = tiny_config(STEPS)
  train_lib.write_run_info(tmp_path / "run", fixed)  # nothing to resume: not refused
  (tmp_path / "run" / "checkpoints" / "2").mkdir(parents=True)
  with pytest.raises(workdir.WorkdirError, match="data.dataset: 'synthetic' -> 'folder'"):
    train_lib.write_run_info(tmp_path / "run", wrong)


# ----------------------------------------------------------------------------- 2: lock
@pytest.mark.slow
def test_second_run_on_a_workdir_is_refused_and_a_stale_lock_taken_over(run_copy, capsys):
  lock = run_copy / workdir.LOCK_FILE
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  host = socket.gethostname()
  try:
    lock.write_text(json.dumps({"host": host, "pid": holder.pid}))
    with pytest.raises(workdir.WorkdirError,
                       match=f"in use by another training run \\(host {host}, pid {holder.pid}\\)"):
      train_lib.train_and_evaluate(tiny_config(STEPS), str(run_copy))
    assert lock.exists()
  finally:
    holder.kill()
    holder.wait()
  lock.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
  with pytest.raises(workdir.WorkdirError, match="on host elsewhere \\(pid 1\\); if that run"):
    train_lib.train_and_evaluate(tiny_config(STEPS), str(run_copy))
  lock.write_text(json.dumps({"host": host, "pid": holder.pid}))  # its process is gone
  train_lib.train_and_evaluate(tiny_config(STEPS), str(run_copy))
  assert f"took over the lock of a training run that is gone (host {host}, pid {holder.pid})" \
      in capsys.readouterr().err
  assert not lock.exists()  # released at the end


# ----------------------------------------------------------------------------- 3: numbers
@pytest.mark.parametrize("key,value,expected", [
    ("train.keep_checkpoints", 0, "an integer >= 1"),
    ("train.keep_checkpoints", -2, "an integer >= 1"),
    ("train.eval_every", -1, "an integer >= 0"),
    ("train.weight_decay", -1e-4, "a number >= 0"),
    ("train.learning_rate", float("nan"), "a positive number"),
    ("batch_size", 0, "a positive integer"),
    ("model.dropout_rate", 1.5, r"a number in \[0, 1\)"),
    ("data.num_threads", -1, "an integer >= 0"),
    ("eval.max_batches", -3, "an integer >= 0"),
    ("data.views.crops", -1, "an integer >= 0"),
    ("data.views.min_scale", 0.0, r"a number in \(0, 1\]"),
    ("eval.threshold", "1.5", r"'adaptive', 'otsu' or a number in \(0, 1\)"),
])
def test_numeric_config_values_are_checked_at_start_up(tmp_path, key, value, expected):
  config = recipe.add_config(tiny_config(STEPS))
  section, _, name = key.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError, match=f"config.{key} = {value!r} is invalid: expected {expected}"):
    train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # refused before anything was written


# ----------------------------------------------------------------------------- 4 + 10: corrupt
@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_the_newest_intact_one(run_copy, capsys):
  corrupt(run_copy / "checkpoints" / "4")
  train_lib.train_and_evaluate(tiny_config(STEPS), str(run_copy))
  err = capsys.readouterr().err
  assert "warning: checkpoint step 4 is unreadable" in err and "resumed from step 2" in err
  assert (run_copy / checkpoints.SET_ASIDE / "4" / "state").is_dir()  # kept, out of the way
  assert sorted(os.listdir(run_copy / "checkpoints")) == ["2", "4"]  # 4 trained again
  assert train_steps(run_copy) == [1, 2, 3, 4]  # one metrics row per step after the resume
  assert [r["step"] for r in read_jsonl(run_copy / "metrics.jsonl") if "val_jaccard" in r] == [4]


@pytest.mark.slow
def test_eval_and_segment_skip_a_corrupt_newest_checkpoint(run_copy, tmp_path):
  corrupt(run_copy / "checkpoints" / "4")
  warnings = []
  _, _, variables = runs.load_run(workdir=run_copy, warn=warnings.append)
  assert len(warnings) == 1 and f"{run_copy}/checkpoints/4" in warnings[0]
  assert "using " + str(run_copy / "checkpoints" / "2") in warnings[0]
  _, intact = checkpoints.load_variables(checkpoints.resolve(run_copy / "checkpoints" / "2"))
  np.testing.assert_array_equal(variables["params"]["decoder"]["conv_4"]["kernel"],
                                intact["params"]["decoder"]["conv_4"]["kernel"])
  with pytest.raises(checkpoints.CheckpointError, match="cannot read checkpoint .*checkpoints/4"):
    runs.load_run(checkpoint=run_copy / "checkpoints" / "4")  # named: no fallback
  (tmp_path / "photos").mkdir()
  for k in range(2):
    Image.fromarray(noise(64, 64, seed=k)).save(tmp_path / "photos" / f"p{k}.png")
  logged = []
  segment.segment_folder(run_copy, [tmp_path / "photos"], tmp_path / "out", chunk_size=2,
                         log=logged.append)
  assert "checkpoints/4" in logged[0] and (tmp_path / "out" / "p1_mask.png").is_file()


# ----------------------------------------------------------------------------- 9: full disk
@pytest.mark.slow
def test_full_disk_stops_with_one_message_and_keeps_the_checkpoints(run_copy, monkeypatch):
  save = ocp.CheckpointManager.save

  def full_disk(self, step, *args, **kwargs):
    if step == STEPS + 2:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(self, step, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  longer = tiny_config(STEPS + 2)
  with pytest.raises(SystemExit) as stopped:
    cli.run(lambda: train_lib.train_and_evaluate(longer, str(run_copy), True))
  message = str(stopped.value)
  assert "\n" not in message
  assert message == (f"error: cannot write checkpoint 6 in {run_copy}/checkpoints: No space "
                     "left on device (steps [2, 4] are intact)")
  step_dir, _ = checkpoints.load_variables(checkpoints.resolve(run_copy))
  assert step_dir.name == "4"
  assert not (run_copy / workdir.LOCK_FILE).exists()


def test_storage_error_of_tensorstore_is_one_message_and_leaves_no_partial_step(tmp_path,
                                                                              monkeypatch):
  """Orbax reports a full disk as TensorStore's ValueError (seen on a 200 kB tmpfs)."""
  manager = checkpoints.manager(tmp_path, 2)
  state = {"params": {"w": np.ones(3)}, "batch_stats": {}}
  checkpoints.save(manager, 1, state, {})

  def full_disk(step, *args, **kwargs):
    (tmp_path / "checkpoints" / f"{step}.orbax-checkpoint-tmp").mkdir()  # a partial write
    raise ValueError('RESOURCE_EXHAUSTED: Error writing "params.w/0" in OCDBT database: Failed '
                     "to write 636508 bytes to file 14: No space left on device "
                     "[os_error_code='28']")
  monkeypatch.setattr(manager, "save", full_disk)
  with pytest.raises(checkpoints.CheckpointError, match=r"cannot write checkpoint 2 in .*: No "
                     r"space left on device \(steps \[1\] are intact\)$"):
    checkpoints.save(manager, 2, state, {})
  assert os.listdir(tmp_path / "checkpoints") == ["1"]
  monkeypatch.setattr(manager, "save", lambda *a, **k: int("x"))  # a bug, not the disk
  with pytest.raises(ValueError, match="invalid literal"):
    checkpoints.save(manager, 2, state, {})


# ----------------------------------------------------------------------------- 5: signals
@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_resume_loses_nothing(tmp_path):
  env = {**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"}
  env.pop("XLA_FLAGS", None)
  command = [sys.executable, os.path.join(REPO, "tests", "train_driver.py"),
             "--workdir", str(tmp_path), "--checkpoint-every", "1000"]
  process = subprocess.Popen(command + ["--steps", "500"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
      break
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
  stopped = train_steps(tmp_path)[-1]
  assert 2 <= stopped < 500
  assert f"SIGTERM: stopped after step {stopped}" in output
  assert os.listdir(tmp_path / "checkpoints") == [str(stopped)]  # not a multiple of 1000
  assert "Traceback" not in output
  resumed = subprocess.run(command + ["--steps", str(stopped + 1), "--allow-config-changes"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
                           check=False)
  assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
  assert f"resumed from step {stopped}" in resumed.stdout
  assert train_steps(tmp_path) == list(range(1, stopped + 2))


def test_a_signal_before_the_first_step_stops_at_once(tmp_path):
  """Setting up (encoding views: minutes) has no step to finish: the signal stops at once;
  once stepping, it is kept until the current step is saved."""
  with train_lib.StopSignals(str(tmp_path)) as stop:
    with pytest.raises(train_lib.Interrupted, match="SIGTERM: stopped before the first step") as e:
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(5)  # the handler runs first
    assert e.value.exit_code == 128 + signal.SIGTERM
    stop.stepping()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    assert stop.signum == signal.SIGTERM


def test_interrupted_exit_codes():
  assert train_lib.Interrupted(signal.SIGINT, 3, "w").exit_code == 130
  assert train_lib.Interrupted(signal.SIGTERM, 3, "w").exit_code == 143


# ----------------------------------------------------------------------------- 6: commands
def command(*args, debug=False):
  env = {**os.environ, "PYTHONPATH": REPO}
  env.pop("COSEG_DEBUG", None)
  if debug:
    env["COSEG_DEBUG"] = "1"
  return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)


def assert_one_line(result, expected):
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and expected in lines[-1], result.stderr[-3000:]


@pytest.mark.slow
def test_train_cli_errors_are_one_line(tmp_path):
  result = command("train.py", "--config", "configs/demo.py", "--workdir", tmp_path / "w",
                   "--config.train.nope=3")
  assert_one_line(result, "unknown config key --config.train.nope")
  (tmp_path / "file").write_text("x")
  result = command("train.py", "--config", "configs/demo.py", "--workdir", tmp_path / "file",
                   "--config.train.keep_checkpoints=1")
  assert_one_line(result, f"cannot write the workdir {tmp_path}/file")
  debug = command("train.py", "--config", "configs/demo.py", "--workdir", tmp_path / "w",
                  "--config.batch_size=0", debug=True)
  assert debug.returncode != 0 and "Traceback" in debug.stderr
  assert "config.batch_size = 0 is invalid" in debug.stderr


@pytest.mark.slow
def test_eval_cli_errors_are_one_line(run4, tmp_path):
  assert_one_line(command("eval.py", f"--workdir={run4}", "--modes=pairs,nope"),
                  "unknown mode(s) ['nope']")
  (tmp_path / "model.npz").write_bytes(b"")
  assert_one_line(command("eval.py", f"--checkpoint={tmp_path}/model.npz"),
                  "is a released checkpoint without a run config: give the experiment config")


@pytest.mark.slow
def test_segment_port_weights_and_data_commands_errors_are_one_line(run4, tmp_path):
  (tmp_path / "photos").mkdir()
  Image.fromarray(noise(32, 32)).save(tmp_path / "photos" / "a.png")
  (tmp_path / "taken").write_text("a file")
  with pytest.raises(SystemExit, match=f"^error: --out {tmp_path}/taken: it is a file"):
    segment.main([f"--checkpoint={run4}", f"--images={tmp_path / 'photos'}",
                  f"--out={tmp_path / 'taken'}"])
  (tmp_path / "vgg.pth").write_bytes(b"not a torch file")
  with pytest.raises(SystemExit, match=f"^error: could not read {tmp_path}/vgg.pth as a torch"):
    port_weights.main([str(tmp_path / "vgg.pth"), str(tmp_path / "out.npz")])
  with pytest.raises(SystemExit, match=f"^error: .*{tmp_path}/nowhere"):
    voc_pairs.main([f"--root={tmp_path / 'nowhere'}", f"--out_dir={tmp_path / 'pairs'}"])
  with pytest.raises(NotADirectoryError):  # --debug: the error itself, with its traceback
    segment.main([f"--checkpoint={run4}", f"--images={tmp_path / 'photos'}",
                  f"--out={tmp_path / 'taken'}", "--debug"])


# ----------------------------------------------------------------------------- 7: eval.py
def folder_dataset(root, sizes):
  """A 'groundtruth'-layout folder dataset: {group: number of images}."""
  for g, (name, count) in enumerate(sizes.items()):
    (root / name / "GroundTruth").mkdir(parents=True)
    for k in range(count):
      Image.fromarray(noise(40, 48, seed=10 * g + k)).save(root / name / f"{name}{k}.jpg")
      mask = np.zeros((40, 48), np.uint8)
      mask[10:30, 12:36] = 255
      Image.fromarray(mask).save(root / name / "GroundTruth" / f"{name}{k}.png")
  return root


@pytest.mark.slow
def test_eval_checks_the_groups_before_any_work(tmp_path):
  root = folder_dataset(tmp_path / "data", {"aero": 3, "bus": 2, "solo": 1})
  config = evaluate_tests.tiny_config(dataset="folder", root=str(root))
  evaluate_tests.save_random_run(tmp_path / "run", config)
  out = tmp_path / "report.json"
  with pytest.raises(ValueError, match=r"mode pairwise needs at least 2 images per group; "
                                       r"groups \['solo'\] of .*data have one"):
    evaluate.run(workdir=tmp_path / "run", modes=["all_foreground", "pairwise"], out=out)
  assert not out.exists()  # refused before any mode ran
  report = evaluate.run(workdir=tmp_path / "run", modes=["all_foreground"], out=out)
  assert report["results"]["all_foreground"]["classes"]["solo"]["images"] == 1


@pytest.mark.slow
def test_eval_writes_each_mode_as_it_finishes(tmp_path, monkeypatch):
  config = evaluate_tests.tiny_config()
  evaluate_tests.save_random_run(tmp_path / "run", config)

  def broken(*args, **kwargs):
    raise RuntimeError("device lost")
  monkeypatch.setattr(group, "segment_group", broken)
  out = tmp_path / "report.json"
  with pytest.raises(RuntimeError, match="device lost"):
    evaluate.run(workdir=tmp_path / "run", modes=["center_box", "pairs", "group_mean"], out=out)
  saved = json.loads(out.read_text())  # the two modes that finished are kept
  assert set(saved["results"]) == {"center_box", "pairs"}
  assert saved["results"]["pairs"]["images"] == 8 and saved["step"] == 1


@pytest.mark.slow
def test_eval_takes_a_released_npz_checkpoint(tmp_path):
  config = evaluate_tests.tiny_config()
  config.model.attention = "ca_mlp"
  config.model.decoder_type = "reference"
  config.model.encoder_widths = (8, 16, 32, 32, 64)  # the reference decoder halves the last
  model = models.build(config.model)
  variables = weights.init_variables(model, jax.random.key(0), evaluate_tests.SIZE)
  np.savez(tmp_path / "released.npz",
           **weights.variables_to_torch(variables, weights.reference_module_name))
  report = evaluate.run(config=config, checkpoint=tmp_path / "released.npz",
                        modes=["group_mean"], out=tmp_path / "report.json")
  assert report["checkpoint"] == str(tmp_path / "released.npz") and report["step"] is None
  assert set(report["results"]["group_mean"]["classes"]) == {"synthetic_test_00000",
                                                             "synthetic_test_00001"}


def test_evaluation_and_segment_do_not_import_training():
  result = command("-c", "import sys, coseg_jax.evaluators.evaluate, coseg_jax.apps.segment; "
                   "print(sorted(m for m in sys.modules if m.startswith('optax') "
                   "or m in ('coseg_jax.training.trainer', 'coseg_jax.evaluate')))")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "[]"
