"""`make_dataset`: the tf.data reader of our shards, built so the CPU does almost nothing per image.

Raw CHW shards take 10x the disk of JPEGs; they are only worth it if reading them is much
faster than decoding JPEGs. Per image, the costs that matter on a 2-core machine are byte copies
and per-element overhead, so the reader:

* reads each record with one preadv straight into its row of the batch (random access,
  random_access.py), wherever the shards are uncompressed and local: every epoch a
  permutation of the whole split, batch g a pure function of (seed, g) (indexed.py);
* with `cache="memory"`, decodes the split once into one uint8 table and gathers its rows in
  the same order (table.py);
* streams compressed or remote shards, or on a tf.data service, parsing whole batches: one
  `parse_example` + `decode_raw` per batch, never per record (streaming.py);
* keeps pixels uint8 CHW, the stored layout: casting, normalising, transposing to NHWC and most
  augmentation happen batched, ideally on the accelerator (`augment.DevicePreprocess`).
  data_format="channels_last" (a Keras model of one's own) transposes each batch once, after
  the augmentation.

A dataset is planned once (plan.py: the manifest, this pipeline's shards, the cache, and the
access, which access.py chooses and says why in one log line), and built from that plan. After
the batches, in this order:
    -> on a tf.data service: everything above runs on its workers, the rest stays here
    -> prefetch (or prefetch into the accelerator's memory): overlap input with the step
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
from absl import logging

from pipeline import augment as augment_lib
from pipeline.core import schema
from pipeline.dataset import access as access_lib
from pipeline.dataset import damaged, fused, indexed
from pipeline.dataset import plan as plan_lib
from pipeline.dataset import random_access, streaming
from pipeline.dataset.options import (CHANNELS_FIRST, CHANNELS_LAST,
                                      DEFAULT_MAX_CORRUPT_FRACTION, DamagedShards, DatasetError,
                                      ReadOptions, ServiceSettings)
from pipeline.dataset.order import require_batches
from pipeline.dataset.plan import ReadPlan, plan_read

AUTOTUNE = tf.data.AUTOTUNE
# Batches prefetch_to_device keeps in the accelerator's memory.
DEVICE_PREFETCH_BATCHES = 2


def make_dataset(
    data_dir: str,
    split: str = schema.TRAIN,
    batch_size: int = 256,
    training: bool = True,
    *,
    cache: str | None = None,
    access: str = "auto",
    start_batch: int | None = None,
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
    fold: int | None = None,
    data_format: str = CHANNELS_FIRST,
) -> tf.data.Dataset:
    """A dataset of `(images, labels)`: uint8 `[B, 3, H, W]` (`[B, H, W, 3]` with
    data_format="channels_last") and int64 `[B]` (or float `[B, K]` when mixup/cutmix is in
    `augment`); in a multi-label dataset float32 multi-hot `[B, K]`, in a regression dataset
    float32 `[B, targets]` (schema.Manifest.target_kind). A dataset written with
    --feature_columns yields `({"image": images, "features": float32 [B, F]}, labels)`.
    H, W and the 3 are static (B too when training); dataset.json's image_shape is (3, H, W).

    Args:
      data_dir: a directory written by `python -m pipeline.write` (holds dataset.json).
      split: "train", "val", "test" or any split in the manifest.
      batch_size: images per batch (per input pipeline when `input_context` is given).
      training: shuffle, augment and drop the last partial batch. False (evaluation): the
        records in shard order, every record once, deterministic, no augmentation.
      cache: None (read from disk every epoch, the page cache keeping what fits), "memory"
        (decode once into an in-memory uint8 table), a file path (tf.data cache of the streamed
        records), or "auto" ("memory" when the split fits in plan.AUTO_CACHE_RAM_FRACTION of
        free RAM).
      access: "auto" (random access where the shards allow it, else streaming; see access.py),
        "random" or "stream".
      start_batch: None: one epoch per iteration of the dataset, each iteration the next epoch
        (what Keras's fit(epochs=...) does). N: the run's batches from batch N on (counting
        across epochs) without end, exactly those an uninterrupted run yields from there,
        augmentation included, found in O(1): take steps_per_epoch=batches_per_epoch(...).
        N > 0 needs random access or cache="memory".
      shuffle_buffer: records in the streaming shuffle buffer (default: SHUFFLE_BUFFER_BYTES
        worth of images).
      seed: makes the order and the augmentation reproducible. Random access and the table: the
        batches are a pure function of (seed, batch number), whatever the threads. Streaming: as
        for any tf.data op seed, the order also depends on TensorFlow's global seed
        (tf.random.set_seed, which train.py sets) and, unless deterministic, on thread timing
        (and processing_mode="parallel_epochs" on a service salts it with each worker's clock).
      deterministic: streaming only: element order independent of thread timing (default: only
        when evaluating). Random access and the table are always deterministic.
      augment: an augmentation spec run in the pipeline on uint8 batches (see pipeline.augment),
        or None to leave augmentation to the device (augment.DevicePreprocess in the model).
        Ignored when not training.
      input_context: from `tf.distribute` (distribute_datasets_from_function): this pipeline
        reads only its own shard files.
      num_parallel_reads: reads at once. Random access and the table's load: the threads
        reading each batch (default: the cores this process may use, os.sched_getaffinity);
        the batch's bytes are the same for any number. Streaming: the shards interleaved
        (default: min(files, MAX_INTERLEAVE_FILES)).
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
      fold: in a dataset written with `--folds=K`, the cross-validation fold k: split "train"
        reads every fold but k, "val" fold k (schema.Manifest.for_fold). None: "train" is
        every fold.
      data_format: "channels_first" (the stored layout, what the trainer's model and
        augment.DevicePreprocess take) or "channels_last" (what a Keras model's
        `Input((H, W, 3))`, keras.applications and image_dataset_from_directory use). Every
        read path yields it: the reader and the augmentation work channels-first, and each
        batch is transposed once at the end, so both layouts hold the same pixels.
    """
    options = ReadOptions(
        cache=cache, access=access, start_batch=start_batch, shuffle_buffer=shuffle_buffer,
        seed=seed, deterministic=deterministic,
        augment=augment, num_parallel_reads=num_parallel_reads, to_device=to_device,
        damaged=DamagedShards(on_corrupt, max_corrupt_fraction),
        service=ServiceSettings.from_args(service, processing_mode, job_name), fold=fold,
        data_format=data_format)
    return build_dataset(plan_read(data_dir, split, training, options, input_context),
                         batch_size)


def build_dataset(plan: ReadPlan, batch_size: int) -> tf.data.Dataset:
    """make_dataset from its read plan (plan.py): the trainer plans a split once and asks
    the plan its questions (readable_records, plan.positioned) before it reads."""
    options, training = plan.options, plan.training
    if training and plan.manifest.feature_size:
        _refuse_label_ops_with_features(options.augment)
    _check_start_batch(options.start_batch, training, plan.access)
    require_batches(plan.count, batch_size, training, plan.split)
    if plan.access.kind == access_lib.STREAM:
        logging.info("split %r: stream (%s), %d records in %d shard(s)%s", plan.split,
                     plan.access.reason, plan.count, len(plan.shards),
                     fused.describe(plan.augment, why=" (only random access crops in the reader)"))
        dataset = streaming.streamed_dataset(plan, batch_size)
    else:
        dataset = indexed.indexed_dataset(plan, batch_size, available=plan_lib.available_memory())
    if options.data_format == CHANNELS_LAST:  # in order: batch g stays batch g
        dataset = dataset.map(to_channels_last, num_parallel_calls=AUTOTUNE,
                              deterministic=True)
    if plan.manifest.feature_size:  # (images, labels, features) -> Keras' (inputs, labels)
        dataset = dataset.map(lambda images, labels, features: (
            {"image": images, "features": features}, labels))
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    dataset = dataset.with_options(tf_options)
    if options.service:
        dataset = on_service(dataset, options.service, training)
    return to_consumer(dataset, options.to_device)


def to_channels_last(images, *rest):
    """[B, 3, H, W] -> [B, H, W, 3]: once per batch, after the augmentation (whose ops, like
    the reader's fused crop, work on the stored layout); the static shape carries over."""
    return (tf.transpose(images, (0, 2, 3, 1)), *rest)


def _refuse_label_ops_with_features(spec) -> None:
    """mixup and cutmix pair a mixed image with the features of one of its two images."""
    mixing = [name for name, _ in augment_lib.parse_spec(spec) if name in augment_lib.LABEL_OPS]
    if mixing:
        raise DatasetError(f"augment={spec!r}: {', '.join(mixing)} mixes two images and their "
                           "labels, but a dataset with --feature_columns keeps one image's "
                           "features: leave them out of the spec")


def readable_records(plan: ReadPlan) -> int:
    """The records of the plan's split an epoch reads: the manifest's count, less the damaged
    ones on_corrupt="skip" leaves out, found as build_dataset finds them (the same access, the
    same checks, done once per process while the shards stay as they are). For step counts: a
    distributed dataset has no length."""
    policy = plan.options.damaged
    if not policy.skip:
        return plan.count
    if plan.access.kind != access_lib.STREAM and plan.access.index_usable:
        return len(random_access.open_records(plan.data_dir, plan.manifest, plan.shards,
                                              plan.split, policy))
    return damaged.readable_records(plan.data_dir, plan.manifest, plan.split, plan.paths,
                                    plan.count, policy.max_fraction)


def _check_start_batch(start_batch: int | None, training: bool,
                       chosen: access_lib.Access) -> None:
    if start_batch is None:
        return
    if not training or start_batch < 0:
        raise DatasetError(f"start_batch={start_batch}: a position in a training run (0 or "
                           "more, with training=True)")
    if start_batch > 0 and chosen.kind == access_lib.STREAM:
        raise DatasetError(f"start_batch={start_batch} needs random access or "
                           f"cache='memory', and this split is streamed: {chosen.reason}. "
                           "A streamed order comes from shuffle buffers and cannot be found "
                           "again from a position")


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
