# `make demo` and `make test` work on a fresh machine: they create .venv from requirements.txt
# first (once; again whenever requirements.txt changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(INSTALLED)

$(INSTALLED): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The main job on the embedded sample dataset (offline): write sharded TFRecords + manifest,
# train the smoke config on them (under a minute on 2 CPU cores), predict the test split.
demo: $(INSTALLED)
	$(PY) -m pipeline.write
	$(PY) train.py --config=configs/smoke.gin --workdir=workspace/runs/smoke
	$(PY) -m pipeline.predict --workdir=workspace/runs/smoke

test: $(INSTALLED)
	$(PY) -m pytest -q tests

bench: $(INSTALLED)
	$(PY) -m pipeline.bench

clean:
	rm -rf workspace .pytest_cache
