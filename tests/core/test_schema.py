"""The record format: our hand encoding against TensorFlow's, in both directions."""

import dataclasses
import io
import json
import struct

import numpy as np
import pytest
import tensorflow as tf

from pipeline.core import records, schema
from pipeline.writing import finish


def _tf_example(image: bytes, label: int, path: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.encode()])),
    })).SerializeToString(deterministic=True)


@pytest.mark.parametrize("label", [0, 1, 127, 128, 300, 2**40, -1])
@pytest.mark.parametrize("path", ["a.jpg", "dir/ünïcode name.png", ""])
def test_encode_example_matches_tensorflow_bytes(label, path):
    image = bytes(range(256)) * 3
    assert records.encode_example(image, label, path) == _tf_example(image, label, path)


def test_encode_example_parses_with_feature_spec():
    chw = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    record = records.encode_example(chw.tobytes(), 7, "x/y.png")
    parsed = tf.io.parse_single_example(record, schema.tf_feature_spec())
    image = np.frombuffer(parsed["image"].numpy(), np.uint8).reshape(3, 4, 5)
    np.testing.assert_array_equal(image, chw)
    assert parsed["label"].numpy() == 7
    assert parsed["path"].numpy() == b"x/y.png"


def test_parse_reports_missing_feature():
    without_label = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\0"])),
    })).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="label"):
        tf.io.parse_single_example(without_label, schema.tf_feature_spec())


@pytest.mark.parametrize("compression", ["NONE", "GZIP", "ZLIB"])
def test_record_writer_is_read_by_tfrecorddataset(tmp_path, compression):
    payloads = [records.encode_example(bytes([i]) * 10, i, f"{i}.png") for i in range(5)]
    path = tmp_path / schema.shard_filename("train", 0, 1, compression)
    with open(path, "wb") as f:
        writer = records.RecordWriter(f, compression)
        for payload in payloads:
            writer.write(payload)
        size, sha = writer.close()
    data = path.read_bytes()
    assert size == len(data)
    import hashlib
    assert sha == hashlib.sha256(data).hexdigest()
    read = [r.numpy() for r in tf.data.TFRecordDataset(
        str(path), compression_type=schema.tf_compression_type(compression))]
    assert read == payloads


def test_compressed_output_is_deterministic(tmp_path):
    outputs = []
    for attempt in range(2):
        buffer = io.BytesIO()
        writer = records.RecordWriter(buffer, "GZIP")
        writer.write(b"payload" * 100)
        writer.close()
        outputs.append(buffer.getvalue())
    assert outputs[0] == outputs[1]


def test_frame_record_matches_tf_writer(tmp_path):
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(b"hello")
        w.write(b"")
    with open(path, "rb") as f:
        expected = f.read()
    assert records.frame_record(b"hello") + records.frame_record(b"") == expected


def test_iter_framed_records_detects_corruption():
    good = records.frame_record(b"abc") + records.frame_record(b"defg")
    assert list(records.iter_framed_records(io.BytesIO(good))) == [b"abc", b"defg"]
    flipped = bytearray(good)
    flipped[13] ^= 0xFF  # inside the first payload
    with pytest.raises(schema.FormatError, match="record 0: data CRC"):
        list(records.iter_framed_records(io.BytesIO(bytes(flipped))))
    with pytest.raises(schema.FormatError, match="record 1: truncated"):
        list(records.iter_framed_records(io.BytesIO(good[:-3])))


def test_shard_filename():
    assert schema.shard_filename("train", 3, 36) == "train-00003-of-00036.tfrecord"
    assert schema.shard_filename("val", 0, 1, "GZIP") == "val-00000-of-00001.tfrecord.gz"
    with pytest.raises(ValueError, match="out of range"):
        schema.shard_filename("train", 36, 36)
    with pytest.raises(ValueError, match="unknown compression"):
        schema.shard_filename("train", 0, 1, "LZ4")


def _manifest():
    shards = (schema.ShardInfo("train-00000-of-00002.tfrecord", 2, 100, "ab", index_sha256="e"),
              schema.ShardInfo("train-00001-of-00002.tfrecord", 1, 50, "cd", index_sha256="f"))
    return schema.Manifest(
        image_shape=(3, 8, 8), classes=("cat", "dog"),
        splits={"train": schema.SplitInfo(3, shards, {"cat": 2, "dog": 1})},
        mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0), flags={"seed": 0}, fingerprint="f",
    )


