"""Group scaling: instant group co-segmentation (Algorithm 1) vs the pairwise protocol.

  python -m bench.bench_group                       # N = 4..64 at 128x128, full VGG16
  python -m bench.bench_group --sizes 8,64 --pairwise-max-n 0
  python -m bench.bench_group --isolate            # each N in a fresh process
  python -m bench.bench_group --cue --sizes 4,8,16,32 --pairwise-max-n 0  # model.cue

For each N: wall time, time per image, peak RSS during the call, and how many times the
chunk functions compiled. Instant group should be linear in N (time per image flat) with
flat peak memory; pairwise grows quadratically. Results go to a JSON file.

In one process (the default) the compile count shows that one compiled function serves
every N, but the peak RSS of a later N includes what the allocator kept from earlier
ones. ``--isolate`` runs every N in its own process, so each peak RSS is that of a
process that co-segments exactly N images (model, runtime, inputs and outputs included).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax
import numpy as np

from bench.common import PeakRSS, compile_counts, median_seconds, print_table, write_json
from coseg_jax import CoSegNet, group, init_variables  # pylint: disable=g-import-not-at-top


CHUNKS = ("encode_chunk", "decode_chunk", "prototype_chunk", "pair_chunk")  # group.py's jit steps


def timed(fn, repeats):
  """Median wall time of ``repeats`` runs (after one warm-up) and the peak RSS seen."""
  fn()  # the warm-up (compilation) stays outside the memory measurement
  with PeakRSS() as rss:
    seconds = median_seconds(fn, repeats, warmup=0)
  return seconds, rss.peak


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="4,8,16,32,64", help="group sizes N")
  parser.add_argument("--image-size", type=int, default=128)
  parser.add_argument("--attention", default="ca")
  parser.add_argument("--cue", action="store_true",
                      help='the model with the correspondence cue (model.cue="correlation")')
  parser.add_argument("--chunk-size", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--pairwise-max-n", type=int, default=32,
                      help="largest N also run pairwise (quadratic: slow); 0 = none")
  parser.add_argument("--isolate", action="store_true",
                      help="run every N in a fresh process (peak RSS per N)")
  parser.add_argument("--out", default="bench/results/group.json")
  args = parser.parse_args(argv)
  rows = isolated_rows(args) if args.isolate else measure(args)
  print()
  columns = ["method", "N", "seconds", "ms_per_image", "peak_rss_mb", "compiles_so_far"]
  print_table(rows, columns)
  summary = summarise(rows)
  for key, value in summary.items():
    print(f"{key}: {value:.3f}")
  write_json(args.out, {"args": vars(args), "rows": rows, "summary": summary})


def isolated_rows(args):
  """The rows of one child process per N (this script without --isolate)."""
  rows = []
  for n in args.sizes.split(","):
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "rows.json")
      subprocess.run([sys.executable, "-m", "bench.bench_group", "--sizes", n, "--image-size",
                      str(args.image_size), "--attention", args.attention, "--chunk-size", str(args.chunk_size),
                      "--repeats", str(args.repeats), "--pairwise-max-n",
                      str(args.pairwise_max_n), "--out", out, *["--cue"] * args.cue],
                     check=True)
      with open(out) as f:
        rows += json.load(f)["rows"]
  return rows


def measure(args):
  """Times every N of ``args.sizes`` in this process."""
  model = CoSegNet(args.attention, cue="correlation" if args.cue else "")
  variables = init_variables(model, jax.random.key(0), args.image_size)
  sizes = [int(n) for n in args.sizes.split(",")]
  rng = np.random.RandomState(0)
  # uint8, as photos arrive: normalised on the device (a quarter of float32's transfer)
  pool = rng.randint(0, 256, (max(sizes), args.image_size, args.image_size, 3), dtype=np.uint8)
  rows = []
  with compile_counts() as counts:
    for n in sizes:
      rows += measure_n(args, model, variables, pool[:n], counts)
  return rows


def measure_n(args, model, variables, images, counts):
  """The group (and, for small N, the pairwise) rows of one group size."""
  n, rows = len(images), []
  methods = [("group", lambda: group.segment_group(model, variables, images,
                                                   chunk_size=args.chunk_size))]
  if n <= args.pairwise_max_n:
    methods.append(("pairwise", lambda: group.segment_pairwise(model, variables, images,
                                                               chunk_size=args.chunk_size)))
  for name, fn in methods:
    seconds, peak = timed(fn, args.repeats if name == "group" else 1)
    rows.append({"method": name, "N": n, "seconds": seconds, "ms_per_image": 1e3 * seconds / n,
                 "peak_rss_mb": peak / 2**20, "compiles_so_far": sum(counts[f] for f in CHUNKS)})
    print_table(rows[-1:], list(rows[-1]))
  return rows


def summarise(rows):
  """Ratios the targets talk about: per-image time and memory at the largest N vs N = 8."""
  by = {(r["method"], r["N"]): r for r in rows}
  group_ns = sorted(n for m, n in by if m == "group")
  summary = {}
  if 8 in group_ns and group_ns[-1] != 8:
    big = group_ns[-1]
    summary[f"group_time_per_image_N{big}_over_N8"] = (
        by["group", big]["ms_per_image"] / by["group", 8]["ms_per_image"])
    summary[f"group_peak_rss_N{big}_over_N8"] = (
        by["group", big]["peak_rss_mb"] / by["group", 8]["peak_rss_mb"])
  for n in group_ns:
    if ("pairwise", n) in by:
      summary[f"pairwise_over_group_time_N{n}"] = (
          by["pairwise", n]["seconds"] / by["group", n]["seconds"])
  return summary


if __name__ == "__main__":
  main()
