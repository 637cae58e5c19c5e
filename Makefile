# `make demo` and `make test` work on a fresh machine: they create .venv from requirements.txt
# and install this project into it in editable mode (once; again whenever requirements.txt or
# pyproject.toml changes), so the commands work from any folder with the venv active.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# No build isolation: the venv's own setuptools builds it, with no download.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
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
