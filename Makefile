# `make demo` and `make test` work on a fresh machine: they create .venv from requirements.txt
# and install this project into it in editable mode (once; again whenever requirements.txt or
# pyproject.toml changes), so the commands work from any folder with the venv active.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: venv demo demo-tags demo-regression test test-quick bench clean

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

# The multi-label shape on the same sample (Planet's image,tags): each digit's tags (even,
# prime, loop, small), a sigmoid per tag, a submission of the tags above the tuned threshold.
demo-tags: $(INSTALLED)
	$(PY) -c "from pipeline.core import workspace; from pipeline.writing import sample; \
	sample.ensure_sample_dataset(workspace.raw_dir())"
	$(PY) -m pipeline.write --input=workspace/raw/digits/train_tags.csv \
	    --test_input=workspace/raw/digits/test.csv --label_column=tags --multi_label \
	    --output_dir=workspace/shards/digit-tags
	$(PY) train.py --config=configs/smoke.gin --workdir=workspace/runs/digit-tags \
	    --gin_bindings="train_and_evaluate.data_dir='workspace/shards/digit-tags'"
	$(PY) -m pipeline.predict --workdir=workspace/runs/digit-tags

# The regression shape (PetFinder's Id,Pawpularity): how much of each digit's scan is ink, a
# linear output fit to the standardised value, a submission of the values.
demo-regression: $(INSTALLED)
	$(PY) -c "from pipeline.core import workspace; from pipeline.writing import sample; \
	sample.ensure_sample_dataset(workspace.raw_dir())"
	$(PY) -m pipeline.write --input=workspace/raw/digits/train_ink.csv \
	    --test_input=workspace/raw/digits/test.csv --target_columns=ink \
	    --output_dir=workspace/shards/digit-ink
	$(PY) train.py --config=configs/smoke.gin --workdir=workspace/runs/digit-ink \
	    --gin_bindings="train_and_evaluate.data_dir='workspace/shards/digit-ink'"
	$(PY) -m pipeline.predict --workdir=workspace/runs/digit-ink

# The tests run in TEST_WORKERS processes (pytest-xdist), one per core of the 2-core machines
# the suite is sized for (make test TEST_WORKERS=8 on a larger one): each test has its own
# files and ports, so any two can run side by side. A process takes a module at a time
# (loadscope: a module's fixtures are built once), in the order tests/conftest.py gives them,
# the modules with the most slow tests first.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: $(INSTALLED)
	$(PYTEST) tests

# The inner loop: every test but those marked slow (end-to-end trainings, kills, servers).
test-quick: $(INSTALLED)
	$(PYTEST) -m "not slow" tests

bench: $(INSTALLED)
	$(PY) -m pipeline.bench

clean:
	rm -rf workspace .pytest_cache
