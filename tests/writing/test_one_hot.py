"""--label_columns: one-hot class columns (Plant Pathology 2020: image_id,healthy,
multiple_diseases,rust,scab), written without reshaping the CSV, the classes in the columns'
order, and predicted as that competition's submission (a probability per column)."""

import csv
import functools
import os

import numpy as np
import pytest

from conftest import folder_config, train_tiny, write_csv, write_images
from pipeline import dataset
from pipeline.core import schema
from pipeline.writing import plan
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset

COLUMNS = ("healthy", "multiple_diseases", "rust", "scab")


def _one_hot(number):
    return tuple("1" if k == number % len(COLUMNS) else "0" for k in range(len(COLUMNS)))


@pytest.fixture
def plants(tmp_path):
    """images/<i>.png for 20 images; train.csv lists 16 by id with one-hot classes (cycling
    through the columns), test.csv the other 4 by id."""
    write_images(str(tmp_path), 20)
    write_csv(tmp_path / "train.csv", ["image_id", *COLUMNS],
              [(str(i), *_one_hot(i)) for i in range(16)])
    write_csv(tmp_path / "test.csv", ["image_id"], [(str(i),) for i in (19, 16, 18, 17)])
    return tmp_path


_config = functools.partial(folder_config, image_column="image_id",
                            image_path="images/{}.png", label_columns=",".join(COLUMNS),
                            image_size=8, shards=2, val_fraction=0.25)


def _labels_by_path(data_dir, split):
    labels = np.concatenate([labels.numpy() for _, labels in dataset.make_dataset(
        data_dir, split, batch_size=4, training=False)])
    return dict(zip(dataset.split_paths(data_dir, split), labels.tolist()))


def test_each_row_is_the_class_of_its_one(plants):
    write_dataset(_config(plants))
    out = str(plants / "out")
    manifest = schema.read_manifest(out)
    assert manifest.classes == COLUMNS  # the columns' order, not sorted
    assert manifest.flags["label_columns"] == ",".join(COLUMNS)
    read = {**_labels_by_path(out, "train"), **_labels_by_path(out, "val")}
    assert read == {f"images/{i}.png": i % len(COLUMNS) for i in range(16)}
    assert set(_labels_by_path(out, "test").values()) == {schema.UNLABELED}


@pytest.mark.parametrize("value", ["2", "-1", "yes", ""])
def test_a_value_other_than_0_or_1_is_named(plants, value):
    rows = list(csv.reader(open(plants / "train.csv")))
    rows[4] = ["3", "0", value, "0", "0"]  # the CSV's line 5
    write_csv(plants / "train.csv", rows[0], rows[1:])
    with pytest.raises(InputError, match=rf"line 5 holds something other than 0 or 1 "
                                         rf".*multiple_diseases='{value}'"):
        write_dataset(_config(plants))
    assert not (plants / "out").exists()


@pytest.mark.parametrize("row", [("3", "0", "1", "1", "0"), ("3", "0", "0", "0", "0")])
def test_a_row_without_exactly_one_1_makes_the_columns_multi_label(plants, row):
    # Plant Pathology's own rows: several diseases at once (or none) are multi-label
    # (tests/writing/test_multi_label.py covers that kind).
    rows = list(csv.reader(open(plants / "train.csv")))
    rows[4] = list(row)
    write_csv(plants / "train.csv", rows[0], rows[1:])
    write_dataset(_config(plants))
    manifest = schema.read_manifest(str(plants / "out"))
    assert (manifest.target_kind, manifest.classes) == (schema.MULTI_LABEL, COLUMNS)


def test_a_missing_class_column_is_named(plants):
    with pytest.raises(InputError, match=r"no 'blight' column.*--label_columns"):
        write_dataset(_config(plants, label_columns="healthy,blight"))


@pytest.mark.parametrize("overrides, said", [
    (dict(label_columns="healthy,,rust"), "name each one-hot column once"),
    (dict(label_columns="rust,rust"), "name each one-hot column once"),
    (dict(label_column="label", label_column_required=True), "give one"),
])
def test_bad_label_columns_flags_are_refused(plants, overrides, said):
    with pytest.raises(plan.PlanError, match=said):
        write_dataset(_config(plants, **overrides))


def test_a_test_csv_with_the_class_columns_is_refused(plants):
    write_csv(plants / "test.csv", ["image_id", *COLUMNS],
              [(str(i), *_one_hot(i)) for i in (19, 16)])
    with pytest.raises(InputError, match="has the label column"):
        write_dataset(_config(plants))


@pytest.mark.slow
def test_predict_writes_a_probability_per_class_column(plants, tmp_path):
    from pipeline.training import predict

    write_dataset(_config(plants))
    workdir = str(tmp_path / "run")
    train_tiny(plants / "out", workdir)
    output, rows = predict.write_predictions(workdir, output=str(tmp_path / "sub.csv"))
    with open(output, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image_id", *COLUMNS] and rows == 4
    assert [row[0] for row in table[1:]] == ["19", "16", "18", "17"]
    sums = [sum(float(p) for p in row[1:]) for row in table[1:]]
    assert np.allclose(sums, 1.0, atol=1e-5)
    assert os.path.exists(output)
