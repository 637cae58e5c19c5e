r"""Convert an image dataset into sharded raw uint8 CHW TFRecords plus `dataset.json`.

    python -m pipeline.write                      # the bundled sample (digits), offline
    python -m pipeline.write --input=data/train.csv --test_input=data/test.csv --shards=36
    python -m pipeline.write --input=data/flowers/ --image_size=160 --resize=center_crop
    python -m pipeline.write --input=tfds:cifar10 --test_input=tfds:cifar10:test \
        --tfds_data_dir=/data/tensorflow_datasets   # a TFDS dataset prepared there, offline

Plan, then write, then verify (as tensorflow_datasets' writer does): the plan (splits, shard
contents, record order) is computed up front from the listing and the flags alone; writing only
decodes and serialises it, one whole shard per worker process; verification checks every shard
against the plan before `dataset.json` is written, last and atomically. Uncompressed shards
also get the index NVIDIA DALI's TFRecord reader needs (`<shard>.idx`, see pipeline.schema),
and uncompressed datasets the metadata `tfds.builder_from_directory` reads (pipeline.tfds_export).

An input is a CSV, a class-folder tree, or a TensorFlow Datasets split that is already prepared
locally (`tfds:NAME[/CONFIG][:SPLIT]`, see pipeline.tfds_source: its images are staged once as
files, its ClassLabel names are the class names; nothing is downloaded).

Interrupting the writer at any moment (even SIGKILL) is safe: each shard is written under a
temporary name and renamed when complete, and a small record of it goes to `.progress/`; the
same command run again keeps those shards and writes the rest. Output bytes depend only on the
input, the flags and the seed, never on --num_workers or on interruptions.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from typing import Mapping, Sequence

from absl import app, flags, logging

from pipeline import files, plan, schema, tfds_export, tfds_source, workspace
from pipeline.images import RESIZE_MODES
from pipeline.sample import SAMPLE_NAME, ensure_sample_dataset
from pipeline.shard_writer import (PROGRESS_DIR, ShardResult, init_worker, progress_record_path,
                                   worker_context, write_shard, write_shard_task)
from pipeline.sources import InputError, Listing, load_listing

PLAN_NAME = "plan.json"
DEFAULT_TRAIN_SHARDS = 36
DEFAULT_IMAGE_SIZE = 224
# How often the parent wakes to update the progress display (seconds).
PROGRESS_POLL_S = 0.5
# Without a terminal, progress is logged at most this often (seconds).
PROGRESS_LOG_EVERY_S = 10.0
# Rejected images named in the error when there are too many.
REJECTS_TO_NAME = 5

# A shard, or the DALI index of an uncompressed one.
_SHARD_FILE = re.compile(r"^[\w.]+-\d{5}-of-\d{5}\.tfrecord(\.gz|\.zlib|%s)?$"
                         % re.escape(schema.DALI_INDEX_SUFFIX))


class OutputDirError(RuntimeError):
    """The output directory holds something this command must not touch."""


class TooManyRejects(RuntimeError):
    """More images failed to decode than --max_reject_fraction allows."""


class VerificationError(RuntimeError):
    """What was written does not match the plan."""


@dataclasses.dataclass(frozen=True)
class WriteConfig:
    """Everything a write needs; `write_dataset(WriteConfig(...))` is the library entry point."""

    output_dir: str
    input: str | None = None  # None: the bundled sample dataset; "tfds:NAME[/CONFIG][:SPLIT]"
    test_input: str | None = None  # an unlabeled CSV, or a tfds: split, as the `test` split
    image_column: str = "image"
    label_column: str = "label"
    label_column_required: bool = False
    # tfds: inputs only. None: TFDS's default data dir / the dataset's Image and ClassLabel.
    tfds_data_dir: str | None = None
    tfds_image_key: str | None = None
    tfds_label_key: str | None = None
    shards: int = DEFAULT_TRAIN_SHARDS
    val_shards: int = 0  # 0: proportional to the train split
    test_shards: int = 0
    image_size: int = DEFAULT_IMAGE_SIZE
    resize: str = "squash"
    val_fraction: float = 0.1
    folds: int = 0
    fold: int = 0
    seed: int = 0
    num_workers: int = 0  # 0: one per CPU
    compression: str = "NONE"
    max_reject_fraction: float = 0.01
    overwrite: bool = False
    show_progress: bool | None = None  # None: a progress bar when stderr is a terminal
    # Several hosts writing one plan: task i writes the shards whose plan position p has
    # p % num_tasks == i and no manifest; one `finalize` run afterwards checks every shard and
    # writes dataset.json. Neither changes a byte of the output.
    num_tasks: int = 1
    task_index: int = 0
    finalize: bool = False

    def output_settings(self) -> dict:
        """The settings that decide output bytes (with the plan: see plan.fingerprint)."""
        return {
            "format_version": schema.FORMAT_VERSION,
            "image_size": self.image_size,
            "resize": self.resize,
            "compression": self.compression,
        }


@dataclasses.dataclass(frozen=True)
class Summary:
    output_dir: str
    manifest: schema.Manifest | None  # None after one task of several (no --finalize yet)
    written: int  # shards written by this run
    reused: int  # shards kept from an interrupted run
    seconds: float


# ---------------------------------------------------------------------------------------------
# Listing and plan
# ---------------------------------------------------------------------------------------------


def resolve_inputs(config: WriteConfig) -> tuple[Listing, Listing | None]:
    """(labeled or only listing, test listing or None) for the config. A test listing is
    unlabeled, or a tfds: split labeled with --input's classes."""
    input_path, test_input = config.input, config.test_input
    if input_path is None:
        sample = ensure_sample_dataset(workspace.raw_dir())
        input_path = os.path.join(sample, "train.csv")
        test_input = test_input or os.path.join(sample, "test.csv")
    check_input_flags(config, [input_path, test_input])
    main = load_input(input_path, config, label_column_required=config.label_column_required)
    test = None
    if test_input is not None:
        if not main.labeled:
            raise InputError(
                f"--input={input_path} is already unlabeled; --test_input adds an unlabeled split "
                "beside a labeled --input"
            )
        test = load_input(test_input, config)
        if test.labeled and not tfds_source.is_tfds_input(test_input):
            raise InputError(
                f"--test_input={test_input} has a {config.label_column!r} column; the test split "
                "is unlabeled (give labeled data through --input)"
            )
        if test.labeled and test.classes != main.classes:
            raise InputError(
                f"--test_input={test_input} is labeled with the classes "
                f"{list(test.classes)[:REJECTS_TO_NAME]}, --input with "
                f"{list(main.classes)[:REJECTS_TO_NAME]}: a labeled test split needs the same "
                "classes in the same order (another split of the same TFDS dataset)"
            )
    return main, test


