"""Evaluators: modes as data, original-resolution metrics, the per-class table, the run
loader, eval.py."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from coseg_jax import checkpoints, maps, metrics, models, runs, weights
from coseg_jax.training import trainer as train_lib
from coseg_jax.evaluators import common, evaluate, groups as group_protocol, modes
from coseg_jax.evaluators import report as report_lib
from coseg_jax.data import images
from coseg_jax.errors import BadValue, MissingExtra
from coseg_jax.proj.real_photos.partner_gate import GATE
from test_group import sharpened, uint8_images
from tiny import SIZE, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_random_run(workdir, config, step=1):
  """A run folder like training writes (config.json, checkpoints/<step>), untrained weights."""
  os.makedirs(workdir, exist_ok=True)
  train_lib.write_run_info(workdir, config)
  state = train_lib.create_state(config, models.build(config.model), jax.random.key(0))
  manager = checkpoints.manager(workdir, config.train.keep_checkpoints)
  checkpoints.save(manager, step, state, {})
  checkpoints.finish(manager)
  return workdir


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  train_lib.train_and_evaluate(tiny_config(), str(workdir))
  return workdir


def left_half_probs():
  """S x S = 4 x 4 map, columns 1, 1, 0, 0: bilinear to 6 x 8 gives 1 1 1 .75 .25 0 0 0."""
  return np.tile(np.array([1, 1, 0, 0], np.float32), (4, 1))


def column_mask(height, width, first, last):
  mask = np.zeros((height, width), bool)
  mask[:, first:last] = True
  return mask


def test_metrics_at_original_resolution_by_hand():
  probs = maps.to_original_size(left_half_probs(), (6, 8))
  assert probs.shape == (6, 8)
  np.testing.assert_allclose(probs[0], [1, 1, 1, .75, .25, 0, 0, 0], atol=1e-6)
  truth = column_mask(6, 8, 2, 6)  # predicted: columns 0-3; truth: columns 2-5
  c = group_protocol.original_size_counts(left_half_probs()[None], [truth])
  assert (c["intersection"][0], c["union"][0]) == (2 * 6, 6 * 6)
  assert (c["correct"][0], c["counted"][0]) == (4 * 6, 8 * 6)  # every original pixel counted
  scores = metrics.per_image(c)
  assert scores["jaccard"][0] == pytest.approx(1 / 3)
  assert scores["precision"][0] == pytest.approx(1 / 2)


def test_table_averages_images_within_classes_then_classes():
  groups = [
      {"name": "cow", "inputs": np.zeros((2, 4, 4, 3), np.float32),
       "masks": [column_mask(6, 8, 2, 6), column_mask(4, 4, 0, 2)]},
      {"name": "bus", "inputs": np.zeros((1, 4, 4, 3), np.float32),
       "masks": [column_mask(8, 8, 0, 8)]},
  ]
  segmenters = {"left": lambda x: np.repeat(left_half_probs()[None], len(x), axis=0),
                "all_foreground": group_protocol.all_foreground}
  results = group_protocol.evaluate(iter(groups), segmenters)
  left = results["left"]
  # cow: 6x8 image J = 12/36; 4x4 image (no resize): predicted = truth, J = 1.
  assert left["classes"]["cow"] == {"jaccard": pytest.approx((1 / 3 + 1) / 2),
                                    "precision": pytest.approx((1 / 2 + 1) / 2), "images": 2}
  assert left["classes"]["bus"]["jaccard"] == pytest.approx(32 / 64)  # 8x8: columns 0-3
  assert left["average"]["jaccard"] == pytest.approx(((1 / 3 + 1) / 2 + 1 / 2) / 2)
  everything = results["all_foreground"]["classes"]
  assert everything["cow"]["jaccard"] == pytest.approx((4 / 8 + 2 / 4) / 2)
  assert everything["bus"]["precision"] == 1.0
  assert set(results["left"]) == {"classes", "average", "seconds"}


def test_center_box_is_the_middle_half_at_the_original_size():
  box = group_protocol.center_box(np.zeros((2, 8, 8, 3), np.float32))
  assert box.shape == (2, 8, 8) and box.sum() == 2 * 16 and np.all(box[:, 2:6, 2:6] == 1)
  # A 16 x 12 image whose object is its left half: the box (rows 4-11, columns 3-8) covers
  # columns 3-5 of the object.
  truth = column_mask(16, 12, 0, 6)
  c = group_protocol.original_size_counts(box[:1], [truth])
  assert (c["intersection"][0], c["union"][0]) == (8 * 3, 16 * 6 + 8 * 3)


def test_evaluate_groups_errors_name_the_group():
  no_masks = [{"name": "plain", "inputs": np.zeros((2, 4, 4, 3)), "masks": None}]
  with pytest.raises(ValueError, match="group plain has no masks"):
    group_protocol.evaluate(iter(no_masks), {"x": lambda x: x[..., 0]})

  def fails(x):
    raise BadValue("needs at least 2 images")
  lone = [{"name": "solo", "inputs": np.zeros((1, 4, 4, 3)), "masks": [np.zeros((4, 4), bool)]}]
  with pytest.raises(BadValue, match="mode pairwise, group solo: needs at least 2"):
    group_protocol.evaluate(iter(lone), {"pairwise": fails})

  def bug(x):  # not an input's fault: raised as it is, for its traceback
    raise ValueError("operands could not be broadcast together")
  with pytest.raises(ValueError, match="^operands could not be broadcast together$"):
    group_protocol.evaluate(iter(lone), {"pairwise": bug})


def names(parsed):
  return [m.name for m in parsed]


def test_modes_are_data():
  assert names(modes.parse("", "voc")) == ["pairs", "pairs_all_foreground"]
  assert names(modes.parse(None, "folder")) == list(modes.DEFAULT_GROUP_MODES)
  assert names(modes.parse(None, "folder", gate=True)) == [
      "pairwise_gate", "group_mean_gate", "group_min_gate", "all_foreground", "center_box"]
  assert names(modes.parse("group_mean", "folder", gate=True)) == ["group_mean"]  # as named
  assert names(modes.parse("", "voc", gate=True)) == ["pairs", "pairs_all_foreground"]
  assert names(modes.parse("group_min, center_box", "synthetic")) == ["group_min", "center_box"]
  gated = modes.MODES["distractor_gate"]
  assert (gated.protocol, gated.segmenter, gated.gate, gated.is_model) == (
      "distractor", "model", True, True)
  box = modes.MODES["distractor_center_box"]
  assert (box.protocol, box.segmenter, box.gate, box.is_model) == (
      "distractor", "center_box", False, False)
  assert modes.MODES["group_mean_gate"] == modes.Mode("groups", "group_mean", gate=True)
  assert "pairs_gate" not in modes.MODES and "center_box_gate" not in modes.MODES
  for name, mode in modes.MODES.items():  # every name maps back to its mode
    assert mode.name == name
  with pytest.raises(ValueError, match="unknown mode.*'groups'"):
    modes.parse(["groups"], "folder")
  with pytest.raises(ValueError, match="need groups"):
    modes.parse(["pairwise"], "voc")


@pytest.mark.slow
def test_resolve_and_load_run(trained_run, tmp_path):
  latest = checkpoints.resolve(trained_run)
  assert (latest.step, latest.run_dir) == (2, trained_run)
  assert latest.path == trained_run / "checkpoints" / "2"
  assert checkpoints.resolve(trained_run / "checkpoints").path == latest.path
  step_one = checkpoints.resolve(trained_run / "checkpoints" / "1")
  assert (step_one.step, step_one.run_dir, step_one.steps) == (1, trained_run, (step_one.path,))
  best = checkpoints.resolve(trained_run / "best")  # the validated step (the last one)
  assert best.path == latest.path and best.run_dir == trained_run
  config, model, variables = runs.load_run(checkpoint=trained_run / "best")
  assert config.model.attention == "csa" and list(config.model.encoder_widths) == [8, 8, 16, 16,
                                                                                    16]
  assert model.encoder_widths == (8, 8, 16, 16, 16)
  assert set(variables) == {"params", "batch_stats"}  # no optimizer state is read
  given = tiny_config(image_size=96)
  assert runs.load_run(workdir=trained_run, config=given)[0] is given
  old_layout = tmp_path / "old"  # runs written before kept the best step in best/<step>
  shutil.copytree(trained_run / "checkpoints" / "1", old_layout / "best" / "1")
  shutil.copy(trained_run / "config.json", old_layout)
  found = checkpoints.resolve(old_layout / "best")
  assert (found.step, found.run_dir) == (1, old_layout)


@pytest.mark.slow
def test_load_run_errors_name_the_path(trained_run, tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(checkpoints.CheckpointError, match=f"checkpoint not found: {missing}"):
    runs.load_run(workdir=missing)
  (tmp_path / "empty").mkdir()
  with pytest.raises(checkpoints.CheckpointError, match="no checkpoint in .*empty"):
    runs.load_run(checkpoint=tmp_path / "empty")
  copied = tmp_path / "copied" / "checkpoints" / "2"
  shutil.copytree(trained_run / "checkpoints" / "2", copied)
  with pytest.raises(FileNotFoundError, match=f"run config not found: {tmp_path}/copied/config"):
    runs.load_run(checkpoint=copied)
  wrong = tiny_config()
  wrong.model.encoder_widths = (8, 8, 16, 16, 32)
  with pytest.raises(weights.WeightFileError, match="(?s)copied/checkpoints/2.*config.model"):
    runs.load_run(checkpoint=copied, config=wrong)
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(checkpoints.CheckpointError, match="notes.txt: a file must be a released"):
    runs.load_run(checkpoint=tmp_path / "notes.txt")


def mode_probs(model, variables, inputs):
  group_modes = [m for m in modes.MODES.values() if m.protocol == "groups"]
  return {m.name: group_protocol.segmenter(m, model, variables, chunk_size=2, gate=GATE)(inputs)
          for m in group_modes}


@pytest.mark.slow
def test_group_modes_differ_where_attention_matters():
  inputs = uint8_images(3)  # a different colour each: different attentions
  config = tiny_config()
  model = models.build(config.model)
  probs = mode_probs(model, sharpened(weights.init_variables(model, jax.random.key(0), SIZE)),
                     inputs)
  for p in probs.values():
    assert p.shape == (3, SIZE, SIZE) and 0 <= p.min() and p.max() <= 1
  # Averaging pair outputs, averaging attentions and taking their minimum are different maps.
  assert np.abs(probs["pairwise"] - probs["group_mean"]).max() > 1e-4
  assert np.abs(probs["group_mean"] - probs["group_min"]).max() > 1e-4
  assert np.all(probs["all_foreground"] == 1)
  # Without attention (Pixel Objectness) every image is segmented alone: all modes agree.
  config.model.attention = "none"
  plain = models.build(config.model)
  probs = mode_probs(plain, sharpened(weights.init_variables(plain, jax.random.key(0), SIZE)),
                     inputs)
  np.testing.assert_allclose(probs["pairwise"], probs["group_mean"], atol=1e-5)
  np.testing.assert_allclose(probs["group_min"], probs["group_mean"], atol=1e-5)


@pytest.mark.slow
def test_eval_cli_writes_table_and_json(trained_run, tmp_path):
  out = tmp_path / "report.json"
  env = {**os.environ, "PYTHONPATH": REPO}
  result = subprocess.run([sys.executable, "eval.py", f"--workdir={trained_run}",
                           f"--out={out}", "--chunk_size=2"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Average" in result.stdout and "pairs_all_foreground" in result.stdout
  report = json.loads(out.read_text())
  assert report["step"] == 2 and report["dataset"] == "synthetic"
  assert report["modes"] == list(modes.DEFAULTS["synthetic"])  # synthetic default
  assert report["config"]["model"]["attention"] == "csa"
  assert report["results"]["pairs"]["images"] == 8  # 4 pairs, both images
  for mode in modes.DEFAULT_GROUP_MODES:
    table = report["results"][mode]
    assert sorted(table["classes"]) == ["synthetic_test_00000", "synthetic_test_00001"]
    assert table["average"]["jaccard"] == pytest.approx(
        np.mean([row["jaccard"] for row in table["classes"].values()]))
    assert 0 < table["seconds"] < 600  # measured, within the command's time limit
  assert report_lib.default_out_path(report) == str(trained_run / "eval_synthetic_test.json")


def test_msrc_cow_evaluates_at_original_size(data_dir, tmp_path):
  root = data_dir / "msrc_cow"
  if not root.is_dir():
    pytest.skip(f"{root} not found")
  config = tiny_config(dataset="folder", root=str(root))
  save_random_run(tmp_path / "run", config)
  report = evaluate.run(workdir=tmp_path / "run", chunk_size=8)
  assert report["dataset"] == "msrc_cow" and report["modes"] == list(modes.DEFAULT_GROUP_MODES)
  for mode in modes.DEFAULT_GROUP_MODES:
    assert report["results"][mode]["classes"]["msrc_cow"]["images"] == 30
  masks = [images.read_mask(p) for p in sorted((root / "GroundTruth").glob("*.bmp"))]
  assert len(masks) == 30
  expected = np.mean([m.mean() for m in masks])  # all-foreground Jaccard at the files' size
  assert report["results"]["all_foreground"]["average"]["jaccard"] == pytest.approx(expected)
  assert "msrc_cow" in report_lib.format_report(report)


def test_run_config_errors_name_the_file(tmp_path):
  (tmp_path / "config.json").write_text('{"config": {\n  "seed": 0,\n  ')  # truncated
  with pytest.raises(runs.UserError, match=f"cannot read the run config {tmp_path}/config.json"):
    runs.read_config(tmp_path)
  (tmp_path / "config.json").write_text("[1, 2]")
  with pytest.raises(runs.UserError, match="config.json has no 'config' key"):
    runs.read_config(tmp_path)


def test_threshold_and_binarize():
  assert maps.parse_threshold("adaptive") == "adaptive" and maps.parse_threshold("0.3") == 0.3
  for bad in ("foo", "1.5", 0, None):
    with pytest.raises(ValueError, match="--threshold=.*expected 'adaptive'"):
      maps.parse_threshold(bad, "--threshold")
  probs = np.array([[[0.1, 0.2], [0.3, 0.6]], [[0.7, 0.9], [0.8, 0.95]]], np.float32)
  np.testing.assert_array_equal(maps.binarize(probs), probs > 0.5)
  adaptive = maps.binarize(probs, "adaptive")  # each map its own mean + std
  np.testing.assert_array_equal(adaptive[0], probs[0] > min(probs[0].mean() + probs[0].std(), .8))
  np.testing.assert_array_equal(adaptive[1], probs[1] > min(probs[1].mean() + probs[1].std(), .8))
  assert maps.parse_threshold("otsu") == "otsu"


def test_otsu_splits_a_map_into_its_two_modes_whatever_the_objects_share():
  """An object filling 70 % of the photo scored ~0.6 on a background of ~0.1: Otsu's
  threshold falls between the two, so the mask is the object; mean + std (0.62 here)
  cuts half of the object away. A brute-force search over the same bins agrees."""
  rng = np.random.default_rng(0)
  truth = np.zeros((50, 60), bool)
  truth[:, :42] = True
  probs = np.where(truth, 0.6, 0.1) + rng.normal(0, 0.03, truth.shape)
  threshold = maps.otsu_threshold(probs)
  assert 0.15 < threshold < 0.55 and maps.adaptive_threshold(probs) > 0.6
  np.testing.assert_array_equal(maps.binarize(probs, "otsu"), truth)
  assert maps.binarize(probs, "adaptive")[truth].mean() < 0.6
  def between(t):
    low, high = probs[probs <= t], probs[probs > t]
    return low.size * high.size * (low.mean() - high.mean()) ** 2 if low.size * high.size else 0
  edges = np.linspace(0, 1, maps.OTSU_BINS + 1)[1:]
  best = max(edges, key=between)
  assert between(threshold) == pytest.approx(between(best), rel=1e-3)
  assert not maps.binarize(np.full((4, 4), 0.3), "otsu").any()  # one value: split at 0.5
  assert maps.binarize(np.ones((4, 4)), "otsu").all()  # the all-foreground baseline


def test_box_mean_and_guided_filter_by_hand():
  x = np.random.default_rng(0).uniform(size=(7, 9))
  brute = np.array([[x[max(0, i - 2):i + 3, max(0, j - 2):j + 3].mean() for j in range(9)]
                    for i in range(7)])
  np.testing.assert_allclose(maps.box_mean(x, 2), brute, atol=1e-12)
  flat = np.full((20, 30, 3), 90, np.uint8)  # no edge in the image: a constant stays constant
  np.testing.assert_allclose(maps.guided_filter(np.full((20, 30), 0.3), flat), 0.3, atol=1e-6)
  assert maps.refiner("") is None
  with pytest.raises(ValueError, match="refine='bilateral'"):
    maps.refiner("bilateral")


def test_dense_crf_splits_where_the_threshold_does():
  """Alone (a flat image), the CRF decides as its split: a map of 0.3 is foreground when
  split at 0.2 and background at 0.4; ``decide`` with "adaptive" splits at the map's own
  mean + std and binarises the CRF's output at 0.5."""
  pytest.importorskip("pydensecrf.densecrf")
  flat = np.full((20, 30, 3), 90, np.uint8)
  flat.setflags(write=False)  # as images read from disk may be
  map_ = np.full((20, 30), 0.3, np.float32)
  assert (maps.dense_crf(map_, flat, split=0.2) > 0.9).all()
  assert (maps.dense_crf(map_, flat, split=0.4) < 0.1).all()
  map_[:, :20], map_[:, 20:] = 0.1, 0.7  # mean + std 0.58: the right third is above it
  refined, mask = maps.decide(map_, flat, "adaptive", maps.refiner("crf"))
  assert refined.dtype == np.float32 and refined.shape == map_.shape
  np.testing.assert_array_equal(mask, refined > 0.5)
  _, low = maps.decide(map_, flat, 0.05, maps.refiner("crf"))
  assert mask[:, 22:].all() and not mask[:, :20].any() and low.all()


