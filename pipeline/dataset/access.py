"""How a split is read, and in what order: the in-memory table, random access, or streaming.

    access="auto" (the default): cache="memory" reads into the table; otherwise random access
        wherever the shards allow it, and streaming where they do not:
          - compressed shards (GZIP, ZLIB): their records have no offsets to read at;
          - a path with a scheme (gs://, s3://, file://): not a local file system, and
            random access reads with os.preadv;
          - a tf.data service: its workers run the pipeline's graph, and the random-access
            reader runs in Python;
          - cache=<file>: the tf.data cache of streamed records.
    access="random" or "stream": that, or DatasetError saying why random access cannot be.

One log line per dataset says what was chosen and why. Random access over a split the page
cache can hold shuffles it globally; a larger one is read in windows of shards that fit
(order.py's quasi-random order), so that the disk is read mostly once per epoch instead of at
random.
"""

from __future__ import annotations

import dataclasses

from pipeline.core import files, schema
from pipeline.core.units import format_bytes
from pipeline.dataset.options import DatasetError, ReadOptions
from pipeline.dataset.order import Order

ACCESS = ("auto", "random", "stream")
TABLE, RANDOM, STREAM = "table", "random", "stream"
# A split of at most this share of the available memory is shuffled globally (the page cache
# keeps it after the first epoch); a larger one in windows of this many bytes.
PAGE_CACHE_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class Access:
    kind: str  # TABLE, RANDOM or STREAM
    reason: str  # why, in words, for the log line
    random_access: bool  # whether the shards can be read at offsets (the table loads so)


def stream_reason(data_dir: str, manifest: schema.Manifest, cache_mode: str | None,
                  options: ReadOptions) -> str | None:
    """Why these shards cannot be read at random, or None when they can."""
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
    reason = stream_reason(data_dir, manifest, cache_mode, options)
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


def choose_order(shard_counts, image_bytes: int, batch_size: int, *, training: bool,
                 seed: int | None, available: int, table: bool = False) -> tuple[Order, str]:
    """The order of a split's records, and its description for the log line."""
    if not training:
        return Order.sequential(shard_counts, batch_size), "in order"
    split_bytes = sum(shard_counts) * image_bytes
    budget = PAGE_CACHE_FRACTION * available
    if table or split_bytes <= budget or len(shard_counts) <= 1:
        where = "RAM" if table else "the page cache"
        return (Order.global_shuffle(shard_counts, batch_size, seed),
                f"a global shuffle every epoch ({format_bytes(split_bytes)} fit in {where})")
    per_shard = split_bytes / len(shard_counts)
    window = max(1, int(budget // per_shard))
    return (Order.windows(shard_counts, batch_size, seed, window),
            f"quasi-random: {window} of {len(shard_counts)} shards at a time, shuffled "
            f"({format_bytes(split_bytes)} exceed {format_bytes(budget)}, "
            f"{PAGE_CACHE_FRACTION:.0%} of the available memory)")
