"""The one base type of every error a user can cause, and the exit codes the commands use.

A `PipelineError` is a mistake in the input, the flags or the environment, never a bug: its
message says what is wrong, with the values involved, and how to fix it, and every command
(through `pipeline.cli`) prints it as one line and exits with its `exit_code`, no traceback.
Anything else that escapes a command is a bug and keeps its traceback.

Each stage defines the errors it raises next to the code that raises them (`InputError` in
the writer's sources, `DatasetError` in the reader, ...), all subclasses of this one. Most
also subclass `ValueError`: a bad value is what they report, and callers that caught
`ValueError` before still do.

Exit codes, the same for every command (`python -m pipeline.*` and `train.py`); this table is
the one list of them (each command's --help ends with it, and tests/core/test_cli.py checks it
and the README's copy against the constants below):

    code  constant          meaning
    0     EXIT_OK           done (pipeline.service: stopped by a signal)
    1     EXIT_FAILED       the command ran and its result is bad: too many unreadable images
                            (write: or any test image, without --allow_missing_test; or a
                            repaired shard that no longer matches dataset.json), problems
                            found in a dataset (verify)
    2     EXIT_USAGE        unusable input: bad flags or arguments; a missing, foreign, damaged
                            or busy dataset, workdir or output directory; a setting that
                            cannot work. Nothing was changed that a corrected command cannot redo
    3     EXIT_IO           the disk failed a write (full, read-only): what was complete is
                            kept, and the same command, once there is room, finishes the work
    130   EXIT_INTERRUPTED  Ctrl-C (SIGINT): the same command continues where it stopped (a
                            training run is saved at a step first)

This module imports nothing of ours: every stage may import it. `disk_failure` turns the
disk failing a write, however a library reports it, into one line with EXIT_IO.
"""

from __future__ import annotations

import errno
import os
import re

# What each code means is the docstring's table, the one place it is written.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_IO = 3
# 128 + SIGINT's number, as a shell reports a process Ctrl-C stopped.
EXIT_INTERRUPTED = 130

# The first line of the exit-code table in this module's docstring.
_TABLE_HEADER = "    code  constant          meaning"


def exit_code_table() -> str:
    """The exit-code table of this module's docstring (header included), for --help."""
    doc = __doc__ or ""  # None under python -OO, which drops docstrings
    if _TABLE_HEADER not in doc:
        return ""
    return _TABLE_HEADER + doc.split(_TABLE_HEADER, 1)[1].split("\n\n", 1)[0]


# The disk, not the command, failing a write: full, over quota, read-only, broken, too big.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG)
# How libraries that wrap the OS error say so (h5py's RuntimeError, TensorFlow's OpError).
_DISK_WORDS = tuple(os.strerror(code) for code in DISK_ERRNOS)


def disk_failure(err: BaseException) -> str | None:
    """One line for an error that is the disk failing a write (an OSError with one of
    DISK_ERRNOS, or a library's error saying one), anywhere in its chain; else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            where = err.filename or "a file"
            return _disk_line(where, err.strerror or text)
        for words in _DISK_WORDS:
            if words in text:
                named = re.search(r"filename = '([^']+)'", text)
                return _disk_line(named.group(1) if named else "a file", words)
        err = err.__cause__ or err.__context__
    return None


def _disk_line(where: str, what: str) -> str:
    return (f"cannot write {where}: {what}. Make room (or choose another place), then run "
            "the same command again: what was complete is kept (a training run resumes from "
            "its last checkpoint)")


class PipelineError(Exception):
    """A user-facing error: one line that names the problem and the fix, and an exit code."""

    exit_code: int = EXIT_USAGE


class UsageError(PipelineError, ValueError):
    """The command line itself is wrong: unexpected arguments, a flag that cannot parse."""


class ConfigError(PipelineError, ValueError):
    """A setting has a value that cannot work (an unknown augmentation op, a ResNet depth that
    does not exist); raised where the setting is read, naming it and what would work."""
