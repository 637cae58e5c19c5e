"""The record index (`<shard>.offsets`): what the writer stores is where each record, its image
and its label really are, and a dataset without one gets it built, once."""

import dataclasses
import errno
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_labeled_dataset
from pipeline.core import index_scan, record_fields, record_index, records, schema


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_labeled_dataset(tmp_path_factory.mktemp("index"), 30, "out", shards=3,
                                 val_fraction=0.2)


def _shards(data_dir):
    manifest = schema.read_manifest(data_dir)
    return manifest, [shard for info in manifest.splits.values() for shard in info.shards]


def test_the_writer_indexes_every_record_where_tensorflow_finds_it(data_dir):
    manifest, shards = _shards(data_dir)
    for shard in shards:
        index = record_index.read(os.path.join(data_dir, shard.file + ".offsets"))
        assert index.matches(shard, manifest.image_bytes)
        content = open(os.path.join(data_dir, shard.file), "rb").read()
        parsed = [tf.io.parse_single_example(r, schema.tf_feature_spec())
                  for r in tf.data.TFRecordDataset(os.path.join(data_dir, shard.file))]
        assert index.records == len(parsed) == shard.count
        for (offset, length, image_offset, label_offset, crc), example in zip(index.table,
                                                                               parsed):
            data = content[offset + records.HEADER_BYTES:offset + records.HEADER_BYTES + length]
            image = data[image_offset:image_offset + manifest.image_bytes]
            assert image == example["image"].numpy()
            assert record_fields.decode_int64(data, label_offset) == int(example["label"])
            footer = offset + records.HEADER_BYTES + length
            assert crc == int.from_bytes(content[footer:footer + 4], "little")
            assert crc == records.mask_crc(records.crc32c(data))


def test_a_scan_of_the_shard_finds_the_same_table(data_dir):
    manifest, shards = _shards(data_dir)
    for shard in shards:
        table, problem, *_ = index_scan.scan_shard(os.path.join(data_dir, shard.file),
                                                 manifest.image_bytes)
        written = record_index.read(os.path.join(data_dir, shard.file + ".offsets")).table
        assert problem is None
        np.testing.assert_array_equal(table, written)


def test_a_shard_written_by_tensorflow_is_scanned_whatever_its_field_order(tmp_path):
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for label in (3, -1, 300):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "extra": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5])),
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[bytes([label % 256]) * 12])),
            })).SerializeToString())
    table, problem, *_ = index_scan.scan_shard(path, 12)
    assert problem is None and table.shape == (3, 5)
    content = open(path, "rb").read()
    for (offset, length, image_offset, label_offset, _), label in zip(table, (3, -1, 300)):
        data = content[offset + 12:offset + 12 + length]
        assert data[image_offset:image_offset + 12] == bytes([label % 256]) * 12
        assert record_fields.decode_int64(data, label_offset) == label
    # The wrong image size is named, with the record.
    _, problem, *_ = index_scan.scan_shard(path, 11)
    assert problem.record == 0 and "image is 12 bytes, manifest says 11" in problem.message


def test_a_scan_stops_at_the_first_broken_record(tmp_path, data_dir):
    manifest, shards = _shards(data_dir)
    shard = shards[0]
    content = bytearray(open(os.path.join(data_dir, shard.file), "rb").read())
    index = record_index.read(os.path.join(data_dir, shard.file + ".offsets"))
    content[int(index.table[2, 0]) + 3] ^= 0xFF  # the third record's length field
    (tmp_path / shard.file).write_bytes(bytes(content))
    table, problem, *_ = index_scan.scan_shard(str(tmp_path / shard.file), manifest.image_bytes)
    assert table.shape[0] == 2
    assert (problem.record, problem.message) == (2, "length CRC mismatch")


def test_a_missing_index_is_built_again_once_and_saved(data_dir, tmp_path, caplog):
    manifest, shards = _shards(data_dir)
    shard = shards[0]
    old = tmp_path / "old"
    old.mkdir()
    os.link(os.path.join(data_dir, shard.file), old / shard.file)
    loaded = record_index.load_or_build(str(old), shard, manifest.image_bytes)
    assert loaded.built and loaded.problem is None
    saved = old / (shard.file + ".offsets")
    assert saved.read_bytes() == open(os.path.join(data_dir, shard.file + ".offsets"),
                                      "rb").read()
    assert record_index.digest(loaded.index) == shard.index_sha256
    assert not record_index.load_or_build(str(old), shard, manifest.image_bytes).built
    # A stale index (a format 1 manifest listing another version of the shard) is built again.
    other = dataclasses.replace(shard, sha256="0" * 64, index_sha256=None)
    assert record_index.load_or_build(str(old), other, manifest.image_bytes).built
    # With format 2, an index built again that is not the listed one is an error.
    other = dataclasses.replace(shard, sha256="0" * 64)
    with pytest.raises(record_index.IndexMismatch, match=shard.file):
        record_index.load_or_build(str(old), other, manifest.image_bytes)


def test_a_read_only_dataset_gets_its_index_in_memory_with_a_warning(data_dir, tmp_path,
                                                                      caplog, monkeypatch):
    manifest, shards = _shards(data_dir)
    shard = shards[0]
    folder = tmp_path / "readonly"
    folder.mkdir()
    os.link(os.path.join(data_dir, shard.file), folder / shard.file)

    def read_only(path, data):  # what a read-only file system answers (tests run as root)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(record_index.files, "atomic_write_bytes", read_only)
    with caplog.at_level(logging.WARNING):
        loaded = record_index.load_or_build(str(folder), shard, manifest.image_bytes)
    assert loaded.index.records == shard.count and loaded.built
    assert "cannot save the record index" in caplog.text and "Read-only" in caplog.text
    assert not (folder / (shard.file + ".offsets")).exists()


def test_garbage_is_not_an_index(tmp_path):
    with pytest.raises(schema.FormatError, match="wrong magic"):
        record_index.decode(b"not an index at all", "x.offsets")
    index = record_index.RecordIndex("s.tfrecord", 10, "ab", 4, np.zeros((2, 5), np.int64))
    data = record_index.encode(index)
    assert record_index.decode(data, "x").table.shape == (2, 5)
    with pytest.raises(schema.FormatError, match=r"\(1 rows\), header says 2 rows"):
        record_index.decode(data[:-40], "x")
    with pytest.raises(schema.FormatError, match="header says 2 rows"):
        record_index.decode(data[:-8], "x")
