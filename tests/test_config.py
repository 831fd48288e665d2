"""coseg_jax.config: the config files, the one validator, and old runs' config.json."""

import dataclasses
import json
import pathlib
import shutil

import pytest

from coseg_jax import config as config_lib
from coseg_jax import runs
from coseg_jax.proj.real_photos import recipe, view_cache, views
from coseg_jax.training import workdir

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ("default", "ca", "fca", "csa", "demo", "cpu_frozen", "reference_ca")
# tests/old_run_config.json: written by workdir.write_config before the data keys were
# grouped, for configs/cpu_frozen.py with these two paths set
OLD_RUN = pathlib.Path(__file__).parent / "old_run_config.json"
OLD_ROOT = "../shared/data/pascal_voc10_coseg"
OLD_WEIGHTS = "../shared/data/vgg16_features_oxford.pth"


def load(name):
  return config_lib.load_file(REPO / "configs" / f"{name}.py")


def valid_config(tmp_path):
  """The paper's config with the real-photo recipe's keys and an existing (empty) data
  folder: valid for evaluation."""
  config = recipe.add_config(config_lib.default_config())
  config.data.root = str(tmp_path)
  return config


@pytest.mark.parametrize("name", CONFIGS)
def test_config_files_load_by_path_and_are_valid(name, tmp_path):
  config = load(name)
  if config.data.dataset != "synthetic":
    config.data.root = str(tmp_path)
  config_lib.validate(config, training=False)


def test_default_file_is_the_papers_settings():
  assert load("default").to_dict() == config_lib.default_config().to_dict()
  config = load("default")
  assert (config.model.attention, config.data.dataset, config.data.image_size) == (
      "csa", "voc", 512)
  assert not (REPO / "configs" / "__init__.py").exists()  # loaded by path, not installed


@pytest.mark.parametrize("key,value,message", [
    ("data.views.crops", -1, "config.data.views.crops = -1 is invalid: expected an integer >= 0"),
    ("data.views.min_scale", 0.0, r"config.data.views.min_scale = 0.0 is invalid: expected a "
     r"number in \(0, 1\]"),
    ("data.views.negatives", 1.5, r"config.data.views.negatives = 1.5 is invalid"),
    ("data.image_size", 100, "config.data.image_size = 100 is invalid: expected a positive "
     "multiple of 32"),
    ("data.folder.layout", "flat", "config.data.folder.layout = 'flat' is invalid: expected "
     "auto | separate"),
    ("data.synthetic.num_categories", 11, "config.data.synthetic.num_categories = 11 is invalid"),
    ("model.attention", "se", "config.model.attention = 'se' is invalid"),
    ("model.skip", "pool2",
     "config.model.skip = 'pool2' is invalid: expected '' | 'pool4' | 'pool3'"),
    ("eval.chunk_size", 0, "config.eval.chunk_size = 0 is invalid: expected a positive integer"),
    ("eval.threshold", "foo", r"config.eval.threshold = 'foo' is invalid: expected 'adaptive', "
     r"'otsu' or a number in \(0, 1\)"),
    ("eval.threshold", "1.5", "config.eval.threshold = '1.5' is invalid"),
    ("eval.during_training", "nope", "config.eval.during_training = 'nope' is invalid: "
     "expected '' or a mode: pairs"),
])
def test_bad_values_are_named(tmp_path, key, value, message):
  config = valid_config(tmp_path)
  config[key.rpartition(".")[0]][key.rpartition(".")[2]] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(config)


@pytest.mark.parametrize("threshold", ["0.5", "0.3", "adaptive"])
def test_thresholds(tmp_path, threshold):
  config = valid_config(tmp_path)
  config.eval.threshold = threshold
  config_lib.validate(config)


def test_unknown_and_missing_keys_are_named_at_any_level(tmp_path):
  config = valid_config(tmp_path)
  config.data.views.crop = 1
  with pytest.raises(ValueError, match=r"unknown config key config.data.views.crop; known keys "
                     r"of config.data.views: \['cache_dir', 'composites', 'crops'"):
    config_lib.validate(config)
  config = valid_config(tmp_path)
  config.data.view_crops = 1
  with pytest.raises(ValueError, match=r"config.data.view_crops \(now config.data.views.crops\)"):
    config_lib.validate(config)
  config = valid_config(tmp_path)
  del config.eval.threshold
  with pytest.raises(ValueError, match="config.eval.threshold missing"):
    config_lib.validate(config)
  with pytest.raises(ValueError, match=r"unknown config key config.data.views \(now config."
                     r"data.views.enabled\)"):
    config_lib.resolve_data({"views": True})


