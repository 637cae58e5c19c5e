"""One chain of trust: dataset.json -> each record index -> each record -> its image and label.

Whatever is wrong in an index or a shard, a read gives exactly the written bytes or stops
with an error naming the shard; never a wrong pixel, label or order. Each case here gave a
silently wrong result before the index was tied to dataset.json (format 2)."""

import dataclasses
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_batches as _same
from conftest import train_tiny, write_labeled_dataset
from pipeline import dataset
from pipeline.core import integrity, record_index, schema
from pipeline.dataset.options import DatasetError

R = record_index
# A wrong but well-formed index, as a buggy tool or a hand edit leaves it (row 1 of shard 1).
CORRUPTIONS = {
    "image offset shifted": lambda t: t.__setitem__((1, R.IMAGE_OFFSET), t[1, R.IMAGE_OFFSET] + 1),
    "label offset moved": lambda t: t.__setitem__((1, R.LABEL_OFFSET), t[1, R.LABEL_OFFSET] - 3),
    "row duplicated": lambda t: t.__setitem__(2, t[1]),
    "rows swapped": lambda t: t.__setitem__([0, 1], t[[1, 0]]),
}
# Those the rows' tiling catches at open; the others are caught at the record's read.
TILING = ("row duplicated", "rows swapped")
ACCESSES = ("random", "table", "stream")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two writes of the same 9 images (equal-length paths, so equal-size records) with other
    seeds: the same shard names and sizes, other bytes."""
    root = tmp_path_factory.mktemp("trust")
    clean = write_labeled_dataset(root, 9, "clean", shards=3, val_fraction=0.0, seed=1)
    other = write_labeled_dataset(root, 9, "other", shards=3, val_fraction=0.0, seed=2)
    return clean, other


def _copy(source, tmp_path):
    target = str(tmp_path / "data")
    shutil.copytree(source, target)
    return target


def _shard(data_dir, number=1):
    return schema.read_manifest(data_dir).split("train").shards[number]


def _index_path(data_dir, shard):
    return os.path.join(data_dir, schema.record_index_filename(shard.file, "NONE"))


def _edit_index(data_dir, change, *, in_manifest):
    """Apply `change` to shard 1's index table; with `in_manifest`, dataset.json's digest is
    made the new index's (what a buggy tool that rewrites both leaves)."""
    shard = _shard(data_dir)
    index = record_index.read(_index_path(data_dir, shard))
    table = index.table.copy()
    change(table)
    edited = dataclasses.replace(index, table=table)
    record_index.write(_index_path(data_dir, shard), edited)
    if in_manifest:
        path = schema.manifest_path(data_dir)
        doc = json.load(open(path))
        doc["splits"]["train"]["shards"][1]["index_sha256"] = record_index.digest(edited)
        open(path, "w").write(json.dumps(doc))
    return shard


def _read(data_dir, access, **options):
    kwargs = {"cache": "memory"} if access == "table" else {"access": access}
    ds = dataset.make_dataset(data_dir, "train", batch_size=3, training=False, **kwargs,
                              **options)
    return [(images.numpy(), labels.numpy()) for images, labels in ds]


def _raises_naming(shard, read):
    with pytest.raises((record_index.IndexMismatch, DatasetError,
                        tf.errors.InvalidArgumentError)) as raised:
        read()
    assert shard.file in str(raised.value) and record_index.MISMATCH in str(raised.value)


@pytest.mark.parametrize("access", ACCESSES)
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_an_index_not_in_the_manifest_is_built_again_and_the_clean_bytes_read(
        written, tmp_path, caplog, corruption, access):
    clean = _read(written[0], access)
    data_dir = _copy(written[0], tmp_path)
    shard = _edit_index(data_dir, CORRUPTIONS[corruption], in_manifest=False)
    with caplog.at_level(logging.WARNING):
        _same(_read(data_dir, access), clean)
    assert "does not hash to the index_sha256 dataset.json lists; built it again" in caplog.text
    with open(_index_path(written[0], shard), "rb") as f:
        assert open(_index_path(data_dir, shard), "rb").read() == f.read()  # repaired


@pytest.mark.parametrize("access", ACCESSES)
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_wrong_index_listed_in_the_manifest_stops_the_read_naming_the_shard(
        written, tmp_path, corruption, access):
    data_dir = _copy(written[0], tmp_path)
    shard = _edit_index(data_dir, CORRUPTIONS[corruption], in_manifest=True)
    if access == "stream" and corruption not in TILING:
        # A stream reads records in file order, never at the index's field offsets: what it
        # reads is the written bytes.
        _same(_read(data_dir, access), _read(written[0], access))
        return
    _raises_naming(shard, lambda: _read(data_dir, access))


def _swap_in_foreign_shard(clean, other, tmp_path, *, with_indexes):
    data_dir = _copy(clean, tmp_path)
    shard = _shard(data_dir)
    assert os.path.getsize(os.path.join(other, shard.file)) == shard.bytes
    names = [shard.file] + ([schema.record_index_filename(shard.file, "NONE"),
                             schema.dali_index_filename(shard.file, "NONE")] if with_indexes
                            else [])
    for name in names:
        shutil.copyfile(os.path.join(other, name), os.path.join(data_dir, name))
    return data_dir, shard


