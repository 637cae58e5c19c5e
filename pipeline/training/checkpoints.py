"""Step-level checkpoints: a killed run continues at the step it was at, and no file is lost.

    checkpoints/state.json         the commit point (RunState): the global step, the weights
                                   file of that step, the epoch logs, the best epoch, where
                                   the run resumed, the settings the weights belong to
    checkpoints/ckpt-<step>.weights.h5   weights and optimizer state (Keras save_weights) at
                                   a step: the newest, the last epoch end's and the best
                                   epoch's are kept, no others
    checkpoints/last.weights.h5    hard links to the last epoch end's and the best epoch's
    checkpoints/best.weights.h5    files (what predict --weights=last|best reads), made
                                   again from state.json by every run

A save writes the weights under a temporary name, fsyncs and renames them, then replaces
state.json atomically, then links and prunes. A kill at any moment leaves a state.json that
names complete files, and the same command continues from it. With the reader's start_batch
the input's whole position is the step, so the state holds no iterator.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import time
from typing import Any

import keras
import numpy as np

from pipeline.core import files
from pipeline.training.run_files import CHECKPOINT_DIR, STATE_FILE
from pipeline.training.settings import TrainingError

log = logging.getLogger(__name__)

STATE_FORMAT = 1
WEIGHTS_SUFFIX = ".weights.h5"
LAST_WEIGHTS = "last" + WEIGHTS_SUFFIX
BEST_WEIGHTS = "best" + WEIGHTS_SUFFIX
_CHECKPOINT = re.compile(r"^ckpt-\d+" + re.escape(WEIGHTS_SUFFIX) + "$")


@dataclasses.dataclass
class RunState:
    """What a run has done, as of its last save. JSON in checkpoints/state.json."""

    settings: dict[str, Any]  # what the weights mean something under (see compare_settings)
    step: int = 0  # batches trained, counted across epochs
    weights: str | None = None  # the file holding the weights and optimizer at `step`
    last: str | None = None  # the file of the last epoch end
    best: dict[str, Any] | None = None  # {"value", "epoch", "weights"}: the best epoch so far
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one per epoch
    resumes: list[dict[str, int]] = dataclasses.field(default_factory=list)
    # The epoch's metric accumulators at a mid-epoch save (a list for a vector of them).
    metrics: list[Any] | None = None
    seed_states: list[list[int]] | None = None  # the model's SeedGenerators (see below)
    saves: int = 0
    save_seconds: float = 0.0
    finished: bool = False  # model.keras, export/ and metrics.json are written

    @property
    def epochs_done(self) -> int:
        return len(self.rows)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, CHECKPOINT_DIR)


def read_state(workdir: str) -> RunState | None:
    """The run's last committed state, or None before its first save."""
    path = os.path.join(checkpoint_dir(workdir), STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise TrainingError(f"{path} cannot be read ({err}): it was not written by train.py; "
                            "remove the workdir to train from scratch") from err
    if data.pop("format", None) != STATE_FORMAT:
        raise TrainingError(f"{path} is of another format; use another --workdir")
    return RunState(**data)


def write_state(workdir: str, state: RunState) -> None:
    data = {"format": STATE_FORMAT, **dataclasses.asdict(state)}
    files.atomic_write_text(os.path.join(checkpoint_dir(workdir), STATE_FILE),
                            json.dumps(data, indent=1) + "\n")


def save_weights(model: keras.Model, path: str) -> float:
    """model.save_weights (weights and optimizer state) to `path`, atomically; the seconds.

    The room is checked first: h5py meeting a full disk in the middle of a save does not
    raise cleanly, it spirals through failing destructors into a segmentation fault (seen on
    a full tmpfs), so a save that would not fit is refused with ENOSPC before it starts.
    """
    needed = checkpoint_bytes(model)
    free = shutil.disk_usage(os.path.dirname(path) or ".").free
    if free < needed:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a checkpoint takes about "
                      f"{needed:,} bytes, {free:,} are free)", path)
    started = time.perf_counter()
    with files.atomic_path(path, WEIGHTS_SUFFIX) as temporary:
        model.save_weights(temporary)
    return time.perf_counter() - started


# A checkpoint's bytes beyond its variables' (HDF5's metadata), and a margin over the sum.
CHECKPOINT_OVERHEAD_BYTES = 1 << 20
CHECKPOINT_MARGIN = 1.25


def checkpoint_bytes(model: keras.Model) -> int:
    """About what save_weights writes: every weight and optimizer variable, with a margin."""
    variables = list(model.weights)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    raw = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(raw * CHECKPOINT_MARGIN) + CHECKPOINT_OVERHEAD_BYTES


