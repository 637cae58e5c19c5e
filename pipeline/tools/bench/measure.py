"""How the bench measures: one row per stage, its fastest of several runs, memory and CPU.

A row times one stage with `time.perf_counter`, samples the peak memory of this process and
its workers, and measures how busy other processes kept the machine meanwhile (a shared 2-core
machine is often not quiet; the table then says so).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import threading
import time
from typing import Iterator, Sequence

import psutil

from pipeline import errors
from pipeline.core import schema, units

# Batches as make_dataset's default.
READ_BATCH = 256
READ_SEED = 0
# Reader rows time at least this many images after their first batch: several epochs of the
# photos, seconds at the rates here, long enough for tf.data's autotuning to settle.
READ_MIN_IMAGES = 20_000
QUICK_READ_MIN_IMAGES = 5_000
# Peak memory is sampled this often (seconds): often enough to catch a worker's peak within a
# shard, rare enough (one /proc scan per sample) to cost well under 1% of a core.
RSS_POLL_S = 0.05


class BenchError(errors.PipelineError, RuntimeError):
    """The bench cannot run as asked (e.g. its workdir holds something it did not write)."""


@dataclasses.dataclass(frozen=True)
class Bench:
    """What every row gets: the settings, and the photo folder (made before any row runs)."""

    workdir: str
    images: int
    image_size: int
    photos_csv: str
    # Made only when a reader row is selected (see prepare).
    shards_dir: str | None = None  # the photos as our shards
    jpeg_dir: str | None = None  # the photos as JPEGs of the stored size, and train.csv
    read_min_images: int = READ_MIN_IMAGES


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured line of the table (and of the JSON)."""

    name: str
    images: int
    seconds: float  # of the fastest run
    images_per_s: float  # images / seconds
    peak_rss_mib: float | None  # this process + its workers, summed; None where not measured
    # Cores other processes and the kernel kept busy during the (fastest) run; see Monitor.
    other_cpu: float | None = None
    runs: tuple[float, ...] = ()  # seconds of every run, in order
    # Training rows: the share of step time spent waiting for the next batch.
    input_wait: float | None = None
    # Cold-cache and disk rows: the bytes read per second, in MiB (2^20 bytes).
    mib_per_s: float | None = None
    note: str | None = None  # what the row ran, where the name does not say it all

    @property
    def spread(self) -> float | None:
        """Slowest run over fastest, minus 1: how much to trust a difference between rows."""
        return max(self.runs) / min(self.runs) - 1 if len(self.runs) > 1 else None


def make_row(name: str, images: int, seconds: float, peak_rss_mib: float | None = None,
             other_cpu: float | None = None) -> Row:
    """One run's row."""
    rate = images / seconds if seconds > 0 else 0.0
    return Row(name, images, seconds, rate, peak_rss_mib, other_cpu, runs=(seconds,))


def best_of(samples: Sequence[Row]) -> Row:
    """The fastest run, with every run's seconds and the highest memory peak of any."""
    best = min(samples, key=lambda row: row.seconds)
    peaks = [row.peak_rss_mib for row in samples if row.peak_rss_mib is not None]
    return dataclasses.replace(
        best, peak_rss_mib=max(peaks) if peaks else None,
        runs=tuple(seconds for row in samples for seconds in row.runs),
    )


class Monitor:
    """What a row cost beyond its time: peak memory, and the CPU other processes took meanwhile.

    Peak memory is the resident memory of this process plus all its descendants, sampled in a
    thread. `ru_maxrss` cannot say this: RUSAGE_SELF is this process's lifetime high-water mark
    (it never drops between rows) and RUSAGE_CHILDREN is the largest single child, not the sum
    of workers alive together. The sum counts pages shared between processes (libraries) once
    per process, so it is an upper bound on what the machine needs.

    Other CPU is the machine's busy time (hypervisor steal included) minus this process tree's,
    in cores: on a shared 2-core machine a neighbour using one core halves the 2-worker row.
    It includes kernel threads working for us (page-cache writeback), so it is rarely zero.
    """

    def __enter__(self) -> "Monitor":
        self._me = psutil.Process()
        self._peak = self._rss()
        self._start = (time.perf_counter(), _machine_busy_s(), self._tree_cpu_s())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        wall, busy, tree = (end - start for end, start in zip(
            (time.perf_counter(), _machine_busy_s(), self._tree_cpu_s()), self._start))
        self.other_cpu = max(busy - tree, 0.0) / wall if wall > 0 else 0.0

    @property
    def peak_mib(self) -> float:
        return self._peak / units.MIB

    def _poll(self) -> None:
        while not self._stop.wait(RSS_POLL_S):
            self._peak = max(self._peak, self._rss())

    def _rss(self) -> int:
        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass  # exited between listing and reading: it holds no memory any more
        return total

    def _tree_cpu_s(self) -> float:
        """CPU seconds of this process and every descendant, live or reaped.

        Live descendants count too: the writer's workers are forked by a long-lived
        forkserver, so their time reaches the forkserver's children_* and never ours.
        """
        total = 0.0
        for process in [self._me, *self._me.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue  # exited between listing and reading; its reaper counts it
            total += times.user + times.system + times.children_user + times.children_system
        return total


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot, all cores together."""
    times = psutil.cpu_times()
    return sum(getattr(times, field, 0.0)
               for field in ("user", "nice", "system", "irq", "softirq", "steal"))


def read_batch_size(bench: Bench) -> int:
    """READ_BATCH, or the whole training split when it is smaller (tiny --images)."""
    manifest = schema.read_manifest(bench.shards_dir)
    return min(READ_BATCH, manifest.split(schema.TRAIN).count)


def time_batches(batches: Iterator, min_images: int) -> tuple[int, float]:
    """(images, seconds) of the batches after the first, until at least `min_images`.

    A batch is `(images, labels)` or an array of images; only its first dimension is read, so
    nothing is copied (tf.data batches are already in host memory when they arrive).
    """
    next(batches)  # start-up: threads, autotuning's first guess, XLA compilation, table load
    start = time.perf_counter()
    seen = 0
    while seen < min_images:
        batch = next(batches)
        seen += int((batch[0] if isinstance(batch, tuple) else batch).shape[0])
    return seen, time.perf_counter() - start


def jpeg_files(bench: Bench) -> list[str]:
    """The JPEG folder's training images, as its train.csv lists them."""
    with open(os.path.join(bench.jpeg_dir, "train.csv"), newline="", encoding="utf-8") as f:
        return [os.path.join(bench.jpeg_dir, row["image"]) for row in csv.DictReader(f)]


def jpeg_map_row(bench: Bench, name: str, load) -> Row:
    """tf.data over the JPEG folder, `load(path) -> image` in a parallel map (the tf.data
    guide's recipe): shuffle the file names, map, batch, prefetch, all AUTOTUNE."""
    import tensorflow as tf

    paths = jpeg_files(bench)
    with Monitor() as monitor:
        batches = (tf.data.Dataset.from_tensor_slices(paths)
                   .shuffle(len(paths), seed=READ_SEED, reshuffle_each_iteration=True)
                   .map(load, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(read_batch_size(bench), drop_remainder=True)
                   .prefetch(tf.data.AUTOTUNE))
        seen, seconds = time_batches(iter(batches.repeat()), bench.read_min_images)
    return make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)
