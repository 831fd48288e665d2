"""Trains CoSegNet: ``python train.py --help``, the same as the ``coseg-train`` command
(coseg_jax/apps/train_main.py)."""

from coseg_jax.apps.train_main import run

if __name__ == "__main__":
  run()
