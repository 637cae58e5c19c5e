"""`train_and_evaluate`: a ResNet trained with `model.fit` on `make_dataset` batches.

Plain keyword-only arguments and no gin: `train.py` wraps this function with gin in its main
only, and tests call it directly. The arguments stay flat, one `train_and_evaluate.NAME`
binding each, rather than gin-configured settings objects (why: pipeline.training.settings);
the function builds the network's and the optimiser's settings from them by field name
(settings.from_arguments) and the reader's options by hand.

    metrics = train_and_evaluate(data_dir="workspace/shards/digits",
                                 workdir="workspace/runs/digits", depth=10, epochs=3)

A run goes through five phases, each a function below: check the run (the dataset, the
workdir, the devices), build the input, build the model, fit, and finish (evaluate, save,
metrics). What it leaves in `workdir` is listed in pipeline.training.run_files.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline.core import schema
from pipeline.dataset import (DamagedShards, ReadOptions, ReadPlan, ServiceSettings,
                              batches_per_epoch, plan_read, readable_records)
from pipeline.dataset.options import DEFAULT_MAX_CORRUPT_FRACTION
from pipeline.training import advice, backbones, callbacks, checkpoints, damage, distribute, finish
from pipeline.training import interrupt, legs, run_files, run_state, targets
from pipeline.training import workdir as workdir_lock
from pipeline.training.settings import ModelSettings, OptimizerSettings, from_arguments
from pipeline.training.start import Run, start_run
from pipeline.training.timing import InputTimer

log = logging.getLogger(__name__)


@workdir_lock.one_trainer_per_workdir
def train_and_evaluate(
    *,
    data_dir: str,
    workdir: str,
    backbone: str = "resnet",
    weights: str | None = None,
    freeze_epochs: int = 0,
    backbone_lr_factor: float = 1.0,
    image_size: int | None = None,
    eval_image_size: int | None = None,
    eval_crop: float = 1.0,
    progressive_resizing: Sequence[int] | None = None,
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
    access: str = "auto",
    mixed_precision: str | bool = "auto",
    data_format: str = "auto",
    seed: int = 0,
    train_split: str = schema.TRAIN,
    val_split: str = schema.VAL,
    fold: int | None = None,
    allow_other_data: bool = False,
    profile_batches: Sequence[int] | int = 0,
    on_corrupt: str = "fail",
    max_corrupt_fraction: float = DEFAULT_MAX_CORRUPT_FRACTION,
    service: str | None = None,
    processing_mode: str = "distributed_epoch",
    checkpoint_every_steps: int | None = None,
    deterministic: bool = False,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    before_training: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Trains a ResNet on `data_dir` (written by `python -m pipeline.write`) into `workdir`.

    Args:
      backbone: "resnet" (ours: depth, width, stem, input_pool, data_format, weight_decay) or
        a keras.applications model by name (e.g. "EfficientNetV2B0", "ConvNeXtTiny"), with
        its own preprocessing and a new head (pipeline.training.backbones).
      weights: a keras.applications backbone's starting weights: None, "imagenet" (downloads
        once, needs network) or a .weights.h5 file of the same model without its top (or
        Keras's ImageNet download of it, *_notop.h5), checked before anything is built.
      freeze_epochs: train only the head for this many epochs, then the whole network.
      backbone_lr_factor: the backbone learns at this times the learning rate (e.g. 0.1: the
        pretrained features move slower than the new head; backbones.GradientScale).
      image_size, eval_image_size, eval_crop, progressive_resizing: train at image_size
        (default: the stored size; random_resized_crop outputs it, else a resize ends the
        augmentation) and evaluate the central eval_crop of each image resized to
        eval_image_size (default image_size); progressive_resizing=(min_size, start_epoch,
        end_epoch[, step]) grows the training size from min_size to image_size
        (pipeline.training.resolution).
      depth, width, stem, input_pool, data_format, weight_decay: our ResNet (see
        model.build_resnet; data_format "auto" is channels_first on a GPU).
      epochs, batch_size: batch_size is global (split across replicas).
      base_learning_rate, warmup_epochs, momentum, label_smoothing: SGD with momentum; the
        rate is for a batch of LR_REFERENCE_BATCH, scaled linearly with batch_size, reached
        after a linear warmup of `warmup_epochs`, then cosine decay to zero (settings.py).
      augment: the training augmentation spec (see pipeline.augment), run in tf.data, or in
        the model on the accelerator with `augment_on_device`.
      cache: the reader's cache (None, "memory", "auto" or a file path).
      access: how the reader reads the shards: "auto" (random access where it can, else
        streaming), "random" or "stream" (see pipeline.dataset.make_dataset).
      mixed_precision: "auto" (mixed_float16 on a GPU), True or False.
      seed: the file order, shuffling, augmentation and weight initialisation.
      train_split, val_split: manifest split names.
      fold: in a dataset written with --folds=K, the cross-validation fold to hold out: train
        on every other fold, validate on this one (pipeline.dataset.make_dataset's fold).
      allow_other_data: resume a workdir's run on another dataset than it trained on
        (run.json records which: dataset.json's sha256 and the split sizes); without it such
        a rerun is refused, naming both.
      profile_batches: batches TensorBoard profiles (e.g. (10, 20)); 0 for none.
      on_corrupt, max_corrupt_fraction: "fail" (a damaged record stops training, named:
        shard file and record) or "skip" (damaged records are left out), losing at most
        `max_corrupt_fraction` of a split (see pipeline.dataset.DamagedShards).
      service, processing_mode: a tf.data service dispatcher ("grpc://HOST:PORT", python -m
        pipeline.service) that runs the training input on its workers (cache "auto" then
        streams, "memory" is refused); validation still reads here, every record once.
      checkpoint_every_steps: save the run's state every this many steps and at every epoch
        end; 0: at epoch ends only; None (default): by time, at most ~2% of it
        (checkpoints.SaveSchedule). The last epoch and every epoch that improves
        val_accuracy are saved whatever this says. The same command again continues at the
        last saved step.
      deterministic: op determinism and an input read by position: a run killed at any
        step and started again ends bit-identical to one never stopped (slower on a GPU).
      extra_callbacks: more Keras callbacks, run after ours.
      verbose: model.fit's: "auto" (default) is a progress bar with ETA on a terminal and one
        line per epoch otherwise, with the first step's and an epoch's time logged; 0, 1, 2.
      before_training: called once every check has passed, just before the first step
        (train.py writes config.gin there): a refused run writes nothing.

    Returns the metrics also written to `workdir/metrics.json`. A rerun of a finished run with
    the same epochs trains nothing and returns them; with more epochs it trains on.
    """
    arguments = dict(locals())  # the keyword arguments alone: no other local exists yet
    if deterministic:
        # Before anything is built. The same inputs then give bit-identical results (slower
        # on a GPU: some kernels switch to deterministic algorithms, cuDNN's autotuning is off).
        tf.config.experimental.enable_op_determinism()
    optimizer = from_arguments(OptimizerSettings, arguments)
    # The reader's options are built by hand: some of its fields share a name with ours but
    # not a meaning (data_format: the model's layout here, the batches' there).
    reading = ReadOptions(cache=cache, access=access, seed=seed,
                          augment=None if augment_on_device else augment,
                          deterministic=True if deterministic else None,
                          damaged=DamagedShards(on_corrupt, max_corrupt_fraction),
                          service=ServiceSettings.from_args(service, processing_mode),
                          fold=fold)
    run = start_run(data_dir, workdir, train_split=train_split, val_split=val_split,
                    batch_size=batch_size, epochs=epochs, seed=seed,
                    mixed_precision=mixed_precision, freeze_epochs=freeze_epochs, fold=fold,
                    allow_other_data=allow_other_data,
                    sizes=dict(image_size=image_size, eval_image_size=eval_image_size,
                               eval_crop=eval_crop, progressive_resizing=progressive_resizing))
    network = from_arguments(
        ModelSettings, arguments, augment=augment if augment_on_device else None,
        backbone_lr_factor=float(backbone_lr_factor), any_size=run.resolution.any_size,
        eval_resize=run.resolution.eval_resize)
    state = run_state.load_state(workdir, run_state.run_settings(
        network=network, optimizer=optimizer, reading=reading, batch_size=batch_size,
        epochs=epochs, steps_per_epoch=run.steps_per_epoch, train_split=train_split,
        policy=run.policy, augment_on_device=augment_on_device, deterministic=deterministic,
        resolution=run.resolution))
    if run_state.is_done(state, epochs, workdir):
        return finish.finished_metrics(run, state)
    if backbones.check_weights(network, run.manifest):  # offline, a file of another model
        keras.utils.set_random_seed(seed)  # as before the check, which drew initial values
    for mistake in advice.likely_mistakes(manifest=run.manifest, epochs=epochs,
                                          warmup_epochs=warmup_epochs,
                                          train_split=train_split, val_split=val_split):
        log.warning("%s", mistake)
    inputs = build_inputs(run, reading, state)
    net = build_model(run, network, optimizer)
    timer = InputTimer(batch_size)
    saver = checkpoints.StepCheckpoint(
        workdir, state, steps_per_epoch=inputs.steps_per_epoch, epochs=epochs,
        schedule=checkpoints.SaveSchedule(distribute.save_every(checkpoint_every_steps,
                                                                run.strategy)),
        keep_metrics=run.strategy.num_replicas_in_sync == 1,
        monitor=targets.monitor(run.manifest),
        lower_is_better=targets.lower_is_better(run.manifest),
        write_logs=lambda saved: run_files.write_train_log(workdir, saved.rows))
    run_state.begin(workdir, state, data_dir, run.manifest, before_training)  # the first write
    run_state.restore(net, state, workdir, run.strategy, inputs.steps_per_epoch)
    verbose = callbacks.progress_verbosity(verbose)
    run_callbacks = callbacks.make_callbacks(workdir, timer, profile_batches, saver,
                                             run.strategy, milestones=verbose == 2,
                                             progress=verbose > 0) + list(extra_callbacks)
    with interrupt.stop_on_interrupt(saver) as stop:  # Ctrl-C: saved at a step, exit 130
        epochs_this_run, seconds = fit(net, run, inputs, timer, [*run_callbacks, stop],
                                       verbose=verbose)
        stop.after_training()
    return finish.finish_run(net, run, inputs.val, inputs.val_steps, timer, state,
                             epochs_this_run=epochs_this_run, seconds=seconds)


