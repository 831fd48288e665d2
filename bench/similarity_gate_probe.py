"""Probe (docs/results.md, "A gate from the partner's similarity"): a trained run's
P(foreground) multiplied by an untrained gate, the cosine similarity of each pool5 location
to the partner's pooled feature (in a group: the mean of the images' unit pooled features).

  python bench/similarity_gate_probe.py --workdir runs/E_fca --what distractor \\
      --root ../shared/data/pascal_voc10_coseg --groups Bus,Car,Cat,Chair,Cow

Gates: ``minmax`` (the cosine map scaled to [0, 1] per image), ``sigmoid_cos``
(sigmoid(10 cos - 4)), ``sigmoid_z`` (sigmoid(2 z + 1), z the cosine standardised over the
image's locations); ``none`` is the run alone. Prints Jaccard % (adaptive threshold):
``--what distractor`` the distractor test, ``--what group`` group_mean at the original size.
"""

import argparse
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from coseg_jax import distractors, evaluate, group
from coseg_jax.data import pipeline
from coseg_jax.partner_gate import unit

GATES = ("none", "minmax", "sigmoid_cos", "sigmoid_z")


def once(fn):
  """``fn`` of numpy arrays, computed once per distinct argument values (every gate scores
  the same model maps: they are not recomputed per gate)."""
  results = {}
  def cached(*arrays):
    key = tuple(hashlib.blake2b(np.ascontiguousarray(a).tobytes()).digest() for a in arrays)
    if key not in results:
      results[key] = fn(*arrays)
    return results[key]
  return cached


def features(model, variables, images):
  """float32 pool5 features [N, h, w, C] of uint8 images [N, S, S, 3]."""
  chunks, alphas = group.group_attention(model, variables, images)
  return np.concatenate([np.asarray(c, np.float32) for c in chunks])[:len(alphas)]


def gate(kind, f, prototype, size):
  """The gate [N, size, size] of features f [N, h, w, C] against prototypes [N, C]."""
  cosine = (unit(f) * unit(prototype)[:, None, None]).sum(-1)
  if kind == "minmax":
    low, high = cosine.min((1, 2), keepdims=True), cosine.max((1, 2), keepdims=True)
    g = (cosine - low) / (high - low + 1e-6)
  elif kind == "sigmoid_cos":
    g = 1 / (1 + np.exp(-(10 * cosine - 4)))
  else:
    z = (cosine - cosine.mean((1, 2), keepdims=True)) / (cosine.std((1, 2), keepdims=True) + 1e-3)
    g = 1 / (1 + np.exp(-(2 * z + 1)))
  return np.asarray(jax.image.resize(jnp.asarray(g), (len(g), size, size), "bilinear"))


def distractor_scores(model, variables, data_config, kinds):
  composites = distractors.render(pipeline.iterate_groups(data_config), data_config.image_size)
  f = features(model, variables, composites.images)
  segment = once(distractors.model_segmenter(model, variables))
  for kind in kinds:
    def gated(images, pairs, kind=kind):
      probs = segment(images, pairs)
      if kind == "none":
        return probs
      return probs * gate(kind, f[pairs[:, 0]], f[pairs[:, 1]].mean((1, 2)), probs.shape[-1])
    r = distractors.evaluate(composites, gated, "adaptive")
    print(f"distractor {kind}: own {100 * r['own']['average']['jaccard']:.1f} pasted "
          f"{100 * r['pasted']['average']['jaccard']:.1f} mean "
          f"{100 * r['average']['jaccard']:.1f} partner effect "
          f"{100 * r['partner_effect']['average']:.1f}", flush=True)


def group_scores(model, variables, data_config, kinds):
  groups = list(pipeline.iterate_groups(data_config))
  segment_group = once(lambda inputs: group.segment_group(model, variables, inputs, return_probs=True)[1])
  group_features = once(lambda inputs: features(model, variables, inputs))
  def segmenter(kind):
    def segment(inputs):
      probs = segment_group(inputs)
      if kind == "none":
        return probs
      f = group_features(inputs)
      prototype = unit(f.mean((1, 2))).mean(0, keepdims=True).repeat(len(f), 0)
      return probs * gate(kind, f, prototype, probs.shape[-1])
    return segment
  results = evaluate.evaluate_groups(groups, {k: segmenter(k) for k in kinds}, threshold="adaptive")
  for kind, r in results.items():
    classes = ", ".join(f"{c} {100 * v['jaccard']:.1f}" for c, v in r["classes"].items())
    print(f"group_mean {kind}: {100 * r['average']['jaccard']:.1f} ({classes})", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--groups", default="")
  parser.add_argument("--what", choices=("distractor", "group"), default="distractor")
  parser.add_argument("--gates", default=",".join(GATES), help="comma-separated: " + ", ".join(GATES))
  args = parser.parse_args()
  config, model, variables = evaluate.load_run(workdir=args.workdir)
  data_config = config.data
  data_config.root, data_config.groups = args.root, args.groups
  kinds = args.gates.split(",")
  score = distractor_scores if args.what == "distractor" else group_scores
  score(model, variables, data_config, kinds)


if __name__ == "__main__":
  main()
