"""The distractor test: composites of held-out objects, partners, the 50 % bound, eval modes."""

import jax
import numpy as np
import pytest

from coseg_jax import CoSegNet, init_variables
from coseg_jax.data import paste, resize
from coseg_jax.evaluators import distractor as distractors, evaluate, modes, report as report_lib
from coseg_jax.proj.real_photos import recipe
from test_evaluators import save_random_run
from test_group import pair_probs, sharpened
from tiny import SIZE, SMALL, tiny_config

COLOURS = ((250, 10, 10), (10, 250, 10), (10, 10, 250))  # one object colour per group


DISTRACTOR_MODES = [m for m in modes.MODES if m.startswith("distractor")]


def toy_groups(sizes=(3, 3, 3), empty=()):
  """Groups of grey photos (80 x 100) holding a box of their group's colour; the images
  named in ``empty`` ((group, image) pairs) have no object."""
  rng = np.random.default_rng(0)
  groups = []
  for g, n in enumerate(sizes):
    images, masks = [], []
    for i in range(n):
      image = np.full((80, 100, 3), 128, np.uint8)
      mask = np.zeros((80, 100), bool)
      if (g, i) not in empty:
        top, left = rng.integers(0, 30), rng.integers(0, 40)
        mask[top:top + 40, left:left + 50] = True
        image[mask] = COLOURS[g]
      images.append(image)
      masks.append(mask)
    inputs = np.stack([resize.resize_image(im, SIZE) for im in images])
    groups.append({"name": f"class{g}", "images": images, "masks": masks, "inputs": inputs})
  return groups


def test_composites_paste_another_class_and_pair_by_target():
  groups = toy_groups(empty=[(2, 0)])
  c = distractors.render(groups, SIZE)
  assert c.images.shape == (9 + 8, SIZE, SIZE, 3) and c.images.dtype == np.uint8
  assert c.classes == ["class0"] * 3 + ["class1"] * 3 + ["class2"] * 2  # not the empty image
  group_of = np.repeat([0, 1, 2], 3)
  bases = [0, 1, 2, 3, 4, 5, 7, 8]
  for t in range(len(c.labels)):
    own_group = int(c.classes[t][-1])
    image = c.images[9 + t]
    assert (c.labels[t] == paste.OWN).any() and (c.labels[t] == paste.PASTED).any()
    pasted_colour = image[c.labels[t] == paste.PASTED].mean(0)
    donor_group = int(np.argmin([np.abs(pasted_colour - col).sum() for col in COLOURS]))
    assert donor_group != own_group
    own_partner, pasted_partner = c.partners[t]
    assert group_of[own_partner] == own_group and group_of[pasted_partner] == donor_group
    assert own_partner != bases[t] and 6 not in (own_partner, pasted_partner)  # 6: no object
  np.testing.assert_array_equal(c.pairs("own")[:, 0], np.arange(9, 17))
  np.testing.assert_array_equal(c.pairs("pasted")[:, 1], c.partners[:, 1])
  again = distractors.render(groups, SIZE)
  np.testing.assert_array_equal(again.images, c.images)
  assert not np.array_equal(distractors.render(groups, SIZE, seed=1).labels, c.labels)


def test_render_errors_name_the_problem():
  with pytest.raises(ValueError, match="at least two groups.*got 1"):
    distractors.render(toy_groups(sizes=(3,)), SIZE)
  with pytest.raises(ValueError, match=r"groups \['class1'\] have fewer than two images"):
    distractors.render(toy_groups(empty=[(1, 0), (1, 1)]), SIZE)


def oracle(composites):
  """A segmenter that knows each pair's target (what a perfect co-segmenter outputs)."""
  truth = np.concatenate([composites.targets(t) for t in distractors.TARGETS]).astype(np.float32)
  return lambda images, pairs: truth


def test_a_partner_blind_segmenter_scores_at_most_half():
  c = distractors.render(toy_groups(), SIZE)
  perfect = distractors.evaluate(c, oracle(c))
  assert perfect["average"]["jaccard"] == 1.0 and perfect["partner_effect"]["average"] == 1.0
  both = (c.labels > 0).astype(np.float32)  # both objects, whatever the partner
  first = len(c.images) - len(c.labels)
  blind = distractors.evaluate(c, lambda images, pairs: both[pairs[:, 0] - first])
  assert blind["average"]["jaccard"] == pytest.approx(0.5)  # |A| / |A u B| + |B| / |A u B|
  assert blind["partner_effect"]["average"] == pytest.approx(0.0, abs=1e-12)
  own_only = distractors.evaluate(c, lambda images, pairs: (c.labels == paste.OWN)[
      pairs[:, 0] - first].astype(np.float32))
  assert own_only["own"]["average"]["jaccard"] == 1.0
  assert own_only["pasted"]["average"]["jaccard"] == 0.0
  rng = np.random.default_rng(0)
  for _ in range(3):  # any map that ignores the partner stays under the bound
    maps = rng.uniform(size=c.labels.shape).astype(np.float32)
    result = distractors.evaluate(c, lambda images, pairs, m=maps: m[pairs[:, 0] - first])
    assert result["average"]["jaccard"] <= 0.5
    assert result["partner_effect"]["average"] == pytest.approx(0.0, abs=1e-12)
  swapped = distractors.evaluate(c, lambda images, pairs: oracle(c)(images, pairs)[
      np.r_[len(pairs) // 2:len(pairs), 0:len(pairs) // 2]])  # each pair gets the other's
  assert swapped["average"]["jaccard"] == 0.0 and swapped["partner_effect"]["average"] == -1.0


def test_model_segmenter_is_the_pair_forward():
  model = CoSegNet("fca", **SMALL)
  variables = sharpened(init_variables(model, jax.random.key(2), SIZE))
  c = distractors.render(toy_groups(), SIZE)
  pairs = np.concatenate([c.pairs(t) for t in distractors.TARGETS])[::5]
  probs = distractors.segmenter(modes.MODES["distractor"], model, variables, chunk_size=2)(c.images, pairs)
  expected = np.stack([pair_probs(model, variables, c.images[p])[0] for p in pairs])
  np.testing.assert_allclose(probs, expected, atol=2e-5)


def test_eval_distractor_modes_on_synthetic_groups(tmp_path):
  config = recipe.add_config(tiny_config())  # its partner gate: distractor_gate
  save_random_run(tmp_path / "run", config)
  report = evaluate.run(workdir=tmp_path / "run", modes=DISTRACTOR_MODES,
                        chunk_size=4)
  results = report["results"]
  assert list(results) == DISTRACTOR_MODES
  for result in results.values():
    assert result["images"] == 6 and set(result["own"]["classes"]) == {
        "synthetic_test_00000", "synthetic_test_00001"}
  fg = results["distractor_all_foreground"]
  assert fg["own"]["average"]["jaccard"] < 0.5 and fg["average"]["jaccard"] < 0.5
  text = report_lib.format_report(report)
  assert "Distractor test" in text and "center_box mean" in text and "model effect" in text
  assert results["distractor_center_box"]["partner_effect"]["average"] == 0.0
  single = tiny_config(synthetic={"num_groups": 1})
  save_random_run(tmp_path / "one", single)
  with pytest.raises(ValueError, match="at least two groups"):
    evaluate.run(workdir=tmp_path / "one", modes=["distractor"])
