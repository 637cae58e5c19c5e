"""One process at a time in a directory: an OS lock on the directory, and a note of who holds it.

`flock` on the directory itself (Git's lock files, without a file to leave behind): the
kernel releases it when the holder exits, however it exits, so a killed holder's lock never
blocks. The holder also writes a small JSON note (pid, host, command) so that a process
refused meanwhile can say who holds the directory; notes of processes no longer alive are
ignored. The writer (pipeline.writing.lock) and the trainer (pipeline.training.workdir) hold
their directories so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys

from pipeline.core import files


def try_lock(descriptor: int, shared: bool = False) -> bool:
    """Take the lock on an open file or directory without waiting; False when it is held
    (exclusively, or at all for an exclusive request)."""
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def write_holder_note(path: str) -> None:
    """Say who this process is, at `path` (written atomically)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv}
    files.atomic_write_text(path, json.dumps(holder) + "\n")


def live_holders(folder: str, prefix: str) -> str:
    """The live processes whose notes `<prefix>*.json` are in `folder`:
    'pid 123 on host: python train.py ...'; 'one that has just started' when none says."""
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                holder = json.load(f)
        except (OSError, ValueError):
            continue
        if alive(holder.get("pid")):
            found.append(f"pid {holder['pid']} on {holder.get('host')}: "
                         f"{' '.join(holder.get('command') or [])}")
    return "; ".join(found) or "one that has just started"


def alive(pid) -> bool:
    """Whether process `pid` exists (on this host)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