def load_input(given: str, config: WriteConfig, *, label_column_required: bool = False):
    """One --input or --test_input -> Listing: a tfds: split, a CSV or a class-folder tree."""
    if tfds_source.is_tfds_input(given):
        # `--tfds_data_dir=~/...`: the shell leaves a tilde after `=` alone.
        data_dir = os.path.expanduser(config.tfds_data_dir or tfds_source.default_data_dir())
        return tfds_source.load_tfds_listing(
            given, data_dir=data_dir,
            staging_root=os.path.join(workspace.raw_dir(), tfds_source.STAGING_DIR),
            image_key=config.tfds_image_key, label_key=config.tfds_label_key)
    return load_listing(given, image_column=config.image_column,
                        label_column=config.label_column,
                        label_column_required=label_column_required)


def check_input_flags(config: WriteConfig, inputs: Sequence[str | None]) -> None:
    """A flag for a kind of input that none of `inputs` is would be silently ignored."""
    tfds_inputs = [given for given in inputs if tfds_source.is_tfds_input(given)]
    tfds_flags = [f"--{name}={value}" for name, value in (
        ("tfds_data_dir", config.tfds_data_dir), ("tfds_image_key", config.tfds_image_key),
        ("tfds_label_key", config.tfds_label_key)) if value is not None]
    if tfds_flags and not tfds_inputs:
        raise InputError(f"{' '.join(tfds_flags)} apply to a tfds:NAME input, and neither "
                         "--input nor --test_input is one")
    if tfds_inputs and len(tfds_inputs) == len([given for given in inputs if given]):
        csv_flags = [flag for flag, given in (
            (f"--image_column={config.image_column}", config.image_column != "image"),
            (f"--label_column={config.label_column}", config.label_column_required)) if given]
        if csv_flags:
            raise InputError(f"{' '.join(csv_flags)} name CSV columns; a tfds: input takes its "
                             "features from --tfds_image_key / --tfds_label_key")


