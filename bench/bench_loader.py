"""Input pipeline throughput: training pairs per second delivered by ``pipeline.build``.

  python -m bench.bench_loader                          # 224x224, synthetic + real folder set
  python -m bench.bench_loader --threads 1,2 --batches 10 --train-step
  python -m bench.bench_loader --image-size 512 --datasets folder,tfds   # JPEG vs array_record

For each dataset and thread count: pairs/s and ms per batch of the "train" iterator
(resize, flip, normalise, batch, prefetch), after a warm-up. The real folder set is
``pascal_voc10_coseg`` from ``$COSEG_DATA_DIR`` or ``../shared/data`` (skipped when
absent). "tfds" is the same folder built once as a TFDS array_record dataset at the
image size (``coseg_jax.data.tfds_coseg``, into ``--tfds-data-dir``; needs the [tfds]
extra), so it reads stored S x S arrays instead of decoding and resizing JPEG + PNG files.
``--train-step`` also times the project's jitted train step on one batch of
the paper's VGG16 model, to compare the rate the loader delivers with the rate a step
consumes. Results go to a JSON file.
"""

import argparse
import os
import pathlib
import time

import jax

from bench.common import median_seconds, print_table, write_json
from coseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]


def folder_root():
  """The real PASCAL-VOC10 co-segmentation folder, or None when it is not here."""
  data = pathlib.Path(os.environ.get("COSEG_DATA_DIR", REPO.parent / "shared" / "data"))
  root = data / "pascal_voc10_coseg"
  return root if root.is_dir() else None


def tfds_settings(root, image_size, data_dir):
  """config.data of ``root`` built as a TFDS dataset at ``image_size`` (built once, reused)."""
  from coseg_jax.data import tfds_coseg  # pylint: disable=g-import-not-at-top
  name = tfds_coseg.build("coseg_folder", root, data_dir, size=image_size, name=root.name)
  return {"dataset": "tfds", "tfds": {"name": name, "data_dir": data_dir}}


def measure(config, batch_size, batches, warmup):
  """Pairs/s of the train iterator over ``batches`` batches after ``warmup`` ones."""
  iterator = pipeline.build(config, split="train", batch_size=batch_size, seed=0)
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  seconds = time.perf_counter() - start
  return batches * batch_size / seconds, 1000 * seconds / batches


def train_step_seconds(image_size, batch_size, repeats=2):
  """Median seconds of one jitted train step of the default (paper) model on random data."""
  from coseg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from coseg_jax import models  # pylint: disable=g-import-not-at-top
  from coseg_jax.training import trainer as train_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.default_config()
  config.data.image_size = image_size
  model = models.build(config.model)
  state = train_lib.create_state(config, model, jax.random.key(0))
  batch = next(pipeline.build({"dataset": "synthetic", "image_size": image_size}, split="train",
                              batch_size=batch_size, seed=0))
  batch = {k: batch[k] for k in ("image_a", "image_b", "mask_a", "mask_b")}
  step = jax.jit(lambda s, b: train_lib.train_step(s, b, model=model, freeze_encoder=False))

  def one_step():
    nonlocal state
    state, _ = step(state, batch)
    jax.block_until_ready(state)
  return median_seconds(one_step, repeats)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
  parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
  parser.add_argument("--threads", default="1,2,4", help="num_threads values to try")
  parser.add_argument("--prefetch", type=int, default=4)
  parser.add_argument("--datasets", default="synthetic,folder", help="some of synthetic, "
                      "folder, tfds")
  parser.add_argument("--tfds-data-dir", default="/tmp/coseg_jax_tfds",
                      help="where the tfds dataset is built (once per image size)")
  parser.add_argument("--train-step", action="store_true",
                      help="also time one VGG16 train step on 4 pairs (slow on CPU)")
  parser.add_argument("--out", default="bench/results/loader.json")
  args = parser.parse_args(argv)

  settings = {"synthetic": {"dataset": "synthetic"}}
  root = folder_root()
  if root is not None:
    settings["folder"] = {"dataset": "folder", "root": str(root)}
    if "tfds" in args.datasets.split(","):
      settings["tfds"] = tfds_settings(root, args.image_size, args.tfds_data_dir)
  rows = []
  for name in args.datasets.split(","):
    if name not in settings:
      print(f"skipping {name}: no data (set COSEG_DATA_DIR or place it at ../shared/data)")
      continue
    for threads in (int(t) for t in args.threads.split(",")):
      config = {**settings[name], "image_size": args.image_size, "num_threads": threads,
                "prefetch": args.prefetch}
      pairs_per_s, ms = measure(config, args.batch_size, args.batches, args.warmup)
      rows.append({"dataset": name, "image_size": args.image_size, "batch": args.batch_size,
                   "threads": threads, "prefetch": args.prefetch, "pairs/s": pairs_per_s,
                   "images/s": 2 * pairs_per_s, "ms/batch": ms})
  print_table(rows, ["dataset", "image_size", "batch", "threads", "prefetch", "pairs/s",
                     "images/s", "ms/batch"])
  payload = {"loader": rows, "cpu_cores_available": len(os.sched_getaffinity(0)),
             "load_average": os.getloadavg()}
  if args.train_step:
    seconds = train_step_seconds(args.image_size, 4)
    payload["train_step"] = {"pairs": 4, "image_size": args.image_size, "seconds": seconds,
                             "pairs/s": 4 / seconds}
    print(f"VGG16 train step, 4 pairs at {args.image_size}: {seconds:.2f} s "
          f"= {4 / seconds:.2f} pairs/s consumed")
  write_json(args.out, payload)


if __name__ == "__main__":
  main()
