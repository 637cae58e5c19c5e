"""How a split is read: the in-memory table, random access, or streaming.

    access="auto" (the default): cache="memory" reads into the table; otherwise random access
        wherever the shards allow it, and streaming where they do not:
          - compressed shards (GZIP, ZLIB): their records have no offsets to read at;
          - a path with a scheme (gs://, s3://, file://): not a local file system, and
            random access reads with os.preadv;
          - a tf.data service: its workers run the pipeline's graph, and the random-access
            reader runs in Python;
          - cache=<file>: the tf.data cache of streamed records.
    access="random" or "stream": that, or DatasetError saying why random access cannot be.

One log line per dataset says what was chosen and why (and, for the table and random access,
in which order: order.choose_order). `Access.index_usable` is the one fact the choice leaves
for later: whether the shards' record index can be used, which decides how the table loads
and how on_corrupt="skip" counts the readable records.
"""

from __future__ import annotations

import dataclasses

from pipeline.core import files, schema
from pipeline.dataset.options import DatasetError, ReadOptions

ACCESS = ("auto", "random", "stream")
TABLE, RANDOM, STREAM = "table", "random", "stream"


@dataclasses.dataclass(frozen=True)
class Access:
    kind: str  # TABLE, RANDOM or STREAM
    reason: str  # why, in words, for the log line
    # Whether the shards' record index can be used (uncompressed local files): random access
    # reads every record at its offset, and the table loads so too (else from streams).
    index_usable: bool


def why_index_unusable(data_dir: str, manifest: schema.Manifest, cache_mode: str | None,
                       options: ReadOptions) -> str | None:
    """Why these shards' records cannot be read at their offsets (so a split is streamed, or
    the table loaded from streams), or None when they can."""
    if options.service is not None:
        return ("a tf.data service runs the pipeline on its workers, and the random-access "
                "reader runs in Python")
    if manifest.compression != "NONE":
        return (f"the shards are {manifest.compression}-compressed: their records have no "
                "offsets to read at")
    if files.has_scheme(data_dir):
        return (f"{data_dir.split('://')[0]}:// is not a local file system (random access "
                "reads shards with os.preadv)")
    if cache_mode not in (None, "memory"):
        return f"cache={cache_mode!r} caches the streamed records in a file"
    return None


def choose_access(requested: str, data_dir: str, manifest: schema.Manifest,
                  cache_mode: str | None, options: ReadOptions) -> Access:
    if requested not in ACCESS:
        raise DatasetError(f"access={requested!r}: use one of {ACCESS}")
    reason = why_index_unusable(data_dir, manifest, cache_mode, options)
    if requested == RANDOM and reason is not None:
        raise DatasetError(f"access='random' cannot read this split: {reason}; use "
                           "access='auto' or 'stream'")
    if cache_mode == "memory":
        return Access(TABLE, "cache='memory': decoded once into an in-memory table",
                      reason is None)
    if requested == STREAM:
        return Access(STREAM, "access='stream' was asked for", reason is None)
    if reason is not None:
        return Access(STREAM, reason, False)
    return Access(RANDOM, "uncompressed local shards: every record read at its offset", True)
