"""`train_and_evaluate`: a ResNet trained with `model.fit` on `make_dataset` batches.

Plain keyword-only arguments and no gin: `train.py` wraps this function with gin in its main
only, and tests call it directly.

    metrics = train_and_evaluate(data_dir="workspace/shards/digits",
                                 workdir="workspace/runs/digits", depth=10, epochs=3, ...)

What a run leaves in `workdir` (see WORKDIR_FILES):

    run.json          the dataset this run trains on (classes, shape); a rerun must match it
    backup/           BackupAndRestore's state: a killed run started again resumes at the
                      epoch it was in, not from scratch; removed when training finishes
    checkpoints/      last.weights.h5 (every epoch) and best.weights.h5 (best val_accuracy)
    tensorboard/      loss, accuracy, learning rate, images/s and input-wait fraction per epoch
    train_log.csv     the same per epoch, appended across resumed runs
    model.keras       the trained model (Keras format); export/ the SavedModel for serving
    metrics.json      val_accuracy, val_loss, epochs, images/s, input-wait fraction, seconds
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Sequence

import keras
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline import dataset as dataset_lib
from pipeline import files, model as model_lib, schema

RUN_FILE = "run.json"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CSV_LOG = "train_log.csv"
MODEL_FILE = "model.keras"
EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"
# The batch size the base learning rate is quoted for (Goyal et al. 2017: lr = 0.1 x B / 256).
LR_REFERENCE_BATCH = 256

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """The run cannot start as asked (e.g. a workdir that belongs to another dataset)."""


def train_and_evaluate(
    *,
    data_dir: str,
    workdir: str,
    depth: int = 50,
    width: int = 64,
    stem: str = "imagenet",
    input_pool: int = 1,
    epochs: int = 90,
    batch_size: int = 256,
    base_learning_rate: float = 0.1,
    warmup_epochs: float = 5.0,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.1,
    augment: str | Sequence[str] | None = augment_lib.DEFAULT_TRAIN_AUGMENT,
    augment_on_device: bool = False,
    cache: str | None = "auto",
    mixed_precision: str | bool = "auto",
    data_format: str = "auto",
    seed: int = 0,
    train_split: str = schema.TRAIN,
    val_split: str = schema.VAL,
    profile_batches: Sequence[int] | int = 0,
    on_corrupt: str = "fail",
    max_corrupt_fraction: float = dataset_lib.DEFAULT_MAX_CORRUPT_FRACTION,
    service: str | None = None,
    processing_mode: str = "distributed_epoch",
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 2,
) -> dict[str, Any]:
    """Trains a ResNet on `data_dir` (written by `python -m pipeline.write`) into `workdir`.

    Args:
      depth, width, stem, input_pool: the network (see model.build_resnet).
      epochs, batch_size: batch_size is global (split across replicas).
      base_learning_rate: for a batch of LR_REFERENCE_BATCH; scaled linearly with batch_size,
        reached after a linear warmup of `warmup_epochs`, then cosine decay to zero.
      momentum: SGD momentum.
      weight_decay: L2 on convolution and dense kernels (gradient weight_decay * w).
      label_smoothing: of the cross-entropy.
      augment: the training augmentation spec (see pipeline.augment).
      augment_on_device: run `augment` in the model on the accelerator instead of in tf.data.
      cache: the reader's cache (None, "memory", "auto" or a file path).
      mixed_precision: "auto" (mixed_float16 on a GPU), True or False.
      data_format: "auto" (channels_first on a GPU), "channels_first" or "channels_last".
      seed: the file order, shuffling, augmentation and weight initialisation.
      train_split, val_split: manifest split names.
      profile_batches: batches TensorBoard profiles (e.g. (10, 20)); 0 for none.
      on_corrupt: "fail" (a damaged shard stops training, named) or "skip" (see
        make_dataset: damaged shards are read up to their first bad record), losing at most
        `max_corrupt_fraction` of a split.
      service: "grpc://HOST:PORT" of a tf.data service dispatcher (python -m
        pipeline.service): the training input runs on its workers (see make_dataset; cache
        "auto" then streams, "memory" is refused). Validation still reads here: every record
        exactly once, even if a service worker dies.
      processing_mode: the service's "distributed_epoch" or "parallel_epochs".
      extra_callbacks: more Keras callbacks, run after ours.
      verbose: passed to model.fit (2: one line per epoch).

    Returns the metrics also written to `workdir/metrics.json`.
    """
    manifest = schema.read_manifest(data_dir)
    if val_split not in manifest.splits:
        raise TrainingError(
            f"{data_dir} has no {val_split!r} split (it has {sorted(manifest.splits)}); write "
            f"it with `python -m pipeline.write --val_fraction=0.1` or pass val_split")
    os.makedirs(workdir, exist_ok=True)
    check_run_file(workdir, data_dir, manifest)
    keras.utils.set_random_seed(seed)
    policy = resolve_mixed_precision(mixed_precision)
    keras.mixed_precision.set_global_policy(policy)

    strategy = choose_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TrainingError(f"batch_size={batch_size} must be a multiple of the {replicas} "
                            "replicas")
    train_count = manifest.split(train_split).count
    steps_per_epoch = dataset_lib.batches_per_epoch(train_count, batch_size, training=True)
    if steps_per_epoch == 0:
        raise TrainingError(f"split {train_split!r} has {train_count} records, fewer than "
                            f"batch_size={batch_size}; use batch_size<={train_count}")
    val_steps = dataset_lib.batches_per_epoch(manifest.split(val_split).count, batch_size,
                                              training=False)
    peak_lr = base_learning_rate * batch_size / LR_REFERENCE_BATCH
    schedule = warmup_cosine(peak_lr, warmup_steps=round(warmup_epochs * steps_per_epoch),
                             total_steps=epochs * steps_per_epoch)
    log.info("training %s: %d images in %d steps of %d per epoch, %d epochs, peak lr %.4g, "
             "%d replica(s), %s", data_dir, train_count, steps_per_epoch, batch_size, epochs,
             peak_lr, replicas, policy)

    train_data = make_input(strategy, data_dir, train_split, batch_size, training=True,
                            num_classes=manifest.num_classes, cache=cache, seed=seed,
                            augment=None if augment_on_device else augment,
                            on_corrupt=on_corrupt, max_corrupt_fraction=max_corrupt_fraction,
                            service=service, processing_mode=processing_mode)
    val_data = make_input(strategy, data_dir, val_split, batch_size, training=False,
                          num_classes=manifest.num_classes, cache=cache, seed=seed,
                          augment=None, on_corrupt=on_corrupt,
                          max_corrupt_fraction=max_corrupt_fraction)
    if on_corrupt == "skip":
        # Damaged shards shorten the epoch: steps from what can be read. (Not from the
        # datasets' cardinality: a distributed dataset has none, and training data repeats
        # on several workers.)
        def readable_batches(split: str, training: bool) -> int:
            count = dataset_lib.readable_records(
                data_dir, manifest, split, manifest.shard_paths(data_dir, split),
                manifest.split(split).count, max_corrupt_fraction)
            return dataset_lib.batches_per_epoch(count, batch_size, training)

        steps_per_epoch = readable_batches(train_split, training=True)
        val_steps = readable_batches(val_split, training=False)
    with strategy.scope():
        net = model_lib.build_resnet(
            depth=depth, num_classes=manifest.num_classes, image_shape=manifest.image_shape,
            mean=manifest.mean, std=manifest.std, width=width, stem=stem,
            input_pool=input_pool, data_format=data_format, weight_decay=weight_decay,
            augment=augment if augment_on_device else None, seed=seed,
        )
        net.compile(
            optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=momentum),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            steps_per_execution=1,
        )
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            work_around_keras_multi_worker(net, batch_size // replicas, manifest)
    timer = InputTimer(batch_size)
    timer.instrument(net)
    started = time.perf_counter()
    try:
        history = net.fit(
            train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
            validation_data=val_data, validation_steps=val_steps,
            callbacks=(make_callbacks(workdir, timer, profile_batches, strategy)
                       + list(extra_callbacks)),
            verbose=verbose, shuffle=False,  # make_dataset shuffles; Keras cannot shuffle one
        )
    except tf.errors.DataLossError as err:
        raise TrainingError(damaged_shards_message(data_dir, (train_split, val_split), err)) from err
    seconds = time.perf_counter() - started
    evaluation = net.evaluate(val_data, steps=val_steps, return_dict=True, verbose=0)
    net.save(os.path.join(workdir, MODEL_FILE))
    net.export(os.path.join(workdir, EXPORT_DIR), verbose=False)
    metrics = {
        "val_accuracy": float(evaluation["accuracy"]),
        "val_loss": float(evaluation["loss"]),
        "epochs": epochs,
        "epochs_this_run": len(history.epoch),
        "images_per_second": timer.last_images_per_second,
        "input_wait_fraction": timer.last_wait_fraction,
        "seconds": seconds,
        "batch_size": batch_size,
        "replicas": replicas,
        "mixed_precision": policy,
        "input_verdict": input_verdict(timer.last_wait_fraction),
    }
    files.atomic_write_text(os.path.join(workdir, METRICS_FILE),
                            json.dumps(metrics, indent=2) + "\n")
    log.info("done: val_accuracy %.4f, val_loss %.4f, %.0f img/s, input wait %.0f%% (%s) -> %s",
             metrics["val_accuracy"], metrics["val_loss"], metrics["images_per_second"] or 0,
             100 * (metrics["input_wait_fraction"] or 0), metrics["input_verdict"], workdir)
    return metrics


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


def read_run_file(workdir: str) -> dict | None:
    """The run.json of `workdir` (dataset, classes, image shape), or None before any run."""
    try:
        with open(os.path.join(workdir, RUN_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def check_run_file(workdir: str, data_dir: str, manifest: schema.Manifest) -> None:
    """Write run.json on the first run; on later runs (resume) insist on the same classes."""
    current = {"data_dir": os.path.abspath(data_dir), "classes": list(manifest.classes),
               "image_shape": list(manifest.image_shape)}
    previous = read_run_file(workdir)
    if previous is not None:
        if (previous["classes"], previous["image_shape"]) != (current["classes"],
                                                             current["image_shape"]):
            raise TrainingError(
                f"{workdir} holds a run on {previous['data_dir']} ({len(previous['classes'])} "
                f"classes, images {previous['image_shape']}), but {data_dir} has "
                f"{manifest.num_classes} classes, images {list(manifest.image_shape)}: its "
                f"checkpoints cannot continue here. Use another --workdir, or remove {workdir}")
        return
    files.atomic_write_text(os.path.join(workdir, RUN_FILE), json.dumps(current, indent=2) + "\n")


def resolve_mixed_precision(mixed_precision: str | bool) -> str:
    if mixed_precision == "auto":
        mixed_precision = bool(tf.config.list_physical_devices("GPU"))
    if not isinstance(mixed_precision, bool):
        raise TrainingError(f"mixed_precision={mixed_precision!r}: use 'auto', True or False")
    return "mixed_float16" if mixed_precision else "float32"


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG names a cluster, Mirrored for several GPUs, else the
    default (one device)."""
    if os.environ.get("TF_CONFIG"):
        if (not tf.config.list_physical_devices("GPU")
                and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"):
            # With several replicas the last validation batch leaves some replicas an empty
            # batch, and the oneDNN CPU convolution returns [0, H, W, C_in] instead of C_out
            # for one (TensorFlow 2.21): validation fails with "Incompatible shapes".
            log.warning("CPU workers: start them with TF_ENABLE_ONEDNN_OPTS=0, or validation "
                        "can fail on an empty last batch (a oneDNN bug)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def work_around_keras_multi_worker(net: keras.Model, replica_batch: int,
                                   manifest: schema.Manifest) -> None:
    """Make Keras 3.15's fit and evaluate run under MultiWorkerMirroredStrategy.

    Two upstream bugs stop them (keras-team/keras issue 20585):
    - fit and evaluate first build the model from a real batch reduced across workers with
      strategy.reduce, which cannot reduce an (images, labels) tuple ("Attempt to convert a
      value (PerReplica...)"). Building from the per-replica shapes first leaves that step
      nothing to do.
    - each step's logs (scalars: loss, accuracy) are reduced across workers with
      strategy.reduce("MEAN", v, axis=0), which fails for a scalar ("Invalid reduction
      dimension 0"). The mean over replicas (axis=None) is what is meant.
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    specs = (tf.TensorSpec((replica_batch, *manifest.image_shape), tf.uint8),
             tf.TensorSpec((replica_batch, manifest.num_classes), tf.float32))
    net._symbolic_build(data_batch=specs)
    net._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    keras_reduce = keras_tf_trainer.reduce_per_replica
    if getattr(keras_reduce, "_scalar_mean", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not isinstance(
                strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return keras_reduce(values, strategy, reduction)
        return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    reduce_per_replica._scalar_mean = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def warmup_cosine(peak: float, *, warmup_steps: int, total_steps: int):
    """Linear warmup from 0 to `peak`, then cosine decay to 0 at `total_steps`."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=peak, warmup_steps=warmup_steps)


def damaged_shards_message(data_dir: str, splits: Sequence[str], err: Exception) -> str:
    """TensorFlow's DataLossError says "corrupted record at <offset>" but not in which file:
    name the damaged shards (pipeline.verify) and the ways on."""
    from pipeline import verify

    report = verify.verify_dataset(data_dir, splits=list(splits))
    named = "\n  ".join(str(problem) for problem in report.problems) or (
        f"none found now (TensorFlow said: {err.message if hasattr(err, 'message') else err})")
    return (f"a shard of {data_dir} is damaged:\n  {named}\nRewrite the dataset with "
            "`python -m pipeline.write`, or train on without the damaged records with "
            "train_and_evaluate.on_corrupt='skip'")


def make_input(strategy, data_dir, split, batch_size, *, training, num_classes, cache, seed,
               augment, on_corrupt="fail", max_corrupt_fraction=0.0, service=None,
               processing_mode="distributed_epoch"):
    """The split as (uint8 images, one-hot labels) batches, one pipeline per worker.

    Labels become one-hot rows here (mixup and cutmix already give soft rows) so one loss,
    CategoricalCrossentropy with label smoothing, serves every recipe.

    With several workers (MultiWorkerMirroredStrategy) every worker must run the same number
    of steps, or their collectives stop matching and the job fails. Shard files split unevenly
    between workers, so training data repeats on each worker (epochs are steps_per_epoch
    steps), and evaluation reads the whole split on every worker, each keeping its own share
    of every global batch (every record evaluated once, in as many steps on every worker).
    """
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def build(input_context=None):
        per_replica = (input_context.get_per_replica_batch_size(batch_size)
                       if input_context else batch_size)
        data = dataset_lib.make_dataset(
            data_dir, split, per_replica, training=training, cache=cache, seed=seed,
            augment=augment, input_context=input_context, on_corrupt=on_corrupt,
            max_corrupt_fraction=max_corrupt_fraction, service=service,
            processing_mode=processing_mode)
        if multi_worker and training:
            data = data.repeat()
        return data.map(lambda images, labels: (images, _one_hot(labels, num_classes)),
                        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    if multi_worker and not training:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return strategy.experimental_distribute_dataset(build().with_options(options))
    if strategy.num_replicas_in_sync == 1 and not os.environ.get("TF_CONFIG"):
        return build()
    return strategy.distribute_datasets_from_function(build)


def _one_hot(labels, num_classes):
    if labels.shape.rank == 2:  # already soft rows
        return labels
    return tf.one_hot(labels, num_classes, dtype=tf.float32)


def make_callbacks(workdir: str, timer: "InputTimer", profile_batches,
                   strategy: tf.distribute.Strategy | None = None) -> list:
    """In order: the callbacks that add to the epoch's logs run before those that write them."""
    checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    return [
        *([AverageMovingStatistics(strategy)] if replicas > 1 else []),
        LearningRateLogger(),
        timer,
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(os.path.join(workdir, BACKUP_DIR),
                                         double_checkpoint=True),
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "last.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "best.weights.h5"),
                                        save_weights_only=True, monitor="val_accuracy",
                                        mode="max", save_best_only=True),
        keras.callbacks.CSVLogger(os.path.join(workdir, CSV_LOG), append=True),
        keras.callbacks.TensorBoard(os.path.join(workdir, TENSORBOARD_DIR),
                                    profile_batch=profile_batches),
    ]


class AverageMovingStatistics(keras.callbacks.Callback):
    """With several replicas, set every replica's BatchNorm moving statistics to their mean
    across replicas before each evaluation and when training ends.

    Keras 3 keeps these per replica (aggregation "none"): each copy follows only its replica's
    batches, so replicas would validate with different statistics, and the model saved (the
    first replica's copy) would have seen a fraction of the data; across machines, every
    worker would save a different model.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self.strategy = strategy
        self._average = None

    def average(self) -> None:
        if self._average is None:
            variables = [weight.value for layer in self.model.layers
                         if isinstance(layer, keras.layers.BatchNormalization)
                         for weight in (layer.moving_mean, layer.moving_variance)]

            def replica_step():
                context = tf.distribute.get_replica_context()
                means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                           [v.read_value() for v in variables])
                for variable, mean in zip(variables, means):
                    variable.assign(mean)

            self._average = tf.function(lambda: self.strategy.run(replica_step))
        self._average()

    def on_test_begin(self, logs=None):
        self.average()

    def on_train_end(self, logs=None):
        self.average()


# Shares of step time spent waiting for input that decide the verdict.
INPUT_BOUND_WAIT = 0.2  # above: the accelerator idles a fifth of the time or more
INPUT_OK_WAIT = 0.05  # below: the input keeps up


def input_verdict(wait_fraction: float | None) -> str:
    """In plain words: is training input-bound, and which knob to try next."""
    if wait_fraction is None:
        return "input wait not measured (too few steps)"
    if wait_fraction < INPUT_OK_WAIT:
        return ("not input-bound: the input keeps up; a faster input pipeline will not speed "
                "training up")
    knobs = ("try, in this order: augment_on_device=True (the host then only reads and "
             "parses), cache='memory' if the split fits in RAM (see python -m pipeline.inspect), "
             "more shards than reader threads, then more CPUs per accelerator (tf.data service)")
    if wait_fraction < INPUT_BOUND_WAIT:
        return f"slightly input-bound: {knobs}"
    return f"input-bound: the accelerator waits for data; {knobs}"


def time_training_steps(data_dir: str, split: str, *, batch_size: int, steps_per_epoch: int,
                        seed: int, augment: str | Sequence[str] | None, cache: str | None = None,
                        **model_options) -> "InputTimer":
    """Two epochs of `steps_per_epoch` steps of a ResNet (`model_options`: build_resnet's) on
    make_dataset, timed as train_and_evaluate times itself: the first epoch compiles, the
    returned InputTimer holds the second's images/s and input-wait share. For the bench and
    the profiler, which ask whether a model would wait for this reader."""
    manifest = schema.read_manifest(data_dir)
    net = model_lib.build_resnet(num_classes=manifest.num_classes,
                                 image_shape=manifest.image_shape, mean=manifest.mean,
                                 std=manifest.std, **model_options)
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=1)
    timer = InputTimer(batch_size)
    timer.instrument(net)
    data = dataset_lib.make_dataset(data_dir, split, batch_size, training=True, cache=cache,
                                    seed=seed, augment=augment).repeat()
    net.fit(data, epochs=2, steps_per_epoch=steps_per_epoch, callbacks=[timer], verbose=0,
            shuffle=False)
    return timer


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch's logs (CSV, TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))


class InputTimer(keras.callbacks.Callback):
    """Images per second and the share of step time spent waiting for the next batch.

    `instrument(model)` makes each training step fetch its batch eagerly (timed) and then run
    Keras's compiled step on it: the wait is the time `get_next` blocks, the step time is from
    one fetch to the next. A wait share near 0 means the input keeps up; a large one means the
    accelerator idles for input (see WORKSPACE.md for what to try).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.last_images_per_second: float | None = None
        self.last_wait_fraction: float | None = None
        self._waits: list[float] = []
        self._starts: list[float] = []

    def instrument(self, model: keras.Model) -> None:
        if model.steps_per_execution != 1:
            raise TrainingError("InputTimer times single steps: compile with "
                                "steps_per_execution=1")
        make_train_function = model.make_train_function
        timer = self

        def make_timed_train_function(force=False):
            make_train_function(force)
            compiled = model.train_function
            if getattr(compiled, "_input_timed", False):
                return compiled

            def timed(iterator):
                start = time.perf_counter()
                try:
                    batch = iterator.get_next()
                except tf.errors.OutOfRangeError as err:
                    raise StopIteration from err
                timer._record(start, time.perf_counter() - start)
                # Keras's step function runs an iterable of batches one by one: the batch
                # is already fetched, so the step only computes.
                return compiled([batch])

            timed._input_timed = True
            model.train_function = timed
            return timed

        model.make_train_function = make_timed_train_function

    def _record(self, start: float, wait: float) -> None:
        self._starts.append(start)
        self._waits.append(wait)

    def on_epoch_begin(self, epoch, logs=None):
        self._waits, self._starts = [], []

    def on_train_batch_end(self, batch, logs=None):
        self._last_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # The first step of the first epoch compiles the model: leave it out of the rate.
        starts, waits = self._starts[1:], self._waits[1:]
        if not starts:
            return
        elapsed = self._last_end - starts[0]
        if elapsed <= 0:
            return
        self.last_images_per_second = len(starts) * self.batch_size / elapsed
        self.last_wait_fraction = min(sum(waits) / elapsed, 1.0)
        if logs is not None:
            logs["images_per_second"] = self.last_images_per_second
            logs["input_wait_fraction"] = self.last_wait_fraction
