"""Random access: any batch of records, read from the shards straight into the batch.

`open_records` prepares a pipeline's shards for it: their record indexes (built once for a
dataset written before they existed), the damaged records found (with on_corrupt="skip"),
and the reader.

Each batch is read by every core at once: its slots cut into one contiguous part per thread
(`in_threads`, as many as the cores this process may use), each part read by a compiled
kernel that holds no GIL (kernels.py: per record one `preadv` of exactly its bytes, as
pipeline.core.record_index locates them, the image straight into its row of the batch or
through the reader's crop; the framing, the data CRC32C and the label checked). A slot's bytes
depend only on its record and its crop, never on the threads; the first damaged record in
batch order stops reading with an error naming the shard and the record
(pipeline.dataset.damaged), whichever thread met it.

Batches are numpy arrays aligned to 64 bytes, which tf.numpy_function hands to TensorFlow
without a copy (an unaligned 37 MiB batch costs a 1.3-2.7 ms copy), from a pool that reuses an
array once TensorFlow has let it go: fresh memory costs page faults and zeroing, 7.5 ms per
256 x 224^2 batch against 1.6 ms to fill a reused one.

What bounds it (224^2 records from a warm page cache, batch 256, 2 cores): the kernel alone
reads 34-36k img/s on one thread and 67-72k on two (the copy out of the page cache and the
CRC, both memory-bound); with the batch order, the read-ahead advice and the pool around it
44k outside tf.data; inside tf.data, with its threads and the consumer on the same cores,
~30k (indexed.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Sequence

import numpy as np
from absl import logging

from pipeline import errors
from pipeline.core import record_fields, record_index, records, schema
from pipeline.dataset import damaged, kernels
from pipeline.dataset.options import DamagedShards, DatasetError

# Arrays handed to TensorFlow start at a multiple of this (Eigen's largest alignment): then
# TensorFlow wraps them instead of copying.
ALIGN_BYTES = 64
# Arrays the pool keeps for reuse; in flight at once are about the reading threads plus the
# prefetched batches.
POOL_ARRAYS = 16


class BatchPool:
    """Aligned uint8 arrays of one shape, reused once nobody else holds them."""

    def __init__(self, shape: Sequence[int], keep: int = POOL_ARRAYS):
        self.shape = tuple(shape)
        self._size = int(np.prod(self.shape))
        self._arrays: list[np.ndarray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, count: int | None = None) -> np.ndarray:
        """An array of the pool's shape; for a `count` other than its batch size (an
        evaluation's last, partial batch), a fresh one of that many rows."""
        if count is not None and count != self.shape[0]:
            return np.empty((count, *self.shape[1:]), np.uint8)
        with self._lock:
            for array in self._arrays:
                # Held only by the list, this loop and getrefcount's argument: free. An
                # array TensorFlow wraps is held by the tensor until TensorFlow drops it.
                if sys.getrefcount(array) == 3:
                    return array
            array = aligned_empty(self._size, ALIGN_BYTES).reshape(self.shape)
            if len(self._arrays) < self._keep:
                self._arrays.append(array)
            return array


def aligned_empty(size: int, align: int) -> np.ndarray:
    raw = np.empty(size + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + size]


class ReaderFailed(errors.PipelineError, RuntimeError):
    """A reading thread ended with an unexpected error (its name, and the error, said)."""


class DamagedRecord(Exception):
    """Raised inside a read: a record that fails its checks (which, where, and why)."""

    def __init__(self, shard: str, record: int, problem: str):
        super().__init__(f"{shard}: record {record}: {problem}")
        self.shard, self.record, self.problem = shard, record, problem