def publish(workdir: str, state: RunState) -> None:
    """Make last/best.weights.h5 the state's files again, and remove every other file: what a
    killed save left half-written, and checkpoints the state no longer names."""
    folder = checkpoint_dir(workdir)
    if not os.path.isdir(folder):
        return
    for public, name in ((LAST_WEIGHTS, state.last),
                         (BEST_WEIGHTS, (state.best or {}).get("weights"))):
        if name is not None:
            files.atomic_link(os.path.join(folder, name), os.path.join(folder, public))
    keep = {state.weights, state.last, (state.best or {}).get("weights")}
    for entry in os.scandir(folder):
        if ((_CHECKPOINT.match(entry.name) and entry.name not in keep)
                or files.is_temp_path(entry.name)):
            os.remove(entry.path)


# ---------------------------------------------------------------------------------------------
# Whether a checkpoint belongs to this run
# ---------------------------------------------------------------------------------------------

# Settings whose change makes the saved weights or the saved position mean something else:
# a rerun that changes one is refused. The others may change (the run continues with the new
# value, and is then no longer what an uninterrupted run would have been).
MUST_MATCH = ("backbone", "depth", "width", "stem", "input_pool", "data_format", "policy",
              "batch_size", "seed", "train_split", "steps_per_epoch", "augment_on_device", "fold")


def compare_settings(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list, list]:
    """(refused, changed): 'name: saved -> current' for the settings that differ."""
    refused, changed = [], []
    for name in sorted(set(saved) | set(current)):
        if name == "epochs" or saved.get(name) == current.get(name):
            continue
        line = f"{name}: {saved.get(name)!r} -> {current.get(name)!r}"
        (refused if name in MUST_MATCH else changed).append(line)
    return refused, changed


def check_resume(state: RunState, settings: dict[str, Any], workdir: str) -> None:
    """Refuse a rerun whose settings make the checkpoint meaningless, or that asks for fewer
    epochs than were trained; log the settings that changed harmlessly."""
    refused, changed = compare_settings(state.settings, settings)
    if refused:
        raise TrainingError(
            f"{workdir} holds a run with other settings ({'; '.join(refused)}): its "
            "checkpoint cannot continue with these. Set them back, or use another --workdir")
    if settings["epochs"] < state.epochs_done:
        raise TrainingError(
            f"{workdir} has trained {state.epochs_done} epochs, more than epochs="
            f"{settings['epochs']}; set epochs>={state.epochs_done}, or use another --workdir")
    for line in changed:
        log.warning("changed since the checkpoint, continuing with the new value: %s", line)


# ---------------------------------------------------------------------------------------------
# Saving as the run goes
# ---------------------------------------------------------------------------------------------

# The time-based default spends at most this share of the run's time on its saves: after a
# save that took s seconds the next waits s / SAVE_SHARE, and at least MIN_SAVE_INTERVAL_S.
# (Measured: a ResNet-50's weights and momentum, 195 MiB, save and fsync in 0.7-0.84 s, so
# one save every ~40 s.)
SAVE_SHARE = 0.02
MIN_SAVE_INTERVAL_S = 10.0


class SaveSchedule:
    """When to save besides the last epoch and the best ones (StepCheckpoint): every
    `every_steps` steps and every epoch end; 0: every epoch end only; None: by time, at most
    SAVE_SHARE of it, at a step or an epoch end."""

    def __init__(self, every_steps: int | None, clock=time.monotonic):
        if every_steps is not None and (isinstance(every_steps, bool)
                                        or not isinstance(every_steps, int) or every_steps < 0):
            raise TrainingError(f"checkpoint_every_steps={every_steps!r}: a number of steps "
                                "(0: only at epoch ends), or None to save by time")
        self.every_steps, self._clock = every_steps, clock
        self._last, self._cost = clock(), 0.0

    def due(self, step: int) -> bool:
        if self.every_steps is not None:
            return self.every_steps > 0 and step % self.every_steps == 0
        waited = self._clock() - self._last
        return waited >= max(MIN_SAVE_INTERVAL_S, self._cost / SAVE_SHARE)

    def saved(self, seconds: float) -> None:
        self._last, self._cost = self._clock(), seconds


