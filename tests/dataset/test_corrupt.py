"""Damaged records, read every way (streaming, random access, the in-memory table):
on_corrupt="fail" names the shard file and the record, in make_dataset and in the trainer;
"skip" leaves out what is damaged (random access and the table exactly the damaged records,
streaming the damaged shard's tail) and says so; a threshold bounds the loss. Never a hang."""

import logging
import os
import re
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_labeled_dataset
from pipeline import dataset, training
from pipeline.core import record_fields, records, schema
from pipeline.dataset import damaged
from pipeline.training import run_files
from pipeline.training.settings import TrainingError

DAMAGED_SHARD = 1
DAMAGED_RECORD = 3  # 0-based, inside DAMAGED_SHARD
CUT_RECORD = 5  # "cut": the file ends inside this record of DAMAGED_SHARD
BAD_LABEL = 100
# How make_dataset is asked to read: each is one of the three ways.
READS = {"stream": dict(access="stream"), "random": dict(access="random"),
         "table": dict(cache="memory")}
# What each damage says, whichever the read.
PROBLEMS = {"flipped": "CRC", "label": f"label {BAD_LABEL} out of range",
            "cut": ("truncated", "cannot be read")}


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


def flip_a_byte(path):
    offset, length = record_offsets(path)[DAMAGED_RECORD]
    with open(path, "r+b") as f:
        f.seek(offset + length // 2)  # inside the image
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0xFF]))


def set_a_bad_label(path):
    """Label BAD_LABEL in record DAMAGED_RECORD, its CRC made right again: only the label
    check can find it."""
    offset, length = record_offsets(path)[DAMAGED_RECORD]
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(length))
        label_at = record_fields.layout_of(bytes(data)).label_offset
        assert data[label_at] < 0x80  # a one-byte varint
        data[label_at] = BAD_LABEL
        f.seek(offset)
        f.write(data + struct.pack("<I", records.mask_crc(records.crc32c(bytes(data)))))


def cut_short(path):
    offset, _ = record_offsets(path)[CUT_RECORD]
    with open(path, "r+b") as f:
        f.truncate(offset + 10)


DAMAGES = {"flipped": (flip_a_byte, DAMAGED_RECORD), "label": (set_a_bad_label, DAMAGED_RECORD),
           "cut": (cut_short, CUT_RECORD)}


@pytest.fixture(params=sorted(DAMAGES))
def damage(request):
    return request.param


@pytest.fixture
def damaged_dir(clean_dir, tmp_path, damage):
    """A copy with record DAMAGED_RECORD (CUT_RECORD when cut) of train shard DAMAGED_SHARD
    damaged."""
    target = str(tmp_path / "damaged")
    shutil.copytree(clean_dir, target)
    DAMAGES[damage][0](schema.read_manifest(target).shard_paths(target, "train")[DAMAGED_SHARD])
    return target


def _images(ds):
    return [x.tobytes() for batch, _ in ds for x in batch.numpy()]


def _shard_images(data_dir, index):
    manifest = schema.read_manifest(data_dir)
    path = manifest.shard_paths(data_dir, "train")[index]
    spec = {schema.IMAGE_KEY: schema.tf_feature_spec()[schema.IMAGE_KEY]}
    return [tf.io.parse_single_example(r, spec)[schema.IMAGE_KEY].numpy()
            for r in tf.data.TFRecordDataset(path)]


def failure(read):
    """What reading says when it stops: a DatasetError from make_dataset, or the damaged
    record named in the error that stops iterating."""
    try:
        read()
    except dataset.DatasetError as err:
        return str(err)
    except tf.errors.OpError as err:
        named = damaged.damage_named(err.message)
        assert named is not None, err.message
        return named
    pytest.fail("reading the damaged split did not fail")


def _names_the_damage(said, shard, record):
    """Checks that `said` names `record` of `shard` and the fix; False where it names, as a
    shuffled stream may, a record after it that could not be read past the damage."""
    assert "on_corrupt='skip'" in said, said
    named = re.search(f"{re.escape(shard)}: record ([0-9]+): ", said)
    assert named, said
    if damaged.UNREAD_AFTER_DAMAGE in said:
        assert int(named.group(1)) > record, said
        return False
    assert int(named.group(1)) == record, said
    return True


@pytest.mark.parametrize("read", sorted(READS))
def test_fail_is_the_default_and_names_the_shard_and_the_record(damaged_dir, damage, read):
    shard = schema.read_manifest(damaged_dir).split("train").shards[DAMAGED_SHARD].file
    record = DAMAGES[damage][1]
    for training_ in (False, True):  # batch_size=1: no record is dropped in training either
        said = failure(lambda: _images(dataset.make_dataset(
            damaged_dir, "train", batch_size=1, training=training_, augment=None,
            **READS[read])))
        if _names_the_damage(said, shard, record):
            assert any(words in said for words in np.atleast_1d(PROBLEMS[damage])), said


