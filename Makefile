# Two commands set everything up on a fresh machine (see README):
#   make demo   creates .venv, installs the project, trains the demo on embedded synthetic data
#   make test   creates .venv, installs the project, runs the tests
#   make test-fast  the tests not marked slow (no subprocesses, no training runs): < 2 min
#   make lint   ruff check
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
EXTRAS ?= test$(if $(TORCH),$(comma)torch)$(if $(EXTRAS_DATA),$(comma)$(EXTRAS_DATA))$(if $(EXTRAS_CRF),$(comma)$(EXTRAS_CRF))
comma := ,

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e '.[$(EXTRAS)]'
	touch $@

.PHONY: install demo test test-fast lint
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) train.py --config configs/demo.py --workdir runs/demo
	$(PY) eval.py --config configs/demo.py --workdir runs/demo

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

lint: $(VENV)/.installed
	$(PY) -m ruff check .
