"""Evaluation of a trained CoSegNet in the protocols of ``evaluators.modes``: the paper's
tables (§4.3–4.4) and the distractor test, from a run or a released checkpoint.

The data and the output path are checked before any work; the report
(``evaluators.report``) is written after each mode, so a finished mode is never lost.
"""

from coseg_jax import config as config_lib, maps, release, runs
from coseg_jax.errors import BadValue
from coseg_jax.evaluators import common, groups, modes as modes_lib, report as report_lib


def protocols(modes, save_maps):
  """[(protocol, its modes)] in the order of ``evaluators.common.PROTOCOLS``; with
  ``save_maps`` the group modes run as the saliency protocol."""
  found = []
  for protocol in modes_lib.PROTOCOLS:
    of = modes_lib.of(modes, protocol)
    if of:
      found.append(("saliency" if protocol == "groups" and save_maps else protocol, of))
  if save_maps and not modes_lib.of(modes, "groups"):
    raise BadValue(f"save_maps={save_maps!r}: maps come from the group modes, and none of "
                   f"{[m.name for m in modes]} is one")
  return found


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
    raise BadValue(f"{found.path} is a released checkpoint without a run config: give the "
                   "experiment config with --config (e.g. configs/reference_ca.py)")
  config, model, variables, read = runs.load_checkpoint(found, config, log, vgg16_weights)
  config_lib.validate(config, training=False)
  settings = config.eval
  threshold = maps.parse_threshold(settings.threshold if threshold is None else threshold)
  modes = common.parse_modes(config, settings.modes if modes is None else modes)
  groups.check(config.data, modes)
  maps.configured_refiner(settings)  # an unknown refiner or a missing package, before any work
  evaluators = [common.build(protocol, config, of, split=split, threshold=threshold,
                             chunk_size=chunk_size, save_maps=save_maps, method=method)
                for protocol, of in protocols(modes, save_maps)]
  report = {"dataset": common.dataset_name(config.data), "split": split,
            "checkpoint": str(read), "step": int(read.name) if read.name.isdigit() else None,
            "run_dir": str(found.run_dir), "modes": [m.name for m in modes],
            "threshold": threshold, "refine": settings.refine, "results": {},
            "config": config.to_dict()}
  out = out or report_lib.default_out_path(report)
  report_lib.check_writable(out)

  def finished(mode, result):
    report["results"][mode] = result
    report_lib.write_report(report, out)
    log(f"{mode}: done, written to {out}")

  for evaluator in evaluators:
    evaluator.on_result = finished
    evaluator.run(model, variables)
  report["results"] = {m: report["results"][m] for m in report["modes"]}
  report_lib.write_report(report, out)
  return report
