"""Reruns verify what they keep: a shard deleted or damaged (same size, other bytes) and an
index damaged are repaired by the same command, unfinished or complete, byte-identical to a
clean run; a shard whose source images changed is refused, not silently mixed in."""

import functools
import json
import os
import re
import shutil

import pytest

from conftest import folder_config, tree_digest
from pipeline.core import schema
from pipeline.writing import progress_dir, writer
from pipeline.writing.finish import VerificationError
from pipeline.writing.kept import ChangedManifest
from pipeline.writing.output_dir import OutputDirError
from pipeline.writing.writer import write_dataset


_config = functools.partial(folder_config, test=False, image_size=8, shards=4,
                            val_fraction=0.25)


def _flip_a_byte(path, at=40):
    """Damage `path` in place: one byte changed, the size kept (what a size check misses)."""
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def _shards(out):
    manifest = schema.read_manifest(str(out))
    return [shard.file for info in manifest.splits.values() for shard in info.shards]


@pytest.fixture
def reference(kaggle_folder, tmp_path):
    out = tmp_path / "reference"
    write_dataset(_config(kaggle_folder, out))
    return out


def test_a_complete_dataset_rerun_repairs_deleted_and_damaged_shards(kaggle_folder, reference,
                                                                      tmp_path):
    out = tmp_path / "out"
    config = _config(kaggle_folder, out)
    write_dataset(config)
    first, second, third, *_ = _shards(out)
    os.remove(out / first)
    _flip_a_byte(out / second)
    _flip_a_byte(out / schema.record_index_filename(third, "NONE"))
    os.remove(out / schema.dali_index_filename(third, "NONE"))
    summary = write_dataset(config)
    assert (summary.written, summary.reused) == (2, len(_shards(out)) - 2)  # third kept
    assert tree_digest(out) == tree_digest(reference)


def test_an_intact_complete_dataset_is_checked_and_left_alone(kaggle_folder, reference):
    before = tree_digest(reference)
    summary = write_dataset(_config(kaggle_folder, reference))
    assert summary.written == 0
    assert tree_digest(reference) == before
    assert not os.path.exists(reference / progress_dir.NAME)


def test_an_unfinished_write_rewrites_a_kept_shard_whose_bytes_changed(
        kaggle_folder, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    config = _config(kaggle_folder, out)
    # Every shard written, dataset.json not yet: what a write killed at its end leaves.
    monkeypatch.setattr(writer, "finish", _stopped)
    with pytest.raises(_Stopped):
        write_dataset(config)
    monkeypatch.undo()
    shards = sorted(name for name in os.listdir(out) if name.endswith(".tfrecord"))
    _flip_a_byte(out / shards[0])  # same size: only its digest tells
    _flip_a_byte(out / schema.dali_index_filename(shards[1], "NONE"), at=0)
    summary = write_dataset(config)
    assert (summary.written, summary.reused) == (1, len(shards) - 1)
    assert tree_digest(out) == tree_digest(reference)


class _Stopped(Exception):
    pass


def _stopped(*args, **kwargs):
    raise _Stopped()


def test_a_changed_source_image_is_refused_not_mixed_in(kaggle_folder, reference):
    os.remove(reference / _shards(reference)[0])
    for name in sorted(os.listdir(kaggle_folder / "images")):  # every image: whichever it held
        _flip_a_byte(kaggle_folder / "images" / name, at=60)
    with pytest.raises(VerificationError, match="source images changed.*--overwrite"):
        write_dataset(_config(kaggle_folder, reference))


def test_a_rerun_restores_the_tfds_metadata(kaggle_folder, reference, tmp_path):
    out = tmp_path / "out"
    config = _config(kaggle_folder, out)
    write_dataset(config)
    os.remove(out / "dataset_info.json")
    (out / "features.json").write_text("{}")
    write_dataset(config)
    assert tree_digest(out) == tree_digest(reference)


@pytest.mark.parametrize("edit, field", [
    (lambda doc: doc.update(image_shape=[3, 4, 16]), "image_shape is [3, 4, 16] where this "
                                                       "command wrote [3, 8, 8]"),
    (lambda doc: doc.update(classes=doc["classes"][::-1]), "classes is ['owl', 'dog', 'cat']"),
])
def test_a_rerun_refuses_a_dataset_json_edited_since(kaggle_folder, tmp_path, edit, field):
    out = tmp_path / "out"
    config = _config(kaggle_folder, out)
    write_dataset(config)
    path = out / schema.MANIFEST_NAME
    doc = json.loads(path.read_text())
    edit(doc)  # the same byte count per image, or the same classes in another order
    path.write_text(json.dumps(doc))
    before = tree_digest(out)
    with pytest.raises(OutputDirError, match=rf"dataset.json was changed after it was written: "
                                             rf"its {re.escape(field)}.*--overwrite"):
        write_dataset(config)
    assert tree_digest(out) == before


def test_a_rerun_refuses_an_index_digest_edited_in_dataset_json(kaggle_folder, tmp_path):
    out = tmp_path / "out"
    config = _config(kaggle_folder, out)
    write_dataset(config)
    path = out / schema.MANIFEST_NAME
    doc = json.loads(path.read_text())
    shard = doc["splits"]["train"]["shards"][0]
    shard["index_sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    before = tree_digest(out)
    with pytest.raises(ChangedManifest, match=rf"the index_sha256 of {shard['file']} is not "
                                              "its record index's.*--overwrite"):
        write_dataset(config)
    assert tree_digest(out) == before


def test_a_rerun_restores_a_deleted_rejects_csv_from_the_shards(kaggle_folder, tmp_path):
    train = (kaggle_folder / "train.csv").read_text().splitlines()
    broken = [row.split(",")[0] for row in train[1:3]]
    (kaggle_folder / broken[0]).write_bytes(b"not an image")
    (kaggle_folder / broken[1]).write_bytes(b"")
    out = tmp_path / "out"
    config = _config(kaggle_folder, out, max_reject_fraction=0.2)
    write_dataset(config)
    written = (out / "rejects.csv").read_text()
    assert written.count("\n") == 3  # the header and the two
    before = tree_digest(out)
    os.remove(out / "rejects.csv")
    write_dataset(config)
    assert (out / "rejects.csv").read_text() == written
    assert tree_digest(out) == before


@pytest.mark.parametrize("tasks", [1, 2])
def test_a_write_killed_after_its_manifest_is_tidied_by_the_rerun(kaggle_folder, reference,
                                                                 tmp_path, monkeypatch, tasks):
    """Killed between dataset.json and the removal of .progress/ (a one-task write, or the
    --finalize of a two-task one): the same command removes what is left."""
    out = tmp_path / "out"
    for index in range(tasks if tasks > 1 else 0):
        write_dataset(_config(kaggle_folder, out, num_tasks=tasks, task_index=index))
    last = _config(kaggle_folder, out, **(dict(num_tasks=tasks, finalize=True) if tasks > 1
                                          else {}))
    real = shutil.rmtree

    def killed(path, *args, **kwargs):
        if str(path).endswith(progress_dir.NAME):
            raise KeyboardInterrupt  # the kill, just before .progress/ goes
        return real(path, *args, **kwargs)

    monkeypatch.setattr(progress_dir.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(last)
    monkeypatch.undo()
    assert (out / schema.MANIFEST_NAME).exists() and (out / progress_dir.NAME).exists()
    write_dataset(last)
    assert not (out / progress_dir.NAME).exists()
    assert tree_digest(out) == tree_digest(reference)
