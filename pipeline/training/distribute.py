"""Training on several devices or machines: the strategy, its input, and Keras workarounds.

One device: the default strategy, and the input is make_dataset's batches as they are.
Several GPUs: MirroredStrategy. Several machines (TF_CONFIG names a cluster):
MultiWorkerMirroredStrategy, each worker reading its own shards; every worker must run the
same number of steps, which shapes make_input, and save checkpoints at the same steps
(save_every). Keras 3.15 needs help there (see work_around_keras_multi_worker and
AverageMovingStatistics); the two-process test is the guard against an upgrade that moves the
private hooks used.
"""

from __future__ import annotations

import logging
import os

import keras
import tensorflow as tf

from pipeline.core import schema
from pipeline.dataset import ReadPlan, build_dataset

log = logging.getLogger(__name__)


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


def save_every(every_steps: int | None, strategy: tf.distribute.Strategy) -> int | None:
    """The checkpoint schedule a strategy allows. Several workers each save into their own
    workdir and must save at the same steps, which one clock per worker cannot promise: there
    the time-based default saves at epoch ends only."""
    if every_steps is None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        log.info("several workers: checkpoints at epoch ends (set checkpoint_every_steps to "
                 "save inside epochs)")
        return 0
    return every_steps


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

    images = tf.TensorSpec((replica_batch, *manifest.image_shape), tf.uint8)
    if manifest.feature_size:
        images = {schema.IMAGE_KEY: images, schema.FEATURES_KEY: tf.TensorSpec(
            (replica_batch, manifest.feature_size), tf.float32)}
    specs = (images, tf.TensorSpec((replica_batch, manifest.outputs), tf.float32))
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


def make_input(strategy, plan: ReadPlan, batch_size: int, *, labels):
    """The plan's split as (uint8 images, float32 label rows) batches, one pipeline per
    worker (each with its share of the plan's shards: ReadPlan.for_pipeline).

    `labels` makes the rows the loss takes of a batch's labels (targets.training_labels):
    one-hot class rows (mixup and cutmix already give soft rows), so one loss,
    CategoricalCrossentropy with label smoothing, serves every class recipe; multi-hot rows;
    standardised regression targets.

    With several workers (MultiWorkerMirroredStrategy) every worker must run the same number
    of steps, or their collectives stop matching and the job fails. Shard files split unevenly
    between workers, so training data repeats on each worker (epochs are steps_per_epoch
    steps), and evaluation reads the whole split on every worker, each keeping its own share
    of every global batch (every record evaluated once, in as many steps on every worker).
    """
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    training = plan.training

    def build(input_context=None):
        per_replica = (input_context.get_per_replica_batch_size(batch_size)
                       if input_context else batch_size)
        data = build_dataset(plan.for_pipeline(input_context), per_replica)
        if multi_worker and training:
            data = data.repeat()
        return data.map(lambda images, batch_labels: (images, labels(batch_labels)),
                        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    if multi_worker and not training:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return strategy.experimental_distribute_dataset(build().with_options(options))
    if strategy.num_replicas_in_sync == 1 and not os.environ.get("TF_CONFIG"):
        return build()
    return strategy.distribute_datasets_from_function(build)


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
