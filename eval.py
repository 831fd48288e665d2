"""Evaluates a trained CoSegNet: ``python eval.py --help``, the same as the ``coseg-eval`` command
(coseg_jax/apps/eval_main.py)."""

from coseg_jax.apps.eval_main import run

if __name__ == "__main__":
  run()
