"""Write one planned shard: the part of the writer that runs in worker processes.

Kept apart from the rest of the writer (flags, listings, pandas) so that a worker process
imports only what it uses: Pillow, numpy and the record format. Workers are forked from a
`forkserver` that has imported this module once (pipeline.cli.worker_context), so each starts
in milliseconds and never inherits a parent's threads (a process that imported TensorFlow
must not be forked).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import sys
from typing import Callable, Mapping

import numpy as np

from pipeline.core import files, record_fields, record_index, records, schema
from pipeline.writing import plan, progress_dir, tags
from pipeline.writing.images import RejectedImage, decode_image

# Workers report progress every this many images through a shared counter.
PROGRESS_EVERY = 16


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What a worker reports for one written shard; also its `.progress/` record."""

    file: str
    count: int
    bytes: int
    sha256: str
    rejects: tuple[tuple[str, str], ...]  # (path, reason)
    label_counts: Mapping[int, int]
    pixel_sum: tuple[int, ...]  # per channel, exact
    pixel_sq_sum: tuple[int, ...]
    pixels: int  # per channel
    # sha256 of its record index (uncompressed shards); None in a record of an older write,
    # whose index kept.py rebuilds and hashes.
    index_sha256: str | None = None

    @property
    def images_seen(self) -> int:
        """Planned images this shard accounted for: written or rejected."""
        return self.count + len(self.rejects)

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        doc["label_counts"] = {str(k): v for k, v in sorted(self.label_counts.items())}
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShardResult":
        doc = json.loads(text)
        doc["rejects"] = tuple(tuple(r) for r in doc["rejects"])
        doc["label_counts"] = {int(k): v for k, v in doc["label_counts"].items()}
        doc["pixel_sum"] = tuple(doc["pixel_sum"])
        doc["pixel_sq_sum"] = tuple(doc["pixel_sq_sum"])
        return cls(**doc)


def write_shard(
    spec: plan.ShardSpec, output_dir: str, *, image_size: int, resize: str, compression: str,
    on_progress: Callable[[int], None] = lambda n: None,
) -> ShardResult:
    """Decode and serialise one shard under a temporary name, rename it, record it.

    The rename happens only after the data is on disk (fsync); an uncompressed shard's DALI
    index and record index follow it (built from the offsets seen while writing, not by
    reading the file again), and the `.progress/` record comes last, so a record always
    describes a complete shard with its indexes.
    """
    filename = spec.filename(compression)
    stats = _ShardStats()
    # (offset, size, data CRC, ExampleLayout, target, features) per record
    placed: list[tuple] = []
    pending = 0
    with files.atomic_file(os.path.join(output_dir, filename)) as raw:
        writer = records.RecordWriter(raw, compression)
        for image in spec.images:
            try:
                chw = decode_image(image.file, image_size, resize)
            except RejectedImage as rejected:
                stats.rejects.append((image.path, rejected.reason))
            else:
                target = _target(image, spec.target_size)
                features = (np.array(image.features, np.float32) if spec.feature_size
                            else None)
                payload = records.encode_example(chw.tobytes(), image.label, image.path, target,
                                                 features)
                placed.append((*writer.write(payload), writer.last_crc,
                               record_fields.layout_of(payload), target, features))
                # A regression record counts under no class.
                stats.add(chw, image.label, image.tags if image.values is None else ())
            pending += 1
            if pending == PROGRESS_EVERY:
                on_progress(pending)
                pending = 0
        size, sha256 = writer.close()
    index_sha256 = None
    if compression == "NONE":
        index_sha256 = write_indexes(output_dir, placed, record_index.RecordIndex(
            filename, size, sha256, schema.CHANNELS * image_size * image_size,
            np.array([record_index.row(*record[:4]) for record in placed], np.int64).reshape(
                -1, len(record_index.COLUMNS)), _block(placed, 4, spec.target_size),
            _block(placed, 5, spec.feature_size)))
    on_progress(pending)
    result = stats.result(filename, size, sha256, image_size, index_sha256)
    progress_dir.write_shard_record(output_dir, filename, result.to_json())
    return result


