r"""Benchmark the pipeline on a realistic photo folder: one table on stdout, optionally JSON.

    python -m pipeline.bench                        # 2,000 photos at 224x224, every row
    python -m pipeline.bench --quick                # 400 photos: under a minute on 2 cores
    python -m pipeline.bench --rows=read_stream_augment,jpeg_tfdata --json=/tmp/bench.json

The input is made offline, once: random crops (random size and aspect, randomly mirrored) of
the two photos that ship inside scikit-learn (china.jpg and flower.jpg, 427x640), saved as
JPEG quality 90 with a `train.csv` of 10 classes, the layout our users bring. It is cached in
`<workdir>/photos` beside a marker of the parameters that made it, and rebuilt when they differ.
The reader rows also need, made once and reused: the same photos written as our shards
(`<workdir>/shards`) and resized to --image_size as JPEGs (`<workdir>/jpeg_<size>`), the
folder of equally sized JPEGs a user would otherwise train from.

The rows, each a function `(Bench, name) -> Row` in the ROWS registry:

  read_stream_augment        1. make_dataset, training, streaming from the shards, with the
                                default augmentation in the pipeline (what train.py runs)
  read_stream_aug_on_device  2. the same with augment=None: augmentation left to the model's
                                DevicePreprocess on the accelerator (not timed here)
  read_cached                3. cache="memory", steady state (epoch 2+), augmentation on device
  read_cached_augment           the same with the default augmentation in the pipeline
  jpeg_tfdata                4. tf.data over the JPEG files: read, decode, random flip, batch,
                                AUTOTUNE; what a user would pick instead of our shards
  jpeg_pillow_loop           5. a Python loop over the JPEG files with Pillow, one image at a
                                time: the method users start with
  tfds_benchmark_ours            tfds.benchmark (TensorFlow Datasets' own timer) over row 1's
                                pipeline: the same reader, measured by a tool users trust
  tfds_benchmark_tfds_reader     tfds.benchmark over TFDS's own reader of the same shards
                                (tfds.builder_from_directory, as_dataset, batched)
  memcpy                     6. one numpy copy of each batch's bytes: the bound for any reader
  train_resnet10                a small ResNet trained on the reader: img/s, and the share of
                                step time spent waiting for input with a verdict in words
  write_1_worker, write_2_workers: the writer, with one and with two worker processes (these
  run first, before TensorFlow is imported)

Reader rows time whole batches of READ_BATCH images after the first (pipeline start-up, XLA
compilation and the in-memory table's load are not steady state), for at least
READ_MIN_IMAGES images, and print their speed relative to jpeg_tfdata.

Each row times one stage with `time.perf_counter`, samples the peak memory of this process and
its workers (reader rows share this process, so theirs includes TensorFlow and what earlier
rows left in its heap; the reader's own streaming bound is a test), and measures how busy other processes kept the machine meanwhile (a shared 2-core
machine is often not quiet; the table then says so). Rows run one at a time (two at once would
measure their contention), --repeats times round-robin (the writers' runs all before the
readers'); each row reports its fastest run. Performance targets are printed here, never asserted in tests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import functools
import io
import json
import multiprocessing
import os
import random
import shutil
import threading
import time
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import psutil
from absl import app, flags, logging
from PIL import Image

from pipeline import files, images, schema, workspace, write

DEFAULT_IMAGES = 2000
# The same run on the 2-core VM varied by 5-40% from one try to the next (and two independent
# CPU-bound processes there scaled anywhere from 1.1x to 2.2x): one run per row cannot tell a
# regression from noise. Runs are interleaved, so a slow spell hits every row alike, and each
# row keeps its fastest (the least disturbed, as `timeit` does).
DEFAULT_REPEATS = 3
# --quick: 400 photos keep the whole run (photos made once, then both writer rows) well under
# a minute on 2 cores, yet every shard still holds dozens of images.
QUICK_IMAGES = 400
PHOTO_SEED = 0
# Bump whenever make_photo_folder would write different bytes, so cached folders are rebuilt.
PHOTO_GENERATOR_VERSION = 1
PHOTOS_DIR = "photos"
PHOTOS_MARKER = "bench_photos.json"  # the parameters of a complete folder; written last
# Crops keep at least 256 px on each side (pixels), more than the default 224 output, so every
# image is downscaled as real photos are; the long side is at most 427 * 1.5 = 640, the photos'
# full width, and aspects run from 2:3 to 3:2 like camera and phone pictures.
CROP_MIN_SIDE = 256
CROP_MAX_ASPECT = 1.5
# What cameras and web photos use; subsampling is explicit so the bytes never depend on a
# Pillow default.
JPEG_QUALITY = 90
JPEG_SUBSAMPLING = "4:2:0"
NUM_CLASSES = 10  # label = image index % 10, so classes are balanced

# Writer rows. 16 train shards (+2 val): with 2 workers the 18 shards split 9/9, as the 36+4 of
# a real dataset do, and shards keep ~100 images each so per-shard costs weigh as they do there.
# (8 shards + 1 val split 5/4: the last shard alone capped the speed-up at 1.81x.)
WRITE_SHARDS = 16
# With few images the shard count shrinks so that no shard can be empty (the writer refuses
# more shards than images in a split).
MIN_IMAGES_PER_SHARD = 2
WRITE_VAL_FRACTION = 0.1
# The project's goal for the writer on a 2-core machine: 2 workers at least 1.8x one process.
WRITE_SPEEDUP_TARGET = 1.8
SPEEDUP_ROWS = ("write_1_worker", "write_2_workers")  # (baseline, parallel)

# Reader rows. Batches as make_dataset's default, and each timed run long enough (several
# epochs of the photos; seconds at the rates here) that tf.data's autotuning has settled.
READ_BATCH = 256
READ_MIN_IMAGES = 20_000
QUICK_READ_MIN_IMAGES = 5_000
READ_SEED = 0
READER_SHARDS_DIR = "shards"
# Bump whenever the writer adds or changes files, so cached reader shards are rewritten (2: DALI
# indexes and the TFDS metadata the tfds_benchmark_tfds_reader row reads).
READER_SHARDS_VERSION = 2
JPEG_DIR = "jpeg_{size}"  # the photos resized to the stored size, as a user's folder would be
# The row every reader row is compared with (tf.data over JPEGs), and the project's goals for
# the reader on a 2-core machine.
BASELINE_ROW = "jpeg_tfdata"
STREAM_SPEEDUP_TARGET = 2.5  # read_stream_augment / jpeg_tfdata
CACHED_TARGET_IMG_S = 16_000  # read_cached at 224^2: FFCV's per-core raw rate x 2 cores
CACHED_ROWS = ("read_cached", "read_cached_augment")

# Other processes busier than this (cores, averaged over a run) make the table print a warning:
# on 2 cores a tenth of a core elsewhere already moves the 2-worker row by several percent.
OTHER_CPU_WARN = 0.1
# Peak memory is sampled this often (seconds): often enough to catch a worker's peak within a
# shard, rare enough (one /proc scan per sample) to cost well under 1% of a core.
RSS_POLL_S = 0.05
MB = 1 << 20


class BenchError(RuntimeError):
    """The bench cannot run as asked (e.g. its workdir holds something it did not write)."""


# ---------------------------------------------------------------------------------------------
# The input: a folder of photo crops
# ---------------------------------------------------------------------------------------------


def make_photo_folder(folder: str, count: int, seed: int = PHOTO_SEED) -> str:
    """`folder/images/<i>.jpg` + `folder/train.csv` of `count` photo crops; returns the CSV path.

    The same (count, seed) always gives the same bytes. A folder already made with these
    parameters is reused as it is; one made with others is rebuilt. The folder appears
    atomically (built beside it, then renamed), so an interrupted build is never trusted.
    """
    if count < 1:
        raise ValueError(f"count={count}: a photo folder needs at least 1 image")
    csv_path = os.path.join(folder, "train.csv")
    wanted = photo_parameters(count, seed)
    existing = read_photo_marker(folder)
    if existing == wanted:
        return csv_path
    if existing is None and os.path.exists(folder):
        raise BenchError(
            f"{folder} exists but was not made by the bench (no {PHOTOS_MARKER}); remove it or "
            "choose another --workdir"
        )
    # Replaces a folder the bench made with other parameters.
    with files.staged_directory(folder) as staging:
        write_photo_crops(staging, count, seed)
        files.atomic_write_text(os.path.join(staging, PHOTOS_MARKER),
                                json.dumps(wanted, sort_keys=True) + "\n")
    return csv_path


def photo_parameters(count: int, seed: int) -> dict:
    """Everything that decides the folder's bytes; equal parameters mean a reusable folder."""
    return {
        "version": PHOTO_GENERATOR_VERSION,
        "count": count,
        "seed": seed,
        "crop_min_side": CROP_MIN_SIDE,
        "crop_max_aspect": CROP_MAX_ASPECT,
        "jpeg_quality": JPEG_QUALITY,
        "jpeg_subsampling": JPEG_SUBSAMPLING,
        "classes": NUM_CLASSES,
    }


