"""The callbacks of a run: what each epoch adds to the logs, and what saves them.

The run's state (weights, optimizer, step, epoch logs, best epoch) goes to checkpoints/
through checkpoints.StepCheckpoint, which also rewrites train_log.csv from it; TensorBoard
gets the same epochs, numbered across resumes, and InputVerdictSummary puts the input
pipeline's verdict in words and a page of the scalars that matter first where a user looks.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import keras
import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary

from pipeline.training.checkpoints import StepCheckpoint
from pipeline.training.distribute import AverageMovingStatistics
from pipeline.training.run_files import TENSORBOARD_DIR
from pipeline.training.timing import InputTimer, input_verdict

log = logging.getLogger(__name__)

# Without a progress bar, the step after which an epoch's time is estimated (the first
# compiles, so the rate is taken from the ones after it).
ESTIMATE_AFTER_STEPS = 10

# TensorBoard's run (a folder under tensorboard/) for the verdict, beside Keras's train/ and
# validation/: one writer per folder, as TensorBoard reads only a folder's newest event file
# as it grows.
VERDICT_RUN = "input_pipeline"
VERDICT_TAG = "input_pipeline/verdict"
# The Custom Scalars tab's page: (title, tag regex) of Keras's epoch scalars.
PINNED_CHARTS = (("images per second", r"epoch_images_per_second"),
                 ("share of step time waiting for input", r"epoch_input_wait_fraction"),
                 ("loss (train and validation)", r"epoch_loss"),
                 ("accuracy (train and validation)", r"epoch_accuracy"),
                 # multi-label datasets (pipeline.training.targets)
                 ("F1 at the tuned threshold (train and validation)", r"epoch_f1"))


def progress_verbosity(verbose: int | str, stream=None) -> int:
    """model.fit's verbosity: "auto" is a progress bar with ETA (1) on a terminal and one line
    per epoch (2) otherwise. Keras's own "auto" draws the bar everywhere on Linux (it treats
    any POSIX system as an interactive display), filling a log file with redrawn lines."""
    if verbose != "auto":
        return int(verbose)
    stream = stream or sys.stdout
    return 1 if hasattr(stream, "isatty") and stream.isatty() else 2


def make_callbacks(workdir: str, timer: InputTimer, profile_batches,
                   checkpoint: StepCheckpoint,
                   strategy: tf.distribute.Strategy | None = None, *,
                   milestones: bool = False, progress: bool = False) -> list:
    """In order: the callbacks that add to the epoch's logs run before those that save them.
    `milestones`: log the first step's and an epoch's time (when no progress bar shows);
    `progress`: Keras's progress bar or epoch lines, counted as the run counts (RunProgress)."""
    replicas = strategy.num_replicas_in_sync if strategy else 1
    return [
        *([StepMilestones(checkpoint.steps_per_epoch)] if milestones else []),
        *([AverageMovingStatistics(strategy)] if replicas > 1 else []),
        LearningRateLogger(),
        timer,
        keras.callbacks.TerminateOnNaN(),
        checkpoint,
        EpochsDoneTensorBoard(os.path.join(workdir, TENSORBOARD_DIR),
                              profile_batch=profile_batches),
        InputVerdictSummary(os.path.join(workdir, TENSORBOARD_DIR)),
        *([RunProgress(checkpoint.epochs, checkpoint.steps_per_epoch)] if progress else []),
    ]


class EpochsDoneTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard with an epoch's scalars at the count of epochs done: epoch 1's at
    step 1, where InputVerdictSummary's "epoch 1" text is (Keras writes them at its 0-based
    epoch index, so the text and the scalars it describes sat one step apart)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar and `Epoch 3/4` lines, counted as the run counts. A run is cut
    into several fits (the rest of an epoch it resumed inside, the epochs with the backbone
    frozen, then the others: legs.Leg), and Keras counts each fit's own epochs and steps: a
    run of 4 epochs resumed in its third printed `Epoch 3/3` and a bar to the steps left;
    here it is `Epoch 3/4` and the bar goes on from the step it resumed at."""

    def __init__(self, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.run_epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.skipped = 0  # the steps of the fit's first epoch trained before it resumed

    def set_params(self, params):
        super().set_params(params)
        steps = params.get("steps")
        self.skipped = self.steps_per_epoch - steps if steps else 0
        self.epochs = self.run_epochs
        self.target = self.steps_per_epoch if steps else self.target

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch + self.skipped, logs)

    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = ResumedProgbar(self.skipped, target=self.target,
                                          verbose=self.verbose, unit_name="step",
                                          stateless_metrics=set())


class ResumedProgbar(keras.utils.Progbar):
    """Keras's bar for an epoch whose first `skipped` steps ran before a resume: the time per
    step (and so the ETA) from the steps this bar saw, not from all it shows as done."""

    def __init__(self, skipped: int, **kwargs):
        super().__init__(**kwargs)
        self.skipped = skipped

    def _estimate_step_duration(self, current, now):
        return super()._estimate_step_duration(max(current - self.skipped, 0), now)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch's logs (CSV, TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))


class InputVerdictSummary(keras.callbacks.Callback):
    """Per epoch, a text summary (TensorBoard's Text tab, run `input_pipeline`, at step N for
    epoch N) saying the epoch's img/s, input-wait share and the verdict in words; once per
    run, a Custom Scalars layout that puts img/s, input wait, loss and accuracy on one page. The scalars alone are a
    collapsed card among many, reading 1.8e-4."""

    def __init__(self, logdir: str):
        super().__init__()
        self.logdir = logdir
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(os.path.join(self.logdir, VERDICT_RUN))
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(
                custom_scalar_summary.pb(pinned_layout()).SerializeToString(), step=0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        with self._writer.as_default():
            # At the count of epochs done, "epoch 1" at step 1, where EpochsDoneTensorBoard
            # puts the scalars it describes.
            tf.summary.text(VERDICT_TAG, verdict_text(epoch, logs), step=epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        self._writer.close()


def verdict_text(epoch: int, logs: dict) -> str:
    """`epoch 3: 12,345 img/s, 2% of step time waiting for input; not input-bound: ...`."""
    rate, wait = logs.get("images_per_second"), logs.get("input_wait_fraction")
    measured = (f"{rate:,.0f} img/s, {100 * wait:.0f}% of step time waiting for input"
                if rate is not None and wait is not None else "not measured")
    return f"epoch {epoch + 1}: {measured}; {input_verdict(wait)}"


def pinned_layout() -> layout_pb2.Layout:
    """The Custom Scalars page: the input pipeline's charts first, then loss and accuracy."""
    charts = [layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(
        tag=[tag])) for title, tag in PINNED_CHARTS]
    return layout_pb2.Layout(category=[layout_pb2.Category(
        title="input pipeline and training (pipeline.training)", chart=charts)])


class StepMilestones(keras.callbacks.Callback):
    """What a run without a progress bar is doing before its first epoch line (28-74 s on a
    CPU): that the first step compiles, how long it took, and how long an epoch will take:
    `steps_per_epoch` steps, not the fit's (a resumed run's first fit is the epoch's rest)."""

    def __init__(self, steps_per_epoch: int | None = None):
        super().__init__()
        self._steps_per_epoch = steps_per_epoch
        self._started = self._first_end = None
        self._done = False

    def on_train_begin(self, logs=None):
        log.info("first step: tracing and compiling the model, filling the input pipeline")
        self._started, self._first_end, self._done = time.perf_counter(), None, False

    def on_train_batch_end(self, batch, logs=None):
        if self._done:
            return
        now, steps = time.perf_counter(), self.params.get("steps") or 0
        if self._first_end is None:
            self._first_end = now
            log.info("first step done in %.1f s", now - self._started)
            self._done = steps <= 1
        elif batch >= min(ESTIMATE_AFTER_STEPS, steps - 1):
            per_step = (now - self._first_end) / batch
            per_epoch = self._steps_per_epoch or steps
            log.info("%.2f s per step: about %.0f s per epoch of %d steps", per_step,
                     per_step * per_epoch, per_epoch)
            self._done = True
