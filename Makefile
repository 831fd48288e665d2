# Two commands set everything up on a fresh machine (see README):
#   make demo   creates .venv, installs the project, trains the demo on embedded synthetic data
#   make test   creates .venv, installs the project, runs the tests
#   make test-fast  the tests not marked slow (no subprocesses, no training runs): < 2 min
#   make lint   ruff check
#   make test-newest  the fast tier on the newest Python and jax/flax (constraints/newest.txt)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is an optional extra used for porting weights and parity tests; 2.13.0 is the CPU build
# these machines carry. `make test TORCH=` installs without it (parity tests then skip).
TORCH ?= torch==2.13.0
# tfds, sod: the TFDS builders and the co-saliency metrics (their tests skip without them);
# `make test EXTRAS_DATA=` leaves them out (pysodmetrics 1.6.2 pins numpy<2.3.5).
EXTRAS_DATA ?= tfds,sod
# crf: pydensecrf2 for the dense-CRF refinement (maps.dense_crf), built from its source (about
# 2 minutes, needs a C++ compiler); `make test EXTRAS_CRF=` leaves it out (its tests skip).
EXTRAS_CRF ?= crf
# CONSTRAINTS=constraints/oldest.txt installs exactly the oldest supported versions (CI does)
CONSTRAINTS ?=
EXTRAS ?= test$(if $(TORCH),$(comma)torch)$(if $(EXTRAS_DATA),$(comma)$(EXTRAS_DATA))$(if $(EXTRAS_CRF),$(comma)$(EXTRAS_CRF))
comma := ,

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e '.[$(EXTRAS)]' $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	touch $@

# The newest end of the supported range: Python 3.13 (pyenv's, else python3.13 or python3.12
# on the PATH) with constraints/newest.txt, in its own venv, without the optional extras.
NEWEST_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3) \
  $(shell command -v python3.13 python3.12 2>/dev/null))

.PHONY: install demo test test-fast test-newest lint
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) train.py --config configs/demo.py --workdir runs/demo
	$(PY) eval.py --config configs/demo.py --workdir runs/demo

test: $(VENV)/.installed
	$(PY) -m pytest --durations=20

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

test-newest:
	$(MAKE) test-fast PYTHON=$(NEWEST_PYTHON) VENV=.venv-newest TORCH= EXTRAS_DATA= EXTRAS_CRF= \
	  CONSTRAINTS=constraints/newest.txt

lint: $(VENV)/.installed
	$(PY) -m ruff check .
