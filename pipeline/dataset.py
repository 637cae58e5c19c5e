"""`make_dataset`: the tf.data reader of our shards, built so the CPU does almost nothing per image.

Raw CHW shards take 10x the disk of JPEGs; they are only worth it if reading them is much
faster than decoding JPEGs. Per image, the costs that matter on a 2-core machine are byte copies
and per-element tf.data overhead, so the reader:

* parses *batches* (one `parse_example` + `decode_raw` per batch, never per record);
* keeps pixels uint8 CHW, the stored layout: casting, normalising, transposing to NHWC and most
  augmentation happen batched, ideally on the accelerator (`augment.DevicePreprocess`);
* with `cache="memory"`, decodes the split once into one uint8 table and serves batches by
  gathering shuffled indices: one copy per image per epoch, and a true global shuffle.

Order of the streaming pipeline, and why:
    shard files from the manifest
    -> shuffle files (train): a different shard order every epoch, seeded
    -> shard per input pipeline (tf.distribute): each worker reads whole, disjoint files
    -> interleave TFRecordDatasets in parallel (train): several files in flight hide read
       latency; evaluation reads shards in order instead, so records keep their written order
    -> cache (optional, serialized records): later epochs skip the disk
    -> shuffle records (train): mixes records across the interleaved files; the writer already
       shuffled records across shards, so a buffer of a few hundred MB is enough
    -> batch (drop the remainder in training: static batch shapes for the model)
    -> parse + decode_raw the whole batch: the only per-record work is a memcpy
    -> augment the batch (AUTOTUNE), with stateless seeds so results do not depend on threads
    -> prefetch: overlap input with the training step
"""

from __future__ import annotations

import functools
import os
import random
from typing import Any, Sequence

import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline import schema

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
# cache="auto" keeps a split in RAM when it takes at most this share of the available memory.
AUTO_CACHE_RAM_FRACTION = 0.5
# Records parsed per batch while loading the in-memory table.
TABLE_LOAD_BATCH = 256


# on_corrupt="skip" tolerates losing this share of a split's records to damaged shards.
DEFAULT_MAX_CORRUPT_FRACTION = 0.01
ON_CORRUPT = ("fail", "skip")
SERVICE_MODES = ("distributed_epoch", "parallel_epochs")


class DatasetError(ValueError):
    """The dataset cannot be read as asked (missing shards, too few shards for the workers)."""


