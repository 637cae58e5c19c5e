r"""`write_dataset`: an image dataset in, sharded raw uint8 CHW TFRecords plus `dataset.json` out.

    from pipeline.writing.settings import WriteConfig
    from pipeline.writing.writer import write_dataset
    write_dataset(WriteConfig(output_dir="workspace/shards/leaves", input="data/train.csv"))

Plan, then write, then verify (as tensorflow_datasets' writer does): the plan (splits, shard
contents, record order) is computed up front from the listing and the settings alone
(write_plan); writing only decodes and serialises it, one whole shard per worker process
(shard_writer); verification checks every shard against the plan before `dataset.json` is
written, last and atomically (finish). Uncompressed shards also get the index NVIDIA DALI's
TFRecord reader needs (`<shard>.idx`, see pipeline.core.schema), and uncompressed datasets the
metadata `tfds.builder_from_directory` reads (tfds_export). This module runs those steps in
order; hosts writing one dataset together (--num_tasks) differ only in which shards each
writes (tasks).

Interrupting the writer at any moment (even SIGKILL) is safe: each shard is written under a
temporary name and renamed when complete, and a small record of it goes to `.progress/`
(progress_dir); the same command run again keeps those shards, once their bytes are checked
(kept), and writes the rest (output_dir); over a complete dataset it checks and repairs every
shard. Output bytes depend only on the input, the settings and the seed, never on
--num_workers or on interruptions.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import time
from typing import Iterator, Sequence

from absl import logging

from pipeline import errors
from pipeline.core import files, schema, units
from pipeline.writing import (kept, lock, output_dir, plan, progress_dir, rejects, restore,
                              settings, shard_writer, tasks)
from pipeline.writing.finish import Summary, VerificationError, finish, log_summary
from pipeline.writing.progress_bar import ProgressBar
from pipeline.writing.settings import WriteConfig
from pipeline.writing.shard_writer import ShardResult
from pipeline.writing.write_plan import WritePlan, make_plan

# How often the parent wakes to update the progress display (seconds).
PROGRESS_POLL_S = 0.5


def write_dataset(config: WriteConfig) -> Summary:
    """Plan, write and verify a dataset; returns a Summary. See the module docstring."""
    start = time.monotonic()
    settings.check(config)
    write_plan = make_plan(config)
    try:
        return write_holding_dir(config, write_plan, start)
    except OSError as err:  # before the first shard: the lock, .progress/, a read-only disk
        if isinstance(err, errors.PipelineError) or err.errno not in errors.DISK_ERRNOS:
            raise  # ours, or a path of the wrong kind: the command's one-line user error
        raise write_failed(err, config, write_plan) from err


def write_holding_dir(config: WriteConfig, write_plan: WritePlan, start: float) -> Summary:
    """write_dataset once planned: the directory held (lock.py), prepared, written."""
    one_of_several = tasks.is_one_of_several(config)
    with lock.locked_output_dir(config.output_dir, shared=one_of_several):  # one writer: lock.py
        state = output_dir.prepare_output_dir(config.output_dir, write_plan.fingerprint,
                                              config.overwrite, write_plan.older)
        holder = lock.record_holder(config.output_dir)
        try:
            if state == "complete":
                summary = repair_complete(config, write_plan, start)
                if not one_of_several:  # what a write killed after dataset.json left: no use
                    progress_dir.remove(config.output_dir)
                return summary
            with (lock.locked_task(config.output_dir, config.task_index, config.num_tasks)
                  if one_of_several else contextlib.nullcontext()):
                return write_locked(config, write_plan, start)
        except OSError as err:
            raise write_failed(err, config, write_plan) from err
        finally:
            with contextlib.suppress(FileNotFoundError):  # finish removes .progress/
                os.remove(holder)
            if state == "complete":  # another task may still have files there
                progress_dir.remove_if_empty(config.output_dir)


def repair_complete(config: WriteConfig, write_plan: WritePlan, start: float) -> Summary:
    """The same command over its complete dataset: check this task's shards (every shard for
    one task or --finalize) against dataset.json and rewrite those that differ (kept.py)."""
    manifest = schema.read_manifest(config.output_dir)
    changed = kept.check_manifest(config.output_dir, manifest, {
        "image_shape": [3, config.image_size, config.image_size],
        "classes": list(write_plan.main.classes), "compression": config.compression,
        "shards": sorted(spec.filename(config.compression) for spec in write_plan.shards)})
    if changed:
        raise output_dir.OutputDirError(changed)
    restore.restore_rejects(config, manifest, write_plan.shards)
    listed = {shard.file: shard for info in manifest.splits.values() for shard in info.shards}
    mine = [listed[spec.filename(config.compression)] for spec in (
        write_plan.shards if config.finalize else
        tasks.task_shards(write_plan.shards, config.num_tasks, config.task_index))]
    damaged = {shard.file for shard in mine if kept.check_kept_shard(
        config.output_dir, shard, compression=config.compression,
        image_bytes=config.image_bytes, widths=write_plan.widths) is not None}
    todo = [spec for spec in write_plan.shards if spec.filename(config.compression) in damaged]
    results: dict = {}
    # No reject limit: a rewritten shard must be the listed one, its rejects included.
    _run_shards(todo, results, config, sum(len(spec.images) for spec in todo), None)
    for result in results.values():
        if result.sha256 != listed[result.file].sha256:
            raise VerificationError(
                f"{result.file} was written again but differs from the one dataset.json lists: "
                "the source images changed since the dataset was written. Write it again "
                "with --overwrite")
        progress_dir.remove_shard_record(config.output_dir, result.file)
    if len(mine) == len(write_plan.shards):  # else --finalize upgrades an older format
        manifest = kept.settle_manifest(config.output_dir, manifest, write_plan.fingerprint)
    checked = sum(shard.bytes for shard in mine)
    seconds = time.monotonic() - start
    logging.info("%s is complete for this command: %d shard(s) (%s) checked against %s, "
                 "%d rewritten, in %.1f s", config.output_dir, len(mine),
                 units.format_bytes(checked), schema.MANIFEST_NAME, len(todo), seconds)
    return Summary(config.output_dir, manifest, len(todo), len(mine) - len(todo), seconds,
                   write_plan.warnings)


class WriteFailed(errors.PipelineError, OSError):
    """The disk (or the file system) failed the write: exit 3, the complete shards kept."""

    exit_code = errors.EXIT_IO


# A record's bytes beyond its pixels (the path, the Example's keys, the framing), for the
# room a write still needs: a 224x224 record is ~147 KiB, so this need not be exact.
RECORD_OVERHEAD_BYTES = 256


def write_failed(err: OSError, config: WriteConfig, write_plan: WritePlan) -> WriteFailed:
    """One line for an OSError while writing: the path, and with a full disk the bytes the
    write still needs and the bytes free."""
    path = err.filename or config.output_dir
    try:
        done = completed_shards(config, write_plan)
    except OSError:  # the failure came before any progress could be read
        done = {}
    left = sum(len(spec.images) for spec in write_plan.shards
               if (spec.split, spec.index) not in done)
    needed = left * (config.image_bytes + RECORD_OVERHEAD_BYTES)
    free = output_dir.free_bytes(config.output_dir)
    room = (f"about {needed:,} bytes still to write and {free:,} free there. Make room (or "
            "choose another --output_dir), then run the same command again: the "
            f"{len(done)} complete shard(s) are kept") if err.errno in (
                errno.ENOSPC, errno.EDQUOT) else "run the same command again once it is fixed"
    return WriteFailed(f"cannot write {path}: {err.strerror or err}; {room}")


def write_locked(config: WriteConfig, write_plan: WritePlan, start: float) -> Summary:
    """write_dataset's work once the directory is this writer's."""
    results = completed_shards(config, write_plan)
    if config.finalize:
        tasks.check_all_written(config, write_plan, results)
        todo = []
    else:
        todo = write_missing_shards(config, write_plan, results)
        if config.num_tasks > 1:
            return tasks.task_summary(config, write_plan, todo, time.monotonic() - start)
    manifest = finish(config, write_plan, results)
    summary = Summary(config.output_dir, manifest, len(todo), len(write_plan.shards) - len(todo),
                      time.monotonic() - start, write_plan.warnings,
                      rejects.rejected(write_plan.shards, results))
    log_summary(summary, write_plan.total_images)
    return summary


def completed_shards(config: WriteConfig,
                     write_plan: WritePlan) -> dict[tuple[str, int], ShardResult]:
    """Remove what an interrupted run left half-written; {(split, index): result} of the
    shards it completed, which are kept."""
    leftovers = files.remove_temp_files(config.output_dir, tasks.own_files(config, write_plan))
    if leftovers:
        logging.info("removed %d temporary file(s) of an interrupted run", len(leftovers))
    results = {}
    for spec in write_plan.shards:
        done = output_dir.load_completed_shard(config.output_dir, spec, config.compression,
                                               config.image_bytes)
        if done is not None:
            results[(spec.split, spec.index)] = done
    if results:
        logging.info("resuming: %d of %d shards are complete and kept", len(results),
                     len(write_plan.shards))
    return results


def write_missing_shards(config: WriteConfig, write_plan: WritePlan,
                         results: dict) -> list[plan.ShardSpec]:
    """Write this task's shards that are not complete yet, into `results`; returns them."""
    mine = tasks.task_shards(write_plan.shards, config.num_tasks, config.task_index)
    todo = [spec for spec in mine if (spec.split, spec.index) not in results]
    try:
        _run_shards(todo, results, config, write_plan.total_images, write_plan.shards)
    finally:
        files.remove_temp_files(config.output_dir, tasks.own_files(config, write_plan))
    return todo


