"""Batches by position, for random access and the in-memory table.

Two pipelines, one choice between them (numbered_batches): read_pipeline reads each batch's
records from the shards, table_pipeline gathers them from the split loaded once into memory.
Both yield (images, labels, g) by batch number g in an order from order.py, and by_position
does what follows for both.

Order of the pipeline, and why:
    the run's batch numbers g: from start_batch on (a position, not a buffer: resuming is
      free), or one epoch per iteration of the dataset (Keras's fit(epochs=...) re-iterates)
    -> record positions of batch g (order.py): a pure function of (seed, g), so the batches
       are the same whatever the threads, and different every epoch
    -> ask the kernel for them (a batch ahead of their read: the page cache fills from disk
       meanwhile)
    -> read them from the shards (random_access.py: one batch at a time, its records split
       between the reading threads, the spec's leading crop and flip done on the way in,
       fused.py) or gather them from the table (table.py), deterministic map: tf.data keeps
       g's order
    -> static shapes: [B, 3, H, W] and [B] in training, for any model
    -> augment with the stateless seed (seed, g), the ops the reader did left out: batch g
       is augmented the same way on every run and after every resume, and unlike batch
       g + batches_per_epoch

"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any, NamedTuple, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from pipeline import augment as augment_lib
from pipeline.core import record_index, units
from pipeline.dataset import access as access_lib
from pipeline.dataset import damaged, fused, table
from pipeline.dataset.options import ReadOptions
from pipeline.dataset.order import Order, choose_order, require_batches
from pipeline.dataset.plan import ReadPlan
from pipeline.dataset.random_access import (BatchPool, DamagedRecord, Records, default_threads,
                                            in_threads, open_records)

AUTOTUNE = tf.data.AUTOTUNE
# Batches read at once. One: each batch is already read by all cores at once (the threads of
# random_access.in_threads, in compiled kernels without the GIL), and a second batch in flight
# only adds contention. Measured side by side, 224^2, batch 256, 2 cores: augment=None
# 30.3-32.2k img/s with 1 vs 28.2-30.5k with 2; crop + flip in the reader 25.6-26.0k vs
# 24.9-25.6k.
READ_CALLS = 1
# At exit, wait this long at most for the Python calls of live pipelines to finish (seconds),
# and call them finished once none has run for QUIET_S.
WAIT_AT_EXIT_S = 30.0
QUIET_S = 0.05
# Loading an in-memory table this large is said before it starts: it takes seconds per GiB
# (209 MiB: 1.1 s here, from the page cache), silent otherwise.
LOAD_NOTICE_BYTES = 1 << 30


class _PythonCalls:
    """Counts the pipelines' Python calls in flight, so that the interpreter can exit.

    A tf.data pipeline that is still being consumed when the program ends is destroyed while
    Python finalises; its reading threads may then be inside one of our numpy_function
    calls, which can no longer take the GIL to finish, and the destructor waits for them for
    ever (seen: 4 of 6 runs of a script ending with a live iterator hung at exit). At exit,
    before that, this waits until no call is running: once nobody consumes the pipeline its
    buffers fill, no call starts, and its destruction no longer needs Python.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._running = 0
        self._last_end = 0.0
        atexit.register(self.wait_idle)

    def wrap(self, function):
        def counted(*args):
            with self._lock:
                self._running += 1
            try:
                return function(*args)
            finally:
                with self._lock:
                    self._running -= 1
                    self._last_end = time.monotonic()

        return counted

    def wait_idle(self, timeout_s: float = WAIT_AT_EXIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = self._running == 0 and time.monotonic() - self._last_end >= QUIET_S
            if idle:
                return True
            time.sleep(QUIET_S / 5)
        return False


PYTHON_CALLS = _PythonCalls()


class Numbered(NamedTuple):
    """One of the two pipelines, before what they share: (images, labels, g) by batch number
    g, the order that made them, and the features of the records in that order (or None)."""
    dataset: tf.data.Dataset
    order: Order
    features: np.ndarray | None


def indexed_dataset(plan: ReadPlan, batch_size: int, *, available: int) -> tf.data.Dataset:
    """(images, labels) batches by position, from the table or read at random (see above)."""
    host = fused.host_ops(plan.augment)
    numbered = numbered_batches(plan, batch_size, host, available)
    return by_position(numbered, plan, batch_size, host)


def numbered_batches(plan: ReadPlan, batch_size: int, host: fused.HostOps,
                     available: int) -> Numbered:
    """The one choice between the two pipelines: the table (cache="memory") or random
    access."""
    if plan.access.kind == access_lib.TABLE:
        return table_pipeline(plan, batch_size, host, available)
    return read_pipeline(plan, batch_size, host, available)


def table_pipeline(plan: ReadPlan, batch_size: int, host: fused.HostOps,
                   available: int) -> Numbered:
    """The split loaded into memory once (table.py), each batch's rows gathered from it: by
    the reading threads with the `host` ops done as each row is copied, or, with none to do,
    by tf.gather from variables."""
    images, labels, features = load_table(plan, variables=not host.count)
    order = chosen_order(plan, (int(labels.shape[0]),), batch_size, host, available)
    numbers = batch_numbers(order, training=plan.training, start_batch=plan.options.start_batch)
    if host.count:
        return Numbered(gather_placed(numbers, images, labels, order, host, plan.options),
                        order, features)
    return Numbered(gather_batches(numbers, images, labels, order), order, features)


def read_pipeline(plan: ReadPlan, batch_size: int, host: fused.HostOps,
                  available: int) -> Numbered:
    """Random access: each batch's records read from the shards at their offsets
    (random_access.py), the `host` ops done on the way in."""
    options = plan.options
    records, features = open_plan_records(plan)
    order = chosen_order(plan, records.shard_counts, batch_size, host, available)
    numbers = batch_numbers(order, training=plan.training, start_batch=options.start_batch)
    return Numbered(read_batches(numbers, records, order, host, options.seed), order, features)


def open_plan_records(plan: ReadPlan) -> tuple[Records, np.ndarray | None]:
    """The plan's records for random access (random_access.open_records), and the features
    of the readable ones in their order (None without --feature_columns): what both
    pipelines read by position."""
    records = open_records(plan.data_dir, plan.manifest, plan.shards, plan.split,
                           plan.options.damaged, plan.options.num_parallel_reads)
    features = None if records.features is None else records.features[records.readable]
    return records, features


def chosen_order(plan: ReadPlan, shard_counts: Sequence[int], batch_size: int,
                 host: fused.HostOps, available: int) -> Order:
    """The order of the records the pipeline holds (the damaged ones on_corrupt="skip" left
    out), checked for a batch, and the log line that says how the split is read."""
    table = plan.access.kind == access_lib.TABLE
    order, how = choose_order(shard_counts, plan.manifest.image_bytes, batch_size,
                              training=plan.training, seed=plan.options.seed,
                              available=available, table=table)
    require_batches(order.records, batch_size, plan.training, plan.split)
    logging.info("split %r: %s (%s), %d records, %s%s", plan.split, plan.access.kind,
                 plan.access.reason, order.records, how,
                 fused.describe(plan.augment, host))
    return order


def by_position(numbered: Numbered, plan: ReadPlan, batch_size: int,
                host: fused.HostOps) -> tf.data.Dataset:
    """What both pipelines do after the batches: static shapes, the features, the
    augmentation seeded by batch number (the ops the reader did left out), the length."""
    manifest, options, training = plan.manifest, plan.options, plan.training
    dataset = with_shapes(numbered.dataset, host.output_shape(manifest.image_shape),
                          batch_size if training else None,
                          [manifest.target_size] if manifest.target_size else [])
    if numbered.features is not None:
        dataset = with_features(dataset, numbered.order, numbered.features)
    if plan.augment:
        dataset = augment_by_position(dataset, plan.augment, seed=options.seed,
                                      num_classes=manifest.num_classes, skip=host.count)
    else:
        dataset = drop_position(dataset)
    if not training or options.start_batch is None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            numbered.order.batches_per_epoch))
    return dataset


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------