def make_dataset(
    data_dir: str,
    split: str = schema.TRAIN,
    batch_size: int = 256,
    training: bool = True,
    *,
    cache: str | None = None,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    augment: str | Sequence[str] | None = augment_lib.DEFAULT_TRAIN_AUGMENT,
    input_context: tf.distribute.InputContext | None = None,
    num_parallel_reads: int | None = None,
    to_device: str | None = None,
    on_corrupt: str = "fail",
    max_corrupt_fraction: float = DEFAULT_MAX_CORRUPT_FRACTION,
    service: str | None = None,
    processing_mode: str = "distributed_epoch",
    job_name: str | None = None,
) -> tf.data.Dataset:
    """A dataset of `(images, labels)`: uint8 `[B, 3, H, W]` and int64 `[B]` (or float `[B, K]`
    when mixup/cutmix is in `augment`).

    Args:
      data_dir: a directory written by `python -m pipeline.write` (holds dataset.json).
      split: "train", "val", "test" or any split in the manifest.
      batch_size: images per batch (per input pipeline when `input_context` is given).
      training: shuffle, augment and drop the last partial batch. False (evaluation): the
        records in shard order, every record once, deterministic, no augmentation.
      cache: None (stream from disk every epoch), "memory" (decode once into an in-memory uint8
        table; gather shuffled indices), a file path (tf.data cache of the serialized records),
        or "auto" ("memory" when the split fits in AUTO_CACHE_RAM_FRACTION of free RAM).
      shuffle_buffer: records in the streaming shuffle buffer (default: SHUFFLE_BUFFER_BYTES
        worth of images).
      seed: makes file order, shuffling and augmentation reproducible. As for any tf.data op
        seed, the order also depends on TensorFlow's global seed (tf.random.set_seed, which
        train.py sets): the same program gives the same batches. (Except the file order of
        processing_mode="parallel_epochs" on a service: each worker salts it with its clock.)
      deterministic: element order independent of thread timing (default: only when evaluating).
        With a seed and deterministic=True, two runs give identical batches.
      augment: an augmentation spec run in the pipeline on uint8 batches (see pipeline.augment),
        or None to leave augmentation to the device (augment.DevicePreprocess in the model).
        Ignored when not training.
      input_context: from `tf.distribute` (distribute_datasets_from_function): this pipeline
        reads only its own shard files.
      num_parallel_reads: shards read at once (default: min(files, MAX_INTERLEAVE_FILES)).
      to_device: e.g. "/gpu:0": prefetch batches into that device's memory (must be the last
        step; do not use with a tf.distribute strategy, which does its own transfer). The
        dataset's length is then unknown to tf.data: use batches_per_epoch for steps.
      on_corrupt: what a damaged shard (a record failing its CRC, a file cut short) does.
        "fail": reading stops with TensorFlow's DataLossError (train.py then names the shard
        with pipeline.verify). "skip": the split's shards are checked first (pipeline.verify);
        each damaged shard is read up to its first bad record and the rest skipped, with a
        warning naming it and the records lost; more than `max_corrupt_fraction` of the split
        lost is an error. The dataset's length counts only the records read.
      max_corrupt_fraction: with on_corrupt="skip", the share of records that may be lost.
      service: "grpc://HOST:PORT" of a tf.data service dispatcher (python -m
        pipeline.service): reading, shuffling, parsing and augmentation run on its workers,
        only the prefetch stays here. Streaming only: cache="memory" holds the table in this
        process ("auto" streams). The length is then unknown to tf.data. In training it repeats
        without end (take steps per epoch from batches_per_epoch, as Keras's
        steps_per_epoch does): one service job serves the whole run, so the workers reshuffle
        on every pass, and a lost worker never leaves the reader waiting for its share.
      processing_mode: "distributed_epoch": the workers share the shard files, every record
        is read once per pass (in training each worker drops its own last partial batch); if
        a worker dies, the files it was reading are lost for that pass (at most once).
        "parallel_epochs": every worker reads the whole split, each in its own file order.
      job_name: consumers with the same job name share one job's data (one per training run).
    """
    manifest = schema.read_manifest(data_dir)
    files, count = pipeline_files(manifest, data_dir, split, input_context)
    _check_files_exist(files)
    if on_corrupt not in ON_CORRUPT:
        raise DatasetError(f"on_corrupt={on_corrupt!r}: use one of {ON_CORRUPT}")
    skip_damaged = on_corrupt == "skip"
    if skip_damaged:
        count = readable_records(data_dir, manifest, split, files, count, max_corrupt_fraction)
    if batch_size < 1:
        raise DatasetError(f"batch_size={batch_size} must be at least 1")
    if deterministic is None:
        deterministic = not training
    if seed is None and training:
        seed = random.SystemRandom().randrange(2**31)  # fresh randomness, still stateless ops
    # "auto" with a service streams: the in-memory table cannot leave this process.
    cache_mode = None if service and cache == "auto" else resolve_cache(cache, manifest, count)
    if service and cache_mode == "memory":
        raise DatasetError("cache='memory' cannot run on a tf.data service (the table lives in "
                           "this process); use cache=None with service=")
    if processing_mode not in SERVICE_MODES:
        raise DatasetError(f"processing_mode={processing_mode!r}: use one of {SERVICE_MODES}")
    num_batches = batches_per_epoch(count, batch_size, training)
    if num_batches == 0:
        raise DatasetError(
            f"split {split!r} has {count} records for this pipeline, fewer than batch_size="
            f"{batch_size} with the remainder dropped in training; use batch_size<={count}"
        )

    if cache_mode == "memory":
        images, labels = load_table(files, manifest, count, skip_damaged=skip_damaged)
        dataset = table_batches(images, labels, batch_size, training=training, seed=seed)
    else:
        dataset = streaming_batches(
            files, manifest, batch_size, training=training, cache_path=cache_mode, seed=seed,
            shuffle_buffer=shuffle_buffer, deterministic=deterministic,
            num_parallel_reads=num_parallel_reads, skip_damaged=skip_damaged,
            order_per_process=bool(service) and processing_mode == "parallel_epochs",
        )
    if not service:
        # Known length without a scan: Keras progress bars and epochs just work. (With a
        # service each worker reads part of the split, so the length is only known overall.)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if training and augment:
        dataset = apply_augment(dataset, augment, seed=seed, num_classes=manifest.num_classes)
    options = tf.data.Options()
    options.deterministic = deterministic
    dataset = dataset.with_options(options)
    if service:
        if training:
            # One job for the whole run. A new job per epoch would rebuild the pipeline on
            # each worker from the same seeds (the same order every epoch), and a finite
            # pass would wait for a dead worker's share, which TensorFlow never reassigns.
            dataset = dataset.repeat()
        # Everything above runs on the service's workers; the prefetch (or device transfer)
        # below, and DevicePreprocess in the model, stay in this process.
        dataset = dataset.apply(tf.data.experimental.service.distribute(
            processing_mode=processing_mode, service=service, job_name=job_name))
    if to_device:
        # Must be the last transformation, and tf.data then reports the length as unknown:
        # take steps_per_epoch from batches_per_epoch (the manifest), not from len().
        return dataset.apply(tf.data.experimental.prefetch_to_device(to_device, buffer_size=2))
    return dataset.prefetch(AUTOTUNE)


