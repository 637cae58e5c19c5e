"""Cross-validation from one copy: train_and_evaluate(fold=k) trains on the other folds and
validates on fold k; predict --split=val of that run gives fold k's out-of-fold predictions in
their own file (the truth and the fold beside each), python -m pipeline.oof merges the folds'
files into one scored table, a fold ensemble writes where --output says (the current
directory by default), and predict refuses predictions that would not be out-of-fold or a
fold the dataset does not have."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, labels_by_id, tree_digest, write_labeled_dataset
from pipeline import dataset, training
from pipeline.core import schema
from pipeline.training import oof, predict, run_files
from pipeline.training.settings import TrainingError

TINY = dict(depth=10, width=4, stem="small", batch_size=4, warmup_epochs=0, epochs=1,
            cache=None, augment=None, verbose=0)


TEST_IMAGES = 7


@pytest.fixture(scope="module")
def folded_dir(tmp_path_factory):
    """45 labeled 8x8 images of 3 classes in 3 folds, 6 shards; 7 more in the test split."""
    return write_labeled_dataset(tmp_path_factory.mktemp("cv"), 45, "folds", shards=6,
                                 folds=3, test_count=TEST_IMAGES)


@pytest.fixture(scope="module")
def fold1_run(folded_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("fold1"))
    metrics = training.train_and_evaluate(data_dir=folded_dir, workdir=workdir, fold=1, **TINY)
    return workdir, metrics


@pytest.fixture(scope="module")
def fold0_run(folded_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("fold0"))
    training.train_and_evaluate(data_dir=folded_dir, workdir=workdir, fold=0, **TINY)
    return workdir


@pytest.mark.slow
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


@pytest.mark.slow
def test_predicting_val_gives_the_folds_out_of_fold_rows_in_their_own_file(folded_dir,
                                                                            fold1_run,
                                                                            tmp_path):
    workdir, _ = fold1_run
    submission = os.path.join(workdir, predict.SUBMISSION_NAME)
    with open(submission, "w") as f:
        f.write("the test split's submission\n")  # what an OOF prediction must leave alone
    before = tree_digest(workdir)
    probabilities = tmp_path / "oof1_probabilities.csv"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.predict", f"--workdir={workdir}", "--split=val",
         f"--probabilities={probabilities}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    after = tree_digest(workdir)
    assert set(after) - set(before) == {"oof_fold1.csv"}
    assert {name: after[name] for name in before} == before  # submission.csv among them
    assert os.listdir(tmp_path) == ["oof1_probabilities.csv"]
    assert "1 model (final weights), TTA: none: 1 predictions" in result.stderr
    assert f"model 1/1: {workdir}/model.keras\n" in result.stderr
    held_out = dataset.split_paths(folded_dir, "val", fold=1)
    with open(os.path.join(workdir, "oof_fold1.csv"), newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image", "label", "true_class", "fold"]
    assert [row[0] for row in table[1:]] == held_out  # fold 1's images, in shard order
    manifest = schema.read_manifest(folded_dir)
    truth = labels_by_id(folded_dir, "val", fold=1)
    assert [row[2] for row in table[1:]] == [
        manifest.classes[truth[os.path.splitext(os.path.basename(path))[0]]]
        for path in held_out]
    assert {row[3] for row in table[1:]} == {"1"}
    per_class = list(csv.DictReader(probabilities.open(newline="")))
    assert [row["image"] for row in per_class] == held_out
    for row in per_class:
        assert abs(sum(float(row[name]) for name in manifest.classes) - 1) < 1e-4


@pytest.mark.slow
def test_an_ensemble_writes_into_the_current_directory_not_a_folds_workdir(
        folded_dir, fold0_run, fold1_run, tmp_path, monkeypatch, info_logs):
    workdirs = [fold0_run, fold1_run[0]]
    before = [tree_digest(workdir) for workdir in workdirs]
    monkeypatch.chdir(tmp_path)
    output, rows = predict.write_predictions(workdirs, tta="flip", weights="last")
    assert (output, rows) == ("./submission.csv", TEST_IMAGES)
    assert [tree_digest(workdir) for workdir in workdirs] == before
    with open(tmp_path / "submission.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image", "label"]
    assert [row[0] for row in table[1:]] == dataset.split_paths(folded_dir, "test")
    said = info_logs.text
    assert "2 models (last weights), TTA: original + flip_lr: 4 predictions averaged" in said
    for number, workdir in enumerate(workdirs, 1):
        assert (f"model {number}/2: {workdir}/model.keras with {workdir}/checkpoints/"
                "last.weights.h5") in said
    # Run again, the same default: the file is replaced, and the log says so.
    predict.write_predictions(workdirs)
    assert "./submission.csv exists: replacing it" in info_logs.text


@pytest.mark.slow
def test_the_folds_oof_files_merge_into_one_scored_table(folded_dir, fold0_run, fold1_run,
                                                         tmp_path):
    written = [predict.write_predictions(workdir, "val")[0]
               for workdir in (fold0_run, fold1_run[0])]
    assert written == [os.path.join(fold0_run, "oof_fold0.csv"),
                       os.path.join(fold1_run[0], "oof_fold1.csv")]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "pipeline.oof", *written], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "oof.csv", newline="") as f:
        table = list(csv.reader(f))
    manifest = schema.read_manifest(folded_dir)
    assert table[0] == ["image", "label", "true_class", "fold"]
    assert len(table) - 1 == manifest.folds[0].count + manifest.folds[1].count
    assert len({row[0] for row in table[1:]}) == len(table) - 1  # every image once
    assert {row[3] for row in table[1:]} == {"0", "1"}
    accuracy = sum(row[1] == row[2] for row in table[1:]) / (len(table) - 1)
    assert f"-> oof.csv; accuracy {accuracy:.4f}" in result.stderr
    assert f"{len(table) - 1} rows of folds 0, 1" in result.stderr
    copy = tmp_path / "again.csv"
    copy.write_bytes(open(written[1], "rb").read())
    with pytest.raises(oof.MergeError, match="fold 1 is in .*oof_fold1.csv and in .*again"):
        oof.merge([*written, str(copy)], str(tmp_path / "merged.csv"))
    with pytest.raises(oof.MergeError, match="no truth column"):
        oof.merge([os.path.join(fold1_run[0], predict.SUBMISSION_NAME)])
    assert not os.path.exists(tmp_path / "merged.csv")


@pytest.mark.parametrize("rows, kind, score", [
    ([("a", "x y", "x", "0"), ("b", "", "y", "1")], "multi_label", 2 * 1 / (2 * 1 + 2)),
    ([("a", "1.5", "1", "0"), ("b", "3", "3", "1")], "regression", (0.25 / 2) ** 0.5),
])
def test_merge_scores_tags_by_micro_f1_and_values_by_rmse(tmp_path, rows, kind, score):
    header = {"multi_label": ("image_name", "tags", "true_tags", "fold"),
              "regression": ("Id", "Pawpularity", "true_Pawpularity", "fold")}[kind]
    paths = []
    for row in rows:
        paths.append(str(tmp_path / f"oof_fold{row[3]}.csv"))
        with open(paths[-1], "w") as f:
            f.write(oof.csv_text(header, [row]))
    table, metric, value = oof.merge([str(tmp_path / "oof_fold*.csv")],
                                     str(tmp_path / "oof.csv"))
    assert metric == oof.METRIC[kind] and value == pytest.approx(score)
    assert list(table.rows) == rows
    other = tmp_path / "other.csv"
    other.write_text(oof.csv_text(("image", "label", "true_class", "fold"), [("c", "x", "x",
                                                                               "2")]))
    with pytest.raises(oof.MergeError, match="has the columns"):
        oof.merge([*paths, str(other)], str(tmp_path / "mixed.csv"))


def test_predictions_that_are_not_out_of_fold_are_refused(folded_dir, fold1_run):
    workdir, _ = fold1_run
    with pytest.raises(predict.PredictError, match="would not be out-of-fold"):
        predict.predict_probabilities(workdir, "val", fold=0)
    # A final model trained on every fold predicts none of them out-of-fold.
    with pytest.raises(predict.PredictError, match="trained on every fold"):
        predict.choose_fold([{"data_dir": folded_dir}], ["final"], "val", 1, folded_dir)
    # Its own fold, asked for by number, is what the default reads.
    _, paths, _ = predict.predict_probabilities(workdir, "val", fold=1)
    assert paths == dataset.split_paths(folded_dir, "val", fold=1)


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_fold_out_of_range_names_the_folds_there_are(fold1_run, split):
    with pytest.raises(dataset.DatasetError, match=r"fold=7: this dataset has folds 0\.\.2$"):
        predict.predict_probabilities(fold1_run[0], split, fold=7)


def test_a_fold_of_a_dataset_without_folds_is_refused_by_predict_and_the_trainer(fold1_run,
                                                                                  tmp_path):
    plain = write_labeled_dataset(tmp_path, 12, "plain", shards=2, val_fraction=0.25)
    with pytest.raises(dataset.DatasetError, match="fold=2: this dataset has no folds"):
        predict.predict_probabilities(fold1_run[0], "val", fold=2, data_dir=plain)
    with pytest.raises(dataset.DatasetError, match="fold=1: this dataset has no folds"):
        training.train_and_evaluate(data_dir=plain, workdir=str(tmp_path / "run"), fold=1,
                                    **TINY)
    assert not os.path.exists(tmp_path / "run")
