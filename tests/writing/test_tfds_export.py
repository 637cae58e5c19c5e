"""TFDS metadata: `tfds.builder_from_directory` reads our shards, unchanged, as we wrote them."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import write_csv, write_images
from pipeline.core import schema
from pipeline.writing import tfds_export
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset

# Shard after shard in manifest order (TFDS otherwise interleaves 16 shards).
IN_ORDER = tfds.ReadConfig(interleave_cycle_length=1)


def _write(root, *, labeled=24, unlabeled=6, **config):
    """`labeled` images (train + val) and `unlabeled` ones (a test split), 8x8, 3 classes."""
    rows = write_images(str(root / "src"), labeled + unlabeled, size=(8, 8))
    test = [(path,) for path, _ in rows[labeled:]]
    if labeled:
        write_csv(root / "src" / "train.csv", ["image", "label"], rows[:labeled])
        write_csv(root / "src" / "test.csv", ["image"], test)
        inputs = dict(input=str(root / "src" / "train.csv"),
                      test_input=str(root / "src" / "test.csv"))
    else:
        write_csv(root / "src" / "test.csv", ["image"], test)
        inputs = dict(input=str(root / "src" / "test.csv"))
    settings = dict(output_dir=str(root / "out"), image_size=8, shards=3, val_fraction=0.25,
                    num_workers=1, show_progress=False, **inputs)
    settings.update(config)
    return write_dataset(WriteConfig(**settings))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("tfds"))


def our_records(data_dir, manifest, split):
    """[(image bytes, label, path)] of a split, parsed straight from the shards in order."""
    records = []
    for serialized in tf.data.TFRecordDataset(manifest.shard_paths(data_dir, split)):
        parsed = tf.io.parse_single_example(serialized, schema.tf_feature_spec())
        records.append((parsed["image"].numpy(), int(parsed["label"]),
                        parsed["path"].numpy().decode()))
    return records


def tfds_records(builder, split, **kwargs):
    records = []
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, **kwargs)):
        image = example["image"]
        assert image.dtype == np.uint8 and image.shape == builder.info.features["image"].shape
        records.append((image.tobytes(), int(example["label"]), example["path"].decode()))
    return records


def test_builder_reads_every_split_as_written(written):
    data_dir, manifest = written.output_dir, written.manifest
    builder = tfds.builder_from_directory(data_dir)
    info = builder.info
    assert info.features["label"].names == list(manifest.classes) == ["cat", "dog", "owl"]
    assert info.features["image"].shape == manifest.image_shape
    assert info.features["image"].dtype == np.uint8
    assert set(info.splits) == set(manifest.splits) == {"train", "val", "test"}
    for split, split_info in manifest.splits.items():
        assert info.splits[split].num_examples == split_info.count
        assert info.splits[split].shard_lengths == [s.count for s in split_info.shards]
        assert [p.name for p in info.splits[split].filepaths] == [s.file for s in
                                                                  split_info.shards]
        ours = our_records(data_dir, manifest, split)
        assert tfds_records(builder, split, read_config=IN_ORDER) == ours, split
        # TFDS's default order interleaves shards, but holds the same records.
        assert sorted(tfds_records(builder, split)) == sorted(ours)
    test_labels = {label for _, label, _ in our_records(data_dir, manifest, "test")}
    assert test_labels == {schema.UNLABELED}


def test_as_supervised_gives_image_label_pairs(written):
    builder = tfds.builder_from_directory(written.output_dir)
    image, label = next(iter(builder.as_dataset(split="val", as_supervised=True)))
    assert image.shape == written.manifest.image_shape and label.dtype == tf.int64


def test_a_dataset_without_classes_loads_with_unlabeled_records(tmp_path):
    summary = _write(tmp_path, labeled=0, unlabeled=5, shards=2)
    assert summary.manifest.classes == ()
    builder = tfds.builder_from_directory(summary.output_dir)
    assert builder.info.features["label"].names == []
    records = tfds_records(builder, "test", read_config=IN_ORDER)
    assert records == our_records(summary.output_dir, summary.manifest, "test")
    assert {label for _, label, _ in records} == {schema.UNLABELED}


def test_the_template_names_our_shards_as_tfds_does():
    template = tfds.core.naming.ShardedFileTemplate(
        data_dir="/d", template=tfds_export.FILEPATH_TEMPLATE, split="train",
        filetype_suffix="tfrecord")
    for count in (1, 36, 1000):
        assert template.sharded_filenames(count) == [
            schema.shard_filename("train", i, count) for i in range(count)]
        assert tfds_export.tfds_shard_filename("train", count - 1, count) == (
            schema.shard_filename("train", count - 1, count))


def test_compressed_datasets_get_no_metadata(tmp_path):
    summary = _write(tmp_path, compression="GZIP")
    assert not any(os.path.exists(os.path.join(summary.output_dir, name))
                   for name in tfds_export.METADATA_NAMES)
    assert "GZIP" in tfds_export.unsupported_reason(summary.manifest)


def test_what_tfds_would_misread_gets_no_metadata_and_says_why(written):
    manifest = written.manifest
    assert tfds_export.unsupported_reason(manifest) is None
    for classes in (("cat", " dog", "owl"), ("cat", "dog\nowl", "emu")):
        reason = tfds_export.unsupported_reason(dataclasses.replace(manifest, classes=classes))
        assert "class name" in reason and repr(classes[1]) in reason
    count = 100_000  # TFDS pads the shard index to the width of the count from here on
    too_many = tuple(schema.ShardInfo(schema.shard_filename("train", i, count), 1, 1, "")
                     for i in range(count))
    splits = {"train": schema.SplitInfo(count, too_many, {})}
    reason = tfds_export.unsupported_reason(dataclasses.replace(manifest, splits=splits))
    assert "train-000000-of-100000.tfrecord" in reason


def test_the_written_files_are_those_of_the_manifest(written):
    """What the writer leaves is the pure function of dataset.json, so a reader can rebuild it."""
    expected = tfds_export.metadata_files(schema.read_manifest(written.output_dir))
    assert sorted(expected) == sorted(tfds_export.METADATA_NAMES)
    for name, text in expected.items():
        with open(os.path.join(written.output_dir, name), encoding="utf-8") as f:
            assert f.read() == text, name


@pytest.mark.parametrize("classes", [("cat", "dog", "owl"), ()])
def test_features_json_is_what_tfds_writes_for_the_same_features(written, classes):
    from google.protobuf import json_format

    manifest = dataclasses.replace(written.manifest, classes=classes)
    same = tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=manifest.image_shape, dtype=np.uint8,
                                      encoding=tfds.features.Encoding.BYTES),
        "label": tfds.features.ClassLabel(num_classes=len(classes)),
        "path": tfds.features.Text(),
    })
    assert tfds_export.features(manifest) == json_format.MessageToDict(same.to_proto())
