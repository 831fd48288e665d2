"""Pictures of a training run (matplotlib, Agg backend: no display needed)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from coseg_jax.logging_utils import read_jsonl  # pylint: disable=wrong-import-position


def training_curves(jsonl_path, png_path):
  """Training loss and validation Jaccard against the step, side by side, as a PNG."""
  records = read_jsonl(jsonl_path)
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  for ax, key, title in ((left, "train_loss", "training loss"),
                         (right, "val_jaccard", "validation Jaccard (pooled)")):
    points = [(r["step"], r[key]) for r in records if key in r]
    if points:
      ax.plot(*zip(*points), marker="o" if len(points) < 30 else None)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)
  return png_path


def attention_embedding(points, labels, png_path):
  """2-D points of channel-attention vectors (e.g. their PCA), one colour per label (Fig. 6)."""
  fig, ax = plt.subplots(figsize=(5.5, 4.5))
  labels = list(labels)
  for label in dict.fromkeys(labels):
    chosen = [p for p, l in zip(points, labels) if l == label]
    ax.scatter(*zip(*chosen), label=label, s=18, alpha=0.8)
  ax.set_title("channel attention, first two principal components")
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  ax.legend(fontsize="small", markerscale=1.2)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)
  return png_path
