"""Plots as PNG files: a training run's curves, the channel attentions' embedding.

matplotlib's object-oriented ``Figure`` API, which needs no display and, unlike
``pyplot`` or ``matplotlib.use``, changes no global state of the process.
"""

from matplotlib.figure import Figure


def training_curves(records, png_path):
  """Training loss and validation Jaccard of ``records`` (metrics.jsonl rows) against the
  step, side by side, as a PNG."""
  fig = Figure(figsize=(10, 3.8))
  left, right = fig.subplots(1, 2)
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
  return png_path


def attention_embedding(points, labels, png_path):
  """2-D points of channel-attention vectors (e.g. their PCA), one colour per label (Fig. 6)."""
  fig = Figure(figsize=(5.5, 4.5))
  ax = fig.subplots()
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
  return png_path
