"""`.progress/`: what an unfinished write keeps beside its shards, and the only module that
knows its name and layout.

    .progress/
        plan.json                    the fingerprint of the write that owns the directory
        <shard file>.json            one record per completed shard (shard_writer.ShardResult)
        writer-<pid>.json            who holds the directory's lock, for a writer refused
        task-<i>-of-<n>.lock         the lock of task i of a --num_tasks write (lock.py)

A shard's record is written after the shard and its indexes are renamed into place, so a
record always describes a complete shard (shard_writer.write_shard); a rerun keeps the shards
recorded here once their bytes are checked (output_dir.load_completed_shard). The folder is
removed when dataset.json is written (finish.py): from then on dataset.json says what is
complete. This module reads and writes the files; what a record holds is shard_writer's. A
worker process imports it, so it imports only the standard library and pipeline.core.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from pipeline.core import files, locks

NAME = ".progress"
PLAN_NAME = "plan.json"
HOLDER_PREFIX = "writer-"


def path(output_dir: str) -> str:
    return os.path.join(output_dir, NAME)


def make(output_dir: str) -> str:
    """Create `.progress/` (if it is not there yet); returns its path."""
    folder = path(output_dir)
    os.makedirs(folder, exist_ok=True)
    return folder


def remove(output_dir: str) -> None:
    """Drop `.progress/` and all it holds: the dataset is complete."""
    shutil.rmtree(path(output_dir), ignore_errors=True)


def remove_if_empty(output_dir: str) -> None:
    """Drop `.progress/` only if nothing is left in it (another task may still hold files)."""
    with contextlib.suppress(OSError):  # not empty, or already gone: nothing to do
        os.rmdir(path(output_dir))


def write_plan_fingerprint(output_dir: str, fingerprint: str) -> None:
    """Say which write owns the directory until its dataset.json says so."""
    files.atomic_write_text(os.path.join(make(output_dir), PLAN_NAME),
                            json.dumps({"fingerprint": fingerprint}) + "\n")


def read_plan_fingerprint(output_dir: str) -> str | None:
    """The fingerprint plan.json records, or None without a readable one."""
    try:
        with open(os.path.join(path(output_dir), PLAN_NAME), encoding="utf-8") as f:
            return json.load(f).get("fingerprint")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def shard_record_path(output_dir: str, shard_file: str) -> str:
    return os.path.join(path(output_dir), shard_file + ".json")


def write_shard_record(output_dir: str, shard_file: str, text: str) -> None:
    """Record `shard_file` as complete (its ShardResult as JSON text)."""
    files.atomic_write_text(shard_record_path(output_dir, shard_file), text)


def read_shard_record(output_dir: str, shard_file: str) -> str | None:
    """The record of `shard_file` (JSON text), or None when it was never completed."""
    try:
        with open(shard_record_path(output_dir, shard_file), encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def remove_shard_record(output_dir: str, shard_file: str) -> None:
    os.remove(shard_record_path(output_dir, shard_file))


def holder_path(output_dir: str, pid: int) -> str:
    """The note in which writer `pid` says who it is (pipeline.core.locks.write_holder_note)."""
    return os.path.join(path(output_dir), f"{HOLDER_PREFIX}{pid}.json")


def live_holders(output_dir: str) -> str:
    """The live writers whose notes are here: 'pid 123 on host: python -m pipeline.write ...'."""
    return locks.live_holders(path(output_dir), HOLDER_PREFIX)


def task_lock_path(output_dir: str, task_index: int, num_tasks: int) -> str:
    """The file task `task_index` of `num_tasks` locks (kept until the dataset is complete)."""
    return os.path.join(path(output_dir), f"task-{task_index}-of-{num_tasks}.lock")