# ---------------------------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The training data from the run's step, the validation data, and the steps each epoch
    reads from them."""

    train: Any  # a tf.data.Dataset, or a distributed dataset under a strategy
    val: Any
    steps_per_epoch: int
    val_steps: int
    legs: list  # legs.Leg: the fits from the run's step; `train` is the first's input
    unpositioned: str | None  # why the training reads cannot start at any batch, or None
    train_plan: ReadPlan  # the training split's, planned once: every leg reads by it


def build_inputs(run: Run, reading: ReadOptions, state: checkpoints.RunState) -> Inputs:
    """Training batches from the state's step as `reading` says; validation local,
    unaugmented, every record once; the steps of both. Each split is planned once: its
    steps, whether it can be positioned and its batches all come from that plan."""
    val_plan = plan_read(run.data_dir, run.val_split, False,
                         dataclasses.replace(reading, augment=None, service=None))
    val = distribute.make_input(run.strategy, val_plan, run.batch_size,
                                labels=targets.training_labels(run.manifest))
    train_plan = plan_read(run.data_dir, run.train_split, True, reading)
    # The manifest's counts, less what on_corrupt="skip" leaves of damaged shards
    # (readable_records). Not from the datasets' cardinality: a distributed dataset has none,
    # and training data repeats on several workers.
    steps_per_epoch = readable_batches(train_plan, run.batch_size)
    val_steps = readable_batches(val_plan, run.batch_size)
    fits = legs.training_legs(state.step, steps_per_epoch, run.epochs, run.freeze_epochs,
                              size_at=run.resolution.size_at)
    unpositioned = legs.why_unpositioned(train_plan)
    train = None  # no legs: killed after its last step, the run only finishes
    if fits:
        train = train_input(run, train_plan, fits[0], legs.start_batch_for(
            fits[0], unpositioned, run.train_split, resumed=state.step > 0))
    return Inputs(train, val, steps_per_epoch, val_steps, fits, unpositioned, train_plan)


def train_input(run: Run, plan: ReadPlan, leg: legs.Leg, start_batch: int):
    """The run's stream of batches from `start_batch`, at `leg`'s image size: epochs are
    steps_per_epoch of it, and one iterator serves every epoch of a fit."""
    spec = run.resolution.train_augment(plan.options.augment, leg.initial_epoch)
    if run.resolution.any_size:
        log.info("epochs %d-%d: training at %dx%d", leg.initial_epoch + 1, leg.epochs,
                 leg.image_size, leg.image_size)
    return distribute.make_input(run.strategy, plan.from_batch(start_batch, spec),
                                 run.batch_size, labels=targets.training_labels(run.manifest))


def readable_batches(plan: ReadPlan, batch_size: int) -> int:
    return batches_per_epoch(readable_records(plan), batch_size, plan.training)


def build_model(run: Run, network: ModelSettings, optimizer: OptimizerSettings) -> keras.Model:
    """The ResNet for the manifest's classes and images, compiled, under the run's strategy."""
    manifest = run.manifest
    log.info("training %s: %d images in %d steps of %d per epoch, %d epochs, peak lr %.4g, "
             "%d replica(s), %s", run.data_dir, manifest.split(run.train_split).count,
             run.steps_per_epoch, run.batch_size, run.epochs,
             optimizer.peak_learning_rate(run.batch_size),
             run.strategy.num_replicas_in_sync, run.policy)
    schedule = optimizer.schedule(run.batch_size, run.steps_per_epoch, run.epochs)
    with run.strategy.scope():
        net = backbones.build_network(network, manifest)
        loss, metrics = targets.loss_and_metrics(manifest, optimizer.label_smoothing)
        net.compile(
            optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=optimizer.momentum),
            loss=loss, metrics=metrics, steps_per_execution=1,
        )
        if isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            distribute.work_around_keras_multi_worker(
                net, run.batch_size // run.strategy.num_replicas_in_sync, manifest)
        if backbones.backbone_of(net) is not None:
            # Every variable the run will ever train gets its optimizer slots now, while the
            # backbone is trainable: freezing it for some epochs then only skips them.
            net.optimizer.build(net.trainable_variables)
    return net


def fit(net: keras.Model, run: Run, inputs: Inputs, timer: InputTimer,
        run_callbacks: Sequence[keras.callbacks.Callback], *, verbose: int | str):
    """model.fit from the state's step to the last epoch, timed: (epochs trained, seconds).
    A damaged shard is named."""
    timer.instrument(net)
    started, epochs_trained = time.perf_counter(), 0
    for number, leg in enumerate(inputs.legs):
        legs.set_frozen(net, leg.frozen)
        train = inputs.train if number == 0 else train_input(
            run, inputs.train_plan, leg, legs.start_batch_for(
                leg, inputs.unpositioned, run.train_split, resumed=True))
        try:
            history = net.fit(
                train, initial_epoch=leg.initial_epoch,
                epochs=leg.epochs, steps_per_epoch=leg.steps_per_epoch,
                validation_data=inputs.val, validation_steps=inputs.val_steps,
                callbacks=list(run_callbacks), verbose=verbose,
                shuffle=False,  # make_dataset shuffles; Keras cannot shuffle a dataset
            )
        except tf.errors.OpError as err:
            stored = {run.manifest.stored_split(name) for name in (run.train_split,
                                                                     run.val_split)}
            raise damage.named_damage(run.data_dir, sorted(stored), err) from err
        epochs_trained += len(history.epoch)
    return epochs_trained, time.perf_counter() - started