@pytest.mark.parametrize("with_indexes", [False, True], ids=["shard", "shard+indexes"])
@pytest.mark.parametrize("access", ACCESSES)
def test_a_foreign_shard_of_the_same_name_and_size_is_named(written, tmp_path, access,
                                                            with_indexes):
    data_dir, shard = _swap_in_foreign_shard(*written, tmp_path, with_indexes=with_indexes)
    _raises_naming(shard, lambda: _read(data_dir, access))
    if access == "random":  # skipping damaged records is no way around it
        _raises_naming(shard, lambda: _read(data_dir, access, on_corrupt="skip"))
    report = integrity.verify_dataset(data_dir, num_workers=1)
    assert not report.ok
    lines = {problem.file: str(problem) for problem in report.problems}
    assert "sha256" in lines[shard.file]
    # The index, ours or the other write's, is not the listed shard's either: its own line.
    index_line = lines[os.path.basename(_index_path(data_dir, shard))]
    assert ("sha256" in index_line) == with_indexes
    assert ("data_crc" in index_line) != with_indexes


def test_verify_names_a_bad_index_on_its_own_line_and_skip_drops_no_record(written,
                                                                           tmp_path):
    data_dir = _copy(written[0], tmp_path)
    shard = _edit_index(data_dir, CORRUPTIONS["rows swapped"], in_manifest=False)
    report = integrity.verify_dataset(data_dir, num_workers=1)
    index_file = os.path.basename(_index_path(data_dir, shard))
    assert report.problems and {p.file for p in report.problems} == {index_file}
    text = "\n".join(map(str, report.problems))
    assert "sha256" in text and "row 0 does not start where the record before it ends" in text
    assert "row 0 is not where the shard's record 0 lies" in text
    assert report.records == 9
    _same(_read(data_dir, "stream", on_corrupt="skip"), _read(written[0], "stream"))


def test_a_read_only_dataset_with_a_bad_index_reads_the_clean_bytes(written, tmp_path,
                                                                    caplog, monkeypatch):
    data_dir = _copy(written[0], tmp_path)
    _edit_index(data_dir, CORRUPTIONS["rows swapped"], in_manifest=False)

    def read_only(path, data):  # what a read-only file system answers (tests run as root)
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(record_index.files, "atomic_write_bytes", read_only)
    with caplog.at_level(logging.WARNING):
        _same(_read(data_dir, "random"), _read(written[0], "random"))
    assert "built it again" in caplog.text and "cannot save the record index" in caplog.text


def _to_format_1(data_dir):
    """The dataset as format 1 wrote it: no index digests, indexes without a CRC column."""
    path = schema.manifest_path(data_dir)
    doc = json.load(open(path))
    doc["format_version"] = 1
    for info in doc["splits"].values():
        for shard in info["shards"]:
            del shard["index_sha256"]
            index_path = os.path.join(data_dir, shard["file"] + schema.RECORD_INDEX_SUFFIX)
            index = record_index.read(index_path)
            header = json.dumps({"shard": index.shard, "bytes": index.bytes,
                                 "sha256": index.sha256, "records": index.records,
                                 "image_bytes": index.image_bytes,
                                 "columns": list(record_index.COLUMNS_V1)},
                                sort_keys=True).encode()
            open(index_path, "wb").write(
                record_index.MAGIC_V1 + len(header).to_bytes(4, "little") + header
                + np.ascontiguousarray(index.table[:, :4], "<i8").tobytes())
    open(path, "w").write(json.dumps(doc))


def test_a_format_1_dataset_reads_and_the_same_write_upgrades_it_in_place(tmp_path, info_logs):
    from conftest import tree_digest
    from pipeline.writing.settings import WriteConfig
    from pipeline.writing.writer import write_dataset

    data_dir = write_labeled_dataset(tmp_path, 9, "out", shards=3, val_fraction=0.0, seed=1)
    written = tree_digest(data_dir)
    expected = {access: _read(data_dir, access) for access in ("random", "stream")}
    _to_format_1(data_dir)
    assert record_index.read(_index_path(data_dir, _shard(data_dir))).table[0, 4] == -1
    for access, batches in expected.items():
        _same(_read(data_dir, access), batches)
    assert info_logs.text.count("is a format 1 dataset") == 1
    assert "to upgrade it to format 2 in place" in info_logs.text
    info_logs.clear()
    write_dataset(WriteConfig(output_dir=data_dir, input=str(tmp_path / "src" / "train.csv"),
                              image_size=8, num_workers=1, show_progress=False, shards=3,
                              val_fraction=0.0, seed=1))
    assert tree_digest(data_dir) == written  # byte for byte what format 2 writes
    assert "upgraded" in info_logs.text and "from format 1 to 2" in info_logs.text
    # Replacing an older format's index is the upgrade, not a repair worth a warning.
    assert not [r for r in info_logs.records if r.levelno >= logging.WARNING]


def test_the_trainer_names_a_foreign_shard_in_one_line(written, tmp_path):
    from pipeline.training.settings import TrainingError

    data_dir, shard = _swap_in_foreign_shard(*written, tmp_path, with_indexes=False)
    with pytest.raises(TrainingError) as raised:
        train_tiny(data_dir, tmp_path / "run", cache=None, val_split="train")
    said = str(raised.value)
    assert said.startswith(f"{shard.file}: record ") and record_index.MISMATCH in said
    assert "on_corrupt" not in said  # not damage: skipping is no way around it
