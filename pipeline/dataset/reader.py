"""`make_dataset`: the tf.data reader of our shards, built so the CPU does almost nothing per image.

Raw CHW shards take 10x the disk of JPEGs; they are only worth it if reading them is much
faster than decoding JPEGs. Per image, the costs that matter on a 2-core machine are byte copies
and per-element tf.data overhead, so the reader:

* parses *batches* (one `parse_example` + `decode_raw` per batch, never per record);
* keeps pixels uint8 CHW, the stored layout: casting, normalising, transposing to NHWC and most
  augmentation happen batched, ideally on the accelerator (`augment.DevicePreprocess`);
* with `cache="memory"`, decodes the split once into one uint8 table and serves batches by
  gathering shuffled indices: one copy per image per epoch, and a true global shuffle.

After the batches (streaming.py or table.py), in this order, and why:
    -> a known length (assert_cardinality): Keras epochs and progress bars need no scan
    -> augment the batch (AUTOTUNE), with stateless seeds so results do not depend on threads
    -> on a tf.data service: everything above runs on its workers, the rest stays here
    -> prefetch (or prefetch into the accelerator's memory): overlap input with the step
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline.core import schema
from pipeline.dataset import damaged, streaming, table
from pipeline.dataset.options import (DEFAULT_MAX_CORRUPT_FRACTION, DamagedShards, DatasetError,
                                      ReadOptions, ServiceSettings)

AUTOTUNE = tf.data.AUTOTUNE
# cache="auto" keeps a split in RAM when it takes at most this share of the available memory.
AUTO_CACHE_RAM_FRACTION = 0.5
# Batches prefetch_to_device keeps in the accelerator's memory.
DEVICE_PREFETCH_BATCHES = 2


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
      on_corrupt, max_corrupt_fraction: what a damaged shard does, "fail" or "skip", and the
        share of records "skip" may lose (see options.DamagedShards).
      service, processing_mode, job_name: "grpc://HOST:PORT" of a tf.data service dispatcher
        that runs the pipeline on its workers, and how (see options.ServiceSettings).
        Streaming only: cache="memory" holds the table in this process ("auto" streams). The
        length is then unknown to tf.data. In training it repeats without end (take steps per
        epoch from batches_per_epoch, as Keras's steps_per_epoch does): one service job serves
        the whole run, so the workers reshuffle on every pass, and a lost worker never leaves
        the reader waiting for its share.
    """
    options = ReadOptions(
        cache=cache, shuffle_buffer=shuffle_buffer, seed=seed, deterministic=deterministic,
        augment=augment, num_parallel_reads=num_parallel_reads, to_device=to_device,
        damaged=DamagedShards(on_corrupt, max_corrupt_fraction),
        service=ServiceSettings.from_args(service, processing_mode, job_name))
    return build_dataset(data_dir, split, batch_size, training, options,
                         input_context=input_context)


def build_dataset(data_dir: str, split: str, batch_size: int, training: bool,
                  options: ReadOptions,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """make_dataset with its options as one object (the trainer builds them once per run)."""
    manifest = schema.read_manifest(data_dir)
    files, count = pipeline_files(manifest, data_dir, split, input_context)
    streaming.check_files_exist(files)
    if options.damaged.skip:
        count = damaged.readable_records(data_dir, manifest, split, files, count,
                                         options.damaged.max_fraction)
    if batch_size < 1:
        raise DatasetError(f"batch_size={batch_size} must be at least 1")
    options = options.for_training(training)
    cache_mode = choose_cache(options, manifest, count)
    num_batches = batches_per_epoch(count, batch_size, training)
    if num_batches == 0:
        raise DatasetError(
            f"split {split!r} has {count} records for this pipeline, fewer than batch_size="
            f"{batch_size} with the remainder dropped in training; use batch_size<={count}"
        )
    dataset = batches(files, manifest, count, batch_size, training, options, cache_mode)
    if not options.service:
        # Known length without a scan: Keras progress bars and epochs just work. (With a
        # service each worker reads part of the split, so the length is only known overall.)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if training and options.augment:
        dataset = apply_augment(dataset, options.augment, seed=options.seed,
                                num_classes=manifest.num_classes)
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    dataset = dataset.with_options(tf_options)
    if options.service:
        dataset = on_service(dataset, options.service, training)
    return to_consumer(dataset, options.to_device)


def batches(files, manifest: schema.Manifest, count: int, batch_size: int, training: bool,
            options: ReadOptions, cache_mode: str | None) -> tf.data.Dataset:
    """(images, labels) batches from the in-memory table or streamed from the shards."""
    if cache_mode == "memory":
        images, labels = table.load_table(files, manifest, count,
                                          skip_damaged=options.damaged.skip)
        return table.table_batches(images, labels, batch_size, training=training,
                                   seed=options.seed)
    parallel_epochs = (options.service is not None
                       and options.service.processing_mode == "parallel_epochs")
    return streaming.streaming_batches(files, manifest, batch_size, training=training,
                                       options=options, cache_path=cache_mode,
                                       order_per_process=parallel_epochs)


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


def choose_cache(options: ReadOptions, manifest: schema.Manifest, count: int) -> str | None:
    """The cache mode to read with: "auto" streams on a service, where the in-memory table
    cannot leave this process, and "memory" there is refused."""
    if options.service and options.cache == "auto":
        return None
    cache_mode = resolve_cache(options.cache, manifest, count)
    if options.service and cache_mode == "memory":
        raise DatasetError("cache='memory' cannot run on a tf.data service (the table lives in "
                           "this process); use cache=None with service=")
    return cache_mode


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


def on_service(dataset: tf.data.Dataset, service: ServiceSettings,
               training: bool) -> tf.data.Dataset:
    """Run everything so far on the service's workers; what follows (the prefetch or device
    transfer, and DevicePreprocess in the model) stays in this process."""
    if training:
        # One job for the whole run. A new job per epoch would rebuild the pipeline on each
        # worker from the same seeds (the same order every epoch), and a finite pass would
        # wait for a dead worker's share, which TensorFlow never reassigns.
        dataset = dataset.repeat()
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=service.processing_mode, service=service.address,
        job_name=service.job_name))


def to_consumer(dataset: tf.data.Dataset, to_device: str | None) -> tf.data.Dataset:
    """The last step: prefetch, or prefetch into an accelerator's memory."""
    if to_device:
        # Must be the last transformation, and tf.data then reports the length as unknown:
        # take steps_per_epoch from batches_per_epoch (the manifest), not from len().
        return dataset.apply(tf.data.experimental.prefetch_to_device(
            to_device, buffer_size=DEVICE_PREFETCH_BATCHES))
    return dataset.prefetch(AUTOTUNE)
