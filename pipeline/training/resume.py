"""Where a run starts: from scratch, or exactly where its last checkpoint left it.

A run is a stream of batches (the reader's start_batch counts them across epochs) and a
step count. Continuing at step S means: the weights and optimizer state of step S, the
batches from S on, and the epochs cut where an uninterrupted run cuts them. Keras fit has no
"initial step", so a run resumed inside epoch E trains the rest of E as a fit of its own
(`Leg`), then the epochs after it.

With `deterministic=True` (op determinism, and an input that is a pure function of the
step) the result is bit-identical to a run that was never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable

import keras
import tensorflow as tf

from pipeline.dataset import ReadOptions, ReadPlan
from pipeline.training import backbones, checkpoints, run_files
from pipeline.training.checkpoints import RunState
from pipeline.training.settings import ModelSettings, OptimizerSettings, TrainingError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Leg:
    """One model.fit call: `epochs` (Keras' meaning: the epoch to stop before) from
    `initial_epoch`, `steps_per_epoch` each, reading the run's batches from `start_batch`;
    `frozen`: with the backbone frozen (the first freeze_epochs epochs)."""

    start_batch: int
    initial_epoch: int
    epochs: int
    steps_per_epoch: int
    frozen: bool = False
    image_size: int | None = None  # the side it trains at, when the run changes sizes


def training_legs(step: int, steps_per_epoch: int, epochs: int, freeze_epochs: int = 0,
                  size_at: Callable[[int], int] | None = None) -> list[Leg]:
    """The fits that take a run from `step` to the end of `epochs`: the rest of a partial
    epoch, then whole ones, cut where the backbone's freeze ends and where the training image
    size `size_at(epoch)` changes."""
    def phase(epoch):
        return epoch < freeze_epochs, None if size_at is None else size_at(epoch)

    epoch, within = divmod(step, steps_per_epoch)
    legs = []
    if within and epoch < epochs:
        legs.append(Leg(step, epoch, epoch + 1, steps_per_epoch - within, *phase(epoch)))
        epoch += 1
    while epoch < epochs:
        stop = epoch + 1
        while stop < epochs and phase(stop) == phase(epoch):
            stop += 1
        legs.append(Leg(epoch * steps_per_epoch, epoch, stop, steps_per_epoch, *phase(epoch)))
        epoch = stop
    return legs


def set_frozen(net: keras.Model, frozen: bool) -> None:
    """Freeze or unfreeze a keras.applications backbone (nothing for our ResNets). Keras
    traces the train step with the trainable variables of the time, so it is traced again."""
    base = backbones.backbone_of(net)
    if base is None or base.trainable != frozen:
        return
    base.trainable = not frozen
    net.train_function = None
    log.info("backbone %s", "frozen: training the head only" if frozen else "unfrozen")


def run_settings(*, network: ModelSettings, optimizer: OptimizerSettings,
                 reading: ReadOptions, batch_size: int, epochs: int, steps_per_epoch: int,
                 train_split: str, policy: str, augment_on_device: bool,
                 deterministic: bool, resolution=None) -> dict[str, Any]:
    """The run's settings as JSON values: what a checkpoint is checked against."""
    augment = network.augment if augment_on_device else reading.augment
    sizes = {} if resolution is None else {
        name: value for name, value in dataclasses.asdict(resolution).items() if name != "stored"}
    return json.loads(json.dumps({
        **sizes,
        **{name: value for name, value in dataclasses.asdict(network).items()
           if name != "augment"},
        **dataclasses.asdict(optimizer),
        "augment": augment if augment is None or isinstance(augment, str) else list(augment),
        "augment_on_device": augment_on_device, "cache": reading.cache,
        "access": reading.access, "batch_size": batch_size, "epochs": epochs,
        "steps_per_epoch": steps_per_epoch, "train_split": train_split, "policy": policy,
        "deterministic": deterministic, "fold": reading.fold,
    }))


def load_state(workdir: str, settings: dict[str, Any]) -> RunState:
    """The state to start from: the checkpoint's (checked against `settings`), or a new one."""
    state = checkpoints.read_state(workdir)
    if state is None:
        return RunState(settings=settings)
    checkpoints.check_resume(state, settings, workdir)
    more = settings["epochs"] > state.epochs_done and state.finished
    if more:
        log.info("%s finished %d epochs; training on to %d (the learning-rate schedule is "
                 "that of %d epochs from here on)", workdir, state.epochs_done,
                 settings["epochs"], settings["epochs"])
    state.finished = state.finished and not more
    state.settings = settings
    return state


def is_done(state: RunState, epochs: int, workdir: str) -> bool:
    """Finished with these epochs, its metrics there (else the rerun finishes it again)."""
    return (state.finished and state.epochs_done == epochs
            and os.path.exists(os.path.join(workdir, run_files.METRICS_FILE)))


def restore(net: keras.Model, state: RunState, workdir: str,
            strategy: tf.distribute.Strategy, steps_per_epoch: int) -> None:
    """Put the checkpoint's weights and optimizer state into `net`; note the resume."""
    if state.weights is None:
        return
    if not net.optimizer.built:
        with strategy.scope():
            net.optimizer.build(net.trainable_variables)
    net.load_weights(os.path.join(checkpoints.checkpoint_dir(workdir), state.weights))
    checkpoints.set_seed_states(net, state.seed_states)
    epoch, within = divmod(state.step, steps_per_epoch)
    state.resumes.append({"epoch": epoch, "step": within})
    log.info("resuming %s at step %d (epoch %d, batch %d of %d)", workdir, state.step, epoch,
             within, steps_per_epoch)


def begin(workdir: str, state: RunState, data_dir: str, manifest, before_training) -> None:
    """What a run writes before its first step (nothing is written before this): the workdir,
    run.json, what `before_training` writes (train.py's config.gin), the logs so far."""
    os.makedirs(checkpoints.checkpoint_dir(workdir), exist_ok=True)
    run_files.write_run_file(workdir, data_dir, manifest)
    if before_training is not None:
        before_training()
    checkpoints.publish(workdir, state)
    run_files.write_train_log(workdir, state.rows)


def why_unpositioned(plan: ReadPlan) -> str | None:
    """None when the plan's training reads can start at any batch (random access, the
    table); else why not (a streamed split), which deterministic=True refuses."""
    if plan.positioned:
        return None
    if plan.options.deterministic:
        raise TrainingError(f"deterministic=True needs an input read by position, and "
                            f"{plan.split!r} is streamed: {plan.access.reason}")
    return plan.access.reason


def start_batch_for(leg: Leg, unpositioned: str | None, split: str, resumed: bool) -> int:
    """The leg's first batch where the reader can find it; a streamed split cannot be
    positioned (`unpositioned` says why), so a resumed run reads it from its start."""
    if unpositioned is None or leg.start_batch == 0:
        return leg.start_batch
    if resumed:
        log.warning("split %r is streamed (%s): the resumed run continues at its step with "
                    "batches in a new order, not those an uninterrupted run would read",
                    split, unpositioned)
    return 0


def save_every(every_steps: int | None, strategy: tf.distribute.Strategy) -> int | None:
    """The checkpoint schedule a strategy allows. Several workers each save into their own
    workdir and must save at the same steps, which one clock per worker cannot promise: there
    the time-based default saves at epoch ends only."""
    if every_steps is None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        log.info("several workers: checkpoints at epoch ends (set checkpoint_every_steps to "
                 "save inside epochs)")
        return 0
    return every_steps


def enable_determinism() -> None:
    """Op determinism: the same inputs give bit-identical results (slower on a GPU: some
    kernels switch to deterministic algorithms, and cuDNN's autotuning is off)."""
    tf.config.experimental.enable_op_determinism()
