"""Multi-label datasets: Planet's `image_name,tags` ("clear primary water") with --multi_label,
and class columns holding several 1s a row (Plant Pathology's multiple diseases). Each record
holds a float32 multi-hot target; every read path yields it as [B, classes]; the trainer fits a
sigmoid per class and predict writes each test image's tags above the tuned threshold."""

import csv
import functools
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import (KILL_AT_STEP, KILLED_RUN, folder_config, labels_by_id, train_py,
                      train_tiny, write_csv)
from pipeline import dataset
from pipeline.core import integrity, record_index, records, schema
from pipeline.writing import plan
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset

TAGS = ("clear", "haze", "primary", "road", "water")  # sorted: the classes' order


def _tags(number):
    """Image `number`'s tags: the bits of number % 32 (image 0 has none)."""
    return [tag for k, tag in enumerate(TAGS) if (number % 32 >> k) & 1]


def _write_images(folder, count):
    """images/<i>.png whose pixels say their tags: a bright band per tag, noise elsewhere,
    so a tiny network can learn them."""
    rng = np.random.default_rng(0)
    os.makedirs(folder / "images", exist_ok=True)
    for number in range(count):
        pixels = rng.integers(0, 60, size=(10, 10, 3), dtype=np.uint8)
        for k, tag in enumerate(TAGS):
            if tag in _tags(number):
                pixels[2 * k:2 * k + 2, :, :] = 255
        Image.fromarray(pixels).save(folder / "images" / f"{number}.png")


@pytest.fixture
def planet(tmp_path):
    """train.csv: 64 images with their tags (every subset of TAGS twice); test.csv: 8 more."""
    _write_images(tmp_path, 72)
    write_csv(tmp_path / "train.csv", ["image_name", "tags"],
              [(str(i), " ".join(_tags(i))) for i in range(64)])
    write_csv(tmp_path / "test.csv", ["image_name"], [(str(i),) for i in (70, 64, 71, 65)])
    return tmp_path


_config = functools.partial(
    folder_config, image_column="image_name", image_path="images/{}.png",
    label_column="tags", multi_label=True, label_column_required=True, image_size=10, shards=2,
    val_fraction=0.25)


def _expected(number):
    return [float(tag in _tags(number)) for tag in TAGS]


@pytest.mark.parametrize("options", [
    {}, dict(cache="memory"), dict(access="stream"), dict(compression="GZIP"),
    dict(compression="GZIP", cache="memory")])
def test_every_record_holds_its_rows_tags_on_every_read_path(planet, options):
    write_options = {"compression": options.pop("compression")} if "compression" in options \
        else {}
    write_dataset(_config(planet, **write_options))
    out = str(planet / "out")
    manifest = schema.read_manifest(out)
    assert (manifest.target_kind, manifest.classes) == (schema.MULTI_LABEL, TAGS)
    read = {**labels_by_id(out, "train", **options), **labels_by_id(out, "val", **options)}
    assert read == {str(i): _expected(i) for i in range(64)}
    test = labels_by_id(out, "test", **options)
    assert list(test) == ["70", "64", "71", "65"] and not np.any(list(test.values()))
    counts = {tag: manifest.split("train").class_counts.get(tag, 0)
              + manifest.split("val").class_counts.get(tag, 0) for tag in TAGS}
    assert counts == {tag: 32 for tag in TAGS}  # a record counts under each of its tags
    assert manifest.flags["multi_label"] is True and manifest.flags["label_delimiter"] == " "
    assert integrity.verify_dataset(out).ok


def test_training_batches_are_multi_hot_rows_mixed_by_mixup(planet):
    write_dataset(_config(planet))
    images, labels = next(iter(dataset.make_dataset(
        str(planet / "out"), "train", batch_size=8, training=True, seed=1,
        augment="flip_lr|mixup(alpha=1.0)")))
    assert images.shape == (8, 3, 10, 10) and labels.shape == (8, len(TAGS))
    assert labels.dtype.name == "float32"
    values = labels.numpy()
    assert np.all((values >= 0) & (values <= 1)) and not np.all(np.isin(values, (0.0, 1.0)))


def test_a_delimiter_and_empty_cells(planet):
    write_csv(planet / "train.csv", ["image_name", "tags"],
              [(str(i), ";".join(_tags(i))) for i in range(64)])
    write_dataset(_config(planet, label_delimiter=";"))
    out = str(planet / "out")
    read = {**labels_by_id(out, "train"), **labels_by_id(out, "val")}
    assert read["0"] == [0.0] * len(TAGS)  # an empty cell: an image with no tag
    assert read == {str(i): _expected(i) for i in range(64)}


