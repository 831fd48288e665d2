"""The documentation is tested: every command in README.md, docs/*.md and the recipe's README
starts, takes the flags and config keys it is given, and the short ones run; the Python
blocks run; the Python names, source paths and links resolve. The checks are
tests/doc_checks.py; each kind is shown to fail on a planted mistake.

docs/extending.md's Python blocks are run by tests/test_extending.py.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import doc_checks
from doc_checks import PAGES, REPO

PAGE_IDS = [str(p.relative_to(REPO)) for p in PAGES]
PYTHON_PAGES = [REPO / "README.md", REPO / "docs" / "model.md", REPO / "docs" / "evaluation.md"]
@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_command_starts_with_its_flags_and_config_keys(page):
  assert doc_checks.check_commands(page.read_text(), page) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_python_names_resolve(page):
  assert doc_checks.check_names(page.read_text(), page) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_source_paths_and_links_exist(page):
  text = page.read_text()
  assert doc_checks.check_paths(text, page) + doc_checks.check_links(text, page) == []


def test_the_data_keys_table_gives_config_pys_defaults():
  text = (REPO / "docs" / "data.md").read_text()
  assert doc_checks.check_config_table(text) == []
  planted = text.replace('| `dataset` | `"voc"` |', '| `dataset` | `"synthetic"` |')
  assert doc_checks.check_config_table(planted) == [
      "docs/data.md: config.data.dataset defaults to 'voc', not \"synthetic\""]
  planted = text.replace("| `flip` |", "| `flipp` |")
  assert doc_checks.check_config_table(planted) == [
      "docs/data.md: config.data.flipp is not a key of config.py"]


def test_the_pages_hold_commands_of_every_kind():
  """The extraction finds the commands (an extractor that finds nothing passes everything)."""
  kinds = {doc_checks.program(doc_checks.words(c))[0]
           for p in PAGES for c, _ in doc_checks.commands(p.read_text())}
  assert {"module", "bench", "make", "pip", "script"} <= kinds
  readme = doc_checks.commands((REPO / "README.md").read_text())
  assert ["make", "demo"] in [doc_checks.words(c) for c, _ in readme]
  assert any(c.startswith("python train.py --config configs/csa.py") for c, _ in readme)


# --------------------------------------------------------------------------- planted mistakes

README = (REPO / "README.md").read_text()
TRAIN = ("```bash\npython train.py --config configs/csa.py --workdir runs/csa \\\n"
         "    --config.data.root=/data/VOCdevkit --config.init.vgg16_weights=vgg16-397923af.pth\n```\n")


def test_the_planted_text_is_the_readmes():
  assert TRAIN in README


@pytest.mark.parametrize("good, bad, expected", [
    ("--workdir runs/csa", "--work_dir runs/csa", "unknown flag --work_dir"),
    ("--config.data.root=", "--config.data.rooot=", "config.data.rooot"),
    ("--config configs/csa.py", "--config configs/nonexistent.py", "nonexistent.py"),
    ("python train.py", "python -m coseg_jax.apps.train", "coseg_jax.apps.train does not import"),
    ("python train.py", "python -m coseg_jax.evaluators.saliency", "is not a command"),
])
def test_a_planted_mistake_in_a_command_fails(good, bad, expected):
  problems = doc_checks.check_commands(TRAIN.replace(good, bad, 1), "README.md")
  assert any(expected in p for p in problems), problems


def test_a_config_key_is_checked_in_the_config_the_command_names():
  command = "```\npython eval.py --config configs/demo.py --workdir W --config.eval.modes=pairs\n```"
  assert doc_checks.check_commands(command) == []
  problems = doc_checks.check_commands(command.replace("eval.modes", "eval.modez"))
  assert any("config.eval.modez" in p for p in problems), problems


@pytest.mark.parametrize("text, expected", [
    ("```bash\npython bench/bench_loader.py --threads 1,2\n```", "as `python -m bench.bench_loader`"),
    ("```bash\npython -m bench.bench_loader --threads 1,2 --batchez 20\n```", "unknown flag --batchez"),
    ("```bash\npython -m bench.bench_moved --threads 1\n```", "bench/bench_moved.py does not exist"),
    ("```bash\nmake demo-fast\n```", "make target demo-fast does not exist"),
    ("```bash\nSIZE=64 bash bench/gpu_moved.sh\n```", "bench/gpu_moved.sh does not exist"),
    ("```bash\npip install -e '.[test,tourch]'\n```", "pip extra [tourch]"),
    ("```bash\npip install -U \"jax[cuda12]>=0.10.2,<0.11\"\n```", "pyproject.toml requires jax"),
    ("`coseg-segment --save-probs`", "unknown flag --save-probs"),
    ("```\npython eval.py --workdir runs/x --config.eval.modes=pairs\n```", "without --config"),
])
def test_a_planted_mistake_of_each_kind_fails(text, expected):
  problems = doc_checks.check_commands(text, "page.md")
  assert any(expected in p for p in problems), problems


def test_a_bench_command_is_accepted():
  assert doc_checks.check_commands("```\npython -m bench.bench_loader --threads 1,2 --batches 20\n```") == []


def test_a_moved_python_name_fails():
  text = "The threshold is `coseg_jax.maps.binarize`, refined by `maps.dense_crf`."
  assert doc_checks.check_names(text) == []
  moved = text.replace("maps.dense_crf", "maps.dense_crff").replace("coseg_jax.maps.", "coseg_jax.mapz.")
  problems = doc_checks.check_names(moved)
  assert len(problems) == 2 and "maps.dense_crff" in problems[1], problems


def test_a_bad_link_or_path_fails():
  page = REPO / "README.md"
  assert doc_checks.check_links("[d](docs/data.md#the-synthetic-set-the-demos)", page) == []
  assert "does not exist" in doc_checks.check_links("[d](docs/dataa.md)", page)[0]
  assert "no heading" in doc_checks.check_links("[d](docs/data.md#the-synthetic-sett)", page)[0]
  assert "does not exist" in doc_checks.check_paths("see `coseg_jax/evaluate.py`")[0]


# --------------------------------------------------------------------------- --help


def documented_programs():
  """Every program of this project the pages run: (kind, module or bench name)."""
  found = set()
  for page in PAGES:
    for command, _ in doc_checks.commands(page.read_text()):
      kind, name, _ = doc_checks.program(doc_checks.words(command))
      if kind in ("module", "bench"):
        found.add((kind, name))
  return sorted(found)


def test_every_documented_program_prints_its_help_in_process(capsys):
  import importlib  # pylint: disable=g-import-not-at-top
  programs = documented_programs()
  assert ("module", "coseg_jax.apps.segment") in programs and len(programs) > 10
  for kind, name in programs:
    try:
      module = importlib.import_module(name if kind == "module" else f"bench.{name}")
    except ImportError as e:
      if doc_checks.missing_extra(e):
        continue  # needs an extra that is not installed
      raise
    main = doc_checks.entry_point(module)
    saved = sys.argv
    sys.argv = [name, "--help"]
    try:
      with pytest.raises(SystemExit) as exit_:
        main(["--help"]) if doc_checks.inspect.signature(main).parameters else main()
        raise SystemExit(0)  # absl commands print their help and return
    finally:
      sys.argv = saved
    out = capsys.readouterr().out
    assert exit_.value.code in (0, None), name
    assert "usage" in out and "--" in out, (name, out[:200])


LAUNCHES = [
    ["python", "train.py", "--help"],
    ["python", "-m", "coseg_jax.apps.scores", "--help"],
    ["coseg-segment", "--help"],
    ["python", "-m", "bench.bench_loader", "--help"],
]


@pytest.mark.slow
@pytest.mark.parametrize("launch", LAUNCHES, ids=" ".join)
def test_each_launch_style_starts_as_a_process(launch):
  """One subprocess per way of starting a program (the rest are checked in-process)."""
  bin_dir = pathlib.Path(sys.executable).parent
  argv = [sys.executable, *launch[1:]] if launch[0] == "python" else [str(bin_dir / launch[0]),
                                                                     *launch[1:]]
  if not pathlib.Path(argv[0]).exists():
    pytest.skip(f"{launch[0]} is not installed next to {sys.executable}")
  done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "usage" in done.stdout and "--" in done.stdout


# --------------------------------------------------------------------------- end to end

TINY = ["--config.train.num_steps=2", "--config.batch_size=2", "--config.data.image_size=64",
        "--config.data.synthetic.num_pairs=4", "--config.data.synthetic.num_groups=2",
        "--config.data.synthetic.group_size=3", "--config.train.log_every=1",
        "--config.train.eval_every=2", "--config.train.checkpoint_every=2",
        "--config.eval.max_batches=1", "--config.data.num_threads=1"]


def makefile_recipe(target):
  """The commands of a Makefile target, as a user would type them."""
  text = (REPO / "Makefile").read_text()
  body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, flags=re.M).group(1)
  return [line.strip().replace("$(PY)", "python") for line in body.splitlines()]


def run_documented(command, replace=(), extra=()):
  """Runs a documented command in-process (cwd: the caller's), with ``replace``d paths and
  ``extra`` arguments; returns its printed output. A failure raises SystemExit != 0."""
  import importlib  # pylint: disable=g-import-not-at-top
  for old, new in replace:
    command = command.replace(old, new)
  kind, name, args = doc_checks.program(doc_checks.words(command))
  assert kind == "module", command
  main = doc_checks.entry_point(importlib.import_module(name))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    try:
      main([*args, *extra])
    except SystemExit as e:
      assert e.code in (0, None), f"{command}: exit {e.code}"
  return out.getvalue()


def documented(page, start):
  """The first whole command of ``page`` starting with ``start``."""
  found = [c for c, whole in doc_checks.commands((REPO / page).read_text())
           if whole and c.startswith(start)]
  assert found, f"{page} has no command starting with {start!r}"
  return found[0]


def photos(folder, n=3, size=64, seed=0):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (size, size + 16 * i, 3), dtype=np.uint8)).save(
        folder / f"photo_{i}.jpg")
  return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  """A user's folder after ``make demo`` at a tiny size: the Makefile's two commands run
  in-process with smaller steps, images and sets; runs/demo and runs/cpu_frozen are that run."""
  root = tmp_path_factory.mktemp("user")
  (root / "configs").symlink_to(REPO / "configs")
  photos(root / "my_photos")
  photos(root / "photos", seed=1)
  with contextlib.chdir(root):
    train, evaluate = makefile_recipe("demo")
    assert "--config configs/demo.py" in train and "--config configs/demo.py" in evaluate
    run_documented(train, extra=TINY)
    printed = run_documented(evaluate, extra=TINY)
  assert "group_mean" in printed and "pairs" in printed
  (root / "runs" / "cpu_frozen").symlink_to(root / "runs" / "demo")
  return root


@pytest.mark.slow
def test_the_demo_trains_and_evaluates(site):
  report = json.loads((site / "runs" / "demo" / "eval_synthetic_test.json").read_text())
  assert {"pairs", "group_mean", "group_min", "pairwise"} <= set(report["results"])
  assert (site / "runs" / "demo" / "checkpoints" / "2").is_dir()


@pytest.mark.slow
def test_the_release_command_then_segment_with_the_released_file(site, monkeypatch):
  monkeypatch.chdir(site)
  shutil.copy(site / "runs" / "demo" / "eval_synthetic_test.json",
              site / "runs" / "demo" / "eval_pascal_voc10_coseg_test.json")
  recipe = "coseg_jax/proj/real_photos/README.md"
  run_documented(documented(recipe, "python -m coseg_jax.apps.release"))
  assert (site / "release" / "coseg_fca.npz").is_file()
  assert (site / "release" / "coseg_fca.md").is_file()
  run_documented(documented(recipe, "coseg-segment --checkpoint=release/"))
  assert sorted(p.name for p in (site / "out").glob("*_mask.png")) == [
      f"photo_{i}_mask.png" for i in range(3)]
  assert (site / "out" / "contact_sheet.png").is_file()


@pytest.mark.slow
def test_scores_of_two_folders(tmp_path, monkeypatch):
  pytest.importorskip("py_sod_metrics")
  gt, pred = tmp_path / "iCoseg", tmp_path / "pred" / "UFO" / "iCoseg"
  rng = np.random.default_rng(0)
  for group in ("kite", "bear"):
    photos(gt / group, n=2, seed=len(group))
    (gt / group / "GroundTruth").mkdir()
    (pred / group).mkdir(parents=True)
    for image in (gt / group).glob("*.jpg"):
      h, w = np.asarray(Image.open(image)).shape[:2]
      mask = np.zeros((h, w), np.uint8)
      mask[h // 4:h // 2, w // 4:w // 2] = 255
      Image.fromarray(mask).save(gt / group / "GroundTruth" / f"{image.stem}.png")
      Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(
          pred / group / f"{image.stem}.png")
  monkeypatch.chdir(tmp_path)
  command = documented("docs/evaluation.md", "python -m coseg_jax.apps.scores")
  scores = json.loads(run_documented(command, replace=[("/data/iCoseg", str(gt))]))
  assert scores["images"] == 4 and 0 <= scores["s_measure"] <= 1


def python_blocks(page):
  return [body for _, body in doc_checks.fenced_blocks(page.read_text(), ("python",))]


# The blocks run as written except for these: a smaller image, random VGG16 weights.
TINY_BLOCKS = [("image_size=224", "image_size=64"), ("vgg16-397923af.pth", "vgg16.npz")]


@pytest.fixture(scope="module")
def vgg16_npz(site):
  """Random VGG16 weights in the ported .npz layout (``apps.port_weights``), in site/."""
  import jax  # pylint: disable=g-import-not-at-top
  from coseg_jax import models, weights  # pylint: disable=g-import-not-at-top
  from coseg_jax.config import default_config  # pylint: disable=g-import-not-at-top
  model = models.build(default_config().model)
  encoder = weights.init_variables(model, jax.random.key(0), 64)["params"]["encoder"]
  state = {}
  for name, leaves in encoder.items():
    index = name.rsplit("_", 1)[1]
    state[f"features.{index}.weight"] = weights.to_torch_layout(np.asarray(leaves["kernel"]))
    state[f"features.{index}.bias"] = np.asarray(leaves["bias"])
  np.savez(site / "vgg16.npz", **state)
  return site / "vgg16.npz"


def test_the_pages_python_blocks_are_these():
  """The pages with Python blocks are the ones run below (and extending.md's own test)."""
  with_python = {p.name for p in PAGES if python_blocks(p)} - {"extending.md"}
  assert with_python == {p.name for p in PYTHON_PAGES}


@pytest.mark.slow
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, site, vgg16_npz, monkeypatch):
  from coseg_jax import preprocess  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(site)
  rng = np.random.default_rng(0)
  img_a, img_b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
  namespace = {"img_a": img_a, "img_b": img_b,
               "images": preprocess(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))}
  blocks = python_blocks(page)
  assert blocks
  for block in blocks:
    for old, new in TINY_BLOCKS:
      block = block.replace(old, new)
    with contextlib.redirect_stdout(io.StringIO()):
      exec(compile(block, str(page), "exec"), namespace)  # pylint: disable=exec-used
  if "masks" in namespace:
    assert namespace["masks"].shape == (3, 64, 64)
  if page.name == "evaluation.md":
    assert os.path.isfile("report.json") and (site / "out" / "contact_sheet.png").is_file()


def test_synthetic_stats_runs(tmp_path, monkeypatch):
  """docs/data.md's measurement of the synthetic set (it once crashed on any call)."""
  monkeypatch.chdir(tmp_path)
  command = documented("docs/data.md", "python -m coseg_jax.apps.synthetic_stats")
  printed = run_documented(command, replace=[("--pairs=2000", "--pairs=8")],
                           extra=["--groups=1", "--preview=sheet.png"])
  assert "objectness-oracle Jaccard over 8 test pairs (128 px, K=6, seed 0)" in printed
  assert (tmp_path / "sheet.png").is_file()
