"""Damaged records: what reading says of one, and which records on_corrupt="skip" still reads.

With on_corrupt="fail" every way of reading names the damaged record (shard file, record
number, the problem) in the same words (damaged_message): at make_dataset for what is checked
up front, else in the error that stops iterating (damage_named finds it there).

With "skip", random access and the in-memory table check every record of the split first (its
framing, its CRC, its label) and leave out exactly the damaged ones: each record has its own
place, so the records after a damaged one stay readable. Streaming cannot: the split is checked
once per process (pipeline.core.integrity) while its shards stay as they are, and each damaged
shard is read up to its first bad record (past a bad record a stream cannot find the next).
Either way the records lost are known before reading starts, and the dataset's length counts
only those read."""

from __future__ import annotations

import functools
import os
import re
from typing import Sequence

from absl import logging

from pipeline.core import integrity, record_index, schema
from pipeline.dataset.options import DatasetError

# Every message about a damaged record says this (damage_named finds them by it).
DAMAGED = "the shard is damaged"
# A stream cannot read a shard past a damaged record: what it says of a record after one.
UNREAD_AFTER_DAMAGE = ("not read: the shard cannot be read past an earlier record (`python -m "
                       "pipeline.verify` names it)")
DAMAGED_ADVICE = (f": {DAMAGED}. Rewrite the dataset with `python -m pipeline.write`, or read "
                  "on without the damaged records with on_corrupt='skip'")


def limit_losses(lost: int, count: int, max_fraction: float, split: str, data_dir: str) -> None:
    """DatasetError when losing `lost` of `count` records is more than max_fraction allows."""
    allowed = int(max_fraction * count)
    if lost > allowed:
        raise DatasetError(
            f"{lost} of {count} records of split {split!r} are in damaged shards, more than "
            f"max_corrupt_fraction={max_fraction} allows ({allowed}); see `python -m "
            f"pipeline.verify {data_dir}` and rewrite the dataset with `python -m pipeline.write`")


def warn_damaged(shard: str, records_lost: int, records: int, first: str) -> None:
    logging.warning("on_corrupt='skip': shard %s is damaged (%s): %d of its %d records are "
                    "left out", shard, first, records_lost, records)


def damaged_message(shard: str, record: int, problem: str) -> str:
    """What reading says of a damaged record, whichever way the split is read."""
    return f"{shard}: record {record}: {problem}{DAMAGED_ADVICE}"


def damage_named(error_message: str) -> str | None:
    """The damaged_message inside a TensorFlow error raised while iterating a dataset, or None.

    A record that does not match dataset.json (record_index.MISMATCH) is named the same way.
    Inside a pipeline, a damaged record stops reading with tf.debugging.Assert's
    InvalidArgumentError ("... assertion failed: [<damaged_message>]"): no TensorFlow op
    raises DataLossError with a message of ours, and an exception raised in a numpy_function
    comes out as UnknownError with its Python traceback in the message.
    """
    named = "|".join(re.escape(marker) for marker in (DAMAGED, record_index.MISMATCH))
    found = re.search(r"assertion failed: \[([^\]]*(?:" + named + r")[^\]]*)\]", error_message)
    if found is None:
        return None
    # The assertion prints its string C-escaped.
    return re.sub(r"\\(['\"\\])", r"\1", found.group(1))


def readable_records(data_dir: str, manifest: schema.Manifest, split: str,
                     files: Sequence[str], count: int, max_fraction: float) -> int:
    """How many of `files`' records a stream reads with on_corrupt="skip" (see
    readable_per_shard)."""
    return sum(readable_per_shard(data_dir, manifest, split, files, count,
                                  max_fraction).values())


def readable_per_shard(data_dir: str, manifest: schema.Manifest, split: str,
                       files: Sequence[str], count: int, max_fraction: float) -> dict[str, int]:
    """{shard file name: records before its first bad one} for `files`: what a stream reads
    with on_corrupt="skip". The split is checked with pipeline.core.integrity, each damaged
    shard is logged (name, records lost, the problem), and more than `max_fraction` of
    `count` lost is an error."""
    expected = {shard.file: shard.count for shard in manifest.split(split).shards}
    readable = {os.path.basename(f): expected[os.path.basename(f)] for f in files}
    problems: dict[str, list] = {}
    for problem in split_problems(data_dir, manifest, split):
        if problem.file in readable:
            problems.setdefault(problem.file, []).append(problem)
    for name, found in sorted(problems.items()):
        first = min((p for p in found if p.record is not None), key=lambda p: p.record,
                    default=None)
        if first is None or first.record >= expected[name]:
            raise DatasetError(
                f"shard {name} differs from the manifest ({found[0].message}) in a way "
                "on_corrupt='skip' cannot skip past; rewrite it with `python -m pipeline.write`")
        readable[name] = first.record
        logging.warning("on_corrupt='skip': shard %s is damaged at record %d (%s): reading "
                        "its first %d of %d records, %d lost", name, first.record,
                        first.message, first.record, expected[name],
                        expected[name] - first.record)
    limit_losses(count - sum(readable.values()), count, max_fraction, split, data_dir)
    return readable


def split_problems(data_dir: str, manifest: schema.Manifest, split: str) -> tuple:
    """pipeline.core.integrity's problems in `split`, checked once per process while its shards
    stay as they are: a trainer asks for its step counts and again for every input pipeline."""
    state = tuple((path, _file_state(path)) for path in manifest.shard_paths(data_dir, split))
    return _verified_problems(os.path.abspath(data_dir), split, state)


def _file_state(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None  # verify reports it
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _verified_problems(data_dir: str, split: str, shards_state: tuple) -> tuple:
    return tuple(integrity.verify_dataset(data_dir, splits=[split]).problems)