def read_photo_marker(folder: str) -> dict | None:
    return _read_json(os.path.join(folder, PHOTOS_MARKER))


def _read_json(path: str) -> dict | None:
    """A marker's parameters; None when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise BenchError(f"{path} is damaged ({err}); remove it and run again") from err


def write_photo_crops(folder: str, count: int, seed: int) -> None:
    from sklearn.datasets import load_sample_images  # heavy import, only needed to build once

    photos = load_sample_images().images  # [china, flower], uint8 (427, 640, 3)
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"))
    rows = []
    for i in range(count):
        crop = random_crop(photos[rng.integers(len(photos))], rng)
        path = f"images/{i}.jpg"
        Image.fromarray(crop).save(os.path.join(folder, path), "JPEG", quality=JPEG_QUALITY,
                                   subsampling=JPEG_SUBSAMPLING)
        rows.append((path, f"class_{i % NUM_CLASSES}"))
    with open(os.path.join(folder, "train.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "label"])
        writer.writerows(rows)


def random_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of random size, aspect and place, mirrored left-right half of the time (HWC).

    Draws from `rng` in a fixed order, so the crops depend only on the seed.
    """
    height, width = photo.shape[:2]
    crop_h = int(rng.integers(CROP_MIN_SIDE, height + 1))
    # Log-uniform aspect: 2:3 is as likely as 3:2.
    aspect = float(np.exp(rng.uniform(-np.log(CROP_MAX_ASPECT), np.log(CROP_MAX_ASPECT))))
    crop_w = int(np.clip(round(crop_h * aspect), CROP_MIN_SIDE, width))
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    crop = photo[top:top + crop_h, left:left + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


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
    peak_rss_mb: float | None  # this process + its workers, summed; None where not measured
    # Cores other processes and the kernel kept busy during the (fastest) run; see Monitor.
    other_cpu: float | None = None
    runs: tuple[float, ...] = ()  # seconds of every run, in order
    # Training rows: the share of step time spent waiting for the next batch.
    input_wait: float | None = None

    @property
    def spread(self) -> float | None:
        """Slowest run over fastest, minus 1: how much to trust a difference between rows."""
        return max(self.runs) / min(self.runs) - 1 if len(self.runs) > 1 else None


def make_row(name: str, images: int, seconds: float, peak_rss_mb: float | None = None,
             other_cpu: float | None = None) -> Row:
    """One run's row."""
    rate = images / seconds if seconds > 0 else 0.0
    return Row(name, images, seconds, rate, peak_rss_mb, other_cpu, runs=(seconds,))


def best_of(samples: Sequence[Row]) -> Row:
    """The fastest run, with every run's seconds and the highest memory peak of any."""
    best = min(samples, key=lambda row: row.seconds)
    peaks = [row.peak_rss_mb for row in samples if row.peak_rss_mb is not None]
    return dataclasses.replace(
        best, peak_rss_mb=max(peaks) if peaks else None,
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
    def peak_mb(self) -> float:
        return self._peak / MB

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


def write_row(bench: Bench, name: str, *, num_workers: int) -> Row:
    """Write the photo folder as sharded records with `num_workers` processes, from scratch."""
    output_dir = os.path.join(bench.workdir, name)
    # Fresh every time: a complete dataset with the same plan would be kept, not rewritten.
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    config = write.WriteConfig(
        output_dir=output_dir,
        input=bench.photos_csv,
        shards=write_shards(bench.images),
        image_size=bench.image_size,
        val_fraction=WRITE_VAL_FRACTION,
        num_workers=num_workers,
        show_progress=False,
        overwrite=True,
    )
    with Monitor() as monitor:
        start = time.perf_counter()
        summary = write.write_dataset(config)
        seconds = time.perf_counter() - start
    images = sum(split.count for split in summary.manifest.splits.values())
    return make_row(name, images, seconds, monitor.peak_mb, monitor.other_cpu)


def write_shards(images: int) -> int:
    return max(1, min(WRITE_SHARDS, images // MIN_IMAGES_PER_SHARD))


# ---------------------------------------------------------------------------------------------
# Reader rows
# ---------------------------------------------------------------------------------------------


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


def read_batch_size(bench: Bench) -> int:
    """READ_BATCH, or the whole training split when it is smaller (tiny --images)."""
    manifest = schema.read_manifest(bench.shards_dir)
    return min(READ_BATCH, manifest.split(schema.TRAIN).count)


def reader_row(bench: Bench, name: str, *, cache: str | None, augment: bool) -> Row:
    """make_dataset over the photo shards, training mode, timed in steady state."""
    from pipeline import augment as augment_lib
    from pipeline import dataset

    with Monitor() as monitor:
        train = dataset.make_dataset(
            bench.shards_dir, schema.TRAIN, read_batch_size(bench), training=True, cache=cache,
            seed=READ_SEED, augment=augment_lib.DEFAULT_TRAIN_AUGMENT if augment else None,
        )
        seen, seconds = time_batches(iter(train.repeat()), bench.read_min_images)
        del train  # frees the in-memory table before the next row
    return make_row(name, seen, seconds, monitor.peak_mb, monitor.other_cpu)


def jpeg_files(bench: Bench) -> list[str]:
    with open(os.path.join(bench.jpeg_dir, "train.csv"), newline="", encoding="utf-8") as f:
        return [os.path.join(bench.jpeg_dir, row["image"]) for row in csv.DictReader(f)]


def jpeg_tfdata_row(bench: Bench, name: str) -> Row:
    """The usual tf.data input over a JPEG folder (the tf.data guide's recipe): shuffle the
    file names, then per image read, decode and randomly flip in a parallel map, batch,
    prefetch. Its images are already --image_size, so nothing is resized: the fairest case."""
    import tensorflow as tf

    def load(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.random_flip_left_right(image)

    paths = jpeg_files(bench)
    with Monitor() as monitor:
        batches = (tf.data.Dataset.from_tensor_slices(paths)
                   .shuffle(len(paths), seed=READ_SEED, reshuffle_each_iteration=True)
                   .map(load, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(read_batch_size(bench), drop_remainder=True)
                   .prefetch(tf.data.AUTOTUNE))
        seen, seconds = time_batches(iter(batches.repeat()), bench.read_min_images)
    return make_row(name, seen, seconds, monitor.peak_mb, monitor.other_cpu)


def pillow_batches(paths: Sequence[str], batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Batches of HWC uint8 images, one file at a time: open, decode, flip half, stack."""
    rng = random.Random(seed)
    while True:
        order = list(paths)
        rng.shuffle(order)
        for first in range(0, len(order) - batch_size + 1, batch_size):
            batch = []
            for path in order[first:first + batch_size]:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                batch.append(pixels[:, ::-1] if rng.random() < 0.5 else pixels)
            yield np.stack(batch)


def jpeg_pillow_loop_row(bench: Bench, name: str) -> Row:
    """The per-file Python loop users start with. One epoch at most: it is slow."""
    paths = jpeg_files(bench)
    batch_size = read_batch_size(bench)
    min_images = min(bench.read_min_images, max(len(paths) - 2 * batch_size, batch_size))
    with Monitor() as monitor:
        seen, seconds = time_batches(pillow_batches(paths, batch_size, READ_SEED), min_images)
    return make_row(name, seen, seconds, monitor.peak_mb, monitor.other_cpu)


def memcpy_row(bench: Bench, name: str) -> Row:
    """One numpy copy per batch of the training split's image bytes into a reused buffer: no
    reader of these bytes can go faster on this machine."""
    from pipeline import dataset

    manifest = schema.read_manifest(bench.shards_dir)
    files_, count = dataset.pipeline_files(manifest, bench.shards_dir, schema.TRAIN, None)
    table_images, _ = dataset.load_table(files_, manifest, count)
    table = table_images.numpy()
    del table_images
    batch_size = read_batch_size(bench)
    out = np.empty((batch_size, *table.shape[1:]), table.dtype)

    def copies():
        while True:
            for first in range(0, len(table) - batch_size + 1, batch_size):
                np.copyto(out, table[first:first + batch_size])
                yield out

    with Monitor() as monitor:
        seen, seconds = time_batches(copies(), bench.read_min_images)
    return make_row(name, seen, seconds, monitor.peak_mb, monitor.other_cpu)


# The training row: a small ResNet fed by make_dataset, timed like train.py times itself.
TRAIN_BATCH = 64
TRAIN_STEPS = 12  # measured steps (after an epoch of as many that compiles the model)
TRAIN_POOLED_SIDE = 32  # the model average-pools images to about this side first (pixels)


def train_row(bench: Bench, name: str) -> Row:
    """Training steps of a ResNet-10 on the shards with the default augmentation in tf.data,
    the input wait measured as train.py measures it (pipeline.training.InputTimer). On a CPU
    the model, not the input, is the bound; on an accelerator this row says whether the
    reader keeps up (see training.input_verdict)."""
    from pipeline import augment as augment_lib
    from pipeline import training

    batch_size = min(TRAIN_BATCH, read_batch_size(bench))
    with Monitor() as monitor:
        timer = training.time_training_steps(
            bench.shards_dir, schema.TRAIN, batch_size=batch_size, steps_per_epoch=TRAIN_STEPS,
            seed=READ_SEED, augment=augment_lib.DEFAULT_TRAIN_AUGMENT, depth=10, width=16,
            stem="small", input_pool=pool_factor(bench.image_size))
    rate = timer.last_images_per_second or 0.0
    images = (TRAIN_STEPS - 1) * batch_size  # InputTimer leaves out each epoch's first step
    row = make_row(name, images, images / rate if rate else 0.0, monitor.peak_mb,
                   monitor.other_cpu)
    return dataclasses.replace(row, input_wait=timer.last_wait_fraction)


def pool_factor(image_size: int) -> int:
    """The largest divisor of image_size that pools it to about TRAIN_POOLED_SIDE or more."""
    return max(p for p in range(1, max(image_size // TRAIN_POOLED_SIDE, 1) + 1)
               if image_size % p == 0)


def tfds_benchmark_row(bench: Bench, name: str, *, reader: str) -> Row:
    """tfds.benchmark's steady-state figure (its "lasts": every batch after the first) over
    make_dataset (`reader="ours"`) or over TFDS's reader of the same shards (`"tfds"`)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from pipeline import augment as augment_lib
    from pipeline import dataset

    batch = read_batch_size(bench)
    with Monitor() as monitor:
        if reader == "ours":
            data = dataset.make_dataset(bench.shards_dir, schema.TRAIN, batch, training=True,
                                        seed=READ_SEED,
                                        augment=augment_lib.DEFAULT_TRAIN_AUGMENT).repeat()
        else:
            builder = tfds.builder_from_directory(bench.shards_dir)
            data = (builder.as_dataset(split=schema.TRAIN, shuffle_files=True).repeat()
                    .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
        batches = 1 + -(-bench.read_min_images // batch)  # the first, then the timed ones
        tfds.display_progress_bar(False)  # our table is the report
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its own summary
            result = tfds.benchmark(data, num_iter=batches, batch_size=batch)
        del data
    steady = result.stats.loc["lasts"]
    return make_row(name, int(steady["num_examples"]), float(steady["duration"]),
                    monitor.peak_mb, monitor.other_cpu)


RowFn = Callable[[Bench, str], Row]  # (settings, row name) -> the measured row
# Every row, in the order they run and are printed.
ROWS: Mapping[str, RowFn] = {
    # Writers first: they run before this process imports TensorFlow, whose threads and
    # memory would otherwise sit beside the workers (measured: 2 workers 681 -> 569 img/s).
    "write_1_worker": functools.partial(write_row, num_workers=1),
    "write_2_workers": functools.partial(write_row, num_workers=2),
    "read_stream_augment": functools.partial(reader_row, cache=None, augment=True),
    "read_stream_aug_on_device": functools.partial(reader_row, cache=None, augment=False),
    "read_cached": functools.partial(reader_row, cache="memory", augment=False),
    "read_cached_augment": functools.partial(reader_row, cache="memory", augment=True),
    BASELINE_ROW: jpeg_tfdata_row,
    "jpeg_pillow_loop": jpeg_pillow_loop_row,
    "tfds_benchmark_ours": functools.partial(tfds_benchmark_row, reader="ours"),
    "tfds_benchmark_tfds_reader": functools.partial(tfds_benchmark_row, reader="tfds"),
    "memcpy": memcpy_row,
    "train_resnet10": train_row,
}
READER_ROWS = tuple(name for name in ROWS if not name.startswith("write_"))


def select_rows(names: Sequence[str] | None) -> list[str]:
    """The rows to run in ROWS order; all of them for None or an empty list."""
    if not names:
        return list(ROWS)
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        raise BenchError(f"--rows: unknown row(s) {unknown}; choose from {list(ROWS)}")
    return [name for name in ROWS if name in names]


def run_rows(bench: Bench, names: Sequence[str], repeats: int = 1) -> list[Row]:
    """Run the rows `repeats` times round-robin; each row's fastest run, in ROWS order.

    The writer rows do all their runs first, the readers after: once a reader row has imported
    TensorFlow, its threads and memory stay in this process beside the writer's workers.
    """
    if repeats < 1:
        raise BenchError(f"--repeats={repeats} must be at least 1")
    samples: dict[str, list[Row]] = {name: [] for name in select_rows(names)}
    writers = [name for name in samples if name not in READER_ROWS]
    readers = [name for name in samples if name in READER_ROWS]
    for group in (writers, readers):
        for repeat in range(repeats):
            for name in group:
                row = ROWS[name](bench, name)
                logging.info("%s (run %d/%d): %d images in %.2f s (%.1f img/s)", name,
                             repeat + 1, repeats, row.images, row.seconds, row.images_per_s)
                samples[name].append(row)
    return [best_of(runs) for runs in samples.values()]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def write_speedup(rows: Sequence[Row]) -> float | None:
    """img/s of write_2_workers over write_1_worker, when both ran."""
    by_name = {row.name: row for row in rows}
    baseline, parallel = (by_name.get(name) for name in SPEEDUP_ROWS)
    if baseline is None or parallel is None or baseline.images_per_s <= 0:
        return None
    return parallel.images_per_s / baseline.images_per_s


def baseline_ratio(rows: Sequence[Row], name: str) -> float | None:
    """img/s of row `name` over the JPEG tf.data row's, when both ran."""
    by_name = {row.name: row for row in rows}
    row, baseline = by_name.get(name), by_name.get(BASELINE_ROW)
    if row is None or baseline is None or baseline.images_per_s <= 0:
        return None
    return row.images_per_s / baseline.images_per_s


def target_lines(rows: Sequence[Row], image_size: int) -> list[str]:
    """One line per target whose rows ran: the figure, the target, met or not."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = []
    stream = baseline_ratio(rows, "read_stream_augment")
    if stream is not None:
        lines.append(f"streaming with augmentation / tf.data over JPEGs: {stream:.2f}x "
                     f"(target >= {STREAM_SPEEDUP_TARGET}x: {verdict(stream >= STREAM_SPEEDUP_TARGET)})")
    by_name = {row.name: row for row in rows}
    for name in CACHED_ROWS:
        if name in by_name:
            rate = by_name[name].images_per_s
            scale = "" if image_size == write.DEFAULT_IMAGE_SIZE else (
                f"; measured at {image_size}^2, the target is for {write.DEFAULT_IMAGE_SIZE}^2")
            lines.append(f"{name}: {rate:,.0f} img/s (target >= {CACHED_TARGET_IMG_S:,} img/s: "
                         f"{verdict(rate >= CACHED_TARGET_IMG_S)}{scale})")
    for row in rows:
        if row.input_wait is not None:
            from pipeline import training

            lines.append(f"{row.name}: {100 * row.input_wait:.0f}% of step time waiting for "
                         f"input: {training.input_verdict(row.input_wait)}")
    speedup = write_speedup(rows)
    if speedup is not None:
        lines.append(f"write speedup, 2 workers / 1 worker: {speedup:.2f}x "
                     f"(target >= {WRITE_SPEEDUP_TARGET}x: {verdict(speedup >= WRITE_SPEEDUP_TARGET)})")
    return lines


def format_report(rows: Sequence[Row], image_size: int = write.DEFAULT_IMAGE_SIZE) -> str:
    """The table (img/s relative to tf.data over JPEGs where it ran), then the targets."""
    header = (f"{'row':<27}{'images':>8}{'seconds':>9}{'img/s':>10}{'vs jpeg':>9}{'runs':>6}"
              f"{'spread':>8}{'peak RSS MB':>13}{'other CPU':>11}")
    lines = [header, "-" * len(header)]
    for row in rows:
        spread = "-" if row.spread is None else f"{100 * row.spread:.0f}%"
        rss = "-" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}"
        other = "-" if row.other_cpu is None else f"{row.other_cpu:.2f}"
        ratio = (baseline_ratio(rows, row.name)
                 if row.name in READER_ROWS and row.input_wait is None else None)
        ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"{row.name:<27}{row.images:>8}{row.seconds:>9.2f}"
                     f"{row.images_per_s:>10.1f}{ratio_text:>9}{len(row.runs):>6}{spread:>8}"
                     f"{rss:>13}{other:>11}")
    busy = [row for row in rows if row.other_cpu is not None and row.other_cpu > OTHER_CPU_WARN]
    if busy:
        lines.append(
            f"warning: other processes kept up to {max(row.other_cpu for row in busy):.2f} "
            f"core(s) busy during {', '.join(row.name for row in busy)}; those numbers are "
            "disturbed (run again on a quiet machine)")
    lines.extend(target_lines(rows, image_size))
    return "\n".join(lines)


def report_json(rows: Sequence[Row], bench: Bench, repeats: int) -> str:
    document = {
        "settings": {"images": bench.images, "image_size": bench.image_size,
                     "repeats": repeats, "workdir": bench.workdir, "cpus": os.cpu_count()},
        "rows": [dict(dataclasses.asdict(row), vs_jpeg=baseline_ratio(rows, row.name))
                 for row in rows],
        "write_speedup": write_speedup(rows),
        "write_speedup_target": WRITE_SPEEDUP_TARGET,
        "stream_speedup": baseline_ratio(rows, "read_stream_augment"),
        "stream_speedup_target": STREAM_SPEEDUP_TARGET,
        "cached_target_img_s": CACHED_TARGET_IMG_S,
    }
    return json.dumps(document, indent=2) + "\n"


def prepare(workdir: str, images: int, image_size: int, names: Sequence[str] = (),
            read_min_images: int = READ_MIN_IMAGES) -> Bench:
    """Make (or reuse) the photo folder, and what the selected reader rows read.

    A new folder is made in a child process: scikit-learn and SciPy, imported to load the
    photos, would otherwise stay in this process and add ~80 MB to every row's peak memory on
    the first run only.
    """
    start = time.perf_counter()
    folder = os.path.join(workdir, PHOTOS_DIR)
    if read_photo_marker(folder) == photo_parameters(images, PHOTO_SEED):
        photos_csv = make_photo_folder(folder, images, PHOTO_SEED)  # reuses it
    else:
        context = multiprocessing.get_context("spawn")  # as the writer: never fork
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            photos_csv = pool.submit(make_photo_folder, folder, images, PHOTO_SEED).result()
    logging.info("photos: %d in %s (ready in %.1f s)", images, folder,
                 time.perf_counter() - start)
    bench = Bench(workdir=workdir, images=images, image_size=image_size, photos_csv=photos_csv,
                  read_min_images=read_min_images)
    if any(name in READER_ROWS for name in names):
        bench = dataclasses.replace(
            bench,
            shards_dir=write_reader_shards(bench, os.path.join(workdir, READER_SHARDS_DIR)),
            jpeg_dir=make_jpeg_folder(photos_csv, os.path.join(
                workdir, JPEG_DIR.format(size=image_size)), image_size),
        )
    return bench


def write_reader_shards(bench: Bench, output_dir: str) -> str:
    """The photos as our shards, written once: the same command again keeps a complete
    dataset, and a changed one (other --images or --image_size) rewrites it."""
    start = time.perf_counter()
    config = write.WriteConfig(
        output_dir=output_dir, input=bench.photos_csv, shards=write_shards(bench.images),
        image_size=bench.image_size, val_fraction=WRITE_VAL_FRACTION, show_progress=False,
        overwrite=True,
    )
    # The marker sits beside the dataset: the writer owns every file inside it.
    marker = output_dir + ".json"
    wanted = {"version": READER_SHARDS_VERSION,
              "photos": read_photo_marker(os.path.dirname(bench.photos_csv)),
              "image_size": bench.image_size, "shards": config.shards,
              "val_fraction": config.val_fraction}
    if not os.path.exists(schema.manifest_path(output_dir)) or _read_json(marker) != wanted:
        if os.path.exists(marker):
            os.remove(marker)
        write.write_dataset(config)
        files.atomic_write_text(marker, json.dumps(wanted, sort_keys=True) + "\n")
    logging.info("reader shards: %s (ready in %.1f s)", output_dir, time.perf_counter() - start)
    return output_dir


def make_jpeg_folder(photos_csv: str, folder: str, image_size: int) -> str:
    """The training photos decoded and resized exactly as the writer stores them, saved as
    JPEG again (quality JPEG_QUALITY), with a train.csv: the folder of equally sized JPEGs a
    user would otherwise train from. Made once; the marker holds the parameters."""
    wanted = {"photos_csv": os.path.abspath(photos_csv), "image_size": image_size,
              "photos": read_photo_marker(os.path.dirname(photos_csv)),
              "jpeg_quality": JPEG_QUALITY, "jpeg_subsampling": JPEG_SUBSAMPLING}
    if read_photo_marker(folder) == wanted:
        return folder
    if os.path.exists(folder) and read_photo_marker(folder) is None:
        raise BenchError(f"{folder} exists but was not made by the bench (no {PHOTOS_MARKER}); "
                         "remove it or choose another --workdir")
    source = os.path.dirname(photos_csv)
    with open(photos_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with files.staged_directory(folder) as staging:
        os.makedirs(os.path.join(staging, "images"))
        for row in rows:
            chw = images.decode_image(os.path.join(source, row["image"]), image_size)
            Image.fromarray(chw.transpose(1, 2, 0)).save(
                os.path.join(staging, row["image"]), "JPEG", quality=JPEG_QUALITY,
                subsampling=JPEG_SUBSAMPLING)
        with open(os.path.join(staging, "train.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["image", "label"], lineterminator="\n")
            writer.writeheader()
            writer.writerows({"image": row["image"], "label": row["label"]} for row in rows)
        files.atomic_write_text(os.path.join(staging, PHOTOS_MARKER),
                                json.dumps(wanted, sort_keys=True) + "\n")
    return folder


def default_workdir() -> str:
    return os.path.join(workspace.root(), "bench")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False,
                  f"Small sizes for a smoke run: {QUICK_IMAGES} images unless --images is given "
                  "(under a minute on 2 cores).")
flags.DEFINE_integer("images", None,
                     f"Photos in the benchmark folder (default {DEFAULT_IMAGES}; with --quick "
                     f"{QUICK_IMAGES}). Made once and cached in --workdir.", lower_bound=1)
flags.DEFINE_integer("read_images", None,
                     f"Images each reader row times after its first batch (default "
                     f"{READ_MIN_IMAGES:,}; with --quick {QUICK_READ_MIN_IMAGES:,}); the photos "
                     "are read as many epochs as that takes.", lower_bound=1)
flags.DEFINE_string("workdir", None,
                    "Where the photo folder and each row's output go. Default: "
                    "<workspace>/bench (see pipeline.workspace; PIPELINE_WORKSPACE moves it).")
flags.DEFINE_integer("repeats", DEFAULT_REPEATS,
                     "Runs of every row, interleaved; each row reports its fastest run and the "
                     "spread between its runs.", lower_bound=1)
flags.DEFINE_list("rows", [], f"Comma-separated rows to run (default: all): {', '.join(ROWS)}.")
flags.DEFINE_string("json", None, "Also write the rows (and the speedup) as JSON to this file.")
flags.DEFINE_integer("image_size", write.DEFAULT_IMAGE_SIZE,
                     "Side of the stored images, in pixels, in every row (writer, shards and "
                     "JPEGs read).", lower_bound=1)


EXIT_BENCH_ERROR = 2


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    try:
        names = select_rows(FLAGS.rows)
    except BenchError as err:
        raise app.UsageError(str(err)) from err
    images = FLAGS.images or (QUICK_IMAGES if FLAGS.quick else DEFAULT_IMAGES)
    read_min_images = FLAGS.read_images or (
        QUICK_READ_MIN_IMAGES if FLAGS.quick else READ_MIN_IMAGES)
    try:
        bench = prepare(FLAGS.workdir or default_workdir(), images, FLAGS.image_size, names,
                        read_min_images)
    except BenchError as err:
        logging.error("%s", err)
        return EXIT_BENCH_ERROR
    rows = run_rows(bench, names, FLAGS.repeats)
    print(format_report(rows, bench.image_size))
    if FLAGS.json:
        files.atomic_write_text(FLAGS.json, report_json(rows, bench, FLAGS.repeats))
        logging.info("rows written to %s", FLAGS.json)
    return 0


if __name__ == "__main__":
    app.run(main)