def test_a_missing_crf_package_is_named(monkeypatch):
  monkeypatch.setitem(sys.modules, "pydensecrf", None)
  monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
  with pytest.raises(MissingExtra, match=r"refine='crf' needs pydensecrf2.*coseg_jax\[crf\]"):
    maps.refiner("crf")


@pytest.mark.parametrize("name,params", [("guided", {"radius": 0.15, "eps": 1e-3}),
                                         ("crf", {})])
@pytest.mark.parametrize("centre", [26, 34])
def test_refined_maps_follow_the_image_edges(name, params, centre):
  """A map whose edge is 4 pixels outside or inside the object's edge (an upsampled coarse
  map's ramp) moves to it: the group table scores it higher with ``refine``."""
  if name == "crf":
    pytest.importorskip("pydensecrf.densecrf")
  image = np.zeros((40, 60, 3), np.uint8)
  image[:, 30:] = 255  # the object: columns 30..59
  truth = column_mask(40, 60, 30, 60)
  coarse = np.tile(np.clip((np.arange(60) - centre + 6) / 12, 0, 1).astype(np.float32), (40, 1))
  groups = [{"name": "g", "inputs": np.zeros((1, 40, 60, 3), np.uint8), "images": [image],
             "masks": [truth]}]
  segment = {"m": lambda x: coarse[None]}
  plain = group_protocol.evaluate(iter(groups), segment)["m"]["average"]["jaccard"]
  refined = group_protocol.evaluate(iter(groups), segment, refine=maps.refiner(
      name, **params))["m"]["average"]["jaccard"]
  assert plain == pytest.approx(min(30, 60 - centre - 1) / max(30, 60 - centre - 1))
  assert refined > plain + 0.05


