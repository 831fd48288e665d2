"""A released model: one file written from a run, loaded by runs.load_run, segment and eval,
with the frozen encoder recorded by the hash of its VGG16 weights, and a model card."""

import json

import jax
import numpy as np
from PIL import Image
import pytest

from coseg_jax import models, release, runs, weights
from coseg_jax.apps import release as release_app, segment
from coseg_jax.evaluators import evaluate
from coseg_jax.proj.real_photos import recipe
from test_evaluators import save_random_run
from test_segment import noise
from tiny import ENCODER_WIDTHS, SIZE, tiny_config


def vgg16_file(path, seed):
  """A torchvision-layout encoder file for the tiny model (random weights of ``seed``)."""
  model = models.build(tiny_config().model)
  encoder = weights.init_variables(model, jax.random.key(seed), SIZE)["params"]["encoder"]
  state = {}
  for name, leaves in encoder.items():
    index = name.rsplit("_", 1)[1]
    state[f"features.{index}.weight"] = weights.to_torch_layout(np.asarray(leaves["kernel"]))
    state[f"features.{index}.bias"] = np.asarray(leaves["bias"])
  np.savez(path, **state)
  return path


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
  """A run whose encoder is frozen VGG16 weights from a file, as the CPU recipe's."""
  folder = tmp_path_factory.mktemp("frozen")
  config = tiny_config()
  config.train.freeze_encoder = True
  config.init.vgg16_weights = str(vgg16_file(folder / "vgg.npz", seed=3))
  return save_random_run(folder / "run", config)


def assert_same_variables(a, b):
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, a),
               jax.tree.map(np.asarray, b))


def test_only_released_models_are_taken_for_one(tmp_path):
  (tmp_path / "empty.npz").write_bytes(b"")
  (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
  np.savez(tmp_path / "ported.npz", x=np.zeros(2))
  for name in ("empty.npz", "bad.npz", "ported.npz", "missing.npz"):
    assert not release.is_release(tmp_path / name), name
  with pytest.raises(release.UserError, match="cannot read .*empty.npz"):
    release.read_meta(tmp_path / "empty.npz")


def test_a_trained_encoder_travels_in_the_file(tmp_path):
  run = save_random_run(tmp_path / "run", tiny_config())
  release_app.release_run(run, tmp_path / "model.npz", log=lambda _: None)
  config, _, variables = runs.load_run(checkpoint=tmp_path / "model.npz")
  assert_same_variables(variables, runs.load_run(workdir=run)[2])
  assert config.model.encoder_widths == list(ENCODER_WIDTHS)
  assert "trained with the rest and is in the file" in (tmp_path / "model.md").read_text()


def test_a_frozen_encoder_is_recorded_by_its_hash(frozen_run, tmp_path):
  vgg = frozen_run.parent / "vgg.npz"
  out, card = release_app.release_run(frozen_run, tmp_path / "model.npz", log=lambda _: None)
  meta = release.read_meta(out)
  assert meta["encoder"] == {"sha256": release.sha256(vgg), "file": "vgg.npz"}
  with np.load(out) as data:  # the encoder is left out of the file
    assert not [k for k in data.files if k.startswith("params/encoder")]
  _, _, variables = runs.load_run(checkpoint=out)  # the recorded path, checked by hash
  assert_same_variables(variables, runs.load_run(workdir=frozen_run)[2])
  text = card.read_text()
  assert meta["encoder"]["sha256"] in text and "Known limits" in text
  assert "thresholds the maps with `--threshold=0.5`, as the run was evaluated" in text
  other = vgg16_file(tmp_path / "other.npz", seed=4)
  with pytest.raises(weights.WeightFileError, match=r"trained with VGG16 weights sha256 "
                     rf"{meta['encoder']['sha256'][:12]}.*other.npz has sha256"):
    runs.load_run(checkpoint=out, vgg16_weights=other)
  with pytest.raises(FileNotFoundError, match="needs the VGG16 weights it was trained with"):
    runs.load_run(checkpoint=out, vgg16_weights=str(tmp_path / "missing.npz"))
  with pytest.raises(weights.WeightFileError, match="not the encoder of this run"):
    release_app.release_run(frozen_run, tmp_path / "bad.npz", vgg16_weights=other)


@pytest.mark.slow
def test_segment_and_eval_take_the_released_file(frozen_run, tmp_path):
  out, _ = release_app.release_run(frozen_run, tmp_path / "model.npz", log=lambda _: None)
  photos = tmp_path / "photos"
  photos.mkdir()
  for n in range(3):
    Image.fromarray(noise(48, 64, seed=n)).save(photos / f"p{n}.png")
  for name, checkpoint in (("from_run", frozen_run), ("from_file", out)):
    assert segment.main([f"--checkpoint={checkpoint}", f"--images={photos}",
                         f"--out={tmp_path / name}", "--chunk_size=2"]) is None  # exit 0
  for n in range(3):
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "from_run" / f"p{n}_mask.png")),
                                  np.asarray(Image.open(tmp_path / "from_file" / f"p{n}_mask.png")))
  other = vgg16_file(tmp_path / "other.npz", seed=4)
  with pytest.raises(SystemExit, match=r"^error: .*model.npz was trained with VGG16 weights"):
    segment.main([f"--checkpoint={out}", f"--images={photos}", f"--out={tmp_path / 'x'}",
                  f"--vgg16_weights={other}"])
  from_file = evaluate.run(checkpoint=out, modes=["group_mean"], out=tmp_path / "a.json")
  from_run = evaluate.run(workdir=frozen_run, modes=["group_mean"], out=tmp_path / "b.json")
  assert from_file["results"]["group_mean"]["classes"] == from_run["results"]["group_mean"][
      "classes"]
  card = release_app.model_card(out, release.read_meta(out),
                                [json.loads((tmp_path / name).read_text())
                                 for name in ("a.json", "b.json")])
  assert "group_mean" in card and "Average" in card
  assert card.count("of this run") == 1 and f"of another run, `{out.resolve()}`" in card
  assert "It decides on pool5's cells, 2 x 2 at 64 px" in card