def split_listings(main: Listing, test: Listing | None, config: WriteConfig):
    if config.folds > 1 and not 0 <= config.fold < config.folds:
        raise plan.PlanError(f"--fold={config.fold} must be in [0, {config.folds - 1}]")
    if config.folds == 1 or config.folds < 0:
        raise plan.PlanError(f"--folds={config.folds}: use 0 (no folds) or at least 2")
    if not 0.0 <= config.val_fraction < 1.0:
        raise plan.PlanError(f"--val_fraction={config.val_fraction} must be in [0, 1)")
    if main.labeled:
        splits = plan.split_labeled(
            main.images, val_fraction=config.val_fraction, folds=config.folds, fold=config.fold
        )
    else:
        splits = {schema.TEST: list(main.images)}
    if test is not None:
        overlap = {image.path for image in main.images} & {image.path for image in test.images}
        if overlap:
            raise InputError(
                f"{len(overlap)} image(s) are listed both in --input and --test_input, e.g. "
                f"{sorted(overlap)[:REJECTS_TO_NAME]}"
            )
        splits[schema.TEST] = list(test.images)
    return splits


def default_output_dir(config: WriteConfig) -> str:
    if config.input is None:
        return workspace.shards_dir(SAMPLE_NAME)
    if tfds_source.is_tfds_input(config.input):
        return workspace.shards_dir(tfds_source.default_output_name(config.input))
    source = os.path.abspath(config.input)
    name = os.path.basename(source if os.path.isdir(source) else os.path.dirname(source))
    return workspace.shards_dir(name or "dataset")


# ---------------------------------------------------------------------------------------------
# Output directory state
# ---------------------------------------------------------------------------------------------