class RecordReader:
    """Reads records of a list of shards by position (shard order, then record order), each
    batch split between `threads` threads running the compiled kernel (kernels.py)."""

    def __init__(self, data_dir: str, files: Sequence[str], indexes: Sequence[np.ndarray],
                 image_shape: Sequence[int], num_classes: int, threads: int | None = None):
        self.files = list(files)
        self.paths = [os.path.join(data_dir, name) for name in self.files]
        self.image_shape = tuple(image_shape)
        self.image_bytes = int(np.prod(self.image_shape))
        self.num_classes = num_classes
        self.checks = field_checks(self.image_bytes, num_classes)
        self.threads = threads or default_threads()
        counts = [len(table) for table in indexes]
        self.shard_of = np.repeat(np.arange(len(files), dtype=np.int64), counts)
        self.record_in_shard = np.concatenate(
            [np.arange(n, dtype=np.int64) for n in counts]) if counts else np.zeros(0, np.int64)
        self.table = np.ascontiguousarray(
            np.concatenate(indexes) if indexes
            else np.zeros((0, len(record_index.COLUMNS)), np.int64), np.int64)
        # The bytes of a record around its image: header, prefix, suffix and footer.
        around = self.table[:, record_index.DATA_LENGTH] - self.image_bytes
        self._scratch_bytes = int(around.max(initial=0)) + kernels.HEADER_BYTES + \
            kernels.FOOTER_BYTES
        self._fds = [os.open(path, os.O_RDONLY) for path in self.paths]
        self._fd_array = np.array(self._fds, np.int64)

    def __del__(self):
        for fd in getattr(self, "_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return len(self.table)

    def read_into(self, positions: np.ndarray, images: np.ndarray, labels: np.ndarray,
                  placement=None) -> None:
        """Records at `positions` into images[i] (uint8, image_shape) and labels[i]; with a
        `placement` (fused.Placement, fused.Resampling), cropped, resized and flipped on the
        way as it says. Raises DamagedRecord for the first record (in batch order) that fails its
        checks, whatever the threads."""
        positions = np.ascontiguousarray(positions, np.int64)
        count = len(positions)
        status, detail = np.zeros(count, np.int64), np.zeros(count, np.int64)
        flat = images.reshape(count, -1)

        def read(start: int, stop: int) -> None:
            if placement is not None:
                placement.read(self, positions, start, stop, images, labels, status, detail)
            else:
                kernels.read_batch(*self.kernel_args(positions, start, stop), flat, labels,
                                   status, detail, self.scratch(), self.checks)

        in_threads(read, count, self.threads)
        failed = np.flatnonzero(status)
        if len(failed):
            slot = int(failed[0])
            self._raise_damaged(int(positions[slot]), int(status[slot]), int(detail[slot]))

    def kernel_args(self, positions: np.ndarray, start: int, stop: int) -> tuple:
        """The kernels' first arguments: where the records are, and which slots to read."""
        return self._fd_array, self.table, self.shard_of, positions, start, stop

    def read_one(self, position: int, image: np.ndarray,
                 scratch: np.ndarray) -> tuple[int, int, int]:
        """The record at `position` into `image` (uint8, flat): (status, detail, label) as
        the kernels give them."""
        return kernels.read_one(self._fd_array, self.table, self.shard_of, position, image,
                                scratch, self.checks)

    def scratch(self) -> np.ndarray:
        """A buffer for the bytes of a record around its image (one per reading thread)."""
        return np.empty(self._scratch_bytes, np.uint8)

    def _raise_damaged(self, position: int, status: int, detail: int) -> None:
        shard, record = self.files[self.shard_of[position]], int(self.record_in_shard[position])
        if status == kernels.READ_FAILED:
            raise OSError(f"{self.paths[self.shard_of[position]]}: reading record {record} "
                          "failed")
        length = int(self.table[position, record_index.DATA_LENGTH])
        problem = problem_text(status, detail, length, self.num_classes)
        if status in kernels.INDEX_STATUSES:
            raise record_index.IndexMismatch(record_index.mismatch_message(shard, record,
                                                                         problem))
        raise DamagedRecord(shard, record, problem)

    def advise(self, positions: np.ndarray) -> None:
        """Ask the kernel to start reading the records at `positions` into the page cache."""
        rows = self.table[positions]
        for fd, offset, length in zip((self._fds[s] for s in self.shard_of[positions].tolist()),
                                      rows[:, 0].tolist(), rows[:, 1].tolist()):
            os.posix_fadvise(fd, offset, length + records.HEADER_BYTES + records.FOOTER_BYTES,
                             os.POSIX_FADV_WILLNEED)


def field_checks(image_bytes: int, num_classes: int) -> tuple:
    """The kernels' `checks`: the label range, and the bytes that must lead up to the image
    and to a label varint of each length (pipeline.core.records knows them)."""
    lead_bytes = len(record_fields.label_lead(1))
    label_leads = np.zeros((max(record_fields.LABEL_VARINT_BYTES) + 1, lead_bytes), np.uint8)
    for size in record_fields.LABEL_VARINT_BYTES:
        label_leads[size] = np.frombuffer(record_fields.label_lead(size), np.uint8)
    return (num_classes, np.frombuffer(record_fields.image_lead(image_bytes), np.uint8).copy(),
            label_leads)


def problem_text(status: int, detail: int, length: int, num_classes: int) -> str:
    """A kernel's status code and detail as the damaged record's problem, in words."""
    if status == kernels.TRUNCATED:
        expected = records.HEADER_BYTES + length + records.FOOTER_BYTES
        return f"truncated: {detail} of {expected} bytes"
    if status == kernels.LENGTH_CRC:
        return "length CRC mismatch"
    if status == kernels.LENGTH:
        return (f"the record holds {detail} bytes where its index says {length}: the index "
                "does not describe this shard")
    if status == kernels.DATA_CRC:
        return "data CRC mismatch"
    if status == kernels.LABEL_RANGE:
        return schema.label_problem(detail, num_classes) or f"label {detail}"
    return _INDEX_PROBLEMS.get(status, "the label field cannot be read")


_INDEX_PROBLEMS = {
    kernels.NOT_INDEXED: record_index.NOT_INDEXED_PROBLEM,
    kernels.IMAGE_FIELD: "its record index does not point at its image",
    kernels.LABEL_FIELD: "its record index does not point at its label",
}


def default_threads() -> int:
    """The cores this process may run on (a taskset or a container's cpuset counts)."""
    return len(os.sched_getaffinity(0))


def in_threads(work, count: int, threads: int) -> None:
    """work(start, stop) over [0, count) cut into `threads` contiguous parts, the first in this
    thread and the rest in threads of their own, started per call: ~50 us each against a
    batch's milliseconds, and nothing lives on to keep the interpreter from exiting. The
    kernels release the GIL, so the parts run at once; an exception in any part is raised
    here, after all have ended."""
    bounds = np.linspace(0, count, min(threads, max(count, 1)) + 1).astype(int).tolist()
    failed: list[tuple[str, BaseException]] = []

    def part(number: int, start: int, stop: int) -> None:
        try:
            work(start, stop)
        except BaseException as err:  # noqa: B036 - handed to the caller below
            failed.append((f"reading thread {number} of {len(bounds) - 1} (records "
                           f"{start}..{stop - 1} of the batch)", err))

    helpers = [threading.Thread(target=part, args=(number, start, stop), daemon=True,
                                name=f"record-reader-{number}")
               for number, (start, stop) in enumerate(zip(bounds[1:-1], bounds[2:]), 1)]
    for helper in helpers:
        helper.start()
    part(0, bounds[0], bounds[1])
    for helper in helpers:
        helper.join()
    if failed:
        name, err = failed[0]
        if isinstance(err, (DamagedRecord, KeyboardInterrupt)):
            raise err
        raise ReaderFailed(f"{name} failed reading a batch: {type(err).__name__}: {err}") \
            from err


# ---------------------------------------------------------------------------------------------
# A pipeline's records: indexes loaded or built, damaged records found
# ---------------------------------------------------------------------------------------------


class Records:
    """A pipeline's records for random access: the reader, and which positions are readable."""

    def __init__(self, reader: RecordReader, readable: np.ndarray, shards: Sequence[str],
                 targets: np.ndarray | None = None, features: np.ndarray | None = None):
        self.reader = reader
        self.readable = readable  # reader positions, in order
        # float32 [reader positions, T] of a multi-label or regression dataset, from the
        # record indexes (the kernel checks each record's CRC against its index, so these
        # are the record's).
        self.targets = targets
        self.features = features  # float32 [reader positions, F] with --feature_columns
        counts = np.bincount(reader.shard_of[readable], minlength=len(shards))
        self.shard_counts = tuple(int(n) for n in counts)

    def __len__(self) -> int:
        return len(self.readable)

    def labels_at(self, positions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """What a batch of the records at `positions` yields as labels: the class `labels`
        the kernel read, or the records' multi-hot targets."""
        return labels if self.targets is None else self.targets[positions]


def open_records(data_dir: str, manifest: schema.Manifest, shards: Sequence[schema.ShardInfo],
                 split: str, policy: DamagedShards, threads: int | None = None) -> Records:
    """Random access to `shards` (their indexes loaded, or built once and logged)."""
    start = time.monotonic()
    loaded = [record_index.load_or_build(data_dir, shard, manifest.image_bytes,
                                         record_index.Widths.of(manifest)) for shard in shards]
    built = sum(entry.built for entry in loaded)
    if built:
        logging.info("built the record index of %d shard(s) of %r in %.1f s", built, split,
                     time.monotonic() - start)
    problems = [(shard, entry.problem) for shard, entry in zip(shards, loaded) if entry.problem]
    if not policy.skip:
        _fail_on_broken_shards(data_dir, shards, loaded, problems)
    reader = RecordReader(data_dir, [shard.file for shard in shards],
                          [entry.index.table for entry in loaded], manifest.image_shape,
                          manifest.label_values, threads)
    readable = np.arange(len(reader), dtype=np.int64)
    if policy.skip:
        readable = _readable(reader, shards, problems, split, data_dir, policy)
    blocks = {name: np.concatenate([getattr(entry.index, name) for entry in loaded])
              if loaded else np.zeros((0, width), np.float32)
              for name, width in (("targets", manifest.target_size),
                                  ("features", manifest.feature_size)) if width}
    return Records(reader, readable, [shard.file for shard in shards], **blocks)


def _fail_on_broken_shards(data_dir: str, shards, loaded, problems) -> None:
    """DatasetError naming the first record a shard lacks (its index could not be built past
    it, or the file ends before it): found up front, before any read."""
    if problems:
        shard, problem = problems[0]
        raise DatasetError(damaged.damaged_message(shard.file, problem.record, problem.message))
    for shard, entry in zip(shards, loaded):
        size = os.path.getsize(os.path.join(data_dir, shard.file))
        cut = entry.index.first_past(size)
        if cut is not None:
            raise DatasetError(damaged.damaged_message(
                shard.file, cut, f"truncated: the file ends at byte {size}, before the "
                "record's end"))


def _readable(reader: RecordReader, shards: Sequence[schema.ShardInfo], problems,
              split: str, data_dir: str, policy: DamagedShards) -> np.ndarray:
    """Every record checked; the positions of those that pass, with one warning per damaged
    shard and an error past max_fraction."""
    keep = np.ones(len(reader), bool)
    unindexed = {shard.file: problem for shard, problem in problems}  # past a broken framing
    for number, shard in enumerate(shards):
        positions = np.flatnonzero(reader.shard_of == number)  # in record order
        found = damaged_records(reader, number)
        keep[positions[[record for record, _ in found]]] = False
        kept = len(positions) - len(found)
        if kept < shard.count:
            first = found[0] if found else (unindexed[shard.file].record,
                                            unindexed[shard.file].message)
            damaged.warn_damaged(shard.file, shard.count - kept, shard.count,
                                 f"record {first[0]}: {first[1]}")
    readable = np.flatnonzero(keep).astype(np.int64)
    expected = sum(shard.count for shard in shards)
    damaged.limit_losses(expected - len(readable), expected, policy.max_fraction, split,
                         data_dir)
    return readable


# Shard file state -> its damaged records, from a full check: a trainer counts its steps, then
# builds its pipelines, and each would read the whole split again to check it.
_CHECKED: dict[tuple, tuple[tuple[int, str], ...]] = {}


def damaged_records(reader: RecordReader, number: int) -> tuple[tuple[int, str], ...]:
    """(record number, problem) of each record of shard `number` failing its checks; every
    record read once, and the answer kept while the file stays as it is."""
    path = reader.paths[number]
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, reader.image_shape,
           reader.num_classes)
    if key not in _CHECKED:
        images = np.empty((1, *reader.image_shape), np.uint8)
        labels = np.empty(1, np.int64)
        found = []
        for position in np.flatnonzero(reader.shard_of == number):
            try:
                reader.read_into(np.array([position]), images, labels)
            except DamagedRecord as err:
                found.append((err.record, err.problem))
        _CHECKED[key] = tuple(found)
    return _CHECKED[key]
