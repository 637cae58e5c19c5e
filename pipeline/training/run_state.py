"""The run's state across its lives (checkpoints.RunState): the settings a checkpoint is
checked against (run_settings), the state a run starts from (load_state; is_done: a finished
run only returns its metrics), what a run writes before its first step (begin) and the
checkpoint's weights put back into the model (restore).

checkpoints.py owns the files (state.json and the weights, saved atomically); this module
decides what a run does with them. Which fits then take the run from its step to its end is
legs.py's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import keras
import tensorflow as tf

from pipeline.dataset import ReadOptions
from pipeline.training import checkpoints, run_files
from pipeline.training.checkpoints import RunState
from pipeline.training.settings import ModelSettings, OptimizerSettings

log = logging.getLogger(__name__)


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
