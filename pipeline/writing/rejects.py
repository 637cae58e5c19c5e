"""Images that cannot be stored: how many each split may lose, and rejects.csv listing them all.

Each split may lose up to --max_reject_fraction of its images, and never all of them. The test
split may lose none unless --allow_missing_test: each of its rows is a row of the submission,
and a submission short of a row is refused by Kaggle after the upload (with the flag,
dataset.json lists those rows and predict gives them the training prior).

The writer stops at the first shard whose rejects pass a limit: writing the rest would be
wasted. The images it has not read yet are then only decoded (every_reject), so that
rejects.csv and the error count every reject, however many: one run shows all there is to fix.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Mapping, NamedTuple, Sequence

from absl import logging

from pipeline import errors
from pipeline.core import files, schema
from pipeline.writing import shard_writer
from pipeline.writing.settings import WriteConfig
from pipeline.writing.sources import MAX_EXAMPLES


class TooManyRejects(errors.PipelineError, RuntimeError):
    """More of a split's images failed to decode than its limit allows, or all of them."""

    exit_code = errors.EXIT_FAILED


def reject_counts(shards, results) -> dict[str, tuple[int, int]]:
    """{split: (images rejected, images planned)} over the shards written so far (`results`)."""
    counts: dict[str, tuple[int, int]] = {}
    for spec in shards:
        result = results.get((spec.split, spec.index))
        if result is not None:
            rejected, planned = counts.get(spec.split, (0, 0))
            counts[spec.split] = (rejected + len(result.rejects), planned + len(spec.images))
    return counts


def rejected(shards, results) -> dict[str, int]:
    """{split: images rejected} over the shards written (`results`)."""
    return {split: n for split, (n, _) in reject_counts(shards, results).items()}


def planned_images(shards) -> dict[str, int]:
    """{split: images planned}."""
    planned: dict[str, int] = {}
    for spec in shards:
        planned[spec.split] = planned.get(spec.split, 0) + len(spec.images)
    return planned


def split_limit(split: str, config: WriteConfig) -> float:
    """The share of `split`'s images that may be rejected."""
    if split == schema.TEST and not config.allow_missing_test:
        return 0.0
    return config.max_reject_fraction


def check_rejects(shards, results, planned: Mapping[str, int], config: WriteConfig) -> None:
    """TooManyRejects (rejects.csv written) when a split's rejects, among the shards written so
    far (`results`), are more than its split_limit of its `planned` images, or are all of them
    (the split would be empty)."""
    error = rejects_error(shards, results, planned, config)
    if error is not None:
        raise error


def rejects_error(shards, results, planned: Mapping[str, int],
                  config: WriteConfig) -> TooManyRejects | None:
    """check_rejects' error, rejects.csv written, or None."""
    for split, (rejected, _) in sorted(reject_counts(shards, results).items()):
        if rejected == planned[split] or rejected > split_limit(split, config) * planned[split]:
            return too_many_rejects(results, split, rejected, planned[split], config)
    return None


def too_many_rejects(results, split: str, rejects: int, total: int,
                     config: WriteConfig) -> TooManyRejects:
    """The error for `split`, with rejects.csv listing the rejects of every split."""
    write_rejects_csv(config.output_dir,
                      [r for result in results.values() for r in result.rejects])
    split_rejects = sorted(r for (name, _), result in results.items() if name == split
                           for r in result.rejects)
    examples = "; ".join(f"{path}: {reason}" for path, reason in split_rejects[:MAX_EXAMPLES])
    listed = os.path.join(config.output_dir, schema.REJECTS_NAME)
    kept = "completed shards are kept for the next run"
    if rejects == total:
        what = f"the {split} split would be empty: all {total} of its images were rejected"
    elif split == schema.TEST and not config.allow_missing_test:
        return TooManyRejects(
            f"the {split} split: {rejects} of {total} images could not be read, and a "
            f"submission needs a row for each. First: {examples}. All are listed in {listed}. "
            "Fix them, or pass --allow_missing_test to write the others and have predict give "
            f"those rows the training prior; {kept}.")
    else:
        fraction = split_limit(split, config)
        what = (f"the {split} split: {rejects} of {total} images could not be read, more than "
                f"--max_reject_fraction={fraction} allows ({fraction * total:.1f})")
    return TooManyRejects(f"{what}. First: {examples}. All are listed in {listed}. Fix or "
                          f"remove them, or raise --max_reject_fraction; {kept}.")


class Checked(NamedTuple):
    """A shard not written, its images only decoded: what writing it would have rejected."""

    rejects: tuple[tuple[str, str], ...]


def every_reject(shards, results, todo, config: WriteConfig) -> TooManyRejects | None:
    """After a stop on too many rejects: the `todo` images not read yet decoded (none
    written), the error counting every reject, rejects.csv listing them all (with
    --num_tasks, those of this task's shards and of every shard written so far)."""
    unread = [spec for spec in todo if (spec.split, spec.index) not in results]
    if unread:
        logging.info("too many rejects: checking the %d image(s) not read yet, so that %s "
                     "lists every one", sum(len(spec.images) for spec in unread),
                     schema.REJECTS_NAME)
    checked = {(spec.split, spec.index): Checked(tuple(rejects))
               for spec, rejects in zip(unread, unread_rejects(unread, config))}
    return rejects_error(shards, {**results, **checked}, planned_images(shards), config)


def unread_rejects(specs: Sequence, config: WriteConfig) -> list[tuple]:
    """Each of `specs`' rejects ((path, reason), ...), decoded by --num_workers processes."""
    tasks = [(spec, config.image_size, config.resize) for spec in specs]
    workers = shard_writer.worker_count(config.num_workers, len(tasks))
    if workers <= 1:
        return [shard_writer.image_rejects_task(task) for task in tasks]
    with shard_writer.worker_pool(workers) as (pool, _):
        return pool.map(shard_writer.image_rejects_task, tasks, chunksize=1)


def write_rejects_csv(output_dir: str, rejects: Sequence[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(rejects))
    files.atomic_write_text(os.path.join(output_dir, schema.REJECTS_NAME), buffer.getvalue())