def batch_numbers(order: Order, *, training: bool, start_batch: int | None) -> tf.data.Dataset:
    """The run's batch numbers this dataset yields (see the module docstring)."""
    per_epoch = order.batches_per_epoch
    if not training:
        return tf.data.Dataset.range(per_epoch)
    if start_batch is not None:
        return tf.data.Dataset.counter(start_batch)  # without end: the run's stream
    # One epoch per iteration: a counter of the iterations started, read when one starts.
    epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_started")

    def epoch(_):
        first = (epochs.assign_add(1) - 1) * per_epoch
        return tf.data.Dataset.range(per_epoch).map(lambda p: first + p)

    numbers = tf.data.Dataset.range(1).flat_map(epoch)
    numbers._epochs_started = epochs  # the counter lives as long as the dataset
    return numbers


def read_batches(numbers: tf.data.Dataset, records: Records, order: Order,
                 host: fused.HostOps = fused.HostOps(), seed: int | None = None
                 ) -> tf.data.Dataset:
    """(images, labels, g) of batch numbers g, read from the shards, the `host` ops done on
    the way; a damaged record stops reading with its damaged_message (raised in the graph:
    see damaged.damage_named)."""
    reader = records.reader
    shape = host.output_shape(reader.image_shape)
    pool = BatchPool((order.batch_size, *shape))

    def locate(batch):
        positions = records.readable[order.indices(int(batch))]
        # Asked of the kernel now, a batch ahead of their read: from a cold page cache they
        # come from the disk while the batch before is read and consumed (cold epochs of a
        # 258 MiB split: 4.1k vs 3.1k img/s; warm: no measurable cost).
        reader.advise(positions)
        return positions

    def read(positions, seeds):
        images = pool.take(len(positions))
        labels = np.empty(len(positions), np.int64)
        try:
            reader.read_into(positions, images, labels,
                             fused.placement(host, seeds, len(positions), reader.image_shape))
        except DamagedRecord as err:
            message = damaged.damaged_message(err.shard, err.record, err.problem)
            return images, records.labels_at(positions, labels), message.encode("utf-8")
        except record_index.IndexMismatch as err:  # named the same way (damaged.damage_named)
            return images, records.labels_at(positions, labels), str(err).encode("utf-8")
        return images, records.labels_at(positions, labels), b""

    def locate_in_graph(batch):
        return batch, tf.numpy_function(PYTHON_CALLS.wrap(locate), [batch], tf.int64,
                                        stateful=False)

    def read_in_graph(batch, positions):
        seeds = fused.op_seeds(host, seed or 0, batch)
        images, labels, problem = tf.numpy_function(
            PYTHON_CALLS.wrap(read), [positions, seeds],
            (tf.uint8, tf.int64 if records.targets is None else tf.float32, tf.string),
            stateful=False)
        undamaged = tf.debugging.Assert(tf.equal(problem, ""), [problem])
        with tf.control_dependencies([undamaged]):
            return tf.identity(images), tf.identity(labels), batch

    # Two stages, so that finding and announcing batch g + 1's records (Python, ~0.5 ms)
    # runs while the reading threads fill batch g (no GIL).
    located = numbers.map(locate_in_graph)
    return located.map(read_in_graph, num_parallel_calls=READ_CALLS, deterministic=True)