def test_manifest_round_trip(tmp_path):
    manifest = _manifest()
    (tmp_path / "dataset.json").write_text(manifest.to_json())
    loaded = schema.read_manifest(str(tmp_path))
    assert loaded == manifest
    assert loaded.num_classes == 2 and loaded.image_bytes == 192
    assert loaded.shard_paths("d", "train") == ["d/train-00000-of-00002.tfrecord",
                                                 "d/train-00001-of-00002.tfrecord"]
    with pytest.raises(schema.FormatError, match="split 'val' is not in this dataset"):
        loaded.split("val")


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(schema.FormatError, match="pipeline.write"):
        schema.read_manifest(str(tmp_path))
    doc = json.loads(_manifest().to_json())
    doc["format_version"] = 99
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(schema.FormatError, match="format_version 99"):
        schema.read_manifest(str(tmp_path))
    doc = json.loads(_manifest().to_json())
    doc["splits"]["train"]["count"] = 4
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(schema.FormatError, match="count=4 but its shards hold 3"):
        schema.read_manifest(str(tmp_path))
    doc = json.loads(_manifest().to_json())
    del doc["splits"]["train"]["shards"][1]["index_sha256"]  # format 2 ties every index
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(schema.FormatError, match="00001-of-00002.tfrecord needs an index_sha256"):
        schema.read_manifest(str(tmp_path))


def test_a_format_1_manifest_reads_without_index_digests(tmp_path):
    doc = json.loads(_manifest().to_json())
    doc["format_version"] = 1
    for shard in doc["splits"]["train"]["shards"]:
        del shard["index_sha256"]
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    loaded = schema.read_manifest(str(tmp_path))
    assert loaded.format_version == 1
    assert [shard.index_sha256 for shard in loaded.split("train").shards] == [None, None]
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(schema.FormatError, match="not valid JSON"):
        schema.read_manifest(str(tmp_path))


def test_channel_stats_are_exact():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 1000), dtype=np.int64)
    mean, std = finish.channel_stats(pixels.sum(1).tolist(), (pixels**2).sum(1).tolist(), 1000)
    np.testing.assert_allclose(mean, pixels.mean(1), atol=1e-4)
    np.testing.assert_allclose(std, pixels.std(1), atol=1e-4)
    assert finish.channel_stats([0, 0, 0], [0, 0, 0], 0) == (None, None)


def test_framing_length_is_little_endian():
    framed = records.frame_record(b"x" * 300)
    assert struct.unpack("<Q", framed[:8])[0] == 300


def test_the_test_rows_without_a_record_round_trip_and_are_checked(tmp_path):
    from pipeline.core.test_rows import MissingRow

    test = schema.ShardInfo("test-00000-of-00001.tfrecord", 2, 10, "ab", index_sha256="e")
    manifest = dataclasses.replace(
        _manifest(), splits={**_manifest().splits, "test": schema.SplitInfo(2, (test,), {})},
        missing_test=(MissingRow(0, "a.png"), MissingRow(3, "b, ü.png")))
    (tmp_path / "dataset.json").write_text(manifest.to_json())
    loaded = schema.read_manifest(str(tmp_path))
    assert loaded == manifest and loaded.format_version == schema.FORMAT_VERSION
    assert json.loads(manifest.to_json())["missing_test"] == [
        {"row": 0, "path": "a.png"}, {"row": 3, "path": "b, ü.png"}]
    assert "missing_test" not in json.loads(_manifest().to_json())  # absent when none
    for rows, error in (([4], r"among the test CSV's 3 rows"), ([1, 1], "distinct increasing"),
                        ([2, 0], "distinct increasing")):
        doc = json.loads(manifest.to_json())
        doc["missing_test"] = [{"row": row, "path": "x.png"} for row in rows]
        (tmp_path / "dataset.json").write_text(json.dumps(doc))
        with pytest.raises(schema.FormatError, match=error):
            schema.read_manifest(str(tmp_path))
    doc = json.loads(manifest.to_json())
    del doc["splits"]["test"]
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(schema.FormatError, match="there is no test split"):
        schema.read_manifest(str(tmp_path))
