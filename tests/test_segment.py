"""The segment command: a folder of mixed-mode images -> masks, overlays, sheet, attention."""

import numpy as np
from PIL import Image
import pytest

from coseg_jax import pictures
from coseg_jax.apps import segment
from coseg_jax.data import images
from coseg_jax.proj.real_photos import recipe
from test_evaluators import save_random_run
from tiny import tiny_config

CELL = segment.SHEET_CELL


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return save_random_run(tmp_path_factory.mktemp("run"), recipe.add_config(tiny_config()))


def noise(height, width, channels=3, seed=0, dtype=np.uint8, high=256):
  rng = np.random.RandomState(seed)
  shape = (height, width, channels) if channels else (height, width)
  return rng.randint(0, high, shape).astype(dtype)


def write_mixed_images(folder):
  """RGB JPEG, RGBA, grey, 16-bit grey and an EXIF-rotated JPEG; returns {stem: (H, W)}."""
  folder.mkdir(parents=True)
  Image.fromarray(noise(60, 80)).save(folder / "rgb.jpg")
  Image.fromarray(noise(70, 50, 4, seed=1), "RGBA").save(folder / "rgba.png")
  Image.fromarray(noise(64, 64, 0, seed=2), "L").save(folder / "grey.png")
  Image.fromarray(noise(40, 90, 0, seed=3, dtype=np.uint16, high=65536)).save(folder / "deep.png")
  exif = Image.Exif()
  exif[0x0112] = 6  # stored 60 wide x 40 high, shown rotated: 40 wide x 60 high
  Image.fromarray(noise(40, 60, seed=4)).save(folder / "rotated.jpg", exif=exif)
  return {"rgb": (60, 80), "rgba": (70, 50), "grey": (64, 64), "deep": (40, 90),
          "rotated": (60, 40)}


def opened(path):
  with Image.open(path) as img:
    return img.mode, np.asarray(img)


def run_segment(run_dir, inputs, out, *extra):
  segment.main([f"--checkpoint={run_dir}", f"--images={','.join(map(str, inputs))}",
                f"--out={out}", "--image_size=64", "--chunk_size=2", *extra])


@pytest.mark.slow
def test_segments_a_folder_of_mixed_images(run_dir, tmp_path):
  sizes = write_mixed_images(tmp_path / "photos")
  assert images.read_image(tmp_path / "photos" / "deep.png").dtype == np.uint8
  run_segment(run_dir, [tmp_path / "photos"], tmp_path / "out", "--save_attention")
  out = tmp_path / "out"
  for stem, size in sizes.items():
    mode, mask = opened(out / f"{stem}_mask.png")
    assert mode == "L" and mask.shape == size, stem  # the original (upright) size
    assert set(np.unique(mask)) <= {0, 255}
    for kind in ("overlay", "attention"):
      mode, picture = opened(out / f"{stem}_{kind}.png")
      assert mode == "RGB" and picture.shape == size + (3,), (stem, kind)
  _, sheet = opened(out / "contact_sheet.png")
  assert sheet.shape == (2 * (CELL + pictures.CAPTION_HEIGHT), 3 * CELL, 3)  # 5 images: 3 x 2
  assert not (out / "attention_pca.png").exists()  # one group


@pytest.mark.slow
def test_subfolders_are_groups_with_an_attention_plot(run_dir, tmp_path):
  for n, name in enumerate(("cats", "dogs")):
    (tmp_path / "groups" / name).mkdir(parents=True)
    for k in range(2):
      Image.fromarray(noise(48 + 16 * k, 64, seed=10 * n + k)).save(
          tmp_path / "groups" / name / f"{name}{k}.png")
  run_segment(run_dir, [tmp_path / "groups"], tmp_path / "out", "--reduce", "min",
              "--leave_one_out", "--save_attention")
  for name in ("cats", "dogs"):
    assert opened(tmp_path / "out" / name / f"{name}1_mask.png")[1].shape == (64, 64)
    assert (tmp_path / "out" / name / "contact_sheet.png").is_file()
  assert opened(tmp_path / "out" / "attention_pca.png")[0] in ("RGB", "RGBA")