def _run_shards(todo, results, config: WriteConfig, total_images: int,
                plan_shards: Sequence[plan.ShardSpec] | None) -> None:
    """Write the `todo` shards into `results`, stopping as soon as a split of `plan_shards`
    has more rejects than its limit allows (rejects.check_rejects; the count can only grow
    from there: writing the rest would be wasted, its images are only decoded to list every
    reject); None: no reject limit."""
    done_images = sum(r.images_seen for r in results.values())
    progress = ProgressBar(total_images, done_images, config.show_progress)
    planned = rejects.planned_images(plan_shards or ())
    # closing(): an early stop must end the pool now, not when the generator is collected.
    written = contextlib.closing(_shard_results(todo, config, progress, done_images))
    try:
        with written as shard_results:
            for spec, result in shard_results:
                results[(spec.split, spec.index)] = result
                if plan_shards is not None and result.rejects:
                    rejects.check_rejects(plan_shards, results, planned, config)
    except rejects.TooManyRejects as stopped:
        progress.close()
        raise rejects.every_reject(plan_shards, results, todo, config) or stopped from None
    finally:
        progress.close()


def _shard_results(todo, config: WriteConfig, progress: ProgressBar,
                   done_images: int) -> Iterator[tuple[plan.ShardSpec, ShardResult]]:
    """(spec, result) of every `todo` shard in order, written in this process or, with more
    than one worker, in a pool of worker processes."""
    kwargs = dict(image_size=config.image_size, resize=config.resize,
                  compression=config.compression)
    workers = shard_writer.worker_count(config.num_workers, len(todo))
    if workers <= 1:
        # write_shard reports every image of the shard through on_progress.
        def tick(n: int) -> None:
            progress.update_to(progress.done + n)

        for spec in todo:
            yield spec, shard_writer.write_shard(spec, config.output_dir, on_progress=tick,
                                                 **kwargs)
        return
    with shard_writer.worker_pool(workers) as (pool, counter):
        work = [(spec, config.output_dir, kwargs) for spec in todo]
        pending = pool.imap(shard_writer.write_shard_task, work, chunksize=1)
        for spec in todo:
            while True:
                try:
                    result = pending.next(timeout=PROGRESS_POLL_S)
                    break
                except multiprocessing.TimeoutError:
                    progress.update_to(done_images + counter.value)
            progress.update_to(done_images + counter.value)
            yield spec, result
