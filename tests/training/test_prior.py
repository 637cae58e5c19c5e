"""No short submission: the test rows without an image (--allow_missing_test) get the training
prior, in the test CSV's order, for each kind of target (pure), and end to end for classes."""

import csv
import logging
import os

import numpy as np
import pytest

from conftest import train_tiny, write_csv, write_images
from pipeline.core import schema
from pipeline.core.test_rows import MissingRow
from pipeline.training import predict, prior
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset


def manifest_of(kind, *, class_counts=None, train=10, targets=(), target_stats=None,
                missing=(), test=3, classes=("a", "b", "c")):
    """A manifest as predict reads it: a train split of `train` images with `class_counts`,
    a test split of `test` records and the `missing` rows."""
    return schema.Manifest(
        image_shape=(3, 8, 8), classes=() if kind == schema.REGRESSION else classes,
        splits={"train": schema.SplitInfo(train, (), class_counts or {}),
                "test": schema.SplitInfo(test, (), {})},
        mean=None, std=None, target_kind=kind, targets=targets,
        target_stats=target_stats or {}, missing_test=tuple(missing))


def test_a_class_datasets_prior_is_its_class_frequencies():
    manifest = manifest_of(schema.CLASS, class_counts={"a": 2, "b": 5, "c": 3},
                           missing=[MissingRow(0, "x.png"), MissingRow(3, "y.png")])
    np.testing.assert_allclose(prior.prior(manifest), [0.2, 0.5, 0.3])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    paths, filled = prior.with_missing_rows(manifest, "test", ["p0", "p1", "p2"],
                                            probabilities)
    assert paths == ["x.png", "p0", "p1", "y.png", "p2"]
    np.testing.assert_allclose(filled[[1, 2, 4]], probabilities)
    np.testing.assert_allclose(filled[[0, 3]], [[0.2, 0.5, 0.3]] * 2)
    rows = predict.predicted_rows(manifest, paths, filled)
    assert rows == [("x.png", "b"), ("p0", "a"), ("p1", "c"), ("y.png", "b"), ("p2", "a")]


def test_a_multi_label_prior_names_the_tags_whose_frequency_passes_the_threshold():
    # 10 train images: tag a on 6 of them, b on 2, c on 9 (frequencies need not sum to 1).
    manifest = manifest_of(schema.MULTI_LABEL, class_counts={"a": 6, "b": 2, "c": 9},
                           missing=[MissingRow(1, "x.png")], test=1)
    np.testing.assert_allclose(prior.prior(manifest), [0.6, 0.2, 0.9])
    paths, filled = prior.with_missing_rows(manifest, "test", ["p0"],
                                            np.array([[0.1, 0.8, 0.1]]))
    assert paths == ["p0", "x.png"]
    assert predict.predicted_rows(manifest, paths, filled, threshold=0.5) == [
        ("p0", "b"), ("x.png", "a c")]
    assert predict.predicted_rows(manifest, paths, filled, threshold=0.7)[1] == ("x.png", "c")


def test_a_regression_prior_is_each_targets_train_mean():
    stats = {"Pawpularity": {"mean": 38.5, "std": 20.0, "min": 1.0, "max": 100.0},
             "Age": {"mean": 2.25, "std": 1.0, "min": 0.0, "max": 9.0}}
    manifest = manifest_of(schema.REGRESSION, targets=("Pawpularity", "Age"),
                           target_stats=stats, missing=[MissingRow(2, "x.png")], test=2)
    np.testing.assert_allclose(prior.prior(manifest), [38.5, 2.25])
    paths, filled = prior.with_missing_rows(manifest, "test", ["p0", "p1"],
                                            np.array([[10.0, 1.0], [20.0, 2.0]]))
    assert predict.predicted_rows(manifest, paths, filled) == [
        ("p0", "10", "1"), ("p1", "20", "2"), ("x.png", "38.5", "2.25")]


def test_other_splits_and_complete_test_splits_are_left_as_they_are():
    manifest = manifest_of(schema.CLASS, class_counts={"a": 1}, missing=[MissingRow(0, "x")])
    probabilities = np.ones((2, 3))
    assert prior.with_missing_rows(manifest, "val", ["p0", "p1"], probabilities)[0] == [
        "p0", "p1"]
    complete = manifest_of(schema.CLASS, class_counts={"a": 1})
    paths, same = prior.with_missing_rows(complete, "test", ["p0", "p1"], probabilities)
    assert paths == ["p0", "p1"] and same is probabilities


@pytest.fixture
def missing_folder(tmp_path):
    """24 labeled 8x8 images, cat the most frequent class (12, dog 8, owl 4), and a test CSV
    of 6 whose third image is missing."""
    rows = write_images(str(tmp_path), 30, size=(8, 8))
    labels = ["cat"] * 12 + ["dog"] * 8 + ["owl"] * 4
    write_csv(tmp_path / "train.csv", ["image", "label"],
              [(path, label) for (path, _), label in zip(rows[:24], labels)])
    test = [path for path, _ in reversed(rows[24:])]
    write_csv(tmp_path / "test.csv", ["image"], [(path,) for path in test])
    os.remove(tmp_path / test[2])
    return tmp_path, test


@pytest.mark.slow
def test_the_submission_has_every_test_row_the_missing_one_with_the_prior(missing_folder,
                                                                          tmp_path, caplog):
    folder, test = missing_folder
    out = str(folder / "out")
    write_dataset(WriteConfig(output_dir=out, input=str(folder / "train.csv"),
                              test_input=str(folder / "test.csv"), image_size=8, shards=2,
                              val_fraction=0.25, num_workers=1, show_progress=False,
                              allow_missing_test=True, max_reject_fraction=0.2))
    manifest = schema.read_manifest(out)
    assert manifest.split("test").count == 5 and manifest.missing_test == ((2, test[2]),)
    workdir = str(tmp_path / "run")
    train_tiny(out, workdir)

    with caplog.at_level(logging.WARNING, logger=prior.__name__):
        output, count = predict.write_predictions(
            workdir, output=str(tmp_path / "submission.csv"),
            probabilities=str(tmp_path / "probabilities.csv"))
    with open(output, newline="") as f:
        submission = list(csv.reader(f))
    assert count == 6 and submission[0] == ["image", "label"]
    assert [row[0] for row in submission[1:]] == test
    assert submission[1 + 2][1] == "cat"  # the most frequent class of the train split
    with open(tmp_path / "probabilities.csv", newline="") as f:
        table = list(csv.reader(f))
    train = manifest.split("train")
    frequencies = [train.class_counts[name] / train.count for name in manifest.classes]
    assert table[0] == ["image", *manifest.classes] and len(table) == 7
    np.testing.assert_allclose([float(p) for p in table[1 + 2][1:]], frequencies, rtol=1e-5)
    said = [record.getMessage() for record in caplog.records if record.name == prior.__name__]
    assert len(said) == 1 and "1 test row(s) have no image" in said[0] and test[2] in said[0]
    assert "training prior" in said[0]