def test_a_recipes_keys_need_the_recipe(tmp_path):
  config = config_lib.default_config()
  config.data.root = str(tmp_path)
  config_lib.validate(config, training=False)
  config.eval.partner_gate = True
  with pytest.raises(ValueError, match=r"unknown config key config.eval.partner_gate"):
    config_lib.validate(config, training=False)
  del config.eval.partner_gate
  config.data.views = {"enabled": True}
  with pytest.raises(ValueError, match=r"unknown config key config.data.views; known keys"):
    config_lib.validate(config, training=False)
  config = valid_config(tmp_path)
  assert config.recipe == "coseg_jax.proj.real_photos.recipe"
  config.recipe = "coseg_jax.no_such_recipe"
  with pytest.raises(ValueError, match=r"config.recipe = 'coseg_jax.no_such_recipe': cannot "
                     "import it"):
    config_lib.validate(config, training=False)
  config.recipe = "coseg_jax.constants"
  with pytest.raises(ValueError, match="is not a recipe module: it has no add_config"):
    config_lib.validate(config, training=False)
  assert config_lib.resolve_data(valid_config(tmp_path).data).views.crops == 2  # kept as is


def test_files_and_keys_that_go_together(tmp_path):
  config = valid_config(tmp_path)
  config.data.root = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match=r"config.data.root = '.*nope': no such folder"):
    config_lib.validate(config)
  config = valid_config(tmp_path)
  config.init.vgg16_weights = "/nope/vgg16.pth"
  with pytest.raises(FileNotFoundError, match="config.init.vgg16_weights = '/nope/vgg16.pth'"):
    config_lib.validate(config)
  config_lib.validate(config, training=False)  # evaluation does not read the weights
  config = valid_config(tmp_path)
  config.data.dataset = "tfds"
  with pytest.raises(ValueError, match="config.data.tfds.name is empty"):
    config_lib.validate(config)
  config = valid_config(tmp_path)
  config.data.views.enabled = True
  with pytest.raises(ValueError, match="config.data.views.enabled=True needs"):
    config_lib.validate(config)
  config = valid_config(tmp_path)
  config.model.skip, config.model.decoder_type = "pool4", "reference"
  with pytest.raises(ValueError, match="config.model.skip='pool4' needs config.model.decoder_t"):
    config_lib.validate(config)


def test_resolve_data_fills_partial_groups():
  data = config_lib.resolve_data({"dataset": "synthetic", "synthetic": {"num_pairs": 3}})
  assert (data.synthetic.num_pairs, data.synthetic.num_groups) == (3, 16)


def old_run_config():
  """configs/cpu_frozen.py as the old run was trained with it (before the pool4 skip)."""
  config = load("cpu_frozen")
  config.data.root, config.init.vgg16_weights = OLD_ROOT, OLD_WEIGHTS
  config.model.skip, config.eval.threshold, config.eval.partner_gate = "", "0.5", False
  config.model.cue = ""
  views = config.data.views
  views.pasted_pairs, views.pasted, views.lacking = 0, 0.0, 0.0
  return config


def test_an_old_runs_flat_keys_migrate():
  saved = json.loads(OLD_RUN.read_text())["config"]
  assert saved["data"]["views"] is True and saved["data"]["view_crops"] == 2  # the old keys
  migrated = json.loads(json.dumps(config_lib.migrate(saved)))
  assert migrated == json.loads(json.dumps(old_run_config().to_dict()))
  assert config_lib.migrate(migrated) == migrated  # today's keys pass unchanged
  assert workdir.config_changes(saved, old_run_config()) == {}


def test_old_runs_that_did_not_use_the_recipe_lose_its_keys():
  saved = config_lib.default_config().to_dict()
  del saved["recipe"]
  saved["data"]["views"] = {"enabled": False, "crops": 2}
  saved["eval"]["partner_gate"] = False
  assert config_lib.migrate(saved) == config_lib.default_config().to_dict()
  saved["eval"]["partner_gate"] = True  # the gate: the recipe's run
  migrated = config_lib.migrate(saved)
  assert (migrated["recipe"], migrated["data"]["views"]["crops"]) == (recipe.NAME, 2)


def test_migrate_refuses_a_deleted_feature_in_use():
  saved = json.loads(OLD_RUN.read_text())["config"]
  saved["data"]["view_permute"] = 0.5
  with pytest.raises(ValueError, match=r"config.data.view_permute = 0.5: this run used a "
                     "removed feature"):
    config_lib.migrate(saved)


def test_old_runs_are_read_and_resumed_with_todays_keys(tmp_path):
  shutil.copy(OLD_RUN, tmp_path / "config.json")
  config = runs.read_config(tmp_path)
  assert (config.data.views.enabled, config.data.views.negatives) == (True, 0.1)
  assert config.eval.threshold == "0.5"  # a key the run's code did not have: its default
  (tmp_path / "checkpoints" / "200").mkdir(parents=True)  # a run to resume
  workdir.write_config(str(tmp_path), old_run_config())  # the same config: accepted
  written = json.loads((tmp_path / "config.json").read_text())
  assert written["config"]["data"]["views"]["crops"] == 2 and "changes" not in written
  changed = old_run_config()
  changed.data.views.crops = 3
  with pytest.raises(workdir.WorkdirError, match=r"data.views.crops: 2 -> 3"):
    workdir.write_config(str(tmp_path), changed)


def test_the_view_cache_key_is_unchanged():
  """The cached views of runs before the data keys were grouped are found again."""
  config = old_run_config()
  view_config = views.ViewConfig.from_data_config(config.data, config.seed)
  key = view_cache.digest(dataclasses.asdict(view_config))
  assert key == "708e46670898fd25024b18a0"
