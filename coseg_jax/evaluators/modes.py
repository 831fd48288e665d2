"""Evaluation modes as data: a protocol, a segmenter and whether the partner gate is on.

* protocol ``pairs``: the pair model over the pairs of a split, scored at the model's
  input size (the single VOC number of §4.3); segmenters ``model`` and the baseline
  ``all_foreground``.
* protocol ``groups``: every image of a group scored at its original resolution;
  segmenters ``pairwise`` (Tables 1–3, 5), ``group_mean`` / ``group_min`` (Algorithm 1
  with the Group Average / Minimum Attention, Tables 4–5) and the baselines
  ``all_foreground`` and ``center_box``.
* protocol ``distractor``: the distractor test (``evaluators.distractor``); segmenters
  ``model`` (each composite decoded with its partner) and the baselines.

``gate``: every model map passed through the gate of the config's recipe (the
real-photo recipe's partner gate), for the group and distractor protocols; a recipe may
gate the default modes (``defaults``, ``config.gate_by_default``).

A mode's ``name`` is what ``--config.eval.modes`` takes: ``pairs``,
``pairs_all_foreground``, ``group_mean``, ``group_mean_gate``, ``center_box``,
``distractor``, ``distractor_gate``, ``distractor_center_box``, ...
"""

import dataclasses

from coseg_jax.errors import BadValue

PROTOCOLS = ("pairs", "groups", "distractor")
MODEL = "model"
GROUP_MODELS = ("pairwise", "group_mean", "group_min")
BASELINES = ("all_foreground", "center_box")
MODELS = {"pairs": (MODEL,), "groups": GROUP_MODELS, "distractor": (MODEL,)}
PROTOCOL_BASELINES = {"pairs": ("all_foreground",), "groups": BASELINES,
                      "distractor": BASELINES[::-1]}
GATED = ("groups", "distractor")  # protocols whose model maps can be gated


@dataclasses.dataclass(frozen=True)
class Mode:
  protocol: str
  segmenter: str
  gate: bool = False

  @property
  def name(self):
    words = [] if self.protocol == "groups" else [self.protocol]
    if self.segmenter != MODEL:
      words.append(self.segmenter)
    return "_".join(words + ["gate"] * self.gate)

  @property
  def is_model(self):
    """False for the baselines, which never look at the model."""
    return self.segmenter not in BASELINES

  def __str__(self):
    return self.name


def _all_modes():
  for protocol in PROTOCOLS:
    for segmenter in MODELS[protocol]:
      yield Mode(protocol, segmenter)
      if protocol in GATED:
        yield Mode(protocol, segmenter, gate=True)
    for segmenter in PROTOCOL_BASELINES[protocol]:
      yield Mode(protocol, segmenter)


MODES = {mode.name: mode for mode in _all_modes()}
DEFAULT_GROUP_MODES = ("pairwise", "group_mean", "group_min", "all_foreground", "center_box")
DEFAULTS = {"voc": ("pairs", "pairs_all_foreground"),
            "synthetic": ("pairs", "pairs_all_foreground", *DEFAULT_GROUP_MODES),
            "folder": DEFAULT_GROUP_MODES}


def defaults(dataset, gate=False):
  """``dataset``'s default mode names; with ``gate`` its model modes that can be gated are."""
  if not gate:
    return DEFAULTS[dataset]
  return tuple(dataclasses.replace(m, gate=m.is_model and m.protocol in GATED).name
               for m in map(MODES.get, DEFAULTS[dataset]))


def parse(names, dataset, gate=False):
  """Mode names (a list, or comma-separated text; empty: ``defaults(dataset, gate)``) ->
  [Mode], checked: unknown names, and modes that need groups on VOC pairs, are named."""
  if isinstance(names, str):
    names = [n.strip() for n in names.split(",") if n.strip()]
  names = list(names or defaults(dataset, gate))
  unknown = [n for n in names if n not in MODES]
  if unknown:
    raise BadValue(f"unknown mode(s) {unknown}; expected some of {list(MODES)}")
  modes = [MODES[n] for n in names]
  grouped = [m.name for m in modes if m.protocol != "pairs"]
  if dataset == "voc" and grouped:
    raise BadValue(f"modes {grouped} need groups, which VOC 2012 pairs do not have; use "
                   f"{list(DEFAULTS['voc'])}")
  return modes


def of(modes, protocol):
  """The modes of ``protocol``, in order."""
  return [m for m in modes if m.protocol == protocol]
