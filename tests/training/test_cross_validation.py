"""Cross-validation from one copy: train_and_evaluate(fold=k) trains on the other folds and
validates on fold k; predict --split=val of that run gives fold k's out-of-fold predictions,
and refuses predictions that would not be out-of-fold or a fold the run was not trained on."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, write_labeled_dataset
from pipeline import dataset, training
from pipeline.core import schema
from pipeline.training import predict, run_files
from pipeline.training.settings import TrainingError

TINY = dict(depth=10, width=4, stem="small", batch_size=4, warmup_epochs=0, epochs=1,
            cache=None, augment=None, verbose=0)


@pytest.fixture(scope="module")
def folded_dir(tmp_path_factory):
    """45 labeled 8x8 images of 3 classes in 3 folds, 6 shards."""
    return write_labeled_dataset(tmp_path_factory.mktemp("cv"), 45, "folds", shards=6,
                                 folds=3)


@pytest.fixture(scope="module")
def fold1_run(folded_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("fold1"))
    metrics = training.train_and_evaluate(data_dir=folded_dir, workdir=workdir, fold=1, **TINY)
    return workdir, metrics


def test_a_fold_run_trains_on_the_other_folds_and_validates_on_its_own(folded_dir, fold1_run):
    workdir, metrics = fold1_run
    manifest = schema.read_manifest(folded_dir)
    train_count = manifest.split("train").count - manifest.folds[1].count
    with open(os.path.join(workdir, run_files.METRICS_FILE)) as f:
        assert json.load(f) == metrics
    with open(os.path.join(workdir, run_files.CHECKPOINT_DIR, run_files.STATE_FILE)) as f:
        assert json.load(f)["step"] == train_count // TINY["batch_size"]  # the other folds'
    assert run_files.read_run_file(workdir)["fold"] == 1
    with pytest.raises(TrainingError, match="fold: 1 -> 2"):  # its checkpoint is fold 1's
        training.train_and_evaluate(data_dir=folded_dir, workdir=workdir, fold=2,
                                    **dict(TINY, epochs=2))
    with pytest.raises(TrainingError, match="in 3 folds: pass fold=0..2"):
        training.train_and_evaluate(data_dir=folded_dir, workdir=workdir + "-none", **TINY)
    with pytest.raises(dataset.DatasetError, match="has folds 0..2"):
        training.train_and_evaluate(data_dir=folded_dir, workdir=workdir + "-5", fold=5, **TINY)


def test_predicting_val_gives_the_folds_out_of_fold_probabilities(folded_dir, fold1_run,
                                                                   tmp_path):
    workdir, _ = fold1_run
    output, probabilities = tmp_path / "oof1.csv", tmp_path / "oof1_probabilities.csv"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.predict", f"--workdir={workdir}", "--split=val",
         f"--output={output}", f"--probabilities={probabilities}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    held_out = dataset.split_paths(folded_dir, "val", fold=1)
    rows = list(csv.DictReader(output.open(newline="")))
    assert [row["image"] for row in rows] == held_out  # fold 1's images, in shard order
    manifest = schema.read_manifest(folded_dir)
    per_class = list(csv.DictReader(probabilities.open(newline="")))
    assert [row["image"] for row in per_class] == held_out
    for row in per_class:
        assert abs(sum(float(row[name]) for name in manifest.classes) - 1) < 1e-4


def test_predictions_that_are_not_out_of_fold_are_refused(folded_dir, fold1_run):
    workdir, _ = fold1_run
    with pytest.raises(predict.PredictError, match="would not be out-of-fold"):
        predict.predict_probabilities(workdir, "val", fold=0)
    # Its own fold, asked for by number, is what the default reads.
    _, paths, _ = predict.predict_probabilities(workdir, "val", fold=1)
    assert paths == dataset.split_paths(folded_dir, "val", fold=1)
