"""Multi-host writing: one dataset written by several tasks side by side, then finalized once.

A task is one run of the write command with --num_tasks=n and its own --task_index=i, on any
host that sees the shared --output_dir: it writes the shards at plan positions p with
p % n == i, and no dataset.json. When every task is done, the same command once more with
--finalize checks that every shard is there (IncompleteError names those missing and their
tasks) and writes dataset.json, byte-identical to a one-host write.

Tasks never collide without talking to each other: every task computes the same plan from the
same listing, flags and seed (planning is pure), so the positions split the shards into
disjoint sets; each task cleans up only its own files (own_files), holds the directory's lock
shared and its own task's lock exclusively (lock.py), so the same task twice is refused.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from absl import logging

from pipeline import errors
from pipeline.core import schema
from pipeline.writing import output_dir, plan, tfds_export
from pipeline.writing.finish import Summary
from pipeline.writing.settings import WriteConfig
from pipeline.writing.write_plan import WritePlan

# Missing shards named by --finalize's message.
MISSING_NAMED = 5


class IncompleteError(errors.PipelineError, RuntimeError):
    """--finalize found shards that no task has written yet."""


def is_one_of_several(config: WriteConfig) -> bool:
    """A task of a multi-task write (not its --finalize): it shares the directory with the
    other tasks, and leaves dataset.json to --finalize."""
    return config.num_tasks > 1 and not config.finalize


def task_shards(shards: Sequence[plan.ShardSpec], num_tasks: int, task_index: int):
    """The shards task `task_index` of `num_tasks` writes: every num_tasks-th of the plan."""
    return [spec for position, spec in enumerate(shards)
            if position % num_tasks == task_index]


def own_files(config: WriteConfig, write_plan: WritePlan) -> set[str] | None:
    """The file names this run may clean up: None (all of them) for a one-task write; with
    several tasks sharing the directory, only this task's shards (and, for --finalize, the
    dataset-wide files, whose temporaries a killed --finalize leaves)."""
    if config.num_tasks == 1:
        return None
    own = {name for spec in task_shards(write_plan.shards, config.num_tasks, config.task_index)
           for name in output_dir.shard_files(spec, config.compression)}
    if config.finalize:
        own |= {schema.MANIFEST_NAME, schema.REJECTS_NAME, *tfds_export.METADATA_NAMES}
    return own


def check_all_written(config: WriteConfig, write_plan: WritePlan, results: Mapping) -> None:
    """--finalize: IncompleteError naming the shards no task has written, and their tasks."""
    missing = [(position, spec) for position, spec in enumerate(write_plan.shards)
               if (spec.split, spec.index) not in results]
    if not missing:
        return
    # The plan position decides the task (task_shards).
    named = ", ".join(f"{spec.filename(config.compression)} (task {position % config.num_tasks})"
                      for position, spec in missing[:MISSING_NAMED])
    more = f" and {len(missing) - MISSING_NAMED} more" if len(missing) > MISSING_NAMED else ""
    raise IncompleteError(
        f"--finalize: {len(missing)} of {len(write_plan.shards)} shards are not written yet: "
        f"{named}{more} (task numbers for --num_tasks={config.num_tasks}). Run the missing "
        "task(s) with the same flags, then --finalize again")


def task_summary(config: WriteConfig, write_plan: WritePlan, todo: Sequence[plan.ShardSpec],
                 seconds: float) -> Summary:
    """The Summary (no manifest yet) and last log line of one task's write of `todo`."""
    mine = len(task_shards(write_plan.shards, config.num_tasks, config.task_index))
    logging.info("task %d of %d: %d shard(s) written, %d kept, in %.1f s; when every task is "
                 "done, run the same command once with --finalize", config.task_index,
                 config.num_tasks, len(todo), mine - len(todo), seconds)
    return Summary(config.output_dir, None, len(todo), mine - len(todo), seconds,
                   write_plan.warnings)
