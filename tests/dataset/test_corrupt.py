"""Damaged shards: on_corrupt="fail" stops with an error (named by the trainer), "skip" loses
only the damaged shard's tail and says so, and a threshold bounds the loss. Never a hang."""

import logging
import os
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_labeled_dataset
from pipeline import dataset, training
from pipeline.core import schema
from pipeline.training import run_files
from pipeline.training.settings import TrainingError

DAMAGED_SHARD = 1
DAMAGED_RECORD = 3  # 0-based, inside DAMAGED_SHARD


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """48 labeled 8x8 images: 4 train shards of ~10 records, 1 val shard."""
    return write_labeled_dataset(tmp_path_factory.mktemp("corrupt"), 48, "clean", shards=4,
                                 val_shards=1, val_fraction=0.2)


def record_offsets(path):
    """(offset of the data, length) of every record, from the TFRecord framing."""
    offsets, position = [], 0
    with open(path, "rb") as f:
        data = f.read()
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position:position + 8])
        offsets.append((position + 12, length))
        position += 12 + length + 4
    return offsets


@pytest.fixture
def damaged_dir(clean_dir, tmp_path):
    """A copy with one byte flipped inside record DAMAGED_RECORD of train shard DAMAGED_SHARD."""
    target = str(tmp_path / "damaged")
    shutil.copytree(clean_dir, target)
    manifest = schema.read_manifest(target)
    path = manifest.shard_paths(target, "train")[DAMAGED_SHARD]
    offset, length = record_offsets(path)[DAMAGED_RECORD]
    with open(path, "r+b") as f:
        f.seek(offset + length // 2)
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    return target


def _images(ds):
    return [x.tobytes() for batch, _ in ds for x in batch.numpy()]


def _shard_images(data_dir, index):
    manifest = schema.read_manifest(data_dir)
    path = manifest.shard_paths(data_dir, "train")[index]
    spec = {schema.IMAGE_KEY: schema.tf_feature_spec()[schema.IMAGE_KEY]}
    return [tf.io.parse_single_example(r, spec)[schema.IMAGE_KEY].numpy()
            for r in tf.data.TFRecordDataset(path)]


def test_fail_is_the_default_and_stops_with_data_loss(damaged_dir):
    ds = dataset.make_dataset(damaged_dir, "train", batch_size=4, training=False)
    with pytest.raises(tf.errors.DataLossError):
        _images(ds)


@pytest.mark.parametrize("cache", [None, "memory"])
def test_skip_loses_only_the_damaged_shards_tail_and_says_which(damaged_dir, clean_dir, cache,
                                                                 caplog):
    manifest = schema.read_manifest(damaged_dir)
    shard = manifest.split("train").shards[DAMAGED_SHARD]
    lost = shard.count - DAMAGED_RECORD
    with caplog.at_level(logging.WARNING):
        ds = dataset.make_dataset(damaged_dir, "train", batch_size=1, training=False,
                                  cache=cache, on_corrupt="skip", max_corrupt_fraction=0.5)
    assert f"shard {shard.file} is damaged at record {DAMAGED_RECORD}" in caplog.text
    assert f"{lost} lost" in caplog.text
    assert int(ds.cardinality()) == manifest.split("train").count - lost
    read = _images(ds)
    expected = [image for index in range(len(manifest.split("train").shards))
                for image in _shard_images(clean_dir, index)[
                    :DAMAGED_RECORD if index == DAMAGED_SHARD else None]]
    assert read == expected  # everything else, in order, and nothing after the damage


def test_skip_while_training_reads_every_intact_record(damaged_dir):
    manifest = schema.read_manifest(damaged_dir)
    shard = manifest.split("train").shards[DAMAGED_SHARD]
    keep = manifest.split("train").count - (shard.count - DAMAGED_RECORD)
    ds = dataset.make_dataset(damaged_dir, "train", batch_size=keep, seed=1, augment=None,
                              on_corrupt="skip", max_corrupt_fraction=0.5)
    images = _images(ds)
    assert len(images) == len(set(images)) == keep


def test_skip_fails_past_the_threshold(damaged_dir):
    with pytest.raises(dataset.DatasetError, match="more than max_corrupt_fraction=0.01"):
        dataset.make_dataset(damaged_dir, "train", batch_size=4, on_corrupt="skip")
    with pytest.raises(dataset.DatasetError, match="on_corrupt='ignore'"):
        dataset.make_dataset(damaged_dir, "train", on_corrupt="ignore")


def test_a_truncated_shard_is_skipped_from_where_it_breaks(clean_dir, tmp_path):
    target = str(tmp_path / "cut")
    shutil.copytree(clean_dir, target)
    manifest = schema.read_manifest(target)
    path = manifest.shard_paths(target, "train")[0]
    offset, _ = record_offsets(path)[5]
    with open(path, "r+b") as f:
        f.truncate(offset + 10)  # inside record 5
    ds = dataset.make_dataset(target, "train", batch_size=1, training=False,
                              on_corrupt="skip", max_corrupt_fraction=0.5)
    lost = manifest.split("train").shards[0].count - 5
    assert len(_images(ds)) == manifest.split("train").count - lost


def test_trainer_names_the_damaged_shard(damaged_dir, tmp_path):
    manifest = schema.read_manifest(damaged_dir)
    name = manifest.split("train").shards[DAMAGED_SHARD].file
    tiny = dict(depth=10, width=4, stem="small", batch_size=4, warmup_epochs=0, cache=None,
                epochs=1, verbose=0, augment=None)
    with pytest.raises(TrainingError, match=f"{name}: record {DAMAGED_RECORD}"):
        training.train_and_evaluate(data_dir=damaged_dir, workdir=str(tmp_path / "a"), **tiny)
    metrics = training.train_and_evaluate(data_dir=damaged_dir, workdir=str(tmp_path / "b"),
                                          on_corrupt="skip", max_corrupt_fraction=0.5,
                                          **tiny)
    assert np.isfinite(metrics["val_loss"])
    assert os.path.exists(os.path.join(tmp_path, "b", run_files.MODEL_FILE))
