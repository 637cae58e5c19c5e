"""on_corrupt="skip": which records of a split can still be read, and the warnings that say so.

The split is checked once per process (pipeline.core.integrity) while its shards stay as they
are; each damaged shard is read up to its first bad record (TensorFlow's TFRecord reader moves
to the next file after a read error, see streaming.read_shards), so the records lost are known
before reading starts, and the dataset's length counts only those read.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

from absl import logging

from pipeline.core import integrity, schema
from pipeline.dataset.options import DatasetError


def readable_records(data_dir: str, manifest: schema.Manifest, split: str,
                     files: Sequence[str], count: int, max_fraction: float) -> int:
    """How many of `files`' records on_corrupt="skip" will read: the split is checked with
    pipeline.core.integrity, each damaged shard is logged (name, records lost, the problem),
    and more than `max_fraction` of `count` lost is an error."""
    mine = {os.path.basename(f) for f in files}
    expected = {shard.file: shard.count for shard in manifest.split(split).shards}
    problems: dict[str, list] = {}
    for problem in split_problems(data_dir, manifest, split):
        if problem.file in mine:
            problems.setdefault(problem.file, []).append(problem)
    lost = 0
    for name, found in sorted(problems.items()):
        first = min((p for p in found if p.record is not None), key=lambda p: p.record,
                    default=None)
        if first is None or first.record >= expected[name]:
            raise DatasetError(
                f"shard {name} differs from the manifest ({found[0].message}) in a way "
                "on_corrupt='skip' cannot skip past; rewrite it with `python -m pipeline.write`")
        shard_lost = expected[name] - first.record
        lost += shard_lost
        logging.warning("on_corrupt='skip': shard %s is damaged at record %d (%s): reading "
                        "its first %d of %d records, %d lost", name, first.record,
                        first.message, first.record, expected[name], shard_lost)
    allowed = int(max_fraction * count)
    if lost > allowed:
        raise DatasetError(
            f"{lost} of {count} records of split {split!r} are in damaged shards, more than "
            f"max_corrupt_fraction={max_fraction} allows ({allowed}); see `python -m "
            f"pipeline.verify {data_dir}` and rewrite the dataset with `python -m pipeline.write`")
    return count - lost


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
