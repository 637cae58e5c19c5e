"""--feature_columns: numeric columns stored beside each image (PetFinder's Eyes, Face, ...),
as float32 `features` in the record and a float block in its record index, with the train
split's stats in dataset.json. (The reader and the trainer take them next.)"""

import csv
import functools
import os

import numpy as np
import pytest
from PIL import Image

from conftest import KILL_AT_STEP, KILLED_RUN, folder_config, train_py, write_csv
from pipeline.core import integrity, record_fields, record_index, records, schema
from pipeline.writing import plan
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset


@pytest.fixture
def pets(tmp_path):
    """train/pet<i>.png, of brightness 5 i; train.csv: 40 rows (Id, Eyes, Age, Pawpularity); test.csv: 4 (Id,
    Eyes, Age)."""
    os.makedirs(tmp_path / "train")
    for number in range(44):  # each image shows its Age (i / 4) as its brightness
        Image.fromarray(np.full((8, 8, 3), number * 5, np.uint8)).save(
            tmp_path / "train" / f"pet{number}.png")
    write_csv(tmp_path / "train.csv", ["Id", "Eyes", "Age", "Pawpularity"],
              [(f"pet{i}", str(i % 2), f"{i / 4}", str(1 + i * 2)) for i in range(40)])
    write_csv(tmp_path / "test.csv", ["Id", "Eyes", "Age"],
              [(f"pet{i}", str(i % 2), f"{i / 4}") for i in (42, 40, 43, 41)])
    return tmp_path


_config = functools.partial(folder_config, image_column="Id", image_path="train/{}.png",
                            target_columns="Pawpularity", feature_columns="Eyes,Age",
                            image_size=8, shards=2, val_fraction=0.2)


def _features_by_path(data_dir, split):
    """{path: features} of `split`, read back from each record's bytes."""
    manifest = schema.read_manifest(data_dir)
    found = {}
    for shard in manifest.split(split).shards:
        with open(os.path.join(data_dir, shard.file), "rb") as f:
            for payload in records.iter_framed_records(f):
                values = record_fields.feature_values(
                    lambda offset, n: payload[offset:offset + n],
                    record_fields.layout_of(payload), 2)
                found[record_fields.path_of(payload)] = values.tolist()
    return found


def test_each_record_holds_its_rows_features_in_both_csvs(pets):
    write_dataset(_config(pets))
    out = str(pets / "out")
    manifest = schema.read_manifest(out)
    assert manifest.features == ("Eyes", "Age") and manifest.format_version == 3
    read = {}
    for split in ("train", "val", "test"):
        read.update(_features_by_path(out, split))
    assert read == {f"train/pet{i}.png": [float(i % 2), i / 4] for i in [*range(40), 40, 41,
                                                                         42, 43]}
    stats = manifest.feature_stats["Age"]
    train = [v[1] for p, v in _features_by_path(out, "train").items()]
    assert stats["mean"] == pytest.approx(np.mean(train)) and stats["max"] == max(train)
    for shard in manifest.split("train").shards:  # the index holds them too
        index = record_index.read(os.path.join(out, shard.file + schema.RECORD_INDEX_SUFFIX))
        assert index.features.shape == (shard.count, 2)
    assert integrity.verify_dataset(out).ok
    assert write_dataset(_config(pets)).written == 0  # a rerun keeps every shard


def test_a_class_dataset_with_features_is_format_3(pets):
    write_csv(pets / "train.csv", ["Id", "Eyes", "Age", "label"],
              [(f"pet{i}", str(i % 2), f"{i / 4}", "ab"[i % 2]) for i in range(40)])
    write_dataset(_config(pets, target_columns=None))
    manifest = schema.read_manifest(str(pets / "out"))
    assert (manifest.target_kind, manifest.format_version) == (schema.CLASS, 3)


def test_the_test_csv_needs_the_feature_columns(pets):
    write_csv(pets / "test.csv", ["Id", "Eyes"], [(f"pet{i}", "1") for i in (42, 40)])
    with pytest.raises(InputError, match=r"test.csv: no 'Age' column.*--input and "
                                         r"--test_input alike"):
        write_dataset(_config(pets))


def test_a_missing_value_is_named(pets):
    rows = list(csv.reader(open(pets / "train.csv")))
    rows[3][2] = ""  # the CSV's line 4
    write_csv(pets / "train.csv", rows[0], rows[1:])
    with pytest.raises(InputError, match=r"line 4 has Age='', not a number.*--feature_columns"):
        write_dataset(_config(pets))


def test_bad_feature_flags_are_refused(pets):
    with pytest.raises(plan.PlanError, match="name each numeric column once"):
        write_dataset(_config(pets, feature_columns="Eyes,,Age"))


def test_verify_names_a_feature_that_is_not_a_number():
    image = bytes(12)
    bad = records.encode_example(image, 0, "a.png", None, [1.0, float("inf")])
    assert "'features' holds a value that is not a finite number" in integrity.record_problem(
        bad, image_bytes=12, num_classes=1, feature_size=2)


@pytest.mark.parametrize("options", [{}, dict(cache="memory"), dict(access="stream"),
                                     dict(augment="flip_lr|random_crop(pad=2)")])
