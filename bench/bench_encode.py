"""Where the time of encoding the CPU recipe's views goes, and what brings it nearer the convs.

  python -m bench.bench_encode                               # 64 views, 256 px, chunks of 16
  python -m bench.bench_encode --views 16 --size 512 --batch 8 --batches 4,8

The recipe's ``view_cache.cached_views`` (``configs/cpu_frozen.py``) streams the views
(``views.view_rows``: numpy/PIL) into ``feature_cache.encode_images``: ``ENCODE_CHUNK`` (8,
from this script) views at a time, the last chunk padded (one compiled shape), each chunk
fetched to the host (``np.asarray``) and written to disk before the next is dispatched.
The ``today`` variant below is the earlier way (every view rendered first, then
``encode_chunks``); its encoder calls are the same. This script times, on N views of the real data (``--root``, random images
without it) and the real VGG16 (``--weights``, random init without it):

* ``render``: reading the images and ``views.render`` (seconds per view);
* ``transfer``: ``jax.device_put`` of a uint8 chunk;
* ``compile``: lowering and compiling the encoder for one chunk shape;
* ``forward``: the encoder on a chunk already on the device, steady state, per batch
  size (``--batches``), with XLA's cost analysis -> GFLOP/s, in float32 and bfloat16
  (``--bf16``; the max relative difference of its features to float32's is reported);
* ``conv_peak``: the best rate of a single VGG16 3x3 convolution layer (stage 3 and 4
  shapes) under XLA, the ceiling the encoder can reach here;
* end to end, rendering included, of the N views (``--variants``, each ``name[:chunk]``):
  ``today`` (render all, then ``feature_cache.encode_chunks``), ``async`` (the next chunk
  dispatched before the previous one is fetched) and ``overlap`` (views rendered in a
  thread while chunks are encoded, fetched one behind).

The variants run in one process, interleaved (``--rounds``), so a busy machine slows them
alike. Writes ``bench/results/encode_<size>.json``.
"""

import argparse
import os
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import median_seconds, print_table, write_json
from coseg_jax import config as config_lib, group, models, weights
from coseg_jax.data import folders
from coseg_jax.proj.real_photos import views
from coseg_jax.training import feature_cache
from coseg_jax.models.coseg import CoSegNet

RECIPE_VIEWS = 3306  # the views of the CPU recipe on the ten VOC10 classes (docs/results.md)
DEFAULT_ROOT = "../shared/data/pascal_voc10_coseg"
DEFAULT_WEIGHTS = "../shared/data/vgg16_features_oxford.pth"
VARIANTS = ("today", "async", "overlap")
VIEWS_PER_IMAGE = 6  # whole, mirror, 2 crops, 2 composites (configs/cpu_frozen.py)


# ----------------------------------------------------------------------------- setup
def build_encoder(size, weights_path, dtype="float32"):
  """(model, encoder variables) of the CPU recipe at ``size`` px, real VGG16 if found."""
  config = recipe_config()
  config.model.dtype, config.data.image_size = dtype, size
  model = models.build(config.model)
  path = weights_path if weights_path and os.path.isfile(weights_path) else None
  variables = weights.init_variables(model, jax.random.key(0), size, path)
  return model, feature_cache.encoder_variables(variables)


