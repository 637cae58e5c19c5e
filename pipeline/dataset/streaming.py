"""Streaming from shards: the records of every epoch read from disk, batched, then parsed.

Order of the streaming pipeline, and why:
    shard files from the manifest
    -> shuffle files (train): a different shard order every epoch, seeded
    -> shard per input pipeline (tf.distribute, done by the caller): each worker reads whole,
       disjoint files
    -> interleave TFRecordDatasets in parallel (train): several files in flight hide read
       latency; evaluation reads shards in order instead, so records keep their written order
    -> cache (optional, serialized records): later epochs skip the disk
    -> shuffle records (train): mixes records across the interleaved files; the writer already
       shuffled records across shards, so a buffer of a few hundred records is enough
    -> batch (drop the remainder in training: static batch shapes for the model)
    -> parse + decode_raw the whole batch: the only per-record work is a memcpy
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from pipeline.core import schema
from pipeline.dataset.options import DatasetError, ReadOptions

AUTOTUNE = tf.data.AUTOTUNE
# Bytes of records the streaming shuffle buffer may hold. Sized in bytes, not records (10,000
# records of 224^2 would be 1.5 GB), and small enough to stay in the CPU's last-level cache:
# batching then copies records from cache, not DRAM. Measured on 2 cores, 224^2, batch 256:
# 200 records (30 MB) 9.3-12k img/s, 512 records 7k, 1,700 records (256 MB) 6.1k. The mixing
# it gives up is done elsewhere: the writer shuffles records across shards, and every epoch
# reads the shards in a new order, many at once.
SHUFFLE_BUFFER_BYTES = 32 << 20  # 32 MB
MIN_SHUFFLE_RECORDS = 64
# TFRecordDataset's read buffer per open shard. 0 (unbuffered): each record is read straight
# into its own string. A buffer adds a copy per record, and records of ~150 KB are large
# reads already: one sequential read of 224^2 records ran 14k img/s unbuffered, 7k with a
# 256 KB or 4 MB buffer.
READ_BUFFER_BYTES = 0
# Shards read at once; more hides latency on network disks, each costs one read buffer.
MAX_INTERLEAVE_FILES = 16
# Records parsed per batch when a split is read whole, in order (the in-memory table's load,
# split_paths).
IN_ORDER_BATCH = 256


def streaming_batches(files: Sequence[str], manifest: schema.Manifest, batch_size: int, *,
                      training: bool, options: ReadOptions, cache_path: str | None = None,
                      order_per_process: bool = False) -> tf.data.Dataset:
    """(uint8 images, int64 labels) batches of `files`' records; see the module docstring."""
    compression = schema.tf_compression_type(manifest.compression)
    dataset = shard_records(files, compression, training=training, options=options,
                            order_per_process=order_per_process)
    if cache_path:
        dataset = dataset.cache(cache_path)
    if training:
        buffer = options.shuffle_buffer or max(MIN_SHUFFLE_RECORDS,
                                               SHUFFLE_BUFFER_BYTES // manifest.image_bytes)
        dataset = dataset.shuffle(buffer, seed=options.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    image_shape = manifest.image_shape
    return dataset.map(lambda records: schema.parse_batch(records, image_shape),
                       num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)


def shard_records(files: Sequence[str], compression: str, *, training: bool,
                  options: ReadOptions, order_per_process: bool = False) -> tf.data.Dataset:
    """The serialized records of `files`: in training, shards in a new order every epoch and
    several read at once; otherwise one after the other, in manifest order."""
    skip_damaged = options.damaged.skip
    if not training:
        # Evaluation and prediction read shards one after the other: records come out in the
        # order they were written (for the test split: the input CSV's order). The parse is
        # still batched and parallel; only the reading is sequential.
        return read_shards(tf.data.Dataset.from_tensor_slices(files), compression, skip_damaged)
    if order_per_process:
        paths = file_order_per_process(files, options.seed)
    else:
        paths = tf.data.Dataset.from_tensor_slices(files).shuffle(
            len(files), seed=options.seed, reshuffle_each_iteration=True)
    cycle = options.num_parallel_reads or min(len(files), MAX_INTERLEAVE_FILES)
    return paths.interleave(
        lambda f: read_shards(f, compression, skip_damaged),
        cycle_length=cycle, block_length=1, num_parallel_calls=AUTOTUNE,
        deterministic=options.deterministic,
    )


def file_order_per_process(files: Sequence[str], seed: int) -> tf.data.Dataset:
    """The shard paths in a new order on every pass and in every process that runs it.

    For tf.data service parallel_epochs: every worker runs the same serialized pipeline, so
    seeded shuffles alone would give every worker the same order, and the trainer each batch
    once per worker. The running process's clock (read when a pass starts) salts the seed.
    """
    def permute(paths):
        clock = tf.bitcast(tf.timestamp(), tf.int64)
        return tf.random.experimental.stateless_shuffle(
            paths, seed=tf.stack([tf.constant(seed, tf.int64), clock]))

    return tf.data.Dataset.from_tensors(list(files)).map(permute).unbatch()


def read_shards(files, compression: str, skip_damaged: bool = False) -> tf.data.Dataset:
    """The serialized records of `files` (one path or a dataset of paths), in order.

    With skip_damaged, a read error ends the current file and reading goes on with the next:
    TensorFlow's TFRecord reader moves to the next file after a DataLoss error, so
    ignore_errors skips exactly the rest of a damaged shard (it does not hang). No per-record
    function is added: one costs ~20-50 us per record here, a fifth of streaming's budget.
    """
    records = tf.data.TFRecordDataset(files, compression, buffer_size=READ_BUFFER_BYTES)
    return records.ignore_errors() if skip_damaged else records


def check_files_exist(files: Sequence[str]) -> None:
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise DatasetError(
            f"{len(missing)} shard file(s) listed in the manifest are missing, e.g. {missing[:3]}; "
            "copy the whole dataset directory or rewrite it with `python -m pipeline.write`"
        )


def split_paths(data_dir: str, split: str) -> list[str]:
    """The source path of every record of `split`, in the order evaluation reads them (shard
    order, then record order: for a test split, the order of the input CSV)."""
    manifest = schema.read_manifest(data_dir)
    files = manifest.shard_paths(data_dir, split)
    check_files_exist(files)
    records = read_shards(files, schema.tf_compression_type(manifest.compression))
    spec = {schema.PATH_KEY: schema.tf_feature_spec()[schema.PATH_KEY]}
    paths = []
    for batch in records.batch(IN_ORDER_BATCH).map(lambda r: tf.io.parse_example(r, spec)):
        paths.extend(path.decode("utf-8") for path in batch[schema.PATH_KEY].numpy())
    expected = manifest.split(split).count
    if len(paths) != expected:
        raise DatasetError(f"the {split!r} shards hold {len(paths)} records, the manifest says "
                           f"{expected}")
    return paths