class StepCheckpoint(keras.callbacks.Callback):
    """Saves the run's state (RunState) at epoch ends and between them as `schedule` says;
    in a run resumed mid-epoch, puts back the epoch's metric accumulators, so that the epoch's
    logged loss and accuracy are those of the whole epoch."""

    def __init__(self, workdir: str, state: RunState, *, steps_per_epoch: int, epochs: int,
                 schedule: SaveSchedule, monitor: str = "val_accuracy",
                 keep_metrics: bool = True, write_logs=None, lower_is_better: bool = False):
        super().__init__()
        self.workdir, self.state, self.schedule = workdir, state, schedule
        self.steps_per_epoch, self.epochs, self.monitor = steps_per_epoch, epochs, monitor
        self.lower_is_better = lower_is_better  # the monitored value (an error, say)
        # Metric variables are summed across replicas when read: with several replicas an
        # epoch's logs after a resume cover the steps since it.
        self.keep_metrics = keep_metrics
        self.write_logs = write_logs  # at every epoch end: rewrite train_log.csv

    def on_train_begin(self, logs=None):
        saved = self.state.metrics
        # Restored after the first step of a run resumed mid-epoch, not before: Keras builds
        # the compiled metrics' variables in that step.
        self._restore = (saved if self.keep_metrics and saved is not None
                         and self.state.step % self.steps_per_epoch else None)

    def on_train_batch_end(self, batch, logs=None):
        if self._restore is not None:
            add_metric_state(self.model, self._restore)
            self._restore = None
        self.state.step += 1
        if self.state.step % self.steps_per_epoch and self.schedule.due(self.state.step):
            self._save(epoch=self.state.step // self.steps_per_epoch, logs=None)

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        self.state.rows.append({"epoch": epoch, **logs})
        if self._saves_epoch_end(epoch, logs):
            self._save(epoch=epoch, logs=logs)
        if self.write_logs is not None:  # the logs so far; a rerun rewrites them from state
            self.write_logs(self.state)

    def _saves_epoch_end(self, epoch: int, logs: dict) -> bool:
        """The last epoch, an epoch better than the best (best.weights.h5 must be it), every
        epoch end with checkpoint_every_steps set; by default the others as the time
        budget allows (short epochs would otherwise spend more than it on saves)."""
        return (self._improves(logs) or epoch + 1 == self.epochs
                or self.schedule.every_steps is not None or self.schedule.due(self.state.step))

    def _improves(self, logs: dict) -> bool:
        value, best = logs.get(self.monitor), self.state.best
        if value is None or best is None:
            return value is not None
        return value < best["value"] if self.lower_is_better else value > best["value"]

    def save_now(self) -> None:
        """Save at the current step unless it is saved already: a step inside an epoch as the
        schedule saves one, an epoch's end as on_epoch_end does (pipeline.training.interrupt)."""
        state = self.state
        if state.step == 0 or state.weights == checkpoint_name(state.step):
            return
        epoch, within = divmod(state.step, self.steps_per_epoch)
        if within:
            self._save(epoch=epoch, logs=None)
        elif state.rows:
            self._save(epoch=epoch - 1, logs={name: value for name, value in
                                              state.rows[-1].items() if name != "epoch"})

    def _save(self, *, epoch: int, logs: dict | None) -> None:
        state = self.state
        name = checkpoint_name(state.step)
        seconds = save_weights(self.model, os.path.join(checkpoint_dir(self.workdir), name))
        state.weights, state.seed_states = name, seed_states(self.model)
        if logs is None:  # mid-epoch: the epoch's running metrics go with the step
            state.metrics = ([np.float32(keras.ops.convert_to_numpy(v)).tolist()
                              for v in self.model.metrics_variables]
                             if self.keep_metrics else None)
        else:
            if self._improves(logs):
                state.best = {"value": logs[self.monitor], "epoch": epoch, "weights": name}
            state.last, state.metrics = name, None
        state.saves += 1
        state.save_seconds += seconds
        write_state(self.workdir, state)
        publish(self.workdir, state)
        self.schedule.saved(seconds)
        epoch, within = divmod(state.step, self.steps_per_epoch)
        where = (f"end of epoch {epoch - 1}" if within == 0
                 else f"epoch {epoch}, batch {within} of {self.steps_per_epoch}")
        log.info("checkpoint at step %d (%s): saved in %.2f s", state.step, where, seconds)


def checkpoint_name(step: int) -> str:
    """The weights file of the checkpoint at `step`."""
    return f"ckpt-{step:09d}{WEIGHTS_SUFFIX}"


def add_metric_state(model: keras.Model, saved: list[Any]) -> None:
    """Add the saved accumulators to those of one step. Keras's mean metrics (loss, accuracy)
    hold running sums (total, count), and the multi-label ones counts (targets.ThresholdF1,
    AUC's confusion counts), so saved + this step's is, in float32, the very sum an
    uninterrupted epoch holds after the same steps."""
    variables = model.metrics_variables
    if len(variables) != len(saved) or any(np.shape(value) != tuple(v.shape)
                                           for v, value in zip(variables, saved)):
        log.warning("the metrics changed since the checkpoint: this epoch's logs cover the "
                    "steps since it")
        return
    for variable, value in zip(variables, saved):
        current = np.float32(keras.ops.convert_to_numpy(variable))
        variable.assign(np.float32(value) + current)


def _seed_generators(model: keras.Model) -> list:
    layers = model._flatten_layers(include_self=True, recursive=True)
    return [generator for layer in layers
            for generator in getattr(layer, "_seed_generators", [])]


def seed_states(model: keras.Model) -> list[list[int]]:
    """The states of the model's random-number generators (DevicePreprocess draws each
    step's augmentation seed from one). save_weights writes them but load_weights does not
    put them back (Keras 3.15), so the state carries them."""
    return [keras.ops.convert_to_numpy(g.state).tolist() for g in _seed_generators(model)]


def set_seed_states(model: keras.Model, states: list[list[int]] | None) -> None:
    generators = _seed_generators(model)
    if states is None or len(states) != len(generators):
        return
    for generator, value in zip(generators, states):
        generator.state.assign(np.asarray(value, dtype=generator.state.dtype))
