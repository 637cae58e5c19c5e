r"""Check a written dataset against its `dataset.json`: every shard, every record, every byte.

    report = verify_dataset("workspace/shards/digits")    # python -m pipeline.verify DATA_DIR
    for problem in report.problems: print(problem)

For each shard of each split (or only the asked ones) it checks that the file exists, that
its size and sha256 are the manifest's, and then reads every record: the TFRecord framing and
both CRCs (after inflating a GZIP or ZLIB stream), that each record parses as a
`tf.train.Example` holding an image of exactly the manifest's image bytes and an int64 label
in range (-1 for unlabeled, else 0..num_classes-1), and that the shard holds the manifest's
record count. Each problem names the shard file and, where there is one, the 0-based record:

    train-00003-of-00036.tfrecord: record 17: data CRC mismatch
    train-00007-of-00036.tfrecord: size 1234 bytes, manifest says 5678

Each shard is read once, streaming (pipeline.core.streams): the file's bytes are hashed as
they are read and inflated and framed from the same pass, so memory per worker is one record
plus READ_CHUNK_BYTES. Shards are checked in parallel worker processes, one per CPU by
default. Workers never import TensorFlow (seconds per process); records are parsed with the
pure-protobuf copy of the `tf.train.Example` message that tensorflow_datasets ships.

Each record index (`<shard>.offsets`) is checked too (pipeline.core.index_check: its digest in
dataset.json, its rows against the shard's records), each problem on a line named by the index
file, not the shard: on_corrupt="skip" (which reads these reports) then never drops good
records because of a bad index. The DALI index files and the TFDS metadata are not checked:
they are derived from the shards and dataset.json. The reader (skipping damaged shards) and the trainer
(naming them) use this module, which is why it lives with the format and not with the tools.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import time
import zlib
from typing import Sequence

from absl import logging

from pipeline import cli, errors
from pipeline.core import index_check, record_index, schema
from pipeline.core.records import iter_framed_records
from pipeline.core.streams import HashingReader, InflatingReader
from pipeline.core.units import format_bytes, format_rate

# Record-level problems listed per shard; past this a shard is clearly broken and one line
# says how many more there were (so a wrong image_shape does not print a line per record).
MAX_RECORD_PROBLEMS_PER_SHARD = 20
# How often the parent logs progress while workers run (seconds).
PROGRESS_LOG_EVERY_S = 10.0
# Leading hex digits of a sha256 shown when two differ (64 would make unreadable lines).
SHA256_SHOWN_CHARS = 16
# Imported once by the forkserver, so each worker starts with them: the Example parser's
# package alone takes ~0.7 s to import (and starts no threads, so forking after it is safe).
WORKER_PRELOAD = (__name__, "tensorflow_datasets.proto")


class UnusableInput(errors.PipelineError):
    """The dataset cannot be checked at all: no or malformed manifest, unknown split, bad args."""


@dataclasses.dataclass(frozen=True)
class Problem:
    file: str  # shard file name, relative to the dataset directory
    record: int | None  # 0-based record index within the shard, when the problem has one
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: record {self.record}" if self.record is not None else self.file
        return f"{where}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to check and what its records must hold: the argument of a worker."""

    data_dir: str
    shard: schema.ShardInfo
    compression: str
    image_bytes: int
    num_classes: int  # the label field's values (Manifest.label_values)
    target_size: int = 0  # a multi-label dataset's classes, a regression one's targets
    binary_targets: bool = True  # multi-label: each target 0 or 1
    feature_size: int = 0  # --feature_columns


@dataclasses.dataclass(frozen=True)
class ShardReport:
    file: str
    records: int  # records whose framing was intact (read before any framing error)
    bytes_read: int  # from disk
    problems: tuple[Problem, ...]


