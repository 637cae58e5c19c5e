"""The output directory's state: whose it is, what is complete, what may be removed.

A write owns its output directory through a fingerprint of its plan and settings
(pipeline.writing.plan.fingerprint), kept in `.progress/plan.json` (progress_dir) while the
write is unfinished and in dataset.json once it is complete. The same command finds its own
directory and resumes (or finds it complete); another command is refused unless --overwrite,
which removes this tool's files there and only those.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Sequence

from absl import logging

from pipeline import errors
from pipeline.core import files, schema
from pipeline.writing import kept, plan, progress_dir, tfds_export
from pipeline.writing.shard_writer import ShardResult
from pipeline.writing.sources import MAX_EXAMPLES


class OutputDirError(errors.PipelineError, RuntimeError):
    """The output directory holds something this command must not touch."""


def is_our_file(name: str) -> bool:
    return (
        name in (schema.MANIFEST_NAME, schema.REJECTS_NAME, progress_dir.NAME,
                 *tfds_export.METADATA_NAMES)
        or schema.is_shard_file(name)
        or (files.is_temp_name(name) and _is_our_file_base(name))
    )


def _is_our_file_base(name: str) -> bool:
    return is_our_file(name.rpartition(files.TEMP_MARKER)[0])


def read_plan_fingerprint(output_dir: str) -> str | None:
    """The fingerprint of the write that owns `output_dir` (complete or not), if any."""
    manifest_file = schema.manifest_path(output_dir)
    if os.path.exists(manifest_file):
        try:
            return schema.read_manifest(output_dir).fingerprint
        except schema.FormatError:
            return None
    return progress_dir.read_plan_fingerprint(output_dir)


def prepare_output_dir(output_dir: str, fingerprint: str, overwrite: bool,
                       older: Sequence[str] = ()) -> str:
    """Make `output_dir` ready; returns "new", "resume" or "complete". `older`: the same
    write's fingerprints in older formats, whose output is kept and upgraded (kept.py).

    Refuses (OutputDirError) a non-empty directory that belongs to another command, unless
    `overwrite`, which removes this tool's files there (and only those).
    """
    entries = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
    if entries == [progress_dir.NAME] and read_plan_fingerprint(output_dir) is None:
        entries = []  # only the locks of writers that had not planned yet: nothing to keep
    if entries:
        owner = read_plan_fingerprint(output_dir)
        if owner in (fingerprint, *older) and not overwrite:
            complete = os.path.exists(schema.manifest_path(output_dir))
            return "complete" if complete else "resume"
        if not overwrite:
            what = (
                "a dataset written by a different command (other input, flags or seed)"
                if owner else f"{len(entries)} file(s) not written by this command, e.g. "
                f"{entries[:MAX_EXAMPLES]}"
            )
            raise OutputDirError(
                f"--output_dir={output_dir} is not empty: it holds {what}. Choose another "
                "--output_dir, or pass --overwrite to replace this tool's files there."
            )
        removed = clear_output_dir(output_dir)
        logging.info("--overwrite: removed %d file(s) from %s", removed, output_dir)
        foreign = sorted(os.listdir(output_dir))
        if foreign:
            logging.warning("left %d file(s) this tool did not write in %s: %s", len(foreign),
                            output_dir, foreign[:MAX_EXAMPLES])
    progress_dir.write_plan_fingerprint(output_dir, fingerprint)
    return "new"


def clear_output_dir(output_dir: str) -> int:
    removed = 0
    for name in os.listdir(output_dir):
        if not is_our_file(name):
            continue
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        removed += 1
    return removed


def shard_files(spec: plan.ShardSpec, compression: str) -> list[str]:
    """The files writing `spec` makes: the shard, and the DALI index and record index of an
    uncompressed one."""
    filename = spec.filename(compression)
    indexes = [schema.dali_index_filename(filename, compression),
               schema.record_index_filename(filename, compression)]
    return [filename, *(name for name in indexes if name is not None)]


def load_completed_shard(output_dir: str, spec: plan.ShardSpec, compression: str,
                         image_bytes: int):
    """The ShardResult of a shard an earlier run completed, or None if it must be (re)written:
    its progress record is missing, or the shard is not the one recorded (kept.py)."""
    filename = spec.filename(compression)
    record = progress_dir.read_shard_record(output_dir, filename)
    if record is None:
        return None
    try:
        result = ShardResult.from_json(record)
    except (json.JSONDecodeError, KeyError, TypeError):  # unreadable: write the shard again
        return None
    if result.file != filename or result.images_seen != len(spec.images):
        return None
    if kept.check_kept_shard(output_dir, result, compression=compression,
                             image_bytes=image_bytes, widths=spec.widths) is not None:
        return None
    return result


def free_bytes(path: str) -> int:
    """Bytes free on the disk `path` is on, or would be on: its nearest existing parent's."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free