def test_batches_pair_each_image_with_its_features_on_every_read_path(pets, options):
    from pipeline import dataset

    write_dataset(_config(pets))
    for training in (False, True):
        batches = list(dataset.make_dataset(str(pets / "out"), "train", batch_size=4,
                                            training=training, seed=3,
                                            **{"augment": None, **options}).take(8))
        for inputs, labels in batches:
            assert set(inputs) == {"image", "features"} and labels.shape[1:] == (1,)
            number = inputs["image"].numpy()[:, 0, 4, 4].astype(int) // 5  # the centre pixel
            np.testing.assert_array_equal(inputs["features"].numpy(),
                                          np.stack([number % 2, number / 4], 1))
            np.testing.assert_array_equal(labels.numpy()[:, 0], 1 + number * 2)


@pytest.mark.parametrize("options", [{}, dict(cache="memory"), dict(access="stream")])
def test_channels_last_transposes_the_image_and_keeps_the_features(pets, options):
    from pipeline import dataset

    write_dataset(_config(pets))

    def read(data_format):
        return list(dataset.make_dataset(str(pets / "out"), "train", batch_size=4, seed=3,
                                         deterministic=True, augment="flip_lr",
                                         data_format=data_format, **options).take(4))

    last = read("channels_last")
    for (inputs, labels), (want, want_labels) in zip(last, read("channels_first"), strict=True):
        assert inputs["image"].shape == (4, 8, 8, 3)
        np.testing.assert_array_equal(inputs["image"], np.transpose(want["image"], (0, 2, 3, 1)))
        np.testing.assert_array_equal(inputs["features"], want["features"])
        np.testing.assert_array_equal(labels, want_labels)


def test_mixing_ops_are_refused_with_features(pets):
    from pipeline import dataset
    from pipeline.dataset.options import DatasetError

    write_dataset(_config(pets))
    with pytest.raises(DatasetError, match="mixup mixes two images and their labels"):
        dataset.make_dataset(str(pets / "out"), "train", batch_size=4, training=True,
                             augment="flip_lr|mixup")


def test_inspect_and_tfds_show_the_features(pets):
    import tensorflow_datasets as tfds

    from pipeline.tools import summary

    write_dataset(_config(pets))
    out = str(pets / "out")
    text = summary.summarize(schema.read_manifest(out), out, "train")
    assert "features  2 (train split):" in text and "  Age: mean " in text
    builder = tfds.builder_from_directory(out)
    assert builder.info.features[schema.FEATURES_KEY].shape == (2,)


@pytest.mark.slow
def test_training_joins_the_features_and_a_killed_run_resumes_exactly(pets, tmp_path):
    """A run killed mid-epoch and run again ends with the weights and logs of one never
    stopped; predict writes the values on the original scale, in the test CSV's order."""
    import keras

    from pipeline.training import predict

    write_dataset(_config(pets))

    def train(name, extra=""):
        return train_py(tmp_path / name, pets / "out", extra, **KILLED_RUN, augment="flip_lr",
                        checkpoint_every_steps=1)

    assert train("plain").returncode == 0
    killed = train("run", KILL_AT_STEP.format(step=5))  # 4 steps an epoch: epoch 1, batch 1
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert train("run").returncode == 0

    def log(name):
        with open(tmp_path / name / "train_log.csv") as f:
            return [{key: row[key] for key in ("epoch", "loss", "rmse", "val_rmse")}
                    for row in csv.DictReader(f)]

    assert log("run") == log("plain") and len(log("run")) == 2
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert set(model.input) == {"image", "features"}
    for ours, theirs in zip(model.get_weights(), keras.saving.load_model(
            tmp_path / "plain" / "model.keras").get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    output, rows = predict.write_predictions(str(tmp_path / "run"),
                                             output=str(tmp_path / "sub.csv"), tta="flip")
    with open(output, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Id", "Pawpularity"] and rows == 4
    assert [row[0] for row in table[1:]] == ["pet42", "pet40", "pet43", "pet41"]


def test_a_feature_that_is_also_learned_is_refused(pets):
    with pytest.raises(InputError, match="Pawpularity is also the image column or a column to "
                                         "learn"):
        write_dataset(_config(pets, feature_columns="Eyes,Pawpularity", test_input=None))


def test_a_cut_shard_is_named_on_the_stream_path(pets):
    from pipeline import dataset
    from pipeline.dataset.options import DatasetError

    write_dataset(_config(pets))
    out = pets / "out"
    shard = schema.read_manifest(str(out)).split("train").shards[0]
    path = out / shard.file
    path.write_bytes(path.read_bytes()[:shard.bytes // 2])
    with pytest.raises((DatasetError, Exception), match=f"{shard.file}: record"):
        list(dataset.make_dataset(str(out), "train", batch_size=4, training=False,
                                  access="stream"))


def test_a_run_predicts_only_datasets_of_its_features(pets):
    from pipeline.training import predict, run_files

    write_dataset(_config(pets))
    out = str(pets / "out")
    manifest = schema.read_manifest(out)
    run = run_files.run_record(out, manifest)
    predict.check_dataset(run, out, manifest, "test")
    with pytest.raises(predict.PredictError, match=r"with the features \['Eyes', 'Age'\]"):
        predict.check_dataset(dict(run, features=["Age", "Eyes"]), out, manifest, "test")
