"""One interface for every protocol (as big_vision's evaluators): ``build(protocol, config,
modes)`` -> an ``Evaluator`` whose ``run(model, variables)`` returns {mode name: result}.

* ``pairs``: the pair model over a split's pairs (``evaluators.pairs``);
* ``groups``: every image of every group at its original size (``evaluators.groups``);
* ``distractor``: the distractor test (``evaluators.distractor``);
* ``saliency``: the group modes with their maps saved in the eval-co-sod layout and
  scored with the co-saliency metrics, under each result's "sod" (``evaluators.saliency``).

The settings are ``config.eval``'s (``threshold``, ``chunk_size``, ``refine``); a gated mode
takes the gate of the config's recipe (``config.recipe``). ``eval.py`` and validation
during training (``config.eval.during_training``) build their evaluators here.
"""

import dataclasses
import pathlib
from typing import Any, Callable

from coseg_jax import config as config_lib, maps
from coseg_jax.data import pipeline
from coseg_jax.errors import BadValue
from coseg_jax.evaluators import distractor, groups, modes as modes_lib, pairs, saliency

PROTOCOLS = ("pairs", "groups", "distractor", "saliency")


def dataset_name(data_config):
  """The dataset's name in reports: a folder dataset's folder name, a TFDS dataset's name
  ("voc2012_coseg_512"), else the dataset kind."""
  if data_config.dataset == "folder":
    return pathlib.Path(data_config.root).expanduser().absolute().name
  if data_config.dataset == "tfds":
    return data_config.tfds.name.replace("/", "_")
  return data_config.dataset


@dataclasses.dataclass
class Evaluator:
  """``protocol``'s ``modes`` (``modes_lib.Mode``) on ``split`` of ``config.data``.

  ``on_result(mode name, result)`` is called as each mode finishes; ``save_maps`` and
  ``method``: the saliency protocol's ``<save_maps>/<method>/<dataset>/`` folder.
  """
  protocol: str
  config: Any
  modes: list
  split: str = "test"
  threshold: Any = None
  chunk_size: int = 8
  on_result: Callable = None
  save_maps: str = ""
  method: str = "coseg_jax"

  def run(self, model, variables):
    """{mode name: result} of ``model`` with ``variables``."""
    return RUNNERS[self.protocol](self, model, variables)

  def segmenters(self, module, model, variables):
    gate = config_lib.recipe_gate(self.config) if any(m.gate for m in self.modes) else None
    return {m.name: module.segmenter(m, model, variables, self.chunk_size, gate)
            for m in self.modes}


def parse_modes(config, names):
  """``modes_lib.parse`` for ``config``'s dataset; the recipe may gate the default modes."""
  return modes_lib.parse(names, pipeline.dataset_kind(config.data),
                         config_lib.gate_by_default(config))


def build(protocol, config, modes=None, *, split="test", threshold=None, chunk_size=None,
          on_result=None, save_maps="", method="coseg_jax"):
  """An ``Evaluator`` of ``protocol`` (``PROTOCOLS``): ``modes`` (``Mode``s or names; None:
  ``config.eval.modes`` or the dataset's defaults, those of the protocol), ``threshold``
  and ``chunk_size`` (None: ``config.eval``'s). Raises ``ValueError`` naming a mode of
  another protocol."""
  if protocol not in PROTOCOLS:
    raise BadValue(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
  if protocol == "saliency" and not save_maps:
    raise BadValue("the saliency protocol needs save_maps: the folder its maps go to")
  own = "groups" if protocol == "saliency" else protocol
  if modes is None:
    modes = modes_lib.of(parse_modes(config, config.eval.modes), own)
  elif isinstance(modes, str) or any(isinstance(m, str) for m in modes):
    modes = parse_modes(config, modes)
  others = [m.name for m in modes if m.protocol != own]
  if others:
    raise BadValue(f"modes {others} are not of the {protocol} protocol")
  threshold = config.eval.threshold if threshold is None else threshold
  return Evaluator(protocol, config, list(modes), split, maps.parse_threshold(threshold),
                   config.eval.chunk_size if chunk_size is None else chunk_size, on_result,
                   save_maps, method)


def _pairs(evaluator, model, variables):
  return pairs.evaluate(evaluator.config, model, variables, evaluator.split, evaluator.modes,
                        evaluator.on_result)


def _groups(evaluator, model, variables, map_writer=None, on_result=None):
  data_config = evaluator.config.data
  return groups.evaluate(lambda: pipeline.iterate_groups(data_config, split=evaluator.split),
                         evaluator.segmenters(groups, model, variables),
                         on_result or evaluator.on_result, evaluator.threshold, map_writer,
                         maps.configured_refiner(evaluator.config.eval))


def _distractor(evaluator, model, variables):
  return distractor.run(evaluator.config.data, evaluator.split,
                        evaluator.segmenters(distractor, model, variables),
                        evaluator.on_result, evaluator.threshold)


def _saliency(evaluator, model, variables):
  writer = saliency.MapWriter(evaluator.save_maps, evaluator.method,
                              dataset_name(evaluator.config.data),
                              [m.name for m in evaluator.modes])

  def finished(mode, result):
    result["sod"] = writer.mode_results(mode)
    if evaluator.on_result:
      evaluator.on_result(mode, result)
  return _groups(evaluator, model, variables, writer, finished)


RUNNERS = {"pairs": _pairs, "groups": _groups, "distractor": _distractor,
           "saliency": _saliency}


def jaccard(result):
  """The headline Jaccard of a mode's result: pooled (pairs) or the class average."""
  return result["average"]["jaccard"] if "average" in result else result["jaccard"]