def test_every_protocol_is_built_and_run_the_same_way(tmp_path):
  config = tiny_config()
  model = models.build(config.model)
  variables = weights.init_variables(model, jax.random.key(0), SIZE)
  protocols = [("pairs", ["pairs", "pairs_all_foreground"]),
               ("groups", ["group_mean", "center_box"]), ("distractor", ["distractor"])]
  sod = importlib.util.find_spec("py_sod_metrics") is not None  # the [sod] extra
  protocols += [("saliency", ["group_min"])] if sod else []
  for protocol, names in protocols:
    finished = []
    evaluator = common.build(protocol, config, names, chunk_size=4, save_maps=str(tmp_path),
                             on_result=lambda mode, _: finished.append(mode))
    results = evaluator.run(model, variables)
    assert list(results) == names == finished, protocol
    assert all(0 <= common.jaccard(r) <= 1 for r in results.values()), protocol
  if sod:
    assert results["group_min"]["sod"]["maps"] == str(tmp_path / "coseg_jax" / "synthetic")
  assert [m.name for m in common.build("groups", config).modes] == list(
      modes.DEFAULT_GROUP_MODES)  # the dataset's defaults of the protocol
  with pytest.raises(ValueError, match=r"modes \['group_mean'\] are not of the pairs protocol"):
    common.build("pairs", config, ["group_mean"])
  with pytest.raises(ValueError, match="mode group_mean_gate is gated, and the config's recipe"):
    common.build("groups", config, ["group_mean_gate"]).run(model, variables)
