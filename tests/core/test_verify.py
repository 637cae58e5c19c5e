"""pipeline.verify: a clean dataset passes; each kind of damage is named by shard and record."""

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, command_help, write_csv, write_images
from pipeline import errors
from pipeline import verify as verify_command
from pipeline.core import integrity, records, schema, streams
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset

IMAGE_SIZE = 8
IMAGE_BYTES = 3 * IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 3  # write_images' default classes


def _write(root, compression):
    """40 labeled 8x8 images (3 train shards + 1 val) and 8 unlabeled ones (1 test shard)."""
    rows = write_images(str(root / "src"), 48, size=(IMAGE_SIZE, IMAGE_SIZE))
    write_csv(root / "src" / "train.csv", ["image", "label"], rows[:40])
    write_csv(root / "src" / "test.csv", ["image"], [(path,) for path, _ in rows[40:]])
    write_dataset(WriteConfig(
        output_dir=str(root / "out"), input=str(root / "src" / "train.csv"),
        test_input=str(root / "src" / "test.csv"), image_size=IMAGE_SIZE, shards=3,
        val_shards=1, test_shards=1, val_fraction=0.25, compression=compression, num_workers=1,
        show_progress=False))
    return str(root / "out")


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("plain"), "NONE")


@pytest.fixture(scope="module")
def gzip_dir(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("gzip"), "GZIP")


@pytest.fixture
def copy_of(tmp_path):
    """A fresh copy of a dataset directory, to damage."""
    def copy(data_dir):
        return shutil.copytree(data_dir, str(tmp_path / "copy"))
    return copy


def _first_train_shard(data_dir):
    shard = schema.read_manifest(data_dir).split(schema.TRAIN).shards[0]
    assert shard.count >= 4, "the damage tests need a few records in the shard"
    return shard.file, os.path.join(data_dir, shard.file)


def _record_spans(path):
    """[(offset of the data, data length)] of an uncompressed shard, scanned independently of
    the code under test: each record is length (8 bytes LE), length CRC (4), data, CRC (4)."""
    with open(path, "rb") as f:
        content = f.read()
    spans, offset = [], 0
    while offset < len(content):
        (length,) = struct.unpack_from("<Q", content, offset)
        spans.append((offset + 12, length))
        offset += 12 + length + 4
    return spans


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _problems_of(report, name):
    return [problem for problem in report.problems if problem.file == name]


# ---------------------------------------------------------------------------------------------
# Library
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [1, 2])
def test_clean_dataset_has_no_problems(clean_dir, num_workers):
    manifest = schema.read_manifest(clean_dir)
    report = integrity.verify_dataset(clean_dir, num_workers=num_workers)
    assert report.problems == ()
    assert report.ok
    assert report.splits == tuple(manifest.splits)
    assert report.records == report.expected_records == sum(
        info.count for info in manifest.splits.values())
    assert report.shards == sum(len(info.shards) for info in manifest.splits.values())
    assert report.bytes_read == sum(
        shard.bytes for info in manifest.splits.values() for shard in info.shards)


def test_gzip_dataset_verifies_clean(gzip_dir):
    manifest = schema.read_manifest(gzip_dir)
    assert manifest.compression == "GZIP"
    report = integrity.verify_dataset(gzip_dir, num_workers=1)
    assert report.problems == ()
    assert report.records == sum(info.count for info in manifest.splits.values())