def batches_per_epoch(records: int, batch_size: int, training: bool) -> int:
    """Batches make_dataset yields per epoch for `records` records: the last partial batch is
    dropped in training and kept otherwise."""
    return records // batch_size if training else -(-records // batch_size)


def pipeline_files(manifest: schema.Manifest, data_dir: str, split: str,
                   input_context: tf.distribute.InputContext | None):
    """The shard files this input pipeline reads and how many records they hold."""
    shards = list(manifest.split(split).shards)
    if input_context is not None and input_context.num_input_pipelines > 1:
        pipelines = input_context.num_input_pipelines
        if len(shards) < pipelines:
            raise DatasetError(
                f"split {split!r} has {len(shards)} shards but there are {pipelines} input "
                f"pipelines; every pipeline needs at least one whole shard. Rewrite with "
                f"`python -m pipeline.write --shards={pipelines * 4}` (a multiple of {pipelines})"
            )
        shards = shards[input_context.input_pipeline_id::pipelines]
    files = [os.path.join(data_dir, shard.file) for shard in shards]
    return files, sum(shard.count for shard in shards)


def _check_files_exist(files: Sequence[str]) -> None:
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise DatasetError(
            f"{len(missing)} shard file(s) listed in the manifest are missing, e.g. {missing[:3]}; "
            "copy the whole dataset directory or rewrite it with `python -m pipeline.write`"
        )


def resolve_cache(cache: str | None, manifest: schema.Manifest, count: int) -> str | None:
    if cache == "auto":
        needed = count * manifest.image_bytes
        return "memory" if needed <= AUTO_CACHE_RAM_FRACTION * available_memory() else None
    if cache in (None, "memory") or isinstance(cache, str) and cache:
        return cache
    raise DatasetError(f"cache={cache!r}: use None, 'memory', 'auto' or a file path")


def available_memory() -> int:
    import psutil

    return psutil.virtual_memory().available