@pytest.mark.slow
def test_several_folders_are_groups_with_soft_maps(run_dir, tmp_path):
  folders = [tmp_path / "a" / "cows", tmp_path / "b" / "cars"]
  for n, folder in enumerate(folders):
    folder.mkdir(parents=True)
    for k in range(2 + n):
      Image.fromarray(noise(40, 56, seed=10 * n + k)).save(folder / f"img{k}.jpg")
  run_segment(run_dir, folders, tmp_path / "out", "--save_probs")
  for n, name in enumerate(("cows", "cars")):
    written = {p.name for p in (tmp_path / "out" / name).iterdir()}
    assert written == {"contact_sheet.png"} | {f"img{k}_{kind}.png" for k in range(2 + n)
                                               for kind in ("mask", "overlay", "prob")}
    mode, soft = opened(tmp_path / "out" / name / "img1_prob.png")
    _, mask = opened(tmp_path / "out" / name / "img1_mask.png")
    assert mode == "L" and soft.shape == (40, 56)
    np.testing.assert_array_equal(mask == 255, soft > 127.5)  # the mask thresholds the soft map
  run_segment(run_dir, folders, tmp_path / "gated", "--save_probs", "--partner_gate")
  for n, name in enumerate(("cows", "cars")):
    soft = np.stack([opened(tmp_path / f / name / f"img{k}_prob.png")[1].astype(int)
                     for f in ("out", "gated") for k in range(2 + n)]).reshape(2, 2 + n, 40, 56)
    assert (soft[1] <= soft[0] + 1).all() and (soft[1] < soft[0] - 1).any(), name  # P * gate
  (tmp_path / "c" / "cows").mkdir(parents=True)
  Image.fromarray(noise(32, 32)).save(tmp_path / "c" / "cows" / "x.png")
  with pytest.raises(SystemExit, match="same name would write to the same output folder"):
    run_segment(run_dir, [folders[0], tmp_path / "c" / "cows"], tmp_path / "out2")
  with pytest.raises(SystemExit, match="not both"):
    run_segment(run_dir, [folders[0], tmp_path / "c" / "cows" / "x.png"], tmp_path / "out2")


def test_adaptive_threshold_finds_an_under_confident_object(tmp_path):
  """Maps that rank the object right but stay below 0.5 (what unseen classes get): the
  fixed threshold marks nothing, "adaptive" (mean + std of each map) marks the object."""
  path = tmp_path / "img.png"
  Image.fromarray(noise(32, 32)).save(path)
  probs = np.full((1, 32, 32), 0.05, np.float32)
  probs[0, 8:24, 8:24] = 0.3
  masks = {}
  for threshold in (0.5, "adaptive"):
    segment.write_group(tmp_path / str(threshold), [path], probs, threshold=threshold)
    masks[threshold] = opened(tmp_path / str(threshold) / "img_mask.png")[1] == 255
  assert not masks[0.5].any()
  assert masks["adaptive"][10:22, 10:22].all() and not masks["adaptive"][:6].any()


def test_probability_image_is_8_bit():
  np.testing.assert_array_equal(pictures.probability_image(np.array([[0.0, 0.5, 1.0, 1.2]])),
                                [[0, 128, 255, 255]])


@pytest.mark.slow
def test_a_list_of_files_is_one_group(run_dir, tmp_path):
  files = [tmp_path / "a.png", tmp_path / "sub" / "b.jpg"]
  files[1].parent.mkdir()
  for n, path in enumerate(files):
    Image.fromarray(noise(32, 40, seed=n)).save(path)
  run_segment(run_dir, files, tmp_path / "out")
  assert {p.name for p in (tmp_path / "out").iterdir()} == {
      "a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png", "contact_sheet.png"}