@pytest.mark.parametrize("skip, cells", [("pool4", "pool4's cells (the pool4 skip), 4 x 4"),
                                         ("pool3", "pool3's cells (the pool4 and pool3 skips), "
                                          "8 x 8")])
def test_a_skip_model_travels_with_its_skip(frozen_run, tmp_path, skip, cells):
  """The recipe's skips (their own parameters, the frozen encoder left out) load back."""
  config = recipe.add_config(runs.load_run(workdir=frozen_run)[0])
  config.model.skip = skip
  config.eval.threshold, config.eval.partner_gate = "adaptive", True  # as the recipe's runs
  run = save_random_run(tmp_path / "run", config)
  out, card = release_app.release_run(run, tmp_path / "model.npz", log=lambda _: None)
  _, model, variables = runs.load_run(checkpoint=out)
  params = variables["params"]
  assert model.skip == skip and "skip_attention" in params
  assert ("skip_attention_pool3" in params) == (skip == "pool3")
  assert ("skip_conv_1" in params["decoder"]) == (skip == "pool3")
  assert f"It decides on {cells} at 64 px" in card.read_text()
  assert "with `--threshold=adaptive` and the partner gate" in card.read_text()
  assert "`--nopartner_gate` turns it off" in card.read_text()
  assert_same_variables(variables, runs.load_run(workdir=run)[2])
  out, card = release_app.release_run(run, tmp_path / "otsu.npz", log=lambda _: None,
                                      threshold="otsu")
  assert runs.load_run(checkpoint=out)[0].eval.threshold == "otsu"
  assert "with `--threshold=otsu` and the partner gate" in card.read_text()
  with pytest.raises(ValueError, match="--threshold='0': expected 'adaptive', 'otsu'"):
    release_app.release_run(run, tmp_path / "bad.npz", threshold="0")
  assert not (tmp_path / "bad.npz").exists()


def test_a_cue_model_travels_with_its_cue_and_the_card_says_so(frozen_run, tmp_path):
  config = recipe.add_config(runs.load_run(workdir=frozen_run)[0])
  config.model.skip, config.model.cue = "pool3", "correlation"
  run = save_random_run(tmp_path / "run", config)
  out, card = release_app.release_run(run, tmp_path / "model.npz", log=lambda _: None)
  _, model, variables = runs.load_run(checkpoint=out)
  assert model.cue == "correlation" and "correlation" in variables["params"]
  assert "with the correspondence cue (`model.cue='correlation'`" in card.read_text()
  assert_same_variables(variables, runs.load_run(workdir=run)[2])


def test_the_card_says_how_segment_treats_the_maps():
  ungated = release_app.segment_defaults({"eval": {"threshold": "0.5"}})
  assert "`--threshold=0.5`" in ungated and "`--partner_gate` keeps" in ungated
  assert "--refine" not in ungated
  refined = release_app.segment_defaults({"eval": {"threshold": "otsu", "partner_gate": True,
                                                   "refine": "crf"}})
  assert "`--threshold=otsu` and the partner gate" in refined
  assert "`--refine=crf`; `--refine=` turns it off" in refined