def load_groups(root, num_views):
  """Groups (``folders.load_group`` dicts) with about ``num_views / 6`` images over all
  classes, and the seconds it took to read them; None without data."""
  if not root or not os.path.isdir(root):
    return None, 0.0
  dataset = folders.scan(root)
  per_group = max(1, -(-num_views // (VIEWS_PER_IMAGE * len(dataset.groups))))
  start = time.perf_counter()
  groups = [folders.load_group(folders.Group(g.name, g.images[:per_group], g.masks[:per_group]))
            for g in dataset.groups]
  return groups, time.perf_counter() - start


def synthetic_groups(num_views, size):
  """Two groups of random images with a centred box mask (no data at hand)."""
  rng = np.random.default_rng(0)
  count = max(1, -(-num_views // (2 * VIEWS_PER_IMAGE)))
  mask = np.zeros((size + 40, size + 90), bool)
  mask[40:-40, 60:-60] = True
  return [{"name": f"g{g}", "images": [rng.integers(0, 256, (*mask.shape, 3), np.uint8)
                                       for _ in range(count)], "masks": [mask] * count}
          for g in range(2)]


def recipe_config():
  return config_lib.load_file(os.path.join(os.path.dirname(__file__), "..", "configs",
                                           "cpu_frozen.py"))


def view_config(size):
  config = recipe_config().data.views
  return views.ViewConfig(size=size, crops=config.crops, composites=config.composites,
                          min_scale=config.min_scale, seed=0)


def pieces(groups):
  """The groups split into pieces of two groups each (a piece can render composites)."""
  pairs = [groups[k:k + 2] for k in range(0, len(groups), 2)]
  if len(pairs[-1]) < 2:
    pairs[-2] = pairs[-2] + pairs.pop()
  return pairs


# ----------------------------------------------------------------------------- parts
def conv_flops(size, batch):
  """Multiply-add FLOPs (x2) of VGG16's 13 convolutions on ``batch`` size x size images."""
  config = recipe_config().model
  total, side, channels = 0, size, 3
  for width, convs in zip(config.encoder_widths, config.encoder_convs):
    for _ in range(convs):
      total += 2 * side * side * 9 * channels * width
      channels = width
    side //= 2
  return total * batch


def compiled_encoder(model, encoder, batch, size):
  """(compiled encode of uint8 [batch, S, S, 3], seconds to lower and compile, XLA FLOPs)."""
  fn = jax.jit(lambda v, x: model.apply(v, x, method=CoSegNet.encode))
  spec = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
  start = time.perf_counter()
  compiled = fn.lower(encoder, spec).compile()
  seconds = time.perf_counter() - start
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return compiled, seconds, float(analysis.get("flops", 0.0))


def conv_peak(size, batch, repeats):
  """{layer: GFLOP/s} of single VGG16 3x3 convs (stage 3: S/4, 256 ch; stage 4: S/8, 512)."""
  rates = {}
  rng = np.random.default_rng(0)
  for name, side, channels in (("conv3_2", size // 4, 256), ("conv4_2", size // 8, 512)):
    x = jnp.asarray(rng.normal(size=(batch, side, side, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, channels, channels)) * 0.02, jnp.float32)
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    seconds = median_seconds(lambda x=x, w=w, conv=conv: conv(x, w).block_until_ready(), repeats)
    rates[name] = 2 * batch * side * side * 9 * channels * channels / seconds / 1e9
  return rates


def forward_rate(model, encoder, size, batch, repeats):
  """Steady-state forward on a device batch: dict of seconds, views/s, GFLOP/s, compile."""
  compiled, compile_s, xla_flops = compiled_encoder(model, encoder, batch, size)
  x = jax.device_put(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8))
  seconds = median_seconds(lambda: compiled(encoder, x).block_until_ready(), repeats)
  flops = conv_flops(size, batch)
  return {"batch": batch, "dtype": np.dtype(model.dtype).name, "compile_s": compile_s, "seconds": seconds,
          "views_per_s": batch / seconds, "gflop_per_s": flops / seconds / 1e9,
          "xla_gflop": xla_flops / 1e9, "conv_gflop": flops / 1e9}


def transfer_seconds(images, repeats):
  """Median seconds of ``device_put`` of one uint8 chunk (blocked until it is there)."""
  return median_seconds(lambda: jax.device_put(images).block_until_ready(), repeats)


def max_relative_difference(model, encoder, images, batch):
  """Max |f_bf16 - f_f32| over max |f_f32| and the 99.9th percentile of the elementwise
  relative difference where |f_f32| > 1 % of its max, of the same images."""
  f32 = feature_cache.encode_chunks(model, encoder, images, batch)
  bf16 = feature_cache.encode_chunks(model.clone(dtype=jnp.bfloat16), encoder, images, batch)
  bf16 = bf16.astype(np.float32)
  scale = np.abs(f32).max()
  big = np.abs(f32) > 0.01 * scale
  elementwise = np.abs(bf16 - f32)[big] / np.abs(f32)[big]
  f16 = f32.astype(np.float16).astype(np.float32)
  return {"max_abs_over_max": float(np.abs(bf16 - f32).max() / scale),
          "p999_relative_where_big": float(np.quantile(elementwise, 0.999)),
          "float16_storage_max_abs_over_max": float(np.abs(f16 - f32).max() / scale)}


# ----------------------------------------------------------------------------- end to end
def encode_one_behind(model, encoder, chunks, chunk_size):
  """Encodes uint8 ``chunks`` (each padded to ``chunk_size``), fetching each result only
  after the next chunk is dispatched -> features [N, ...]."""
  pending, out = None, []
  for chunk in chunks:
    result = (feature_cache.encode(model, encoder, group.pad(chunk, chunk_size)), len(chunk))
    if pending is not None:
      out.append(np.asarray(pending[0])[:pending[1]])
    pending = result
  out.append(np.asarray(pending[0])[:pending[1]])
  return np.concatenate(out)


def encode_async(model, encoder, images, chunk_size):
  """``encode_chunks`` with the next chunk dispatched before the previous one is fetched."""
  chunks = (images[start:stop] for start, stop in group.chunks(len(images), chunk_size))
  return encode_one_behind(model, encoder, chunks, chunk_size)


def render_thread(groups, config, chunk_size, limit):
  """A queue of uint8 chunks [chunk_size, S, S, 3] (the last one short, then None),
  rendered piece by piece in a thread: at most ``limit`` views."""
  out = queue.Queue(maxsize=2)

  def produce():
    buffer, sent = [], 0
    for piece in pieces(groups):
      buffer.extend(views.render(piece, config).images)
      while len(buffer) >= chunk_size and sent < limit:
        out.put(np.stack(buffer[:chunk_size][:limit - sent]))
        sent += min(chunk_size, limit - sent)
        buffer = buffer[chunk_size:]
    if buffer and sent < limit:
      out.put(np.stack(buffer[:limit - sent]))
    out.put(None)

  threading.Thread(target=produce, daemon=True).start()
  return out


def encode_overlapped(model, encoder, groups, config, chunk_size, limit):
  """Render (thread) and encode (chunks fetched one behind) at once -> features [N, ...]."""
  rendered = render_thread(groups, config, chunk_size, limit)
  return encode_one_behind(model, encoder, _until_none(rendered), chunk_size)


def _until_none(items):
  """The items of a queue up to its closing None."""
  while (item := items.get()) is not None:
    yield item


def render_views(groups, config, limit):
  """uint8 [N, S, S, 3]: the first ``limit`` views, rendered piece by piece as the overlap does."""
  return np.concatenate([views.render(p, config).images for p in pieces(groups)])[:limit]


def end_to_end(model, encoder, groups, config, variants, rounds, num_views):
  """{"variant/chunk": [seconds per round]} of render + encode of ``num_views`` views, the
  variants (``[(name, chunk size)]``) interleaved per round, each chunk shape compiled first."""
  def run(name, chunk):
    if name == "overlap":
      return encode_overlapped(model, encoder, groups, config, chunk, num_views)
    encode = encode_async if name == "async" else feature_cache.encode_chunks
    return encode(model, encoder, render_views(groups, config, num_views), chunk)

  size = config.size
  for chunk in {c for _, c in variants}:
    feature_cache.encode(model, encoder, np.zeros((chunk, size, size, 3), np.uint8))
  times = {f"{n}/{c}": [] for n, c in variants}
  reference = None
  for _ in range(rounds):
    for name, chunk in variants:
      start = time.perf_counter()
      features = run(name, chunk)
      times[f"{name}/{chunk}"].append(time.perf_counter() - start)
      reference = features if reference is None else reference
      assert np.abs(features - reference).max() <= 1e-3 * np.abs(reference).max(), name
  return times


def parse_variants(text, default_chunk):
  """"today,async:8" -> [("today", default_chunk), ("async", 8)]."""
  out = []
  for item in text.split(","):
    name, _, chunk = item.strip().partition(":")
    if name not in VARIANTS:
      raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}")
    out.append((name, int(chunk) if chunk else default_chunk))
  return out


# ----------------------------------------------------------------------------- main
def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--views", type=int, default=64, help="N views to render and encode")
  parser.add_argument("--size", type=int, default=256, help="view size S (256 or 512)")
  parser.add_argument("--batch", type=int, default=16, help="chunk size of the end-to-end runs")
  parser.add_argument("--batches", default="4,8,16", help="chunk sizes of the forward timing")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--rounds", type=int, default=2,
                      help="interleaved end-to-end rounds (0: forward timings only)")
  parser.add_argument("--variants", default="today,async,overlap",
                      help="end-to-end variants, each optionally :chunk (default --batch)")
  parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--root", default=DEFAULT_ROOT)
  parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
  parser.add_argument("--out", default="")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  config = view_config(args.size)
  groups, read_s = load_groups(args.root, args.views)
  groups = groups or synthetic_groups(args.views, args.size)
  images_read = sum(len(g["images"]) for g in groups)
  start = time.perf_counter()
  rendered = render_views(groups, config, 10**9)
  render_s = time.perf_counter() - start
  images = rendered[:args.views]
  print(f"read {images_read} images in {read_s:.2f} s; rendered {len(rendered)} views in "
        f"{render_s:.2f} s ({1e3 * render_s / len(rendered):.1f} ms/view)")
  model, encoder = build_encoder(args.size, args.weights)
  peak = conv_peak(args.size, args.batch, args.repeats)
  print("single-conv GFLOP/s: " + ", ".join(f"{k}: {v:.1f}" for k, v in peak.items()))
  transfer_s = transfer_seconds(images[:args.batch], args.repeats + 2)
  print(f"device_put of {args.batch} views: {1e3 * transfer_s:.1f} ms")
  forward = [forward_rate(model, encoder, args.size, b, args.repeats)
             for b in (int(b) for b in args.batches.split(","))]
  if args.bf16:
    forward.append(forward_rate(model.clone(dtype=jnp.bfloat16), encoder, args.size, args.batch,
                                args.repeats))
  print_table(forward, list(forward[0]))
  difference = (max_relative_difference(model, encoder, images[:args.batch], args.batch)
                if args.bf16 else None)
  print(f"bfloat16 vs float32 features: {difference}")
  variants = parse_variants(args.variants, args.batch)
  times = (end_to_end(model, encoder, groups, config, variants, args.rounds, args.views)
           if args.rounds else {})
  rows = [{"variant": k, "seconds": float(np.median(v)), "views_per_s": args.views / np.median(v),
           "rounds": ", ".join(f"{t:.1f}" for t in v)} for k, v in times.items()]
  if rows:
    print_table(rows, list(rows[0]))
  summary = summarise(args, render_s / len(rendered), transfer_s, forward, peak, rows)
  for line in summary["lines"]:
    print(line)
  write_json(args.out or f"bench/results/encode_{args.size}.json", {
      "args": vars(args), "load_average": os.getloadavg(), "read_seconds": read_s,
      "images_read": images_read, "render_seconds_per_view": render_s / len(rendered),
      "transfer_seconds_per_chunk": transfer_s, "conv_peak_gflop_per_s": peak,
      "forward": forward, "bf16_difference": difference, "end_to_end": rows,
      "end_to_end_rounds": times, "summary": summary})


def summarise(args, render_per_view, transfer_s, forward, peak, rows):
  """Per-view breakdown at the end-to-end chunk size and the recipe's estimated encode time."""
  fwd = next((f for f in forward if f["batch"] == args.batch and f["dtype"] == "float32"),
             forward[0])
  per_view = {"render": render_per_view, "transfer": transfer_s / args.batch,
              "forward": fwd["seconds"] / args.batch}
  best_conv = max(peak.values())
  by_variant = {r["variant"]: r["views_per_s"] for r in rows}
  lines = [f"per view at {args.size} px, chunks of {args.batch}: " + ", ".join(
      f"{k} {1e3 * v:.1f} ms" for k, v in per_view.items()),
           f"forward {fwd['gflop_per_s']:.0f} GFLOP/s = {fwd['gflop_per_s'] / best_conv:.0%} of "
           f"the best single conv ({best_conv:.0f} GFLOP/s)"]
  lines += [f"recipe ({RECIPE_VIEWS} views) with '{k}': {RECIPE_VIEWS / v / 60:.1f} min "
            f"({v:.2f} views/s)" for k, v in by_variant.items()]
  return {"per_view_seconds": per_view, "forward_fraction_of_conv_peak":
          fwd["gflop_per_s"] / best_conv, "recipe_minutes": {
              k: RECIPE_VIEWS / v / 60 for k, v in by_variant.items()}, "lines": lines}


if __name__ == "__main__":
  main()
