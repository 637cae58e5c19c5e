"""One writer per output directory: an OS lock on the directory, held from before anything
there is read to the end of the write.

Without it, two writers started at the same instant both found the directory empty, both
took it, and interleaved shards of two commands under one manifest; the same command twice
crashed the second on the first's temporary files. `flock` on the directory itself (Git's
lock files, without a file to leave behind; pipeline.core.locks): the kernel releases it when
the holder exits, however it exits, so a dead writer's lock never blocks. A one-task write
and --finalize hold it exclusively; the tasks of a --num_tasks write share it (they write side
by side) and each holds its own task's lock exclusively, so the same task twice is refused
and --finalize waits for no task: it is refused while any task still runs. The task locks and
the holders' notes are files in `.progress/` (progress_dir).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from pipeline.core import locks
from pipeline.writing import progress_dir
from pipeline.writing.output_dir import OutputDirError


class DirectoryLocked(OutputDirError):
    """Another writer holds the output directory (or this task of it)."""


@contextlib.contextmanager
def locked_output_dir(output_dir: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the directory lock (exclusive, or `shared` by a multi-task write's tasks), creating
    the directory; DirectoryLocked naming the holder when another writer has it."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputDirError(f"--output_dir={output_dir} is a file; name a directory")
    os.makedirs(output_dir, exist_ok=True)
    descriptor = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _lock(descriptor, shared, f"--output_dir={output_dir} is being written by another "
              f"writer ({progress_dir.live_holders(output_dir)})")
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def locked_task(output_dir: str, task_index: int, num_tasks: int) -> Iterator[None]:
    """Hold task `task_index`'s lock (a file in .progress/, which the write keeps)."""
    progress_dir.make(output_dir)
    path = progress_dir.task_lock_path(output_dir, task_index, num_tasks)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(descriptor, False, f"task {task_index} of {num_tasks} is already being written "
              f"into {output_dir} ({progress_dir.live_holders(output_dir)})")
        yield
    finally:
        os.close(descriptor)


def _lock(descriptor: int, shared: bool, refusal: str) -> None:
    if not locks.try_lock(descriptor, shared):
        raise DirectoryLocked(f"{refusal}: wait for it to end, or choose another "
                              "--output_dir")


def record_holder(output_dir: str) -> str:
    """Say who this writer is, for a writer refused meanwhile; returns the file (removed with
    .progress/ when the write completes)."""
    path = progress_dir.holder_path(output_dir, os.getpid())
    locks.write_holder_note(path)
    return path