def _target(image, target_size: int):
    """The record's target: a regression row's values, else the multi-hot row of its tags
    (zeros for an unlabeled image); None where the dataset has no targets."""
    if not target_size:
        return None
    if image.values is not None:
        return np.array(image.values, np.float32)
    return tags.multi_hot(image.tags or (), target_size)


def _block(placed, column: int, width: int) -> np.ndarray | None:
    """The written records' targets or features (`column` of `placed`): their index's float
    block, or None without any."""
    if not width:
        return None
    return np.array([record[column] for record in placed], np.float32).reshape(-1, width)


def write_indexes(output_dir: str, placed, index: record_index.RecordIndex) -> str:
    """The DALI index and the record index of an uncompressed shard (a compressed one has
    neither: its records have no offsets in the file); returns the record index's sha256."""
    dali_file = schema.dali_index_filename(index.shard, "NONE")
    files.atomic_write_text(os.path.join(output_dir, dali_file),
                            records.dali_index_text([record[:2] for record in placed]))
    record_index.write(
        os.path.join(output_dir, schema.record_index_filename(index.shard, "NONE")), index)
    return record_index.digest(index)


class _ShardStats:
    """What the manifest needs of a shard's images: rejects, class counts, channel sums."""

    def __init__(self):
        self.rejects: list[tuple[str, str]] = []
        self.label_counts: dict[int, int] = {}
        self.pixel_sum = np.zeros(schema.CHANNELS, np.int64)
        self.pixel_sq_sum = np.zeros(schema.CHANNELS, np.int64)
        self.count = 0

    def add(self, chw: np.ndarray, label: int, image_tags: tuple[int, ...] | None) -> None:
        """Count the image: under its class, or under each of its tags (multi-label)."""
        self.count += 1
        counted = (label,) if image_tags is None or label == schema.UNLABELED else image_tags
        for key in counted:
            self.label_counts[key] = self.label_counts.get(key, 0) + 1
        flat = chw.reshape(schema.CHANNELS, -1).astype(np.int64)
        self.pixel_sum += flat.sum(axis=1)
        self.pixel_sq_sum += np.einsum("ij,ij->i", flat, flat)

    def result(self, filename: str, size: int, sha256: str, image_size: int,
               index_sha256: str | None) -> ShardResult:
        return ShardResult(
            file=filename, count=self.count, bytes=size, sha256=sha256,
            index_sha256=index_sha256,
            rejects=tuple(self.rejects), label_counts=self.label_counts,
            pixel_sum=tuple(int(v) for v in self.pixel_sum),
            pixel_sq_sum=tuple(int(v) for v in self.pixel_sq_sum),
            pixels=self.count * image_size * image_size,
        )


_worker_counter = None


def worker_count(num_workers: int, tasks: int) -> int:
    """--num_workers (0: one per CPU), never more than there are `tasks`; 1: no pool."""
    return min(num_workers or os.cpu_count() or 1, max(tasks, 1))


@contextlib.contextmanager
def worker_pool(workers: int):
    """(pool, counter): `workers` processes that start from a forkserver holding only this
    module (pipeline.cli.worker_context), and the images they have done, shared."""
    from pipeline import cli  # here, not at the top: the workers never import it

    context = cli.worker_context([__name__])
    counter = context.Value("q", 0)
    with context.Pool(workers, initializer=init_worker, initargs=(counter,)) as pool:
        yield pool, counter


def init_worker(counter) -> None:
    global _worker_counter
    _worker_counter = counter
    # Ctrl-C goes to the parent, which stops the pool; workers must not die half-way first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: a SIGKILLed parent takes its workers with it (no orphan keeps writing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _count_progress(n: int) -> None:
    if n:
        with _worker_counter.get_lock():
            _worker_counter.value += n


def write_shard_task(args) -> ShardResult:
    spec, output_dir, kwargs = args
    return write_shard(spec, output_dir, on_progress=_count_progress, **kwargs)


def image_rejects_task(args) -> tuple[tuple[str, str], ...]:
    """(path, reason) of each image of a planned shard that writing it would reject: each is
    decoded, none written (rejects.every_reject)."""
    spec, image_size, resize = args
    rejects = []
    for image in spec.images:
        try:
            decode_image(image.file, image_size, resize)
        except RejectedImage as rejected:
            rejects.append((image.path, rejected.reason))
    return tuple(rejects)
