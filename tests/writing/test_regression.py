"""Regression datasets: PetFinder's Pawpularity (`Id,...,Pawpularity`, 1-100) with
--target_columns. Each record holds its float32 targets; every read path yields them as
[B, targets]; dataset.json holds the train split's mean, std, min and max; the trainer fits the
standardised values and predict writes them back on the original scale."""

import csv
import functools
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import folder_config, labels_by_id, train_tiny, write_csv
from pipeline.core import integrity, records, schema
from pipeline.writing import plan
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset


def _score(number):
    """Image `number`'s Pawpularity: 1-100, spread evenly over the images."""
    return 1 + (number * 37) % 100


@pytest.fixture
def pets(tmp_path):
    """train/<Id>.png whose brightness is its score; train.csv lists 60 (Id, Eyes,
    Pawpularity), test.csv 4 more (Id, Eyes)."""
    os.makedirs(tmp_path / "train")
    rng = np.random.default_rng(0)
    for number in range(64):
        pixels = np.full((10, 10, 3), int(_score(number) * 2.5), np.uint8)
        pixels = np.clip(pixels + rng.integers(0, 12, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "train" / f"pet{number}.png")
    write_csv(tmp_path / "train.csv", ["Id", "Eyes", "Pawpularity"],
              [(f"pet{i}", str(i % 2), str(_score(i))) for i in range(60)])
    write_csv(tmp_path / "test.csv", ["Id", "Eyes"],
              [(f"pet{i}", str(i % 2)) for i in (62, 60, 63, 61)])
    return tmp_path


_config = functools.partial(folder_config, image_column="Id", image_path="train/{}.png",
                            target_columns="Pawpularity", image_size=10, shards=2,
                            val_fraction=0.2)


@pytest.mark.parametrize("options", [{}, dict(cache="memory"), dict(compression="GZIP")])
def test_every_record_holds_its_rows_targets_on_every_read_path(pets, options):
    write_options = {"compression": options.pop("compression")} if "compression" in options \
        else {}
    write_dataset(_config(pets, **write_options))
    out = str(pets / "out")
    manifest = schema.read_manifest(out)
    assert (manifest.target_kind, manifest.targets, manifest.classes) == (
        schema.REGRESSION, ("Pawpularity",), ())
    read = {**labels_by_id(out, "train", **options), **labels_by_id(out, "val", **options)}
    assert read == {f"pet{i}": [float(_score(i))] for i in range(60)}
    test = labels_by_id(out, "test", **options)
    assert list(test) == ["pet62", "pet60", "pet63", "pet61"]
    train = [float(_score(int(key[3:]))) for key in labels_by_id(out, "train")]
    stats = manifest.target_stats["Pawpularity"]
    assert stats["mean"] == pytest.approx(np.mean(train), abs=1e-4)
    assert stats["std"] == pytest.approx(np.std(train), abs=1e-4)
    assert (stats["min"], stats["max"]) == (min(train), max(train))
    assert manifest.flags["target_columns"] == "Pawpularity"
    assert integrity.verify_dataset(out).ok


def test_val_keeps_the_share_of_each_tenth_of_the_range(pets):
    write_dataset(_config(pets))
    val = {value[0] for value in labels_by_id(str(pets / "out"), "val").values()}
    # 60 distinct scores, 6 in each tenth (quantile bin): val holds a fifth of each, rounded.
    tenths = np.array_split(sorted(float(_score(i)) for i in range(60)), 10)
    assert [len(val & set(tenth)) for tenth in tenths] == [1] * 10


def test_several_targets_keep_their_column_order(pets):
    write_csv(pets / "train.csv", ["Id", "Pawpularity", "Eyes", "Age"],
              [(f"pet{i}", str(_score(i)), str(i % 2), f"{i / 4}") for i in range(60)])
    write_dataset(_config(pets, target_columns="Pawpularity,Age"))
    out = str(pets / "out")
    assert schema.read_manifest(out).targets == ("Pawpularity", "Age")
    read = {**labels_by_id(out, "train"), **labels_by_id(out, "val")}
    assert read == {f"pet{i}": [float(_score(i)), i / 4] for i in range(60)}


@pytest.mark.parametrize("value", ["", "n/a", "nan", "inf", "1e39"])  # 1e39: float32's inf
def test_a_cell_that_is_not_a_number_is_named(pets, value):
    rows = list(csv.reader(open(pets / "train.csv")))
    rows[6][2] = value  # the CSV's line 7
    write_csv(pets / "train.csv", rows[0], rows[1:])
    with pytest.raises(InputError, match=rf"line 7 has Pawpularity='{value}', not a number"):
        write_dataset(_config(pets))
    assert not (pets / "out").exists()


@pytest.mark.parametrize("overrides, error, said", [
    (dict(target_columns="Pawpularity,,Eyes"), plan.PlanError, "name each numeric column"),
    (dict(multi_label=True), plan.PlanError, "numbers to predict or classes, not both"),
    (dict(label_columns="Eyes"), plan.PlanError, "numbers to predict or classes, not both"),
    (dict(target_columns="Score"), InputError, r"no 'Score' column.*--target_columns"),
])
def test_bad_flags_are_refused(pets, overrides, error, said):
    with pytest.raises(error, match=said):
        write_dataset(_config(pets, **overrides))


def test_a_target_that_is_not_a_finite_number_is_damage_verify_names():
    image = bytes(12)
    bad = records.encode_example(image, schema.LABELED, "a.png", [float("nan")])
    assert "not a finite number" in integrity.record_problem(
        bad, image_bytes=12, num_classes=1, target_size=1, binary_targets=False)
    scores = records.encode_example(image, schema.LABELED, "a.png", [42.5])
    assert integrity.record_problem(scores, image_bytes=12, num_classes=1, target_size=1,
                                    binary_targets=False) is None


def test_inspect_shows_the_targets_range_and_histogram(pets):
    from pipeline.tools import summary

    write_dataset(_config(pets))
    out = str(pets / "out")
    text = summary.summarize(schema.read_manifest(out), out, "val")
    assert "targets   1, regression:" in text and "Pawpularity: train mean" in text
    assert "Pawpularity in 'val' (10 records):" in text


def test_inspect_shows_each_folds_target_mean_and_std(pets):
    from pipeline.tools import summary

    write_dataset(_config(pets, folds=3, shards=3))
    out = str(pets / "out")
    lines = summary.summarize(schema.read_manifest(out), out, "train").splitlines()
    start = lines.index("folds     3, stratified by the target's range; --fold=k: 'val' is "
                        "fold k, 'train' the others")
    assert lines[start + 1].split() == ["fold", "records", "shards", "Pawpularity", "mean/std"]
    for fold in range(3):
        values = np.array([value[0] for value in labels_by_id(out, "val", fold=fold).values()])
        assert lines[start + 2 + fold].split() == [
            str(fold), str(len(values)), "1", f"{values.mean():.4g}/{values.std():.4g}"]


@pytest.mark.slow
def test_training_lowers_the_error_and_predict_writes_the_original_scale(pets, tmp_path):
    from pipeline.training import predict

    write_dataset(_config(pets))
    workdir = str(tmp_path / "run")
    metrics = train_tiny(pets / "out", workdir, epochs=4, width=8, batch_size=8,
                         augment="flip_lr|mixup")
    with open(os.path.join(workdir, "train_log.csv")) as f:
        log = list(csv.DictReader(f))
    assert float(log[-1]["loss"]) < float(log[0]["loss"])
    best = min(range(len(log)), key=lambda k: float(log[k]["val_rmse"]))
    assert metrics["best_epoch"] == best  # the lowest error, not the highest
    output, rows = predict.write_predictions(workdir, output=str(tmp_path / "sub.csv"))
    with open(output, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Id", "Pawpularity"] and rows == 4
    assert [row[0] for row in table[1:]] == ["pet62", "pet60", "pet63", "pet61"]
    manifest, _, values = predict.predict_probabilities(workdir)
    stats = manifest.target_stats["Pawpularity"]
    assert [float(row[1]) for row in table[1:]] == pytest.approx(values[:, 0].tolist(),
                                                                 rel=1e-5)
    # On the targets' scale, not the standardised one (a z-score is within a few units of 0).
    assert abs(np.mean(values) - stats["mean"]) < 3 * stats["std"]
    assert np.mean(values) > 10
    # The val split goes to a file of its own, each image's true value beside its predicted.
    output, rows = predict.write_predictions(workdir, "val")
    assert output == os.path.join(workdir, "predictions_val.csv")
    assert rows == manifest.split("val").count
    with open(output, newline="") as f:
        val = list(csv.reader(f))
    assert val[0] == ["Id", "Pawpularity", "true_Pawpularity"]
    assert {row[0]: [float(row[2])] for row in val[1:]} == labels_by_id(pets / "out", "val")


def test_folds_keep_the_share_of_each_tenth_of_the_range(pets):
    write_dataset(_config(pets, folds=3, shards=3))
    out = str(pets / "out")
    tenths = np.array_split(sorted(float(_score(i)) for i in range(60)), 10)
    for fold in range(3):
        held = {value[0] for value in labels_by_id(out, "val", fold=fold).values()}
        assert len(held) == 20
        assert all(len(held & set(tenth)) == 2 for tenth in tenths), fold


def test_a_run_predicts_only_datasets_of_its_targets(pets):
    from pipeline.training import predict, run_files

    write_dataset(_config(pets))
    out = str(pets / "out")
    manifest = schema.read_manifest(out)
    run = run_files.run_record(out, manifest)
    predict.check_dataset(run, out, manifest, "test")  # its own: no error
    for other in (dict(run, targets=["Age"]), dict(run, target_kind="class")):
        with pytest.raises(predict.PredictError,
                           match=r"the dataset has the regression of \['Pawpularity'\]"):
            predict.check_dataset(other, out, manifest, "test")


def test_stats_keep_small_targets_and_an_older_reader_is_refused(pets):
    from pipeline.writing import regression

    tiny = regression.stats([(2.87e-7,), (3.91e-7,), (1.02e-7,)], ["dose"])["dose"]
    assert tiny["std"] > 0 and tiny["min"] == 1.02e-7 and tiny["mean"] == pytest.approx(
        2.6e-7, rel=1e-6)
    assert regression.stats([(5.0,), (5.0,)], ["flat"])["flat"]["std"] == 1.0
    write_dataset(_config(pets))
    path = pets / "out" / schema.MANIFEST_NAME
    text = path.read_text()
    assert '"format_version": 3' in text  # format 2's readers refuse it, not misread it
    with pytest.raises(schema.FormatError, match="a regression dataset needs format_version 3"):
        schema.Manifest.from_json(text.replace('"format_version": 3', '"format_version": 2'))
    document = json.loads(text)
    document["target_stats"]["Pawpularity"]["std"] = 0.0
    with pytest.raises(schema.FormatError, match=r"target_stats\['Pawpularity'\].*std above 0"):
        schema.Manifest.from_json(json.dumps(document))


def test_inspect_record_and_grid_name_the_values(pets, tmp_path):
    from pipeline.tools import grid, record_view

    write_dataset(_config(pets))
    out = str(pets / "out")
    (record,) = record_view.read_records(out, "train", 0, 1, schema.read_manifest(out))
    score = _score(int(os.path.basename(record.path)[3:-4]))
    assert f"label     0 (Pawpularity {score})" in record_view.record_dump(out, "train", 0)
    records = record_view.read_records(out, "val", 0, 2, schema.read_manifest(out))
    table = grid.tile_map_csv(records, ())
    assert "Pawpularity " in table.splitlines()[1]