def load_table(plan: ReadPlan, variables: bool):
    """The plan's split in memory (table.py): (images, labels, features or None), variables
    or numpy arrays for gather_placed (the features always numpy, float32 [records, F]).
    Loaded through the record index where it can be used, else from streams."""
    manifest, shards, split, options = plan.manifest, plan.shards, plan.split, plan.options
    count = plan.count
    if count * manifest.image_bytes >= LOAD_NOTICE_BYTES:
        logging.info("split %r: loading %d records (%s) into memory", split, count,
                     units.format_bytes(count * manifest.image_bytes))
    if plan.access.index_usable:
        records, features = open_plan_records(plan)
        return (*table.load_records(records, variables), features)
    features = (np.empty((count, manifest.feature_size), np.float32)
                if manifest.feature_size else None)
    images, labels = table.load_streams(plan.paths, shards, manifest, split, plan.data_dir,
                                        options.damaged, variables, features)
    return images, labels, None if features is None else features[:int(labels.shape[0])]


def gather_placed(numbers: tf.data.Dataset, images: np.ndarray, labels: np.ndarray,
                  order: Order, host: fused.HostOps, options: ReadOptions) -> tf.data.Dataset:
    """(images, labels, g) of batch numbers g, gathered from the numpy table by the reading
    threads, the `host` ops done as each row is copied."""
    shape = host.output_shape(images.shape[1:])
    pool = BatchPool((order.batch_size, *shape))
    threads = options.num_parallel_reads or default_threads()

    def gather(batch, seeds):
        rows = order.indices(int(batch))
        out = pool.take(len(rows))
        placement = fused.placement(host, seeds, len(rows), images.shape[1:])
        in_threads(lambda start, stop: placement.gather(images, rows, start, stop, out),
                   len(rows), threads)
        return out, labels[rows]

    def gather_in_graph(batch):
        seeds = fused.op_seeds(host, options.seed or 0, batch)
        out, out_labels = tf.numpy_function(PYTHON_CALLS.wrap(gather), [batch, seeds],
                                            (tf.uint8, tf.as_dtype(labels.dtype)),
                                            stateful=False)
        return out, out_labels, batch

    return numbers.map(gather_in_graph, num_parallel_calls=READ_CALLS, deterministic=True)