@dataclasses.dataclass(frozen=True)
class Report:
    """What `verify_dataset` found; `ok` when there are no problems."""

    data_dir: str
    splits: tuple[str, ...]
    shards: int  # shards checked
    records: int  # records read with intact framing
    expected_records: int  # the manifest's count for the checked splits
    bytes_read: int
    seconds: float
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "no problems" if self.ok else f"{len(self.problems)} problem(s)"
        return (
            f"verified {self.shards} shard(s) of {', '.join(self.splits) or 'no splits'}: "
            f"{self.records:,} of {self.expected_records:,} records read, "
            f"{format_bytes(self.bytes_read)} in {self.seconds:.1f} s "
            f"({format_rate(self.bytes_read, self.seconds)}); {verdict}"
        )


# ---------------------------------------------------------------------------------------------
# One record
# ---------------------------------------------------------------------------------------------


def _example_class():
    """The `tf.train.Example` message class, without importing TensorFlow.

    tensorflow_datasets ships a pure-protobuf copy of example.proto (same fields, same wire
    format; only the package name differs); importing it costs under a second where
    TensorFlow costs several per worker process.
    """
    from tensorflow_datasets.proto import tf_example_pb2

    return tf_example_pb2.Example


class _BadRecord(ValueError):
    """A record whose framing is intact but whose contents are not a valid record."""


def _only_value(features, key: str, kind: str):
    """The single value of feature `key`, which must be a list of `kind` holding exactly one."""
    if key not in features:
        raise _BadRecord(f"no {key!r} feature")
    feature = features[key]
    actual = feature.WhichOneof("kind")
    if actual != kind:
        raise _BadRecord(f"{key!r} is {actual or 'an empty feature'}, expected {kind}")
    values = getattr(feature, kind).value
    if len(values) != 1:
        raise _BadRecord(f"{key!r} holds {len(values)} values, expected 1")
    return values[0]


def record_problem(payload: bytes, *, image_bytes: int, num_classes: int,
                   target_size: int = 0, binary_targets: bool = True,
                   feature_size: int = 0) -> str | None:
    """What is wrong with one record's contents (its framing already checked), or None;
    `num_classes`: the label field's values (Manifest.label_values)."""
    from google.protobuf.message import DecodeError

    try:
        example = _example_class().FromString(payload)
    except DecodeError as err:
        return f"not a tf.train.Example ({err})"
    features = example.features.feature
    try:
        image = _only_value(features, schema.IMAGE_KEY, "bytes_list")
        label = _only_value(features, schema.LABEL_KEY, "int64_list")
        if schema.PATH_KEY in features:  # optional: readers default it to ""
            _only_value(features, schema.PATH_KEY, "bytes_list").decode("utf-8")
    except _BadRecord as err:
        return str(err)
    except UnicodeDecodeError as err:
        return f"{schema.PATH_KEY!r} is not UTF-8 ({err})"
    if len(image) != image_bytes:
        return f"image is {len(image)} bytes, manifest says {image_bytes}"
    return schema.label_problem(label, num_classes) or (
        _floats_problem(features, schema.TARGET_KEY, target_size, binary_targets)
        if target_size else None) or (
        _floats_problem(features, schema.FEATURES_KEY, feature_size, False)
        if feature_size else None)


def _floats_problem(features, key: str, size: int, binary: bool) -> str | None:
    """What is wrong with a record's target or features: missing, another length, a value
    that is not a finite number, or (`binary`: a multi-label target) other than 0 and 1."""
    if key not in features:
        return f"no {key!r} feature (this dataset's records hold one)"
    values = list(features[key].float_list.value)
    if len(values) != size:
        return f"{key!r} holds {len(values)} values, the dataset {size}"
    if not all(math.isfinite(value) for value in values):
        return f"{key!r} holds a value that is not a finite number"
    if binary and any(value not in (0.0, 1.0) for value in values):
        return f"{key!r} holds a value other than 0 or 1"
    return None


# ---------------------------------------------------------------------------------------------
# One shard (runs in a worker process)
# ---------------------------------------------------------------------------------------------


