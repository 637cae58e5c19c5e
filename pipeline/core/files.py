"""Small file-system helpers: atomic replacement and temporary names that a rerun can find."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from typing import Collection

# Temporary files are `<final name>.tmp.<pid>`: unique per process, so a writer left running by
# a killed parent can never write into the file of a new run, and easy to find and remove.
TEMP_MARKER = ".tmp."


# gs://bucket/..., s3://..., file:///...: paths for TensorFlow's file systems, not the OS's.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def has_scheme(path: str) -> bool:
    return bool(_SCHEME.match(path))


def exists(path: str) -> bool:
    """os.path.exists, or TensorFlow's file systems for a path with a scheme."""
    if not has_scheme(path):
        return os.path.exists(path)
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def read_text(path: str) -> str:
    """The file's text (UTF-8), through TensorFlow's file systems for a path with a scheme."""
    if not has_scheme(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(path)
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def temp_name(final_path: str) -> str:
    return f"{final_path}{TEMP_MARKER}{os.getpid()}"


def is_temp_name(name: str) -> bool:
    head, marker, pid = name.rpartition(TEMP_MARKER)
    return bool(head) and bool(marker) and pid.isdigit()


def fsync_dir(directory: str) -> None:
    """Make a rename in `directory` durable (a crash after it cannot undo it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str):
    """Write `path` through a temporary file: readers see nothing, or the whole file.

    Yields the open temporary file; when the block ends normally the data is fsynced and the
    file renamed to `path` (and the rename made durable); on any error it is removed.
    """
    with _replacing(path, temp_name(path)) as tmp:
        with open(tmp, "wb") as f:
            yield f


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """atomic_file for writers that take a path (Keras saves, h5py): yields a temporary path
    that keeps `suffix` (Keras insists on `.weights.h5`, `.keras`); when the block ends
    normally the file is fsynced and renamed to `path`; on any error it is removed."""
    head = path[:-len(suffix)] if suffix and path.endswith(suffix) else path
    tmp = f"{head}{TEMP_MARKER}{os.getpid()}{suffix if path.endswith(suffix) else ''}"
    with _replacing(path, tmp):
        yield tmp


@contextlib.contextmanager
def _replacing(path: str, tmp: str):
    """Around a block that writes `tmp`: fsync it, rename it to `path`, make that durable;
    remove it on any error."""
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def is_temp_path(name: str) -> bool:
    """Whether `name` is a temporary name of temp_name or atomic_path (with its suffix)."""
    return bool(_TEMP_PATH.search(name))


_TEMP_PATH = re.compile(re.escape(TEMP_MARKER) + r"\d+(\.[^/]*)?$")


def atomic_link(source: str, path: str) -> None:
    """Make `path` the same file as `source` (a hard link, or a copy where the file system has
    none), replacing whatever `path` was in one rename."""
    tmp = temp_name(path)
    if os.path.lexists(tmp):
        os.remove(tmp)
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FUSE file systems): copy
        with atomic_file(path) as out, open(source, "rb") as f:
            shutil.copyfileobj(f, out)
        return
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a partial write."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temp_files(directory: str, finals: Collection[str] | None = None) -> list[str]:
    """Delete leftovers of interrupted writes directly under `directory`; return their names.

    `finals`: only the temporary files of these final names (a writer sharing the directory
    with others must not delete their files in progress); None: every temporary file.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for entry in os.scandir(directory):
        if (entry.is_file() and is_temp_name(entry.name)
                and (finals is None or entry.name.rpartition(TEMP_MARKER)[0] in finals)):
            os.remove(entry.path)
            removed.append(entry.name)
    return sorted(removed)


@contextlib.contextmanager
def staged_directory(target: str, *, replace: bool = True):
    """Build a directory beside `target` and swap it in whole, so `target` is never half-built.

    Yields an empty staging directory in `target`'s parent; when the block ends normally it
    becomes `target` with one rename; on any error it is removed and `target` is left as it
    was. An existing `target` is replaced (removed first), or with replace=False kept: for a
    directory whose name says what it holds, another process that renamed its own build into
    place first holds the same thing, and someone may be reading it; ours is dropped.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}-", dir=parent)
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; what is staged here is not secret
        yield staging
        if replace and os.path.exists(target):
            shutil.rmtree(target)
        try:
            os.rename(staging, target)  # fails when target exists and is not empty
        except OSError:
            if replace or not os.path.isdir(target):
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