# ---------------------------------------------------------------------------------------------
# Streaming from shards
# ---------------------------------------------------------------------------------------------


def streaming_batches(files, manifest, batch_size, *, training, cache_path, seed, shuffle_buffer,
                      deterministic, num_parallel_reads, skip_damaged=False,
                      order_per_process=False):
    compression = schema.tf_compression_type(manifest.compression)
    if training and order_per_process:
        dataset = file_order_per_process(files, seed)
    elif training:
        dataset = tf.data.Dataset.from_tensor_slices(files)
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        cycle = num_parallel_reads or min(len(files), MAX_INTERLEAVE_FILES)
        dataset = dataset.interleave(
            lambda f: read_shards(f, compression, skip_damaged),
            cycle_length=cycle, block_length=1, num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
    else:
        # Evaluation and prediction read shards one after the other: records come out in the
        # order they were written (for the test split: the input CSV's order). The parse is
        # still batched and parallel; only the reading is sequential.
        dataset = read_shards(dataset, compression, skip_damaged)
    if cache_path:
        dataset = dataset.cache(cache_path)
    if training:
        buffer = shuffle_buffer or max(MIN_SHUFFLE_RECORDS,
                                       SHUFFLE_BUFFER_BYTES // manifest.image_bytes)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    image_shape = manifest.image_shape
    return dataset.map(lambda records: schema.parse_batch(records, image_shape),
                       num_parallel_calls=AUTOTUNE, deterministic=deterministic)


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


def readable_records(data_dir: str, manifest: schema.Manifest, split: str,
                     files: Sequence[str], count: int, max_fraction: float) -> int:
    """How many of `files`' records on_corrupt="skip" will read: the split is checked with
    pipeline.verify, each damaged shard is logged (name, records lost, the problem), and more
    than `max_fraction` of `count` lost is an error."""
    from absl import logging

    mine = {os.path.basename(f) for f in files}
    expected = {shard.file: shard.count for shard in manifest.split(split).shards}
    problems: dict[str, list] = {}
    for problem in split_problems(data_dir, manifest, split):
        if problem.file in mine:
            problems.setdefault(problem.file, []).append(problem)
    lost = 0
    for name, found in sorted(problems.items()):
        first = min((p for p in found if p.record is not None), key=lambda p: p.record,
                    default=None)
        if first is None or first.record >= expected[name]:
            raise DatasetError(
                f"shard {name} differs from the manifest ({found[0].message}) in a way "
                "on_corrupt='skip' cannot skip past; rewrite it with `python -m pipeline.write`")
        shard_lost = expected[name] - first.record
        lost += shard_lost
        logging.warning("on_corrupt='skip': shard %s is damaged at record %d (%s): reading "
                        "its first %d of %d records, %d lost", name, first.record,
                        first.message, first.record, expected[name], shard_lost)
    allowed = int(max_fraction * count)
    if lost > allowed:
        raise DatasetError(
            f"{lost} of {count} records of split {split!r} are in damaged shards, more than "
            f"max_corrupt_fraction={max_fraction} allows ({allowed}); see `python -m "
            f"pipeline.verify {data_dir}` and rewrite the dataset with `python -m pipeline.write`")
    return count - lost


def split_problems(data_dir: str, manifest: schema.Manifest, split: str) -> tuple:
    """pipeline.verify's problems in `split`, checked once per process while its shards stay as
    they are: a trainer asks for its step counts and again for every input pipeline."""
    state = tuple((path, _file_state(path)) for path in manifest.shard_paths(data_dir, split))
    return _verified_problems(os.path.abspath(data_dir), split, state)


def _file_state(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None  # verify reports it
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _verified_problems(data_dir: str, split: str, shards_state: tuple) -> tuple:
    from pipeline import verify

    return tuple(verify.verify_dataset(data_dir, splits=[split]).problems)


def split_paths(data_dir: str, split: str) -> list[str]:
    """The source path of every record of `split`, in the order evaluation reads them (shard
    order, then record order: for a test split, the order of the input CSV)."""
    manifest = schema.read_manifest(data_dir)
    files = manifest.shard_paths(data_dir, split)
    _check_files_exist(files)
    records = read_shards(files, schema.tf_compression_type(manifest.compression))
    spec = {schema.PATH_KEY: schema.tf_feature_spec()[schema.PATH_KEY]}
    paths = []
    for batch in records.batch(TABLE_LOAD_BATCH).map(lambda r: tf.io.parse_example(r, spec)):
        paths.extend(path.decode("utf-8") for path in batch[schema.PATH_KEY].numpy())
    expected = manifest.split(split).count
    if len(paths) != expected:
        raise DatasetError(f"the {split!r} shards hold {len(paths)} records, the manifest says "
                           f"{expected}")
    return paths


# ---------------------------------------------------------------------------------------------
# In-memory uint8 table
# ---------------------------------------------------------------------------------------------


def load_table(files, manifest, count, *, skip_damaged=False):
    """Decode every record of `files` once into a uint8 [N, 3, H, W] and an int64 [N] variable.

    Peak memory while loading is twice the table (the parsed batches, then their concatenation);
    slice-assigning into a preallocated variable avoids that on paper but copies the whole
    variable on every assignment (measured: ~1 s per batch for a 220 MB table).
    """
    # Read in shard order (the table's row order is the records' order, which evaluation
    # keeps); the batched parse is the costly part and runs in parallel.
    records = read_shards(files, schema.tf_compression_type(manifest.compression), skip_damaged)
    image_shape = manifest.image_shape
    batches = records.batch(TABLE_LOAD_BATCH).map(
        lambda r: schema.parse_batch(r, image_shape), num_parallel_calls=AUTOTUNE).prefetch(2)
    image_parts, label_parts = [], []
    for batch_images, batch_labels in batches:
        image_parts.append(batch_images)
        label_parts.append(batch_labels)
    loaded = sum(int(part.shape[0]) for part in label_parts)
    if loaded != count:
        raise DatasetError(f"the shards hold {loaded} records, the manifest says {count}")
    # Variables, not tensors: a tensor captured by a tf.data function is copied into the
    # function's graph as a constant (measured: 8 s for a 2.3 GB table), a variable is not.
    images = tf.Variable(tf.concat(image_parts, axis=0), trainable=False, name="image_table")
    del image_parts
    labels = tf.Variable(tf.concat(label_parts, axis=0), trainable=False, name="label_table")
    return images, labels


def table_batches(images, labels, batch_size, *, training, seed):
    """Batches gathered from the table by (shuffled) index: one copy per image, global shuffle."""
    count = int(labels.shape[0])
    indices = tf.data.Dataset.range(count)
    if training:
        # A full-size buffer of int64 indices is cheap (8 bytes each) and shuffles globally.
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size, drop_remainder=training)
    return indices.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)),
                       num_parallel_calls=AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Augmentation in the pipeline
# ---------------------------------------------------------------------------------------------


def apply_augment(dataset: tf.data.Dataset, spec: Any, *, seed: int, num_classes: int):
    """Run the augmentation ops on each batch with its own stateless seed.

    Seeds come from a seeded random stream zipped beside the batches: the same for the same
    `seed` on every run (whatever the thread timing), and new on every epoch (a new iterator
    draws new seeds), so batch 0 of epoch 2 is not augmented like batch 0 of epoch 1.
    """
    # XLA-compiled (see augment.build): the per-image gathers of crop and flip run as one fused
    # loop instead of a byte-at-a-time gather.
    op = augment_lib.build(spec, num_classes=num_classes)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def run(batch, batch_seed):
        images, labels = batch
        return op(images, labels, batch_seed)

    return tf.data.Dataset.zip((dataset, seeds)).map(run, num_parallel_calls=AUTOTUNE)