def test_class_columns_with_several_ones_are_multi_label_in_column_order(planet, info_logs):
    columns = ("water", "clear", "road", "haze", "primary")  # not sorted: the CSV's order
    write_csv(planet / "train.csv", ["image_name", *columns],
              [(str(i), *("1" if c in _tags(i) else "0" for c in columns)) for i in range(64)])
    write_dataset(_config(planet, label_columns=",".join(columns), multi_label=False,
                          label_column_required=False))
    out = str(planet / "out")
    manifest = schema.read_manifest(out)
    assert (manifest.target_kind, manifest.classes) == (schema.MULTI_LABEL, columns)
    assert "multi_label" not in manifest.flags  # the columns said it, not a flag
    assert "written as multi-label" in info_logs.text and "line 2" in info_logs.text
    read = {**labels_by_id(out, "train"), **labels_by_id(out, "val")}
    assert read == {str(i): [float(c in _tags(i)) for c in columns] for i in range(64)}


def test_val_and_folds_keep_every_tags_share(planet):
    write_dataset(_config(planet))
    manifest = schema.read_manifest(str(planet / "out"))
    assert manifest.split("val").count == 16
    assert manifest.split("val").class_counts == {tag: 8 for tag in TAGS}  # 32 each, a quarter
    # A rare tag (Planet's blow_down: 98 of 40,479) lands once in each of 4 folds; the
    # others within 2 of their share (iterative stratification, as the package does it).
    rare = {"5", "17", "33", "60"}
    write_csv(planet / "train.csv", ["image_name", "tags"],
              [(str(i), " ".join(_tags(i) + ["blow_down"] * (str(i) in rare)))
               for i in range(64)])
    write_dataset(_config(planet, output_dir=str(planet / "folds"), folds=4, shards=4))
    folds = schema.read_manifest(str(planet / "folds")).folds
    assert [fold.count for fold in folds] == [16] * 4
    assert [fold.class_counts["blow_down"] for fold in folds] == [1] * 4
    assert all(abs(fold.class_counts[tag] - 8) <= 2 for fold in folds for tag in TAGS)


def test_the_write_is_deterministic_and_a_rerun_keeps_it(planet):
    write_dataset(_config(planet))
    again = write_dataset(_config(planet, output_dir=str(planet / "again")))
    out, other = planet / "out", planet / "again"
    names = sorted(name for name in os.listdir(out) if name != ".progress")
    assert names == sorted(name for name in os.listdir(other) if name != ".progress")
    for name in names:
        if os.path.isfile(out / name):
            assert (out / name).read_bytes() == (other / name).read_bytes(), name
    shards = sum(len(info.shards) for info in again.manifest.splits.values())
    assert write_dataset(_config(planet)).written == 0 and again.written == shards


@pytest.mark.parametrize("overrides, error, said", [
    (dict(label_delimiter=";", multi_label=False), plan.PlanError,
     "--label_delimiter=';' separates the tags of a --multi_label column"),
    (dict(label_delimiter=""), plan.PlanError, "--label_delimiter is empty"),
])
def test_bad_flags_are_refused(planet, overrides, error, said):
    with pytest.raises(error, match=said):
        write_dataset(_config(planet, **overrides))


def test_multi_label_needs_a_csv_with_tags(planet, tmp_path):
    (tmp_path / "tree" / "cat").mkdir(parents=True)
    with pytest.raises(InputError, match="--multi_label reads a CSV's columns; .* a folder"):
        write_dataset(_config(planet, input=str(tmp_path / "tree"), image_path=None,
                              test_input=None))
    write_csv(planet / "train.csv", ["image_name", "tags"], [(str(i), "") for i in range(64)])
    with pytest.raises(InputError, match="holds no tags"):
        write_dataset(_config(planet))


def test_a_target_other_than_0_or_1_is_damage_verify_names(planet):
    image = bytes(12)
    bad = records.encode_example(image, schema.LABELED, "a.png", [0.0, 2.0])
    assert "holds a value other than 0 or 1" in integrity.record_problem(
        bad, image_bytes=12, num_classes=1, target_size=2)
    short = records.encode_example(image, schema.LABELED, "a.png", [1.0])
    assert "holds 1 values, the dataset 2" in integrity.record_problem(
        short, image_bytes=12, num_classes=1, target_size=2)
    none = records.encode_example(image, schema.LABELED, "a.png")
    assert "no 'target' feature" in integrity.record_problem(
        none, image_bytes=12, num_classes=1, target_size=2)