@pytest.mark.slow
def test_errors_name_the_path(run_dir, tmp_path):
  good = tmp_path / "good"
  good.mkdir()
  Image.fromarray(noise(32, 32)).save(good / "one.png")
  missing = tmp_path / "no_run"
  with pytest.raises(SystemExit, match=f"checkpoint not found: {missing}"):
    run_segment(missing, [good], tmp_path / "out")
  with pytest.raises(SystemExit, match=f"--images {tmp_path}/absent: no such file or folder"):
    run_segment(run_dir, [tmp_path / "absent"], tmp_path / "out")
  (tmp_path / "empty").mkdir()
  with pytest.raises(SystemExit, match=f"--images {tmp_path}/empty: no image files"):
    run_segment(run_dir, [tmp_path / "empty"], tmp_path / "out")
  (good / "bad.png").write_bytes(b"not an image at all")
  with pytest.raises(SystemExit, match=f"{good}/bad.png: cannot read as an image"):
    run_segment(run_dir, [good], tmp_path / "out", "--on_unreadable=error")
  with pytest.raises(SystemExit, match="no file could be read as an image"):
    run_segment(run_dir, [good / "bad.png"], tmp_path / "out")
  with pytest.raises(SystemExit, match="--threshold='1.5': expected 'adaptive', 'otsu' or a number"):
    run_segment(run_dir, [good], tmp_path / "out", "--threshold=1.5")
  with pytest.raises(SystemExit, match="--image_size=40: expected a positive multiple of 32"):
    segment.main([f"--checkpoint={run_dir}", f"--images={good / 'one.png'}",
                  f"--out={tmp_path / 'out'}", "--image_size=40"])
  (tmp_path / "x").mkdir()
  Image.fromarray(noise(32, 32)).save(tmp_path / "x" / "one.jpg")
  with pytest.raises(SystemExit, match="same name stem.*one"):
    run_segment(run_dir, [good / "one.png", tmp_path / "x" / "one.jpg"], tmp_path / "out")


def test_pictures_are_pure_and_sized():
  image = noise(10, 20)
  mask = np.zeros((10, 20), bool)
  mask[:, :5] = True
  shown = pictures.overlay(image, mask)
  np.testing.assert_array_equal(shown[:, 5:], image[:, 5:])  # background untouched
  assert not np.array_equal(shown[:, :5], image[:, :5])
  np.testing.assert_array_equal(pictures.mask_image(mask)[0], [255] * 5 + [0] * 15)
  np.testing.assert_array_equal(pictures.jet(np.array([[0.0, 1.0]])),
                                [[[0, 0, 128], [128, 0, 0]]])
  np.testing.assert_allclose(pictures.stretch(np.array([[2.0, 4.0, 3.0]])), [[0, 1, 0.5]])
  assert pictures.thumbnail(noise(300, 150), 100).shape == (100, 50, 3)
  with pytest.raises(ValueError, match="image's size"):
    pictures.heatmap(image, np.zeros((5, 5)))


@pytest.mark.slow
def test_rerun_into_the_images_folder_reads_no_outputs(run_dir, tmp_path):
  """Outputs written beside the images are never read as images: a rerun gives the same
  masks; an --out inside the --images folder is refused, naming both."""
  photos = tmp_path / "photos"
  photos.mkdir()
  for n in range(3):
    Image.fromarray(noise(48, 64, seed=n)).save(photos / f"im{n}.png")
  run_segment(run_dir, [photos], photos, "--save_probs")
  first = {p.name: opened(p)[1] for p in photos.glob("*_mask.png")}
  assert sorted(first) == ["im0_mask.png", "im1_mask.png", "im2_mask.png"]
  run_segment(run_dir, [photos], photos, "--save_probs")
  assert not list(photos.glob("*_mask_*")) and not list(photos.glob("*_prob_*"))
  for name, mask in first.items():
    np.testing.assert_array_equal(opened(photos / name)[1], mask)
  with pytest.raises(SystemExit, match=f"--out {photos}/out is inside the --images folder"):
    run_segment(run_dir, [photos], photos / "out")
  assert not (photos / "out").exists()  # refused before anything was created