def check_shard(task: ShardTask) -> ShardReport:
    """Every check of one shard, in one streaming pass over its file."""
    name = task.shard.file
    expected = task.shard
    problems: list[Problem] = []
    try:
        with open(os.path.join(task.data_dir, name), "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            if size != expected.bytes:
                problems.append(Problem(name, None, f"size {size} bytes, manifest says "
                                                    f"{expected.bytes}"))
            source = HashingReader(raw)
            records, intact, bad = _check_records(source, task, problems)
            source.drain()  # the sha256 covers the whole file, wherever reading stopped
    except FileNotFoundError:
        return ShardReport(name, 0, 0, (Problem(name, None, "missing: the manifest lists it "
                                                            "but there is no such file"),))
    except OSError as err:
        return ShardReport(name, 0, 0, (*problems, Problem(name, None, f"cannot be read: {err}")))
    if bad > MAX_RECORD_PROBLEMS_PER_SHARD:
        problems.append(Problem(name, None, f"{bad - MAX_RECORD_PROBLEMS_PER_SHARD} more bad "
                                            "record(s) not listed"))
    # After a framing error the count read says nothing new; the error names the record.
    if intact and records != expected.count:
        problems.append(Problem(name, None, f"{records} records, manifest says "
                                            f"{expected.count}"))
    sha256 = source.sha256.hexdigest()
    # A size difference already says the bytes differ; the hash would only repeat it.
    if size == expected.bytes and sha256 != expected.sha256:
        problems.append(Problem(name, None, f"sha256 {sha256[:SHA256_SHOWN_CHARS]}..., "
                                            f"manifest says "
                                            f"{expected.sha256[:SHA256_SHOWN_CHARS]}..."))
    if task.compression == "NONE":  # each on a line of its own, named by the index file
        index_file = schema.record_index_filename(name, "NONE")
        problems += [Problem(index_file, None, message) for message in
                     index_check.index_problems(task.data_dir, expected, task.image_bytes,
                                                record_index.Widths(task.target_size,
                                                                    task.feature_size))]
    return ShardReport(name, records, source.bytes, tuple(problems))


def _check_records(source: HashingReader, task: ShardTask, problems: list[Problem]):
    """Read every record, appending problems. Returns (records read, whether the stream was
    intact to its end, records with bad contents).

    Reading stops at the first framing error: past a bad length, record boundaries cannot be
    trusted, so nothing after it could be named reliably.
    """
    name = task.shard.file
    stream = (source if task.compression == "NONE"
              else InflatingReader(source, task.compression))
    records = 0  # records read so far: also the index of the record being read
    bad = 0
    try:
        for payload in iter_framed_records(stream):
            message = record_problem(payload, image_bytes=task.image_bytes,
                                     num_classes=task.num_classes,
                                     target_size=task.target_size,
                                     binary_targets=task.binary_targets,
                                     feature_size=task.feature_size)
            if message is not None:
                bad += 1
                if bad <= MAX_RECORD_PROBLEMS_PER_SHARD:
                    problems.append(Problem(name, records, message))
            records += 1
    except schema.FormatError as err:
        # schema's messages start "record N: "; here the index has its own field.
        problems.append(Problem(name, records, str(err).removeprefix(f"record {records}: ")))
        return records, False, bad
    except zlib.error as err:
        problems.append(Problem(name, records, f"the {task.compression} stream is corrupt: "
                                               f"{err}"))
        return records, False, bad
    if isinstance(stream, InflatingReader):
        if not stream.complete:
            problems.append(Problem(name, None, f"the {task.compression} stream ends early, "
                                                f"after {records} records: the file is cut short"))
            return records, False, bad
        trailing = stream.trailing_bytes()
        if trailing:
            problems.append(Problem(name, None, f"{trailing} bytes after the end of the "
                                                f"{task.compression} stream"))
    return records, True, bad


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


def load_manifest(data_dir: str) -> schema.Manifest:
    """The manifest, or UnusableInput saying why there is none to check against."""
    try:
        return schema.read_manifest(data_dir)
    except schema.FormatError as err:
        raise UnusableInput(str(err)) from err
    except (OSError, UnicodeDecodeError) as err:  # e.g. DATA_DIR is a file, or binary JSON
        raise UnusableInput(f"cannot read {schema.manifest_path(data_dir)}: {err}") from err


def select_splits(manifest: schema.Manifest, splits: Sequence[str] | None) -> tuple[str, ...]:
    """The splits to check, in the order asked (all, in manifest order, when none are)."""
    if not splits:
        return tuple(manifest.splits)
    unknown = [name for name in splits if name not in manifest.splits]
    if unknown:
        raise UnusableInput(f"--split={','.join(unknown)}: this dataset's splits are "
                            f"{', '.join(manifest.splits)}")
    return tuple(dict.fromkeys(splits))  # drops repeats, keeps order


def plan_tasks(data_dir: str, manifest: schema.Manifest,
               splits: Sequence[str]) -> list[ShardTask]:
    return [
        ShardTask(data_dir=data_dir, shard=shard, compression=manifest.compression,
                  image_bytes=manifest.image_bytes, num_classes=manifest.label_values,
                  target_size=manifest.target_size,
                  binary_targets=manifest.target_kind == schema.MULTI_LABEL,
                  feature_size=manifest.feature_size)
        for split in splits for shard in manifest.split(split).shards
    ]


def worker_count(num_workers: int | None, tasks: int) -> int:
    if num_workers is not None and num_workers < 0:
        raise UnusableInput(f"--num_workers={num_workers}: use 0 (one per CPU) or more")
    return max(1, min(num_workers or os.cpu_count() or 1, tasks))


def run_tasks(tasks: Sequence[ShardTask], workers: int) -> list[ShardReport]:
    """check_shard over every task, in parallel when workers > 1; reports in task order."""
    reports: list[ShardReport | None] = [None] * len(tasks)
    done = problems = 0
    last_log = time.monotonic()
    for index, report in _check_all(tasks, workers):
        reports[index] = report
        done += 1
        problems += len(report.problems)
        now = time.monotonic()
        if now - last_log >= PROGRESS_LOG_EVERY_S:
            last_log = now
            logging.info("%d/%d shards checked, %d problem(s) so far", done, len(tasks),
                         problems)
    return reports


def _check_all(tasks: Sequence[ShardTask], workers: int):
    """(task index, ShardReport) as each shard's check finishes."""
    if workers <= 1:
        yield from enumerate(map(check_shard, tasks))
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=cli.worker_context(WORKER_PRELOAD))
    try:
        futures = {pool.submit(check_shard, task): index for index, task in enumerate(tasks)}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()
    finally:
        # On an error or Ctrl-C, drop the shards not started yet instead of checking them all.
        pool.shutdown(wait=True, cancel_futures=True)


def verify_dataset(data_dir: str, splits: Sequence[str] | None = None,
                   num_workers: int | None = None) -> Report:
    """Check every shard of `splits` (default: all) of the dataset in `data_dir`.

    `num_workers`: processes checking shards in parallel (None or 0: one per CPU; 1: in this
    process). Raises UnusableInput when there is no usable manifest or a split is unknown.
    """
    start = time.monotonic()
    manifest = load_manifest(data_dir)
    names = select_splits(manifest, splits)
    tasks = plan_tasks(data_dir, manifest, names)
    workers = worker_count(num_workers, len(tasks))
    total = sum(task.shard.bytes for task in tasks)
    logging.info("verifying %d shard(s) of %s (%s) in %s with %d worker(s)", len(tasks),
                 ", ".join(names), format_bytes(total), data_dir, workers)
    reports = run_tasks(tasks, workers)
    return Report(
        data_dir=data_dir,
        splits=names,
        shards=len(reports),
        records=sum(report.records for report in reports),
        expected_records=sum(manifest.split(name).count for name in names),
        bytes_read=sum(report.bytes_read for report in reports),
        seconds=time.monotonic() - start,
        problems=tuple(problem for report in reports for problem in report.problems),
    )