def gather_batches(numbers: tf.data.Dataset, images: tf.Variable, labels: tf.Variable,
                   order: Order) -> tf.data.Dataset:
    """(images, labels, g) of batch numbers g, gathered from the in-memory table."""
    def positions(batch):
        return order.indices(int(batch))

    def gather(batch):
        rows = tf.numpy_function(PYTHON_CALLS.wrap(positions), [batch], tf.int64,
                                 stateful=False)
        return tf.gather(images, rows), tf.gather(labels, rows), batch

    return numbers.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)


def with_shapes(dataset: tf.data.Dataset, image_shape: Sequence[int],
                batch_size: int | None, label_shape: Sequence[int] = ()) -> tf.data.Dataset:
    """Known element shapes: numpy_function's outputs have none. `label_shape`: one record's
    label, () for a class, [T] for a multi-label target."""
    def shaped(images, labels, batch):
        images = tf.ensure_shape(images, [batch_size, *image_shape])
        return images, tf.ensure_shape(labels, [batch_size, *label_shape]), batch

    return dataset.map(shaped)


def with_features(dataset: tf.data.Dataset, order: Order,
                  features: np.ndarray) -> tf.data.Dataset:
    """(images, labels, g) -> (images, labels, g, features of batch g's records): gathered by
    the same order indices the batch's records were read by."""
    def gather(batch):
        return features[order.indices(int(batch))]

    def attach(images, labels, batch):
        found = tf.numpy_function(PYTHON_CALLS.wrap(gather), [batch], tf.float32,
                                  stateful=False)
        return images, labels, batch, tf.ensure_shape(found, [None, features.shape[1]])

    return dataset.map(attach, num_parallel_calls=AUTOTUNE, deterministic=True)


def augment_by_position(dataset: tf.data.Dataset, spec: Any, *, seed: int,
                        num_classes: int, skip: int = 0) -> tf.data.Dataset:
    """(images, labels, g[, features]) -> augmented (images, labels[, features]), batch g
    seeded with (seed, g); the first `skip` ops were done by the reader. Features pass
    through as they are."""
    op = augment_lib.build(spec, num_classes=num_classes, skip=skip)

    def run(images, labels, batch, *features):
        return (*op(images, labels, tf.stack([tf.constant(seed, tf.int64), batch])), *features)

    return dataset.map(run, num_parallel_calls=AUTOTUNE, deterministic=True)


def drop_position(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda images, labels, batch, *features: (images, labels, *features))