def test_flipped_image_byte_is_named_by_shard_and_record(clean_dir, copy_of):
    data_dir = copy_of(clean_dir)
    name, path = _first_train_shard(data_dir)
    index = 2
    start, length = _record_spans(path)[index]
    # The image is one contiguous run of more than half the payload, so it holds the middle.
    assert IMAGE_BYTES > length / 2
    _flip_byte(path, start + length // 2)

    problems = _problems_of(integrity.verify_dataset(data_dir, num_workers=1), name)
    crc = [p for p in problems if "CRC" in p.message]
    assert len(crc) == 1 and crc[0].record == index, problems
    assert f"{name}: record {index}: " in str(crc[0])
    # The file's hash differs too; that problem has no record index.
    assert any("sha256" in p.message and p.record is None for p in problems), problems


def test_truncated_shard_names_the_record_where_it_ends(clean_dir, copy_of):
    data_dir = copy_of(clean_dir)
    name, path = _first_train_shard(data_dir)
    index = 3
    start, length = _record_spans(path)[index]
    size = start + length // 2
    os.truncate(path, size)

    problems = _problems_of(integrity.verify_dataset(data_dir, num_workers=1), name)
    assert any(p.record == index and "truncated" in p.message for p in problems), problems
    assert any(p.record is None and f"size {size} bytes" in p.message for p in problems)


def test_truncated_header_names_the_record(clean_dir, copy_of):
    data_dir = copy_of(clean_dir)
    name, path = _first_train_shard(data_dir)
    start, _ = _record_spans(path)[1]
    os.truncate(path, start - 12 + 5)  # five bytes of record 1's 12-byte header remain

    problems = _problems_of(integrity.verify_dataset(data_dir, num_workers=1), name)
    assert any(p.record == 1 and "truncated" in p.message for p in problems), problems


def test_missing_shard_is_a_problem_not_a_crash(clean_dir, copy_of):
    data_dir = copy_of(clean_dir)
    name, path = _first_train_shard(data_dir)
    os.remove(path)

    report = integrity.verify_dataset(data_dir, num_workers=1)
    assert [(p.file, p.record) for p in report.problems] == [(name, None)]
    assert "missing" in report.problems[0].message
    # Every other shard is still read.
    shard_count = schema.read_manifest(data_dir).split(schema.TRAIN).shards[0].count
    assert report.records == report.expected_records - shard_count


def test_record_count_disagreeing_with_manifest(clean_dir, copy_of):
    data_dir = copy_of(clean_dir)
    name, _ = _first_train_shard(data_dir)
    manifest_file = schema.manifest_path(data_dir)
    with open(manifest_file, encoding="utf-8") as f:
        doc = json.load(f)
    train = doc["splits"][schema.TRAIN]
    actual = train["shards"][0]["count"]
    # The split total must still add up, or the manifest itself is rejected (exit 2).
    train["shards"][0]["count"] += 1
    train["count"] += 1
    with open(manifest_file, "w", encoding="utf-8") as f:
        json.dump(doc, f)

    report = integrity.verify_dataset(data_dir, num_workers=1)
    assert [str(p) for p in report.problems][:1] == [
        f"{name}: {actual} records, manifest says {actual + 1}"]
    # The index, written with the shard, disagrees with the edited entry too: its own line.
    assert len(report.problems) == 2 and report.problems[1].file == name + ".offsets"
    assert f"{actual} records" in str(report.problems[1]) and "entry" in str(report.problems[1])


def test_wrong_image_size_lists_a_bounded_number_of_records(clean_dir, copy_of, monkeypatch):
    monkeypatch.setattr(integrity, "MAX_RECORD_PROBLEMS_PER_SHARD", 2)  # in-process: num_workers=1
    data_dir = copy_of(clean_dir)
    name, _ = _first_train_shard(data_dir)
    manifest_file = schema.manifest_path(data_dir)
    with open(manifest_file, encoding="utf-8") as f:
        doc = json.load(f)
    doc["image_shape"] = [3, IMAGE_SIZE, IMAGE_SIZE + 1]
    with open(manifest_file, "w", encoding="utf-8") as f:
        json.dump(doc, f)

    report = integrity.verify_dataset(data_dir, splits=[schema.TRAIN], num_workers=1)
    problems = _problems_of(report, name)
    count = doc["splits"][schema.TRAIN]["shards"][0]["count"]
    assert [p.record for p in problems] == [0, 1, None]
    assert problems[0].message == f"image is {IMAGE_BYTES} bytes, manifest says {IMAGE_BYTES + 24}"
    assert problems[2].message == f"{count - 2} more bad record(s) not listed"


def test_corrupt_gzip_shard_is_named(gzip_dir, copy_of):
    data_dir = copy_of(gzip_dir)
    name, path = _first_train_shard(data_dir)
    _flip_byte(path, os.path.getsize(path) // 2)

    problems = _problems_of(integrity.verify_dataset(data_dir, num_workers=1), name)
    assert any(p.record is not None for p in problems), problems


def test_truncated_gzip_shard_is_named(gzip_dir, copy_of):
    data_dir = copy_of(gzip_dir)
    name, path = _first_train_shard(data_dir)
    os.truncate(path, os.path.getsize(path) - 20)  # into the last record's deflate data

    problems = _problems_of(integrity.verify_dataset(data_dir, num_workers=1), name)
    assert problems, "a cut gzip shard must be reported"
    assert any(p.record is not None and "truncated" in p.message for p in problems), problems


def test_bytes_after_the_gzip_stream_are_reported(gzip_dir, copy_of):
    data_dir = copy_of(gzip_dir)
    name, path = _first_train_shard(data_dir)
    with open(path, "ab") as f:
        f.write(b"junk")

    problems = _problems_of(integrity.verify_dataset(data_dir, num_workers=1), name)
    assert any(p.message == "4 bytes after the end of the GZIP stream" for p in problems), problems


def test_gzip_stream_without_its_end_is_reported(tmp_path):
    """Every record intact, but the stream's end (and CRC trailer) is missing."""
    import io

    buffer = io.BytesIO()
    writer = records.RecordWriter(buffer, "GZIP")
    for label in range(3):
        writer.write(records.encode_example(bytes(IMAGE_BYTES), label, f"{label}.png"))
    size, sha256 = writer.close()
    name = "train-00000-of-00001.tfrecord.gz"
    (tmp_path / name).write_bytes(buffer.getvalue()[:-8])  # the gzip trailer is 8 bytes
    task = integrity.ShardTask(str(tmp_path), schema.ShardInfo(name, 3, size, sha256), "GZIP",
                            IMAGE_BYTES, NUM_CLASSES)

    report = integrity.check_shard(task)
    assert report.records == 3
    assert [p.message for p in report.problems] == [
        f"size {size - 8} bytes, manifest says {size}",
        "the GZIP stream ends early, after 3 records: the file is cut short"]


@pytest.mark.parametrize("compression", ["NONE", "GZIP"])
def test_reads_in_small_pieces_give_the_same_result(clean_dir, gzip_dir, monkeypatch,
                                                   compression):
    """Every record spans several bounded reads (in-process, so the patch applies)."""
    monkeypatch.setattr(streams, "READ_CHUNK_BYTES", 7)
    data_dir = clean_dir if compression == "NONE" else gzip_dir
    report = integrity.verify_dataset(data_dir, num_workers=1)
    assert report.problems == ()
    assert report.records == report.expected_records


def test_only_the_asked_splits_are_checked(clean_dir):
    manifest = schema.read_manifest(clean_dir)
    report = integrity.verify_dataset(clean_dir, splits=[schema.VAL, schema.VAL], num_workers=1)
    assert report.splits == (schema.VAL,)
    assert report.shards == len(manifest.split(schema.VAL).shards)
    assert report.records == manifest.split(schema.VAL).count
    with pytest.raises(integrity.UnusableInput, match="nope.*train"):
        integrity.verify_dataset(clean_dir, splits=["nope"])


def test_no_manifest_is_unusable(tmp_path):
    with pytest.raises(integrity.UnusableInput, match="no dataset.json"):
        integrity.verify_dataset(str(tmp_path))
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(integrity.UnusableInput, match="is a file, not a dataset directory"):
        integrity.verify_dataset(str(tmp_path / "file"))


# ---------------------------------------------------------------------------------------------
# One record's contents
# ---------------------------------------------------------------------------------------------


def _check(payload):
    return integrity.record_problem(payload, image_bytes=IMAGE_BYTES, num_classes=NUM_CLASSES)


def test_record_problem_accepts_labeled_and_unlabeled_records():
    image = bytes(range(IMAGE_BYTES))
    assert _check(records.encode_example(image, NUM_CLASSES - 1, "a.png")) is None
    assert _check(records.encode_example(image, schema.UNLABELED, "b.png")) is None


def test_record_problem_names_what_is_wrong():
    image = bytes(IMAGE_BYTES)
    assert "label 3 out of range" in _check(records.encode_example(image, NUM_CLASSES, "a.png"))
    assert "label -2 out of range" in _check(records.encode_example(image, -2, "a.png"))
    assert _check(records.encode_example(image[:-1], 0, "a.png")) == (
        f"image is {IMAGE_BYTES - 1} bytes, manifest says {IMAGE_BYTES}")
    assert "not a tf.train.Example" in _check(b"\x0a\xff\xff")  # a length past the end


def test_record_problem_names_a_missing_or_mistyped_feature():
    # A hand-built Example (the same message as tf.train.Example, without TensorFlow).
    from tensorflow_datasets.proto import tf_example_pb2, tf_feature_pb2

    def example(**features):
        return tf_example_pb2.Example(features=tf_feature_pb2.Features(feature=features)) \
            .SerializeToString()

    image = tf_feature_pb2.Feature(bytes_list=tf_feature_pb2.BytesList(value=[bytes(IMAGE_BYTES)]))
    assert _check(example(image=image)) == "no 'label' feature"
    float_label = tf_feature_pb2.Feature(float_list=tf_feature_pb2.FloatList(value=[1.0]))
    assert _check(example(image=image, label=float_label)) == (
        "'label' is float_list, expected int64_list")
    two_labels = tf_feature_pb2.Feature(int64_list=tf_feature_pb2.Int64List(value=[0, 1]))
    assert _check(example(image=image, label=two_labels)) == "'label' holds 2 values, expected 1"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _run(*args):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    return subprocess.run([sys.executable, "-m", "pipeline.verify", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_output(clean_dir, copy_of, tmp_path):
    clean = _run(clean_dir)  # default workers: one per CPU, through the forkserver
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.count("\n") == 1 and "no problems" in clean.stdout

    data_dir = copy_of(clean_dir)
    name, path = _first_train_shard(data_dir)
    start, length = _record_spans(path)[1]
    _flip_byte(path, start + length // 2)
    damaged = _run(data_dir, "--num_workers=2")
    assert damaged.returncode == errors.EXIT_FAILED, damaged.stderr
    assert f"{name}: record 1: " in damaged.stdout
    assert "problem(s)" in damaged.stdout.splitlines()[-1]

    empty = tmp_path / "empty"
    empty.mkdir()
    unusable = _run(str(empty))
    assert unusable.returncode == errors.EXIT_USAGE
    assert "no dataset.json" in unusable.stderr
    assert unusable.stdout == ""


@pytest.mark.parametrize("args", [[], ["a", "b"], ["--num_workers=-1", "x"], ["--bogus", "x"]])
def test_cli_bad_arguments_exit_2(args):
    result = _run(*args)
    assert result.returncode == errors.EXIT_USAGE, (result.stdout, result.stderr)


def test_importing_defines_no_flags_and_helpfull_documents_them():
    from absl import flags

    assert verify_command.__name__ not in flags.FLAGS.flags_by_module_dict()
    assert integrity.__name__ not in flags.FLAGS.flags_by_module_dict()
    help_text = command_help("verify").stdout
    assert "--split" in help_text and "--num_workers" in help_text