def is_our_file(name: str) -> bool:
    return (
        name in (schema.MANIFEST_NAME, schema.REJECTS_NAME, PROGRESS_DIR,
                 *tfds_export.METADATA_NAMES)
        or bool(_SHARD_FILE.match(name))
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
    try:
        with open(os.path.join(output_dir, PROGRESS_DIR, PLAN_NAME), encoding="utf-8") as f:
            return json.load(f).get("fingerprint")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def prepare_output_dir(output_dir: str, fingerprint: str, overwrite: bool) -> str:
    """Make `output_dir` ready; returns "new", "resume" or "complete".

    Refuses (OutputDirError) a non-empty directory that belongs to another command, unless
    `overwrite`, which removes this tool's files there (and only those).
    """
    entries = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
    if entries:
        owner = read_plan_fingerprint(output_dir)
        if owner == fingerprint and not overwrite:
            complete = os.path.exists(schema.manifest_path(output_dir))
            return "complete" if complete else "resume"
        if not overwrite:
            what = (
                "a dataset written by a different command (other input, flags or seed)"
                if owner else f"{len(entries)} file(s) not written by this command, e.g. "
                f"{entries[:REJECTS_TO_NAME]}"
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
                            output_dir, foreign[:REJECTS_TO_NAME])
    os.makedirs(os.path.join(output_dir, PROGRESS_DIR), exist_ok=True)
    plan_file = os.path.join(output_dir, PROGRESS_DIR, PLAN_NAME)
    files.atomic_write_text(plan_file, json.dumps({"fingerprint": fingerprint}) + "\n")
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
    """The files writing `spec` makes: the shard, and the DALI index of an uncompressed one."""
    filename = spec.filename(compression)
    index_file = schema.dali_index_filename(filename, compression)
    return [filename] if index_file is None else [filename, index_file]


def load_completed_shard(output_dir: str, spec: plan.ShardSpec, compression: str):
    """The ShardResult of a shard an earlier run completed, or None if it must be (re)written."""
    filename = spec.filename(compression)
    try:
        with open(progress_record_path(output_dir, filename), encoding="utf-8") as f:
            result = ShardResult.from_json(f.read())
        size = os.path.getsize(os.path.join(output_dir, filename))
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return None
    # The index is written before the progress record, so it is there unless someone removed it.
    if not all(os.path.exists(os.path.join(output_dir, name))
               for name in shard_files(spec, compression)):
        return None
    if result.file != filename or size != result.bytes:
        return None
    if result.images_seen != len(spec.images):
        return None
    return result


# ---------------------------------------------------------------------------------------------
# Progress display
# ---------------------------------------------------------------------------------------------


class Progress:
    """A tqdm bar on a terminal; otherwise a log line every PROGRESS_LOG_EVERY_S seconds."""

    def __init__(self, total: int, done: int, show_bar: bool | None):
        self.total, self.done, self.start_done = total, done, done
        self.start = time.monotonic()
        self.last_log = self.start
        if show_bar is None:
            show_bar = sys.stderr.isatty()
        self.bar = None
        if show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="img", dynamic_ncols=True,
                            desc="writing", smoothing=0.1)

    def update_to(self, done: int) -> None:
        done = min(done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self.bar is None and now - self.last_log >= PROGRESS_LOG_EVERY_S:
            self.last_log = now
            rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            logging.info("%d/%d images (%.0f%%), %.0f img/s, ETA %.0f s", self.done, self.total,
                         100 * self.done / max(self.total, 1), rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# The write
# ---------------------------------------------------------------------------------------------


def write_dataset(config: WriteConfig) -> Summary:
    """Plan, write and verify a dataset; returns a Summary. See the module docstring."""
    start = time.monotonic()
    _check_config(config)
    main, test = resolve_inputs(config)
    splits = split_listings(main, test, config)
    counts = plan.shard_counts(
        {name: len(images) for name, images in splits.items()}, config.shards,
        {schema.VAL: config.val_shards, schema.TEST: config.test_shards},
    )
    shards = plan.plan_shards(splits, counts, seed=config.seed)
    sources = source_ids(main, test)
    fingerprint = plan.fingerprint(shards, {**config.output_settings(), **sources})
    output_dir = config.output_dir
    logging.info("input: %s%s", main.description, f"; test: {test.description}" if test else "")
    logging.info("plan: %s -> %s", ", ".join(
        f"{name} {len(images):,} images in {counts[name]} shards"
        for name, images in sorted(splits.items())), output_dir)

    state = prepare_output_dir(output_dir, fingerprint, config.overwrite)
    if state == "complete":
        manifest = schema.read_manifest(output_dir)
        logging.info("%s is already complete for this command; nothing to do", output_dir)
        return Summary(output_dir, manifest, 0, len(shards), time.monotonic() - start)
    # Several tasks share the directory: each clears only its own shards' leftovers.
    mine = task_shards(shards, config.num_tasks, config.task_index)
    own = None if config.num_tasks == 1 else {
        name for spec in mine for name in shard_files(spec, config.compression)}
    if own is not None and config.finalize:
        # --finalize writes the dataset-wide files: a killed --finalize leaves their temps.
        own |= {schema.MANIFEST_NAME, schema.REJECTS_NAME, *tfds_export.METADATA_NAMES}
    leftovers = files.remove_temp_files(output_dir, own)
    if leftovers:
        logging.info("removed %d temporary file(s) of an interrupted run", len(leftovers))

    results: dict[tuple[str, int], ShardResult] = {}
    for spec in shards:
        done = load_completed_shard(output_dir, spec, config.compression)
        if done is not None:
            results[(spec.split, spec.index)] = done
    if results:
        logging.info("resuming: %d of %d shards are complete and kept", len(results), len(shards))
    total_images = sum(len(spec.images) for spec in shards)
    if config.finalize:
        missing = [(position, spec) for position, spec in enumerate(shards)
                   if (spec.split, spec.index) not in results]
        if missing:
            raise IncompleteError(_missing_message(len(shards), missing, config))
        todo = []
    else:
        todo = [spec for spec in mine if (spec.split, spec.index) not in results]
        try:
            _run_shards(todo, results, config, total_images)
        finally:
            files.remove_temp_files(output_dir, own)
        if config.num_tasks > 1:
            seconds = time.monotonic() - start
            logging.info("task %d of %d: %d shard(s) written, %d kept, in %.1f s; when every "
                         "task is done, run the same command once with --finalize",
                         config.task_index, config.num_tasks, len(todo), len(mine) - len(todo),
                         seconds)
            return Summary(output_dir, None, len(todo), len(mine) - len(todo), seconds)

    manifest = finish(output_dir, shards, results, main.classes, config, fingerprint, sources)
    seconds = time.monotonic() - start
    summary = Summary(output_dir, manifest, len(todo), len(shards) - len(todo), seconds)
    log_summary(summary, total_images)
    return summary


def _missing_message(planned: int, missing, config: WriteConfig) -> str:
    """`missing`: (plan position, spec) pairs; the position decides the task (task_shards)."""
    named = ", ".join(f"{spec.filename(config.compression)} (task {position % config.num_tasks})"
                      for position, spec in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (f"--finalize: {len(missing)} of {planned} shards are not written yet: {named}{more} "
            f"(task numbers for --num_tasks={config.num_tasks}). Run the missing task(s) with "
            "the same flags, then --finalize again")


def _check_config(config: WriteConfig) -> None:
    if config.image_size < 1:
        raise plan.PlanError(f"--image_size={config.image_size} must be a positive number of pixels")
    if config.resize not in RESIZE_MODES:
        raise plan.PlanError(f"--resize={config.resize!r}: use one of {list(RESIZE_MODES)}")
    if config.compression not in schema.COMPRESSION_SUFFIXES:
        raise plan.PlanError(f"--compression={config.compression!r}: use one of "
                             f"{sorted(schema.COMPRESSION_SUFFIXES)}")
    if config.shards < 1:
        raise plan.PlanError(f"--shards={config.shards} must be at least 1")
    if not 0.0 <= config.max_reject_fraction <= 1.0:
        raise plan.PlanError(
            f"--max_reject_fraction={config.max_reject_fraction} must be in [0, 1]")
    if config.num_tasks < 1 or not 0 <= config.task_index < config.num_tasks:
        raise plan.PlanError(
            f"--num_tasks={config.num_tasks} --task_index={config.task_index}: need "
            f"num_tasks >= 1 and 0 <= task_index < num_tasks")
    if config.num_tasks > 1 and config.overwrite:
        raise plan.PlanError("--overwrite with --num_tasks > 1 would let one task delete the "
                             "others' shards; clear --output_dir once before starting the tasks")


class IncompleteError(RuntimeError):
    """--finalize found shards that no task has written yet."""


def task_shards(shards: Sequence[plan.ShardSpec], num_tasks: int, task_index: int):
    """The shards task `task_index` of `num_tasks` writes: every num_tasks-th of the plan."""
    return [spec for position, spec in enumerate(shards)
            if position % num_tasks == task_index]


def _run_shards(todo, results, config: WriteConfig, total_images: int) -> None:
    """Write the `todo` shards, in parallel when there is more than one worker."""
    done_images = sum(r.images_seen for r in results.values())
    progress = Progress(total_images, done_images, config.show_progress)
    kwargs = dict(image_size=config.image_size, resize=config.resize,
                  compression=config.compression)
    rejects = sum(len(r.rejects) for r in results.values())
    allowed = config.max_reject_fraction * total_images
    workers = min(config.num_workers or os.cpu_count() or 1, max(len(todo), 1))

    def accept(spec: plan.ShardSpec, result: ShardResult) -> None:
        nonlocal rejects
        results[(spec.split, spec.index)] = result
        rejects += len(result.rejects)
        if rejects > allowed:
            # The fraction can only grow from here: stop now rather than decode the rest.
            raise too_many_rejects(results, rejects, total_images, config.max_reject_fraction,
                                   config.output_dir)

    try:
        if workers <= 1:
            # write_shard reports every image of the shard through on_progress.
            def tick(n: int) -> None:
                progress.update_to(progress.done + n)

            for spec in todo:
                accept(spec, write_shard(spec, config.output_dir, on_progress=tick, **kwargs))
            return
        context = worker_context()
        counter = context.Value("q", 0)
        with context.Pool(workers, initializer=init_worker, initargs=(counter,)) as pool:
            tasks = [(spec, config.output_dir, kwargs) for spec in todo]
            pending = pool.imap(write_shard_task, tasks, chunksize=1)
            for spec in todo:
                while True:
                    try:
                        result = pending.next(timeout=PROGRESS_POLL_S)
                        break
                    except multiprocessing.TimeoutError:
                        progress.update_to(done_images + counter.value)
                accept(spec, result)
                progress.update_to(done_images + counter.value)
    finally:
        progress.close()


def too_many_rejects(results, rejects: int, total: int, fraction: float, output_dir: str):
    listed = sorted(r for result in results.values() for r in result.rejects)
    write_rejects_csv(output_dir, listed)
    examples = "; ".join(f"{path}: {reason}" for path, reason in listed[:REJECTS_TO_NAME])
    return TooManyRejects(
        f"{rejects} of {total} images could not be read, more than --max_reject_fraction="
        f"{fraction} allows ({fraction * total:.1f}). First: {examples}. All are listed in "
        f"{os.path.join(output_dir, schema.REJECTS_NAME)}. Fix or remove them, or raise "
        "--max_reject_fraction; completed shards are kept for the next run."
    )


def write_rejects_csv(output_dir: str, rejects: Sequence[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(rejects))
    files.atomic_write_text(os.path.join(output_dir, schema.REJECTS_NAME), buffer.getvalue())


def verify(output_dir: str, shards: Sequence[plan.ShardSpec],
           results: Mapping[tuple[str, int], ShardResult], compression: str) -> None:
    """Every planned shard exists, holds planned minus rejected records, has its size, and
    (uncompressed) has its DALI index."""
    for spec in shards:
        result = results.get((spec.split, spec.index))
        name = spec.filename(compression)
        if result is None:
            raise VerificationError(f"shard {name} was planned but never written")
        if result.images_seen != len(spec.images):
            raise VerificationError(
                f"{name}: planned {len(spec.images)} images, wrote {result.count} records and "
                f"rejected {len(result.rejects)}"
            )
        size = os.path.getsize(os.path.join(output_dir, name))
        if size != result.bytes:
            raise VerificationError(f"{name}: {size} bytes on disk, {result.bytes} written")
        missing = [f for f in shard_files(spec, compression)
                   if not os.path.exists(os.path.join(output_dir, f))]
        if missing:
            raise VerificationError(f"{name}: {missing[0]} is missing; run the same command "
                                    "again to rewrite the shard with it")


def source_ids(main: Listing, test: Listing | None) -> dict:
    """{"sources": [...]} for inputs whose paths do not decide their images' bytes (a TFDS
    split's version and features), so that a changed source is a different command; {} for
    files, leaving their fingerprints and manifests as they were."""
    ids = [listing.source_id for listing in (main, test) if listing and listing.source_id]
    return {"sources": ids} if ids else {}


def finish(output_dir, shards, results, classes, config: WriteConfig, fingerprint: str,
           sources: Mapping | None = None):
    """Verify, then write rejects.csv, the TFDS metadata and (last) dataset.json, then drop
    `.progress/`."""
    verify(output_dir, shards, results, config.compression)
    all_rejects = [r for result in results.values() for r in result.rejects]
    total = sum(len(spec.images) for spec in shards)
    if len(all_rejects) > config.max_reject_fraction * total:
        raise too_many_rejects(results, len(all_rejects), total, config.max_reject_fraction,
                               output_dir)
    write_rejects_csv(output_dir, all_rejects)
    manifest = build_manifest(shards, results, classes, config, fingerprint, sources)
    no_tfds = tfds_export.write_metadata(output_dir, manifest)
    if no_tfds is not None:
        logging.info("no TFDS metadata (tfds.builder_from_directory): %s", no_tfds)
    if config.compression != "NONE":
        logging.info("no DALI index files: DALI reads only uncompressed TFRecords")
    files.atomic_write_text(schema.manifest_path(output_dir), manifest.to_json())
    shutil.rmtree(os.path.join(output_dir, PROGRESS_DIR), ignore_errors=True)
    return manifest


def build_manifest(shards, results, classes, config: WriteConfig, fingerprint: str,
                   sources: Mapping | None = None):
    splits = {}
    stats = {}
    for split in sorted({spec.split for spec in shards}):
        split_results = [results[(s.split, s.index)] for s in shards if s.split == split]
        label_counts: dict[int, int] = {}
        for result in split_results:
            for label, n in result.label_counts.items():
                label_counts[label] = label_counts.get(label, 0) + n
        class_counts = {classes[label]: label_counts[label] for label in sorted(label_counts)
                        if label != schema.UNLABELED}
        splits[split] = schema.SplitInfo(
            count=sum(r.count for r in split_results),
            shards=tuple(schema.ShardInfo(r.file, r.count, r.bytes, r.sha256)
                         for r in split_results),
            class_counts=class_counts,
        )
        stats[split] = schema.channel_stats(
            [sum(r.pixel_sum[c] for r in split_results) for c in range(schema.CHANNELS)],
            [sum(r.pixel_sq_sum[c] for r in split_results) for c in range(schema.CHANNELS)],
            sum(r.pixels for r in split_results),
        )
    mean, std = stats.get(schema.TRAIN, (None, None))
    return schema.Manifest(
        image_shape=(schema.CHANNELS, config.image_size, config.image_size),
        classes=tuple(classes),
        splits=splits,
        mean=mean,
        std=std,
        compression=config.compression,
        rejects=sum(len(r.rejects) for r in results.values()),
        flags={**manifest_flags(config), **(sources or {})},
        fingerprint=fingerprint,
    )


def manifest_flags(config: WriteConfig) -> dict:
    """The command's flags as recorded in dataset.json (run-time knobs like workers left out);
    the tfds_* flags only for a tfds: input, so other manifests stay as they were."""
    reads_tfds = any(tfds_source.is_tfds_input(given)
                     for given in (config.input, config.test_input))
    tfds_flags = {
        "tfds_data_dir": config.tfds_data_dir,
        "tfds_image_key": config.tfds_image_key,
        "tfds_label_key": config.tfds_label_key,
    } if reads_tfds else {}
    return {
        "input": config.input if config.input is not None else f"sample:{SAMPLE_NAME}",
        "test_input": config.test_input,
        "image_column": config.image_column,
        "label_column": config.label_column,
        "shards": config.shards,
        "val_shards": config.val_shards,
        "test_shards": config.test_shards,
        "image_size": config.image_size,
        "resize": config.resize,
        "val_fraction": config.val_fraction,
        "folds": config.folds,
        "fold": config.fold,
        "seed": config.seed,
        "compression": config.compression,
        "max_reject_fraction": config.max_reject_fraction,
        **tfds_flags,
    }


def log_summary(summary: Summary, total_images: int) -> None:
    manifest = summary.manifest
    split_text = " + ".join(f"{info.count:,} {name}" for name, info in manifest.splits.items())
    num_shards = sum(len(info.shards) for info in manifest.splits.values())
    size = sum(shard.bytes for info in manifest.splits.values() for shard in info.shards)
    rate = total_images / max(summary.seconds, 1e-9)
    logging.info(
        "wrote %s images in %d shards (%.1f MB; %d written, %d kept) in %.1f s (%.0f img/s); "
        "%d rejected -> %s", split_text, num_shards, size / 1e6, summary.written, summary.reused,
        summary.seconds, rate, manifest.rejects, schema.manifest_path(summary.output_dir))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The command's flags. Defined only when the module runs as a command, so that importing
    the writer as a library (the bench, the trainer) adds no flags to the importer's."""
    define = dict(flag_values=flag_values)
    flags.DEFINE_string(
        "input", None,
        "A CSV with `image` (path relative to the CSV's folder) and `label` columns, a directory "
        "with one sub-folder per class, or a CSV without a label column (written as an unlabeled "
        "`test` split in file order); or tfds:NAME[/CONFIG][:SPLIT] (SPLIT default train), a "
        "TensorFlow Datasets split already prepared under --tfds_data_dir (never downloaded), "
        "with its ClassLabel's class names. Default: the bundled sample dataset (handwritten "
        "digits).", **define)
    flags.DEFINE_string(
        "test_input", None,
        "An unlabeled CSV (image column only) written as the `test` split beside a labeled "
        "--input, kept in file order for predictions; or a tfds: split (e.g. "
        "tfds:cifar10:test), kept in TFDS's order with its labels (same classes as --input) or "
        "unlabeled when all its labels are -1.", **define)
    flags.DEFINE_string("image_column", "image", "CSV column holding image paths.", **define)
    flags.DEFINE_string("label_column", "label",
                        "CSV column holding class names; a CSV without it is unlabeled.", **define)
    flags.DEFINE_string(
        "tfds_data_dir", None,
        "With a tfds: input: the TFDS data dir holding <name>/[<config>/]<version>/ (the highest "
        "version is read). Default: TFDS's, $TFDS_DATA_DIR else ~/tensorflow_datasets.",
        **define)
    flags.DEFINE_string(
        "tfds_image_key", None,
        "With a tfds: input: the tfds.features.Image feature to store. Default: the dataset's "
        "only Image feature, or `image` among several.", **define)
    flags.DEFINE_string(
        "tfds_label_key", None,
        "With a tfds: input: the tfds.features.ClassLabel feature giving labels and class "
        "names. Default: the dataset's only ClassLabel, or `label` among several.", **define)
    flags.DEFINE_string("output_dir", None,
                        "Where shards and dataset.json go. Default: workspace/shards/<input name>.",
                        **define)
    flags.DEFINE_integer("shards", DEFAULT_TRAIN_SHARDS,
                         "Shards of the train split; other splits get proportionally fewer "
                         "(at least 1) unless --val_shards / --test_shards say otherwise.",
                         **define)
    flags.DEFINE_integer("val_shards", 0, "Shards of the val split (0: proportional to train).",
                         **define)
    flags.DEFINE_integer("test_shards", 0, "Shards of the test split (0: proportional to train).",
                         **define)
    flags.DEFINE_integer("image_size", DEFAULT_IMAGE_SIZE,
                         "Stored images are image_size^2 pixels.", **define)
    flags.DEFINE_enum("resize", "squash", list(RESIZE_MODES),
                      "squash: stretch to a square; center_crop: crop the central square; "
                      "pad: fit inside a black square.", **define)
    flags.DEFINE_float("val_fraction", 0.1,
                       "Share of labeled images in the val split, chosen by a hash of each "
                       "image's path (stable: adding images never moves old ones).", **define)
    flags.DEFINE_integer("folds", 0,
                         "k-fold cross-validation: split into this many folds (0: off).", **define)
    flags.DEFINE_integer("fold", 0, "With --folds: which fold is the val split (0-based).",
                         **define)
    flags.DEFINE_integer("seed", 0, "Seed of the record order across shards.", **define)
    flags.DEFINE_integer("num_workers", 0,
                         "Processes decoding and writing shards in parallel (0: one per CPU). "
                         "Does not change the output.", **define)
    flags.DEFINE_enum("compression", "NONE", sorted(schema.COMPRESSION_SUFFIXES),
                      "TFRecord compression; raw pixels compress poorly and decompressing costs "
                      "CPU on every epoch, so NONE is usually right.", **define)
    flags.DEFINE_float("max_reject_fraction", 0.01,
                       "Fail (exit 1) when more than this share of images cannot be decoded.",
                       **define)
    flags.DEFINE_bool("overwrite", False,
                      "Replace this tool's files in a non-empty --output_dir written by another "
                      "command.", **define)
    flags.DEFINE_integer("num_tasks", 1,
                         "Hosts writing this dataset together into one shared --output_dir, each "
                         "running the same command with its own --task_index; then one "
                         "--finalize run. Does not change the output.", **define)
    flags.DEFINE_integer("task_index", 0, "With --num_tasks: this host's task, 0-based. It "
                         "writes every num_tasks-th shard of the plan.", **define)
    flags.DEFINE_bool("finalize", False,
                      "After every task: check that every shard is written and write "
                      "dataset.json (the same command without --task_index). Exit 2 naming the "
                      "missing shards and their tasks otherwise.", **define)


def config_from_flags() -> WriteConfig:
    config = WriteConfig(
        output_dir="",
        input=FLAGS.input,
        test_input=FLAGS.test_input,
        image_column=FLAGS.image_column,
        label_column=FLAGS.label_column,
        # An explicit --label_column that the CSV lacks is a typo, not an unlabeled CSV.
        label_column_required=FLAGS["label_column"].present,
        tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_image_key=FLAGS.tfds_image_key,
        tfds_label_key=FLAGS.tfds_label_key,
        shards=FLAGS.shards,
        val_shards=FLAGS.val_shards,
        test_shards=FLAGS.test_shards,
        image_size=FLAGS.image_size,
        resize=FLAGS.resize,
        val_fraction=FLAGS.val_fraction,
        folds=FLAGS.folds,
        fold=FLAGS.fold,
        seed=FLAGS.seed,
        num_workers=FLAGS.num_workers,
        compression=FLAGS.compression,
        max_reject_fraction=FLAGS.max_reject_fraction,
        overwrite=FLAGS.overwrite,
        num_tasks=FLAGS.num_tasks,
        task_index=FLAGS.task_index,
        finalize=FLAGS.finalize,
    )
    return dataclasses.replace(config, output_dir=FLAGS.output_dir or default_output_dir(config))


EXIT_TOO_MANY_REJECTS = 1
EXIT_BAD_INPUT = 2


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    try:
        write_dataset(config_from_flags())  # the default output dir already parses --input
    except (InputError, plan.PlanError, OutputDirError, IncompleteError) as err:
        logging.error("%s", err)
        return EXIT_BAD_INPUT
    except TooManyRejects as err:
        logging.error("%s", err)
        return EXIT_TOO_MANY_REJECTS
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
