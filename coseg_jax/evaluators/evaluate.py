"""Evaluation of a trained CoSegNet in the protocols of ``evaluators.modes``: the paper's
tables (§4.3–4.4) and the distractor test, from a run or a released checkpoint.

The data and the output path are checked before any work; the report
(``evaluators.report``) is written after each mode, so a finished mode is never lost.
"""

import pathlib

from coseg_jax import config as config_lib, maps, release, runs
from coseg_jax.data import pipeline
from coseg_jax.evaluators import distractor, groups, pairs, report as report_lib, saliency
from coseg_jax.evaluators import modes as modes_lib


def dataset_name(data_config):
  """The dataset's name in reports: a folder dataset's folder name, a TFDS dataset's name
  ("voc2012_coseg_512"), else the dataset kind."""
  if data_config.dataset == "folder":
    return pathlib.Path(data_config.root).expanduser().absolute().name
  if data_config.dataset == "tfds":
    return data_config.tfds.name.replace("/", "_")
  return data_config.dataset


def map_writer(save_maps, method, data_config, modes):
  """A ``saliency.MapWriter`` for the group ``modes``, or None when ``save_maps`` is empty."""
  if not save_maps:
    return None
  names = [m.name for m in modes_lib.of(modes, "groups")]
  if not names:
    raise ValueError(f"save_maps={save_maps!r}: maps come from the group modes, and none of "
                     f"{[m.name for m in modes]} is one")
  return saliency.MapWriter(save_maps, method, dataset_name(data_config), names)


def run(*, config=None, workdir=None, checkpoint=None, modes=None, split="test", chunk_size=None,
        out=None, log=print, threshold=None, save_maps=None, method="coseg_jax",
        vgg16_weights=None):
  """Evaluates a checkpoint in ``modes`` -> the report.

  The settings are ``config.eval``'s (``modes``: names, empty for the dataset's defaults;
  ``threshold``: 0.5, "adaptive" or "otsu", binarising the group and distractor maps;
  the recipe's gate (``config.recipe``) on the default modes if it says so;
  ``chunk_size``; ``refine``: a refinement of the group modes' maps at the image's size,
  ``maps.refiner``); the arguments of the same names, when given, override them. With
  ``save_maps`` the group modes' maps are written under ``<save_maps>/<method>/<dataset>/``
  and scored with the co-saliency metrics (``evaluators.saliency``), reported under each
  mode's "sod". The report goes to ``out`` (default ``report.default_out_path``).
  ``vgg16_weights``: the encoder of a released model that leaves it out.
  """
  found = runs.resolve(workdir, checkpoint)
  if found.released and config is None and not release.is_release(found.path):
    raise ValueError(f"{found.path} is a released checkpoint without a run config: give the "
                     "experiment config with --config (e.g. configs/reference_ca.py)")
  config, model, variables, read = runs.load_checkpoint(found, config, log, vgg16_weights)
  config_lib.validate(config, training=False)
  settings = config.eval
  threshold = maps.parse_threshold(settings.threshold if threshold is None else threshold)
  chunk_size = settings.chunk_size if chunk_size is None else chunk_size
  data_config = config.data
  modes = modes_lib.parse(settings.modes if modes is None else modes,
                          pipeline.dataset_kind(data_config), config_lib.gate_by_default(config))
  groups.check(data_config, modes)
  refine = maps.configured_refiner(settings)
  gate = config_lib.recipe_gate(config) if any(m.gate for m in modes) else None
  writer = map_writer(save_maps, method, data_config, modes)
  report = {"dataset": dataset_name(data_config), "split": split, "checkpoint": str(read),
            "step": int(read.name) if read.name.isdigit() else None,
            "run_dir": str(found.run_dir), "modes": [m.name for m in modes],
            "threshold": threshold, "refine": settings.refine, "results": {},
            "config": config.to_dict()}
  out = out or report_lib.default_out_path(report)
  report_lib.check_writable(out)

  def finished(mode, result):
    if writer is not None and mode in writer.modes:
      result["sod"] = writer.mode_results(mode)
    report["results"][mode] = result
    report_lib.write_report(report, out)
    log(f"{mode}: done, written to {out}")

  if modes_lib.of(modes, "pairs"):
    pairs.evaluate(config, model, variables, split, modes_lib.of(modes, "pairs"), finished)
  if modes_lib.of(modes, "groups"):
    segmenters = {m.name: groups.segmenter(m, model, variables, chunk_size, gate)
                  for m in modes_lib.of(modes, "groups")}
    groups.evaluate(lambda: pipeline.iterate_groups(data_config, split=split), segmenters,
                    finished, threshold, writer, refine)
  if modes_lib.of(modes, "distractor"):
    segmenters = {m.name: distractor.segmenter(m, model, variables, chunk_size, gate)
                  for m in modes_lib.of(modes, "distractor")}
    distractor.run(data_config, split, segmenters, finished, threshold)
  report["results"] = {m: report["results"][m] for m in report["modes"]}
  report_lib.write_report(report, out)
  return report