def test_a_record_index_with_wrong_targets_is_rebuilt_from_the_shard(planet, caplog):
    write_dataset(_config(planet))
    out = str(planet / "out")
    shard = schema.read_manifest(out).split("train").shards[0]
    path = os.path.join(out, shard.file + schema.RECORD_INDEX_SUFFIX)
    index = record_index.read(path)
    flipped = index.targets.copy()
    flipped[0] = 1.0 - flipped[0]
    record_index.write(path, record_index.RecordIndex(
        index.shard, index.bytes, index.sha256, index.image_bytes, index.table, flipped))
    problems = [p.message for p in integrity.verify_dataset(out).problems]
    assert any("row 0 is not where the shard's record 0 lies (its targets differ)" in p
               for p in problems), problems
    read = {**labels_by_id(out, "train"), **labels_by_id(out, "val")}
    assert read == {str(i): _expected(i) for i in range(64)}  # the rebuilt index's
    assert record_index.read(path).targets.tolist() == index.targets.tolist()  # saved again


@pytest.mark.slow
def test_training_lowers_the_loss_and_predict_writes_tags(planet, tmp_path):
    from pipeline.training import predict

    write_dataset(_config(planet))
    workdir = str(tmp_path / "run")
    metrics = train_tiny(planet / "out", workdir, epochs=4, width=8, batch_size=8,
                         base_learning_rate=0.4)
    with open(os.path.join(workdir, "train_log.csv")) as f:
        log = list(csv.DictReader(f))
    assert float(log[-1]["loss"]) < float(log[0]["loss"])
    assert {"val_f1", "val_macro_f1", "val_map", "val_threshold"} <= set(metrics)
    assert metrics["val_threshold"] in [round(0.05 * k, 2) for k in range(1, 20)] or \
        abs(metrics["val_threshold"] - round(metrics["val_threshold"], 2)) < 1e-6
    output, rows = predict.write_predictions(workdir, output=str(tmp_path / "sub.csv"))
    with open(output, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image_name", "tags"] and rows == 4
    assert [row[0] for row in table[1:]] == ["70", "64", "71", "65"]
    assert all(set(row[1].split()) <= set(TAGS) for row in table[1:])
    probabilities = predict.predict_probabilities(workdir)[2]
    expected = [" ".join(tag for tag, p in zip(TAGS, row) if p > metrics["val_threshold"])
                for row in probabilities]
    assert [row[1] for row in table[1:]] == expected
    # The val split goes to a file of its own, each image's true tags beside its predicted.
    output, rows = predict.write_predictions(workdir, "val")
    assert output == os.path.join(workdir, "predictions_val.csv")
    assert rows == schema.read_manifest(str(planet / "out")).split("val").count
    with open(output, newline="") as f:
        val = list(csv.reader(f))
    assert val[0] == ["image_name", "tags", "true_tags"]
    assert {row[0]: row[2] for row in val[1:]} == {
        image: " ".join(tag for tag, on in zip(TAGS, labels) if on)
        for image, labels in labels_by_id(planet / "out", "val").items()}


def test_an_ensemble_uses_the_mean_of_its_runs_thresholds(tmp_path):
    from pipeline.training import targets

    workdirs = []
    for number, threshold in enumerate((0.2, 0.4)):
        workdir = tmp_path / f"fold{number}"
        workdir.mkdir()
        (workdir / "metrics.json").write_text(json.dumps({"val_threshold": threshold}))
        workdirs.append(str(workdir))
    assert targets.ensemble_threshold(workdirs, "final") == pytest.approx(0.3)
    (tmp_path / "fold1" / "metrics.json").write_text(json.dumps({"val_accuracy": 0.5}))
    with pytest.raises(ValueError, match="no tuned threshold"):
        targets.ensemble_threshold(workdirs, "final")


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_metrics(planet, tmp_path):
    """The multi-label metrics' counts (F1's per threshold and class, AUC's) are put back at a
    mid-epoch resume like Keras' means: the resumed epoch logs what an uninterrupted one does."""
    import keras

    from pipeline.training import targets  # noqa: F401 - registers the loss model.keras names

    write_dataset(_config(planet))

    def train(name, extra=""):
        return train_py(tmp_path / name, planet / "out", extra, **KILLED_RUN,
                        augment="flip_lr|mixup", checkpoint_every_steps=2)

    assert train("plain").returncode == 0
    killed = train("run", KILL_AT_STEP.format(step=9))  # 6 steps an epoch: epoch 1, batch 3
    assert killed.returncode == -9, killed.stderr[-3000:]
    done = train("run")
    assert done.returncode == 0, done.stderr[-3000:]

    def log(name):
        with open(tmp_path / name / "train_log.csv") as f:
            return [{key: value for key, value in row.items() if key in (
                "epoch", "loss", "f1", "macro_f1", "threshold", "map", "val_f1", "val_map")}
                for row in csv.DictReader(f)]

    assert log("run") == log("plain") and len(log("run")) == 2
    for ours, theirs in zip(*(keras.saving.load_model(tmp_path / name / "model.keras")
                              .get_weights() for name in ("run", "plain")), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_tfds_reads_the_targets_as_a_float_tensor(planet):
    import tensorflow_datasets as tfds

    write_dataset(_config(planet))
    builder = tfds.builder_from_directory(str(planet / "out"))
    assert builder.info.features[schema.TARGET_KEY].shape == (len(TAGS),)
    read = {os.path.basename(example["path"].numpy().decode()).removesuffix(".png"):
            example["target"].numpy().tolist() for example in builder.as_dataset(split="val")}
    assert read == {key: _expected(int(key)) for key in read} and len(read) == 16


def test_inspect_counts_each_tag_and_the_tags_a_record(planet):
    from pipeline.tools import summary

    write_dataset(_config(planet))
    out = str(planet / "out")
    text = summary.summarize(schema.read_manifest(out), out, "val")
    assert "5, multi-label, records per class in 'val' (16 records, 2.50 classes a record)" \
        in text
    assert "min 8 (clear), max 8 (water)" in text
    assert "(300 image + 20 label) bytes" in text  # a float32 target row per record
    assert "source    " in text and ": 68 images" in text  # the CSVs listed as written


def test_inspect_counts_each_folds_tags(planet):
    from pipeline.tools import summary

    write_dataset(_config(planet, output_dir=str(planet / "folds"), folds=4, shards=4))
    out = str(planet / "folds")
    lines = summary.summarize(schema.read_manifest(out), out, "train").splitlines()
    start = lines.index("folds     4, stratified by tag; --fold=k: 'val' is fold k, 'train' "
                        "the others")
    assert lines[start + 1].split() == ["fold", "records", "shards", *TAGS]
    for fold in range(4):  # each tag counted in each record that has it, read by the reader
        held_out = labels_by_id(out, "val", fold=fold)
        per_tag = [int(sum(row[k] for row in held_out.values())) for k in range(len(TAGS))]
        assert lines[start + 2 + fold].split() == [str(fold), str(len(held_out)), "1",
                                                   *map(str, per_tag)]


@pytest.mark.parametrize("cache", [None, "memory"])
def test_skipping_a_damaged_record_keeps_every_other_records_tags(planet, cache):
    write_dataset(_config(planet))
    out = str(planet / "out")
    shard = schema.read_manifest(out).split("train").shards[0]
    index = record_index.read(os.path.join(out, shard.file + schema.RECORD_INDEX_SUFFIX))
    offset, _, image_offset = (int(v) for v in index.table[3, :3])
    with open(os.path.join(out, shard.file), "r+b") as f:  # a flipped pixel in record 3
        f.seek(offset + records.HEADER_BYTES + image_offset + 5)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    batches = list(dataset.make_dataset(out, "train", batch_size=4, training=False,
                                        on_corrupt="skip", max_corrupt_fraction=0.5,
                                        cache=cache))
    images = np.concatenate([images.numpy() for images, _ in batches])
    targets = np.concatenate([labels.numpy() for _, labels in batches])
    assert len(targets) == 47  # record 3 left out, and only it
    # Each image shows its tags (a bright band per tag): every target is its image's.
    shown = np.stack([images[:, 0, 2 * k, 0] == 255 for k in range(len(TAGS))], axis=1)
    np.testing.assert_array_equal(targets, shown.astype(np.float32))


def test_inspect_record_and_grid_name_the_tags(planet):
    from pipeline.tools import grid, record_view

    write_dataset(_config(planet))
    out = str(planet / "out")
    manifest = schema.read_manifest(out)
    (record,) = record_view.read_records(out, "train", 0, 1, manifest)
    tags = " ".join(_tags(int(os.path.basename(record.path)[:-4]))) or "(no class)"
    assert f"label     0 ({tags})" in record_view.record_dump(out, "train", 0)
    records = record_view.read_records(out, "train", 0, 3, manifest)
    rows = grid.tile_map_csv(records, manifest.classes).splitlines()[1:]
    assert [row.split(",")[7] for row in rows] == [
        " ".join(_tags(int(os.path.basename(r.path)[:-4]))) or "(no class)" for r in records]
