"""Cold-cache rows: the shards read from the disk instead of the page cache, beside the disk's
own sequential read rate.

Before every epoch each shard of the training split is evicted from the page cache
(`os.posix_fadvise(..., POSIX_FADV_DONTNEED)`: the kernel drops the file's clean pages), so
every epoch of the reader comes from the disk. A split larger than the page cache reads like
this for good; what bounds it is then the disk: streaming reads each shard front to back, near
the disk's sequential rate, and random access reads records where the order puts them (a
global shuffle: anywhere in the split; windows: within a few shards, see
pipeline.dataset.access). Each epoch is timed whole, its start included: a cold epoch starts
by waiting for the disk too. (On a file system without a page cache of its own, tmpfs, the
eviction does nothing and these rows read as warm.)
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

from pipeline.core import schema, units
from pipeline.tools.bench.measure import READ_SEED, Bench, Monitor, Row, make_row, read_batch_size

# Bytes per read() of the disk row: large sequential reads, as a disk's benchmark makes.
DISK_READ_BYTES = 8 << 20


def evict(paths: Sequence[str]) -> None:
    """Drop the page cache's copy of each file (clean pages only: ours were written before)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _train_shards(bench: Bench) -> tuple[list[str], int, int]:
    """(shard paths, records, bytes) of the training split."""
    split = schema.read_manifest(bench.shards_dir).split(schema.TRAIN)
    paths = [os.path.join(bench.shards_dir, shard.file) for shard in split.shards]
    return paths, split.count, sum(shard.bytes for shard in split.shards)


def disk_read_row(bench: Bench, name: str) -> Row:
    """The training shards, evicted, read front to back in DISK_READ_BYTES reads, pass after
    pass: the disk's sequential rate, as MiB/s and as records per second."""
    paths, records, total_bytes = _train_shards(bench)
    buffer = memoryview(bytearray(DISK_READ_BYTES))
    seen, seconds = 0, 0.0
    with Monitor() as monitor:
        while seen < bench.read_min_images:
            evict(paths)
            start = time.perf_counter()
            for path in paths:
                with open(path, "rb", buffering=0) as f:
                    while f.readinto(buffer):
                        pass
            seconds += time.perf_counter() - start
            seen += records
    row = make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)
    return dataclasses.replace(row, mib_per_s=seen / records * total_bytes / seconds / units.MIB)


def cold_reader_row(bench: Bench, name: str, *, access: str) -> Row:
    """make_dataset(access=...) in training, augment=None, every epoch from the disk."""
    from pipeline import dataset

    paths, records, total_bytes = _train_shards(bench)
    seen, seconds = 0, 0.0
    with Monitor() as monitor:
        epochs = dataset.make_dataset(bench.shards_dir, schema.TRAIN, read_batch_size(bench),
                                      training=True, access=access, seed=READ_SEED,
                                      augment=None)
        while seen < bench.read_min_images:
            evict(paths)
            start = time.perf_counter()
            for _, labels in epochs:  # one epoch per iteration
                seen += int(labels.shape[0])
            seconds += time.perf_counter() - start
        del epochs
    row = make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)
    return dataclasses.replace(row, mib_per_s=seen * (total_bytes / records) / seconds / units.MIB)
