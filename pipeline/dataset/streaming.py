"""Streaming from shards: the records of every epoch read from disk, batched, then parsed.

Order of the streaming pipeline, and why:
    shard files from the manifest
    -> shuffle files (train): a different shard order every epoch, seeded
    -> shard per input pipeline (tf.distribute, done by the caller): each worker reads whole,
       disjoint files
    -> interleave TFRecordDatasets in parallel (train): several files in flight hide read
       latency; evaluation reads shards in order instead, so records keep their written order.
       Each record is tagged with its shard and number, and a shard that fails to read
       yields stand-ins for the rest of its records: the check after batching names it
    -> cache (optional, serialized records): later epochs skip the disk
    -> shuffle records (train): mixes records across the interleaved files; the writer already
       shuffled records across shards, so a buffer of a few hundred records is enough
    -> batch (drop the remainder in training: static batch shapes for the model)
    -> check (every record read, every label one of the manifest's) and parse + decode_raw the
       whole batch: the only per-record work is a memcpy
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline.core import files, record_index, schema
from pipeline.dataset import damaged
from pipeline.dataset.options import DatasetError, ReadOptions, read_manifest
from pipeline.dataset.order import require_batches
from pipeline.dataset.plan import ReadPlan, check_files_exist

AUTOTUNE = tf.data.AUTOTUNE
# Bytes of records the streaming shuffle buffer may hold. Sized in bytes, not records (10,000
# records of 224^2 would be 1.4 GiB), and small enough to stay in the CPU's last-level cache:
# batching then copies records from cache, not DRAM. Measured on 2 cores, 224^2, batch 256:
# 200 records (29 MiB) 9.3-12k img/s, 512 records 7k, 1,700 records (244 MiB) 6.1k. The mixing
# it gives up is done elsewhere: the writer shuffles records across shards, and every epoch
# reads the shards in a new order, many at once.
SHUFFLE_BUFFER_BYTES = 32 << 20  # 32 MiB
MIN_SHUFFLE_RECORDS = 64
# TFRecordDataset's read buffer per open shard. 0 (unbuffered): each record is read straight
# into its own string. A buffer adds a copy per record, and records of ~147 KiB are large
# reads already: one sequential read of 224^2 records ran 14k img/s unbuffered, 7k with a
# 256 KiB or 4 MiB buffer.
READ_BUFFER_BYTES = 0
# Shards read at once; more hides latency on network disks, each costs one read buffer.
MAX_INTERLEAVE_FILES = 16
# Records parsed per batch when a split is read whole, in order (the in-memory table's load,
# split_paths).
IN_ORDER_BATCH = 256
# Stand-ins for the records a damaged shard did not yield (on_corrupt="fail"): FAILED_RECORD
# for the one whose read failed, UNREAD_RECORD for each after it. No serialized Example starts
# with a zero byte (field number 0 does not exist), so checked_batch finds them.
FAILED_RECORD = b"\x00\x01"
UNREAD_RECORD = b"\x00"
UNREADABLE = ("cannot be read (a CRC mismatch, or the file ends before it; `python -m "
              "pipeline.verify` says which)")
# A record's tag: its shard's number above these bits, its number in the shard below.
TAG_SHIFT = 32


def streamed_dataset(plan: ReadPlan, batch_size: int) -> tf.data.Dataset:
    """(images, labels) batches of the plan's split streamed from its paths, augmented in
    training; with start_batch=0 the epochs repeat, a run's stream (a later start cannot be
    found again: the order comes from shuffle buffers, not from positions)."""
    data_dir, manifest, split, paths = plan.data_dir, plan.manifest, plan.split, plan.paths
    options, training = plan.options, plan.training
    counts = [shard.count for shard in plan.shards]  # in the order of plan.paths
    check_against_indexes(data_dir, manifest, split, paths)
    if options.damaged.skip:
        readable = damaged.readable_per_shard(data_dir, manifest, split, paths, plan.count,
                                              options.damaged.max_fraction)
        counts = [readable[os.path.basename(path)] for path in paths]
    num_batches = require_batches(sum(counts), batch_size, training, split)
    parallel_epochs = (options.service is not None
                       and options.service.processing_mode == "parallel_epochs")
    dataset = streaming_batches(paths, counts, manifest, batch_size, training=training,
                                options=options, cache_path=plan.cache_mode,
                                order_per_process=parallel_epochs)
    if not options.service:
        # Known length without a scan: Keras progress bars and epochs just work. (With a
        # service each worker reads part of the split, so the length is only known overall.)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if plan.augment:
        dataset = apply_augment(dataset, plan.augment, seed=options.seed,
                                num_classes=manifest.num_classes)
    if training and options.start_batch == 0:
        dataset = dataset.repeat()
    return dataset


def check_against_indexes(data_dir: str, manifest: schema.Manifest, split: str,
                          paths: Sequence[str]) -> None:
    """IndexMismatch naming the first record of `paths` that is not the one dataset.json
    lists, through each shard's record index (record_index.foreign_record): TFRecordDataset
    checks a record only against its own CRC, so a shard from another write would stream
    silently. Compressed and remote shards have no index: verify checks their sha256."""
    if manifest.compression != "NONE" or files.has_scheme(data_dir):
        return
    shards = {shard.file: shard for shard in manifest.split(split).shards}
    for path in paths:
        shard = shards[os.path.basename(path)]
        if not os.path.exists(path):
            continue  # named where it is opened
        index = record_index.load_or_build(data_dir, shard, manifest.image_bytes,
                                           record_index.Widths.of(manifest)).index
        record = record_index.foreign_record(path, index, manifest.label_values)
        if record is not None:
            raise record_index.IndexMismatch(record_index.mismatch_message(
                shard.file, record, record_index.NOT_INDEXED_PROBLEM))


def streaming_batches(paths: Sequence[str], counts: Sequence[int], manifest: schema.Manifest,
                      batch_size: int, *, training: bool, options: ReadOptions,
                      cache_path: str | None = None,
                      order_per_process: bool = False) -> tf.data.Dataset:
    """(uint8 images, int64 labels) batches of the first `counts` records of `paths`; see the
    module docstring."""
    compression = schema.tf_compression_type(manifest.compression)
    dataset = tagged_records(paths, counts, compression, training=training, options=options,
                             order_per_process=order_per_process)
    if cache_path:
        dataset = dataset.cache(cache_path)
    if training:
        buffer = options.shuffle_buffer or max(MIN_SHUFFLE_RECORDS,
                                               SHUFFLE_BUFFER_BYTES // manifest.image_bytes)
        dataset = dataset.shuffle(buffer, seed=options.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    names = tf.constant([os.path.basename(path) for path in paths])
    static = batch_size if training else -1  # the last batch is partial when not training

    def parse(records, tags):
        return checked_batch(records, tags, names, manifest.image_shape, static,
                             manifest.label_values, manifest.target_size,
                             manifest.target_kind == schema.MULTI_LABEL,
                             manifest.feature_size)

    return dataset.map(parse, num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)


def tagged_records(paths: Sequence[str], counts: Sequence[int], compression: str, *,
                   training: bool, options: ReadOptions,
                   order_per_process: bool = False) -> tf.data.Dataset:
    """(serialized record, tag) of the first counts[i] records of each paths[i]: in training,
    shards in a new order every epoch and several read at once; otherwise one after the
    other, in manifest order. A tag is (shard number << TAG_SHIFT | record number): with it a
    damaged record is named after batching. (Zipping the tags beside the records cost no
    measurable speed: 14.6k vs 14.1k img/s uncompressed, 2.4k either way GZIP.)"""
    fill = not options.damaged.skip

    def shard(number, path, count):
        records = tf.data.TFRecordDataset(path, compression, buffer_size=READ_BUFFER_BYTES)
        # A read error ends the shard; with "fail", stand-ins take the place of the records
        # it did not yield, and checked_batch names them.
        records = records.ignore_errors()
        if fill:
            failed = tf.data.Dataset.from_tensors(FAILED_RECORD)
            unread = tf.data.Dataset.from_tensors(UNREAD_RECORD).repeat()
            records = records.concatenate(failed).concatenate(unread)
        first = tf.bitwise.left_shift(number, tf.constant(TAG_SHIFT, tf.int64))
        return tf.data.Dataset.zip(records.take(count),
                                   tf.data.Dataset.range(first, first + count))

    shards = (tf.range(len(paths), dtype=tf.int64), tf.constant(list(paths)),
              tf.constant(list(counts), tf.int64))
    if not training:
        # Evaluation and prediction read shards one after the other: records come out in the
        # order they were written (for the test split: the input CSV's order). The parse is
        # still batched and parallel; only the reading is sequential.
        return tf.data.Dataset.from_tensor_slices(shards).flat_map(shard)
    if order_per_process:
        order = shard_order_per_process(shards, options.seed)
    else:
        order = tf.data.Dataset.from_tensor_slices(shards).shuffle(
            len(paths), seed=options.seed, reshuffle_each_iteration=True)
    cycle = options.num_parallel_reads or min(len(paths), MAX_INTERLEAVE_FILES)
    return order.interleave(shard, cycle_length=cycle, block_length=1,
                            num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)


def shard_order_per_process(shards: tuple, seed: int) -> tf.data.Dataset:
    """The shards (tensors of one row per shard) in a new order on every pass and in every
    process that runs it.

    For tf.data service parallel_epochs: every worker runs the same serialized pipeline, so
    seeded shuffles alone would give every worker the same order, and the trainer each batch
    once per worker. The running process's clock (read when a pass starts) salts the seed.
    """
    def permute(*columns):
        clock = tf.bitcast(tf.timestamp(), tf.int64)
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(columns[0])[0]), seed=tf.stack([tf.constant(seed, tf.int64), clock]))
        return tuple(tf.gather(column, order) for column in columns)

    return tf.data.Dataset.from_tensors(shards).map(permute).unbatch()


def checked_batch(serialized, tags, names, image_shape, batch_size: int, num_classes: int,
                  target_size: int = 0, binary_targets: bool = True, feature_size: int = 0):
    """parse_batch, once every record of the batch was read and has one of the manifest's
    labels (`num_classes`: Manifest.label_values) and finite targets, 0 or 1 where
    `binary_targets` (then yielded as the labels), and finite features (yielded third when
    `feature_size`); else the first that did not is named, as damaged.damaged_message
    words it."""
    failed = tf.equal(serialized, FAILED_RECORD)
    missing = tf.equal(tf.strings.substr(serialized, 0, 1), UNREAD_RECORD)
    # The failed read if this batch holds it; after a shuffle, a later record's stand-in can
    # come first.
    any_failed = tf.reduce_any(failed)
    problem = tf.where(any_failed, UNREADABLE, damaged.UNREAD_AFTER_DAMAGE)
    all_read = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(missing)),
        [_damage(names, tags, tf.where(any_failed, failed, missing), problem)])
    with tf.control_dependencies([all_read]):
        images, labels, targets = schema.parse_batch(serialized, image_shape, batch_size,
                                                     target_size)
        features = schema.parse_features(serialized, feature_size) if feature_size else None
    wrong = tf.logical_and(tf.not_equal(labels, schema.UNLABELED),
                           tf.logical_or(labels < 0, labels >= num_classes))
    label = tf.strings.as_string(labels[tf.argmax(tf.cast(wrong, tf.int32))])
    labels_ok = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(wrong)),
        [_damage(names, tags, wrong, tf.strings.join(
            ["label ", label, " " + schema.label_range(num_classes)]))])
    checks = [labels_ok]
    if targets is not None:
        off = tf.logical_not(tf.reduce_all(tf.math.is_finite(targets), axis=1))
        what = "a value that is not a finite number"
        if binary_targets:
            off = tf.reduce_any(tf.logical_and(tf.not_equal(targets, 0.0),
                                               tf.not_equal(targets, 1.0)), axis=1)
            what = "a value other than 0 or 1"
        checks.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(off)), [_damage(
            names, tags, off, f"{schema.TARGET_KEY!r} holds {what}")]))
        labels = targets
    if features is not None:
        off = tf.logical_not(tf.reduce_all(tf.math.is_finite(features), axis=1))
        checks.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(off)), [_damage(
            names, tags, off, f"{schema.FEATURES_KEY!r} holds a value that is not a finite "
            "number")]))
    with tf.control_dependencies(checks):
        if features is not None:
            return tf.identity(images), tf.identity(labels), tf.identity(features)
        return tf.identity(images), tf.identity(labels)


def _damage(names, tags, flagged, problem):
    """damaged.damaged_message of the first flagged record, as a string tensor."""
    tag = tags[tf.argmax(tf.cast(flagged, tf.int32))]
    record = tf.strings.as_string(tf.bitwise.bitwise_and(tag, (1 << TAG_SHIFT) - 1))
    shard = tf.gather(names, tf.bitwise.right_shift(tag, TAG_SHIFT))
    return tf.strings.join([shard, ": record ", record, ": ", problem, damaged.DAMAGED_ADVICE])


def read_shards(paths, compression: str) -> tf.data.Dataset:
    """The serialized records of `paths` (one path or a dataset of paths), in order."""
    return tf.data.TFRecordDataset(paths, compression, buffer_size=READ_BUFFER_BYTES)


def split_paths(data_dir: str, split: str, fold: int | None = None) -> list[str]:
    """The source path of every record of `split` (of `fold`'s view), in the order evaluation
    reads them (shard order, then record order: for a test split, the input CSV's)."""
    return [path.decode("utf-8") for path in split_field(data_dir, split, fold)]


def split_labels(data_dir: str, split: str, fold: int | None = None):
    """What every record of `split` is labeled, in split_paths' order: the class index (int64
    [N]), or the `target` row (float32 [N, T]: multi-hot tags, regression values)."""
    manifest = read_manifest(data_dir, fold)
    key = schema.TARGET_KEY if manifest.target_size else schema.LABEL_KEY
    return split_field(data_dir, split, fold, key)


def split_field(data_dir: str, split: str, fold: int | None = None,
                key: str = schema.PATH_KEY):
    """One field of every record of `split`, in order, as a numpy array; only that field is
    parsed (no image decoded)."""
    manifest = read_manifest(data_dir, fold)
    paths = manifest.shard_paths(data_dir, split)
    check_files_exist(paths)
    records = read_shards(paths, schema.tf_compression_type(manifest.compression))
    spec = {key: schema.tf_feature_spec(manifest.target_size)[key]}
    parts = [batch[key].numpy() for batch in records.batch(IN_ORDER_BATCH).map(
        lambda r: tf.io.parse_example(r, spec))]
    values = np.concatenate(parts) if parts else np.zeros((0,), object)
    expected = manifest.split(split).count
    if len(values) != expected:
        raise DatasetError(f"the {split!r} shards hold {len(values)} records, the manifest says "
                           f"{expected}")
    return values


def apply_augment(dataset: tf.data.Dataset, spec: Any, *, seed: int, num_classes: int):
    """Run the augmentation ops on each batch with its own stateless seed.

    Seeds come from a seeded random stream zipped beside the batches: the same for the same
    `seed` on every run (whatever the thread timing), and new on every epoch (a new iterator
    draws new seeds), so batch 0 of epoch 2 is not augmented like batch 0 of epoch 1.
    (Random access and the table seed batch g with (seed, g) instead: indexed.py.)
    """
    # XLA-compiled (see augment.build): the per-image gathers of crop and flip run as one fused
    # loop instead of a byte-at-a-time gather.
    op = augment_lib.build(spec, num_classes=num_classes)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def run(batch, batch_seed):  # features, if any, pass through as they are
        images, labels, *features = batch
        return (*op(images, labels, batch_seed), *features)

    return tf.data.Dataset.zip((dataset, seeds)).map(run, num_parallel_calls=AUTOTUNE)
