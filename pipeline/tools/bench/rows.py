"""The rows: each a function `(Bench, name) -> Row` in the ROWS registry, run in ROWS order.

Writer rows run first, before this process imports TensorFlow; reader rows time whole batches
of READ_BATCH images after the first (pipeline start-up, XLA compilation and the in-memory
table's load are not steady state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import random
import shutil
import time
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from absl import logging
from PIL import Image

from pipeline.core import schema
from pipeline.tools.bench import cold, scaling
from pipeline.tools.bench.measure import (READ_SEED, Bench, BenchError, Monitor, Row, best_of,
                                          jpeg_files, jpeg_map_row, make_row, read_batch_size,
                                          time_batches)
from pipeline.tools.bench.photos import WRITE_VAL_FRACTION, write_shards
from pipeline.writing import writer
from pipeline.writing.settings import WriteConfig

# The row every reader row is compared with: tf.data over JPEGs.
BASELINE_ROW = "jpeg_tfdata"


def write_row(bench: Bench, name: str, *, num_workers: int) -> Row:
    """Write the photo folder as sharded records with `num_workers` processes, from scratch."""
    output_dir = os.path.join(bench.workdir, name)
    # Fresh every time: a complete dataset with the same plan would be kept, not rewritten.
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    config = WriteConfig(
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
        summary = writer.write_dataset(config)
        seconds = time.perf_counter() - start
    images = sum(split.count for split in summary.manifest.splits.values())
    return make_row(name, images, seconds, monitor.peak_mib, monitor.other_cpu)


def reader_row(bench: Bench, name: str, *, cache: str | None, augment: bool,
               access: str = "auto") -> Row:
    """make_dataset over the photo shards, training mode, timed in steady state."""
    from pipeline import augment as augment_lib
    from pipeline import dataset

    with Monitor() as monitor:
        train = dataset.make_dataset(
            bench.shards_dir, schema.TRAIN, read_batch_size(bench), training=True, cache=cache,
            access=access, seed=READ_SEED,
            augment=augment_lib.DEFAULT_TRAIN_AUGMENT if augment else None,
        )
        seen, seconds = time_batches(iter(train.repeat()), bench.read_min_images)
        del train  # frees the in-memory table before the next row
    return make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)


def jpeg_tfdata_row(bench: Bench, name: str) -> Row:
    """The usual tf.data input over a JPEG folder (the tf.data guide's recipe): shuffle the
    file names, then per image read, decode and randomly flip in a parallel map, batch,
    prefetch. Its images are already --image_size, so nothing is resized: the fairest case."""
    import tensorflow as tf

    def load(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.random_flip_left_right(image)

    return jpeg_map_row(bench, name, load)


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
    return make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)


def memcpy_row(bench: Bench, name: str) -> Row:
    """One numpy copy per batch of the training split's image bytes into a reused buffer: no
    reader of these bytes can go faster on this machine."""
    from pipeline.dataset import DamagedShards, random_access, table as table_lib

    manifest = schema.read_manifest(bench.shards_dir)
    records = random_access.open_records(bench.shards_dir, manifest,
                                         manifest.split(schema.TRAIN).shards, schema.TRAIN,
                                         DamagedShards())
    table_images, _ = table_lib.load_records(records)
    table = table_images.numpy()
    del table_images, records
    batch_size = read_batch_size(bench)
    out = np.empty((batch_size, *table.shape[1:]), table.dtype)

    def copies():
        while True:
            for first in range(0, len(table) - batch_size + 1, batch_size):
                np.copyto(out, table[first:first + batch_size])
                yield out

    with Monitor() as monitor:
        seen, seconds = time_batches(copies(), bench.read_min_images)
    return make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)


# The training row: a ResNet fed by make_dataset, timed like train.py times itself.
TRAIN_BATCH = 64  # on a CPU
TRAIN_STEPS = 12  # measured steps (after an epoch of as many that compiles the model)
TRAIN_POOLED_SIDE = 32  # on a CPU the model average-pools images to about this side first
ACCELERATOR_TRAIN_BATCH = 256


def train_settings(image_size: int, gpus: int) -> tuple[str, dict]:
    """(what the training row trains, in words; time_training_steps' arguments). On a GPU the
    model users train: ResNet-50, mixed precision, batch 256, batches prefetched into its
    memory. On a CPU a ResNet-10 on pooled images, small enough to time in seconds."""
    if gpus:
        return ("ResNet-50, mixed precision, batch 256, prefetched to /gpu:0",
                dict(batch_size=ACCELERATOR_TRAIN_BATCH, depth=50, width=64, stem="imagenet",
                     input_pool=1, mixed_precision=True, to_device="/gpu:0"))
    pool = pool_factor(image_size)
    return (f"ResNet-10 (width 16, images pooled {pool}x), batch {TRAIN_BATCH}, on the CPU",
            dict(batch_size=TRAIN_BATCH, depth=10, width=16, stem="small", input_pool=pool))


def train_row(bench: Bench, name: str) -> Row:
    """Training steps of a ResNet (train_settings) on the shards with the default augmentation
    in tf.data, the input wait measured as train.py measures it
    (pipeline.training.timing.InputTimer). On a CPU the model, not the input, is the bound; on
    an accelerator this row says whether the reader keeps up (see timing.input_verdict)."""
    import tensorflow as tf

    from pipeline import augment as augment_lib
    from pipeline.training import timing

    what, settings = train_settings(bench.image_size, len(tf.config.list_physical_devices("GPU")))
    settings["batch_size"] = min(settings["batch_size"], read_batch_size(bench))
    with Monitor() as monitor:
        timer = timing.time_training_steps(
            bench.shards_dir, schema.TRAIN, steps_per_epoch=TRAIN_STEPS, seed=READ_SEED,
            augment=augment_lib.DEFAULT_TRAIN_AUGMENT, **settings)
    rate = timer.last_images_per_second or 0.0
    images = (TRAIN_STEPS - 1) * settings["batch_size"]  # InputTimer skips an epoch's first
    row = make_row(name, images, images / rate if rate else 0.0, monitor.peak_mib,
                   monitor.other_cpu)
    return dataclasses.replace(row, input_wait=timer.last_wait_fraction, note=what)


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
                    monitor.peak_mib, monitor.other_cpu)


RowFn = Callable[[Bench, str], Row]  # (settings, row name) -> the measured row
# Every row, in the order they run and are printed.
ROWS: Mapping[str, RowFn] = {
    # Writers first: they run before this process imports TensorFlow, whose threads and
    # memory would otherwise sit beside the workers (measured: 2 workers 681 -> 569 img/s).
    "write_1_worker": functools.partial(write_row, num_workers=1),
    "write_2_workers": functools.partial(write_row, num_workers=2),
    "read_random_augment": functools.partial(reader_row, cache=None, augment=True,
                                             access="random"),
    "read_random_aug_on_device": functools.partial(reader_row, cache=None, augment=False,
                                                   access="random"),
    "read_stream_augment": functools.partial(reader_row, cache=None, augment=True,
                                             access="stream"),
    "read_stream_aug_on_device": functools.partial(reader_row, cache=None, augment=False,
                                                   access="stream"),
    "read_cached": functools.partial(reader_row, cache="memory", augment=False),
    "read_cached_augment": functools.partial(reader_row, cache="memory", augment=True),
    BASELINE_ROW: jpeg_tfdata_row,
    "jpeg_pillow_loop": jpeg_pillow_loop_row,
    "tfds_benchmark_ours": functools.partial(tfds_benchmark_row, reader="ours"),
    "tfds_benchmark_tfds_reader": functools.partial(tfds_benchmark_row, reader="tfds"),
    "memcpy": memcpy_row,
    "disk_sequential_read": cold.disk_read_row,
    "read_random_cold": functools.partial(cold.cold_reader_row, access="random"),
    "read_stream_cold": functools.partial(cold.cold_reader_row, access="stream"),
    "train_resnet": train_row,
    **scaling.ROWS,
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
