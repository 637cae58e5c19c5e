"""One trainer per workdir: an OS lock on the workdir, held for the whole run.

Without it, two trainers started on one workdir both began, and one died later with a
FileNotFoundError on the other's checkpoint files. The lock is `flock` on the directory
(pipeline.core.locks): the kernel releases it however the holder ends, so a killed run's lock
never blocks its rerun, and a killed run's note is removed by the next. A second trainer is
refused at once (TrainingError, exit 2) naming the holder's pid, host and command. A run
refused for any reason leaves the workdir as it was: the note goes, and a workdir this run
created stays only if something was written into it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from typing import Iterator

from pipeline.core import locks
from pipeline.training import run_files
from pipeline.training.settings import TrainingError

NOTE_PREFIX = ".trainer-"  # <workdir>/.trainer-<pid>.json while a run holds the workdir


@contextlib.contextmanager
def locked_workdir(workdir: str) -> Iterator[None]:
    """Hold `workdir` (created if need be) for this process; TrainingError when another
    trainer holds it."""
    if os.path.isfile(workdir):
        raise run_files.not_a_workdir(workdir)
    created = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    descriptor = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    note = None
    try:
        if not locks.try_lock(descriptor):
            raise TrainingError(
                f"--workdir={workdir} is in use by another trainer "
                f"({locks.live_holders(workdir, NOTE_PREFIX)}): wait for it to end, or "
                "choose another --workdir")
        _remove_dead_notes(workdir)
        note = os.path.join(workdir, f"{NOTE_PREFIX}{os.getpid()}.json")
        locks.write_holder_note(note)
        yield
    finally:
        if note is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(note)
        os.close(descriptor)  # releases the lock
        if created and not os.listdir(workdir):
            os.rmdir(workdir)


def one_trainer_per_workdir(train):
    """train(*, workdir, ...) run holding its workdir (locked_workdir). The wrapper carries
    train's signature, so gin still refuses a binding of a parameter train does not have."""
    @functools.wraps(train)
    def locked(*args, **kwargs):
        with locked_workdir(kwargs["workdir"]):
            return train(*args, **kwargs)

    locked.__signature__ = inspect.signature(train)
    return locked


def _remove_dead_notes(workdir: str) -> None:
    """Notes of trainers no longer alive (killed): this run holds the lock, so none is live."""
    for name in os.listdir(workdir):
        if name.startswith(NOTE_PREFIX) and name.endswith(".json"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(workdir, name))
