"""The input's boundary: which files a listing may name, and file names as text.

This is a security boundary. A CSV is data, often from somewhere else (a competition, a
colleague, a script), and the writer opens every file it names with the user's rights and
copies the pixels of what decodes into the shards. So a listing may only name files inside
the input: under the CSV's folder, or under the class-folder tree. A row that leads outside
(`../../etc/...`, an absolute path elsewhere, a symlink that points out) is refused before
anything is read, the first rows named; --allow_outside_input lifts that for a listing the
user trusts. Where a path leads is decided by resolving it (os.path.realpath: `..` and every
symlink on the way), so an absolute path inside the folder is inside.

File names are bytes on Linux; the records, dataset.json and rejects.csv hold UTF-8 text. A
name that is not valid UTF-8 (a Latin-1 'é' from an old archive) is kept, recorded with
`\\xNN` escapes for its undecodable bytes (Python's "backslashreplace"), and the file itself
is opened by its real name.
"""

from __future__ import annotations

import os
from typing import Sequence

ALLOW_FLAG = "--allow_outside_input"
# Entries named by a refusal.
NAMED = 5


def escape_name(name: str) -> str:
    """`name` as valid UTF-8 text: a name read from the file system whose bytes are not UTF-8
    (surrogate escapes in Python) gets `\\xNN` for those bytes; any other name is unchanged."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def real_root(path: str) -> str:
    """The resolved folder that a listing's paths must stay in."""
    return os.path.realpath(path)


def is_inside(root: str, path: str) -> bool:
    """Whether `path`, resolved, is `root` (a real_root) or below it."""
    resolved = os.path.realpath(path)
    return resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep)


def is_ancestor(path: str, root: str) -> bool:
    """Whether `path`, resolved, is `root` or a folder above it (walking it would list the
    tree again inside itself)."""
    resolved = os.path.realpath(path)
    return root == resolved or root.startswith(resolved.rstrip(os.sep) + os.sep)


def outside_message(where: str, what: str, inside: str, examples: Sequence[str]) -> str:
    """The refusal: `examples` (all of them; the first NAMED are shown), `what` of `where`
    (e.g. "row(s)" of a CSV), lead outside `inside` (e.g. "the CSV's folder")."""
    shown = "; ".join(examples[:NAMED])
    more = f" and {len(examples) - NAMED} more" if len(examples) > NAMED else ""
    return (f"{where}: {len(examples)} {what} lead outside {inside} (`..`, an absolute path "
            f"or a symlink), e.g. {shown}{more}. The writer reads only files inside its input; "
            f"pass {ALLOW_FLAG} to read these too (only for a listing you trust)")
