"""Random access: any batch of records, read from the shards straight into the batch.

`open_records` prepares a pipeline's shards for it: their record indexes (built once for a
dataset written before they existed), the damaged records found (with on_corrupt="skip"),
and the reader.

Per record, one `os.preadv` of exactly its bytes, as pipeline.core.record_index locates them:
the 12-byte header and the Example's bytes before the image into small scratch buffers, the
image straight into its row of the batch, the rest (label, path, the data CRC) into another.
The data CRC is checked with the CPU's CRC instruction over the three pieces (the image is not
copied again), and the label is decoded from the bytes after it; a damaged record or a label
outside the manifest's classes stops reading with an error naming the shard and the record
(pipeline.dataset.damaged).

Batches are numpy arrays aligned to 64 bytes, which tf.numpy_function hands to TensorFlow
without a copy (an unaligned 38 MB batch costs a 1.3-2.7 ms copy), from a pool that reuses an
array once TensorFlow has let it go: fresh memory costs page faults and zeroing, 7.5 ms per
256 x 224^2 batch against 1.6 ms to fill a reused one.

What bounds it (perf, steady state, 224^2, page cache warm, one reading thread): the kernel's
copy out of the page cache ~20%, the CRC ~9% (google-crc32c holds the GIL, and on the
2 cores measured two CRC threads ran no faster than one), the Python of each record's read
~35%, asking the kernel for the next batch ~5%, the rest TensorFlow's runtime. One Python
thread reads ~42k img/s alone and ~22-28k inside tf.data; indexed.py explains why it reads
with one thread.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from typing import Sequence

import numpy as np
from absl import logging

from pipeline.core import record_index, records, schema
from pipeline.dataset import damaged
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

    def take(self) -> np.ndarray:
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


class DamagedRecord(Exception):
    """Raised inside a read: a record that fails its checks (which, where, and why)."""

    def __init__(self, shard: str, record: int, problem: str):
        super().__init__(f"{shard}: record {record}: {problem}")
        self.shard, self.record, self.problem = shard, record, problem


class RecordReader:
    """Reads records of a list of shards by position (shard order, then record order)."""

    def __init__(self, data_dir: str, files: Sequence[str], indexes: Sequence[np.ndarray],
                 image_shape: Sequence[int], num_classes: int):
        self.files = list(files)
        self.paths = [os.path.join(data_dir, name) for name in self.files]
        self.image_shape = tuple(image_shape)
        self.image_bytes = int(np.prod(self.image_shape))
        self.num_classes = num_classes
        counts = [len(table) for table in indexes]
        self.shard_of = np.repeat(np.arange(len(files), dtype=np.int64), counts)
        self.record_in_shard = np.concatenate(
            [np.arange(n, dtype=np.int64) for n in counts]) if counts else np.zeros(0, np.int64)
        self.table = (np.concatenate(indexes) if indexes
                      else np.zeros((0, len(record_index.COLUMNS)), np.int64))
        self._fds = [os.open(path, os.O_RDONLY) for path in self.paths]

    def __del__(self):
        for fd in getattr(self, "_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return len(self.table)

    def read_into(self, positions: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
        """Records at `positions` into images[i] (uint8, image_shape) and labels[i]; raises
        DamagedRecord for the first that fails its checks."""
        flat = images.reshape(len(images), -1)
        for slot, position in enumerate(positions):
            labels[slot] = self._read_one(int(position), flat[slot])

    def advise(self, positions: np.ndarray) -> None:
        """Ask the kernel to start reading the records at `positions` into the page cache."""
        rows = self.table[positions]
        for fd, offset, length in zip((self._fds[s] for s in self.shard_of[positions].tolist()),
                                      rows[:, 0].tolist(), rows[:, 1].tolist()):
            os.posix_fadvise(fd, offset, length + records.HEADER_BYTES + records.FOOTER_BYTES,
                             os.POSIX_FADV_WILLNEED)

    def _read_one(self, position: int, image_row: np.ndarray) -> int:
        offset, length, image_offset, label_offset = (int(v) for v in self.table[position])
        header, prefix = bytearray(records.HEADER_BYTES), bytearray(image_offset)
        suffix = bytearray(length - image_offset - self.image_bytes + records.FOOTER_BYTES)
        got = os.preadv(self._fds[self.shard_of[position]], [header, prefix, image_row, suffix],
                        offset)
        expected = records.HEADER_BYTES + length + records.FOOTER_BYTES
        problem = None
        if got != expected:
            problem = f"truncated: {got} of {expected} bytes"
        else:
            problem = _framing_problem(bytes(header), length) or self._data_problem(
                bytes(prefix), image_row, bytes(suffix))
        if problem is None:
            label = (records.decode_int64(prefix, label_offset) if label_offset < image_offset
                     else records.decode_int64(suffix, label_offset - image_offset
                                               - self.image_bytes))
            problem = schema.label_problem(label, self.num_classes)
        if problem is not None:
            raise DamagedRecord(self.files[self.shard_of[position]],
                                int(self.record_in_shard[position]), problem)
        return label

    def _data_problem(self, prefix: bytes, image_row: np.ndarray, suffix: bytes) -> str | None:
        view = image_row.view()
        view.flags.writeable = False  # google-crc32c takes read-only buffers only
        crc = records.crc32c_extend(records.crc32c_extend(records.crc32c(prefix), view),
                                    suffix[:-records.FOOTER_BYTES])
        (stored,) = struct.unpack("<I", suffix[-records.FOOTER_BYTES:])
        return None if records.mask_crc(crc) == stored else "data CRC mismatch"


def _framing_problem(header: bytes, length: int) -> str | None:
    try:
        stored_length = records.framed_length(header)
    except schema.FormatError as err:
        return str(err)
    if stored_length != length:
        return (f"the record holds {stored_length} bytes where its index says {length}: "
                "the index does not describe this shard")
    return None


# ---------------------------------------------------------------------------------------------
# A pipeline's records: indexes loaded or built, damaged records found
# ---------------------------------------------------------------------------------------------


class Records:
    """A pipeline's records for random access: the reader, and which positions are readable."""

    def __init__(self, reader: RecordReader, readable: np.ndarray, shards: Sequence[str]):
        self.reader = reader
        self.readable = readable  # reader positions, in order
        counts = np.bincount(reader.shard_of[readable], minlength=len(shards))
        self.shard_counts = tuple(int(n) for n in counts)

    def __len__(self) -> int:
        return len(self.readable)


def open_records(data_dir: str, manifest: schema.Manifest, shards: Sequence[schema.ShardInfo],
                 split: str, policy: DamagedShards) -> Records:
    """Random access to `shards` (their indexes loaded, or built once and logged)."""
    start = time.monotonic()
    loaded = [record_index.load_or_build(data_dir, shard, manifest.image_bytes)
              for shard in shards]
    built = sum(entry.built for entry in loaded)
    if built:
        logging.info("built the record index of %d shard(s) of %r in %.1f s (the dataset "
                     "was written before record indexes existed)", built, split,
                     time.monotonic() - start)
    problems = [(shard, entry.problem) for shard, entry in zip(shards, loaded) if entry.problem]
    if not policy.skip:
        _fail_on_broken_shards(data_dir, shards, loaded, problems)
    reader = RecordReader(data_dir, [shard.file for shard in shards],
                          [entry.index.table for entry in loaded], manifest.image_shape,
                          manifest.num_classes)
    readable = np.arange(len(reader), dtype=np.int64)
    if policy.skip:
        readable = _readable(reader, shards, problems, split, data_dir, policy)
    return Records(reader, readable, [shard.file for shard in shards])


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