@pytest.mark.slow
def test_the_default_threshold_and_gate_are_the_runs(tmp_path):
  """Without --threshold and --partner_gate a run is segmented as its evaluation was
  (config.eval.threshold, config.eval.partner_gate)."""
  config = recipe.add_config(tiny_config())
  config.eval.threshold, config.eval.partner_gate = "0.3", True
  run = save_random_run(tmp_path / "run", config)
  (tmp_path / "photos").mkdir()
  for k in range(2):
    Image.fromarray(noise(40, 56, seed=k)).save(tmp_path / "photos" / f"img{k}.png")
  run_segment(run, [tmp_path / "photos"], tmp_path / "out", "--save_probs")
  run_segment(run, [tmp_path / "photos"], tmp_path / "given", "--save_probs", "--threshold=0.3",
              "--partner_gate")
  run_segment(run, [tmp_path / "photos"], tmp_path / "ungated", "--save_probs",
              "--nopartner_gate")
  for k in range(2):
    _, mask = opened(tmp_path / "out" / f"img{k}_mask.png")
    _, soft = opened(tmp_path / "out" / f"img{k}_prob.png")
    for name in ("mask", "prob"):
      np.testing.assert_array_equal(opened(tmp_path / "out" / f"img{k}_{name}.png")[1],
                                    opened(tmp_path / "given" / f"img{k}_{name}.png")[1])
    ungated = opened(tmp_path / "ungated" / f"img{k}_prob.png")[1].astype(int)
    assert (soft <= ungated + 1).all() and (soft < ungated - 1).any()  # P * gate
    agree = (mask == 255) == (soft > 0.3 * 255)
    assert agree.mean() > 0.99 and (soft > 0.5 * 255).mean() < (mask == 255).mean()


@pytest.mark.slow
def test_the_default_refinement_is_the_runs(tmp_path, capsys):
  """Without --refine a run's maps are refined as its evaluation refined them
  (config.eval.refine and its settings); --refine= turns it off."""
  pytest.importorskip("pydensecrf.densecrf")
  config = tiny_config()
  config.eval.threshold, config.eval.refine, config.eval.crf_sxy = "adaptive", "crf", 0.2
  run = save_random_run(tmp_path / "run", config)
  (tmp_path / "photos").mkdir()
  for k in range(2):
    Image.fromarray(noise(40, 56, seed=k)).save(tmp_path / "photos" / f"img{k}.png")
  run_segment(run, [tmp_path / "photos"], tmp_path / "out", "--save_probs")
  assert "refinement crf (the run's config.eval.refine" in capsys.readouterr().out
  run_segment(run, [tmp_path / "photos"], tmp_path / "given", "--save_probs", "--refine=crf")
  run_segment(run, [tmp_path / "photos"], tmp_path / "plain", "--save_probs", "--refine=")
  for k in range(2):
    out, given, plain = (opened(tmp_path / d / f"img{k}_prob.png")[1]
                         for d in ("out", "given", "plain"))
    np.testing.assert_array_equal(out, given)
    assert np.abs(out.astype(int) - plain).max() > 50  # the CRF's P(foreground), sharp


def truncated_jpeg(path, seed=0):
  """A real JPEG cut in half: its header reads, its pixels do not."""
  Image.fromarray(noise(48, 64, seed=seed)).save(path, quality=90)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


def test_an_unreadable_photo_is_skipped_and_listed(run_dir, tmp_path, capsys):
  photos = tmp_path / "photos"
  photos.mkdir()
  for n in range(3):
    Image.fromarray(noise(48, 64, seed=n)).save(photos / f"ok_{n}.jpg")
  broken = truncated_jpeg(photos / "broken.jpg")
  with pytest.raises(images.ImageReadError):
    images.read_image(broken)
  run_segment(run_dir, [photos], tmp_path / "out")
  printed = capsys.readouterr().out
  assert f"warning: skipped {broken}: " in printed
  assert f"skipped 1 unreadable file(s) (--on_unreadable=error stops at them): {broken}" in printed
  assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == [
      f"ok_{n}_mask.png" for n in range(3)]
  with pytest.raises(SystemExit, match=f"error: {broken}: cannot decode image data"):
    run_segment(run_dir, [photos], tmp_path / "refused", "--on_unreadable=error")
  assert not list((tmp_path / "refused").glob("*_mask.png"))