def _kept(damage, read, count):
    """Records of the damaged shard that "skip" keeps: all but the damaged one where each
    record is read at its place, all before it when streamed (or when the file is cut)."""
    first = DAMAGES[damage][1]
    if damage == "cut" or read == "stream":
        return list(range(first))
    return [r for r in range(count) if r != first]


@pytest.mark.parametrize("read", sorted(READS))
def test_skip_loses_only_what_is_damaged_and_says_which(damaged_dir, clean_dir, damage, read,
                                                        caplog):
    manifest = schema.read_manifest(damaged_dir)
    shard = manifest.split("train").shards[DAMAGED_SHARD]
    kept = _kept(damage, read, shard.count)
    with caplog.at_level(logging.WARNING):
        ds = dataset.make_dataset(damaged_dir, "train", batch_size=1, training=False,
                                  on_corrupt="skip", max_corrupt_fraction=0.5, **READS[read])
    assert f"shard {shard.file} is damaged" in caplog.text
    assert f"record {DAMAGES[damage][1]}" in caplog.text
    readable = manifest.split("train").count - shard.count + len(kept)
    assert int(ds.cardinality()) == readable
    skipping = dataset.ReadOptions(damaged=dataset.DamagedShards("skip", 0.5), **READS[read])
    plan = dataset.plan_read(damaged_dir, "train", False, skipping)
    assert dataset.readable_records(plan) == readable
    expected = []
    for index in range(len(manifest.split("train").shards)):
        images = _shard_images(clean_dir, index)
        expected += [images[r] for r in kept] if index == DAMAGED_SHARD else images
    assert _images(ds) == expected  # everything else, in order, and nothing damaged


@pytest.mark.parametrize("read", sorted(READS))
def test_skip_while_training_reads_every_intact_record_once(clean_dir, tmp_path, read):
    target = str(tmp_path / "damaged")
    shutil.copytree(clean_dir, target)
    manifest = schema.read_manifest(target)
    flip_a_byte(manifest.shard_paths(target, "train")[DAMAGED_SHARD])
    shard = manifest.split("train").shards[DAMAGED_SHARD]
    keep = manifest.split("train").count - shard.count + len(_kept("flipped", read,
                                                                   shard.count))
    ds = dataset.make_dataset(target, "train", batch_size=keep, seed=1, augment=None,
                              on_corrupt="skip", max_corrupt_fraction=0.5, **READS[read])
    images = _images(ds)
    assert len(images) == len(set(images)) == keep


@pytest.mark.parametrize("read", sorted(READS))
def test_skip_fails_past_the_threshold(clean_dir, tmp_path, read):
    target = str(tmp_path / "damaged")
    shutil.copytree(clean_dir, target)
    flip_a_byte(schema.read_manifest(target).shard_paths(target, "train")[DAMAGED_SHARD])
    with pytest.raises(dataset.DatasetError, match="more than max_corrupt_fraction=0.01"):
        dataset.make_dataset(target, "train", batch_size=4, on_corrupt="skip",
                             max_corrupt_fraction=0.01, **READS[read])
    with pytest.raises(dataset.DatasetError, match="on_corrupt='ignore'"):
        dataset.make_dataset(target, "train", on_corrupt="ignore", **READS[read])


# batch_size=1: training drops no remainder, so every record, the damaged one too, is read.
TINY = dict(depth=10, width=4, stem="small", batch_size=1, warmup_epochs=0, epochs=1,
            verbose=0, augment=None)


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.slow
def test_trainer_names_the_damaged_record(clean_dir, tmp_path, read):
    manifest = schema.read_manifest(clean_dir)
    name = manifest.split("train").shards[DAMAGED_SHARD].file
    trainer_read = {"cache": None, **READS[read]}
    for damage_name in ("flipped", "label"):
        target = str(tmp_path / damage_name / "data")
        shutil.copytree(clean_dir, target)
        DAMAGES[damage_name][0](manifest.shard_paths(target, "train")[DAMAGED_SHARD])
        with pytest.raises((TrainingError, dataset.DatasetError),
                           match=f"{name}: record ") as raised:  # a workdir each: no resume
            training.train_and_evaluate(data_dir=target, workdir=str(tmp_path / damage_name / "a"),
                                        **trainer_read, **TINY)
        _names_the_damage(str(raised.value), name, DAMAGED_RECORD)
    metrics = training.train_and_evaluate(data_dir=target, workdir=str(tmp_path / "b"),
                                          on_corrupt="skip", max_corrupt_fraction=0.5,
                                          **trainer_read, **TINY)
    assert np.isfinite(metrics["val_loss"])
    assert os.path.exists(os.path.join(tmp_path, "b", run_files.MODEL_FILE))
