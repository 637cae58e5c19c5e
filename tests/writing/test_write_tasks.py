"""Several hosts writing one dataset: --num_tasks/--task_index, then --finalize; the result is
byte-identical to a one-host write."""

import functools
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, folder_config, tree_digest, write_csv, write_images
from pipeline import errors
from pipeline.core import files, schema
from pipeline.writing import plan, tasks
from pipeline.writing.writer import write_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    rows = write_images(str(root), 40, size=(6, 6))
    write_csv(root / "train.csv", ["image", "label"], rows[:34])
    write_csv(root / "test.csv", ["image"], [(path,) for path, _ in rows[34:]])
    return root


_config = functools.partial(folder_config, image_size=6, shards=5, val_shards=2,
                            test_shards=2, val_fraction=0.2)


@pytest.mark.parametrize("compression", ["NONE", "GZIP"])
def test_tasks_then_finalize_equal_one_host_byte_for_byte(source, tmp_path, compression):
    one = write_dataset(_config(source, tmp_path / "one", compression=compression))
    shared = tmp_path / "shared"
    for task in (1, 0):  # any order
        summary = write_dataset(_config(source, shared, compression=compression,
                                              num_tasks=2, task_index=task))
        assert summary.manifest is None and summary.written > 0
        assert not os.path.exists(schema.manifest_path(str(shared)))
    # What a --finalize killed while writing the dataset-wide files leaves:
    for name in (schema.MANIFEST_NAME, "features.json"):
        (shared / f"{name}{files.TEMP_MARKER}99999").write_text("partial")
    summary = write_dataset(_config(source, shared, compression=compression,
                                          num_tasks=2, finalize=True))
    assert summary.written == 0 and summary.manifest == one.manifest
    if compression == "NONE":  # then the DALI indexes and the TFDS metadata are compared too
        index = schema.shard_filename(schema.TRAIN, 0, 5) + schema.DALI_INDEX_SUFFIX
        assert {index, "dataset_info.json"} <= set(os.listdir(shared))
    assert tree_digest(shared) == tree_digest(tmp_path / "one")


def test_each_task_writes_every_nth_shard_of_the_plan():
    shards = [plan.ShardSpec("train", i, 9, ()) for i in range(9)]
    parts = [tasks.task_shards(shards, 3, task) for task in range(3)]
    assert sorted(spec.index for part in parts for spec in part) == list(range(9))
    assert parts[1] == shards[1::3]


def test_finalize_names_the_missing_shards_and_their_task(source, tmp_path):
    shared = tmp_path / "shared"
    write_dataset(_config(source, shared, num_tasks=3, task_index=0))
    with pytest.raises(tasks.IncompleteError, match=r"task 1\).*task 2\)|task 2\).*task 1\)"):
        write_dataset(_config(source, shared, num_tasks=3, finalize=True))
    assert not os.path.exists(schema.manifest_path(str(shared)))


def test_a_task_leaves_other_tasks_files_in_progress_alone(source, tmp_path):
    shared = tmp_path / "shared"
    write_dataset(_config(source, shared, num_tasks=2, task_index=0))
    # A shard of task 1 being written by another host right now:
    other = schema.shard_filename(schema.TRAIN, 1, 5)
    in_progress = shared / f"{other}{files.TEMP_MARKER}99999"
    in_progress.write_bytes(b"partial")
    write_dataset(_config(source, shared, num_tasks=2, task_index=0))  # a rerun
    assert in_progress.exists()


def test_bad_task_settings_are_refused(source, tmp_path):
    for overrides in (dict(num_tasks=2, task_index=2), dict(num_tasks=0),
                      dict(num_tasks=2, overwrite=True)):
        with pytest.raises(plan.PlanError, match="num_tasks"):
            write_dataset(_config(source, tmp_path / "x", **overrides))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.write", f"--input={source / 'train.csv'}",
         f"--output_dir={tmp_path / 'cli'}", "--num_tasks=2", "--finalize", "--shards=2"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT}, capture_output=True,
        text=True, timeout=120)
    assert result.returncode == errors.EXIT_USAGE and "--finalize" in result.stderr
