"""Ctrl-C during training: the run stops at a clean point, saved, and says how to resume.

    with interrupt.stop_on_interrupt(saver) as stop:   # around model.fit
        model.fit(dataset, callbacks=[*run_callbacks, stop])

The first SIGINT only asks to stop: the step in progress finishes, the run's state is saved
at it as the step checkpoints save it (checkpoints.StepCheckpoint), and `Interrupted` (exit
130, one line) ends the run; the same command again continues at that step
(pipeline.training.legs). A step that ends an epoch stops after the epoch's validation, so
that the epoch is logged and saved whole. A second SIGINT stops at once (KeyboardInterrupt:
the steps since the last checkpoint are lost, nothing else).

Only the main thread can take signals: elsewhere (a run started in a thread) Ctrl-C is left
as it is.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

import keras

from pipeline import errors
from pipeline.training.checkpoints import StepCheckpoint

log = logging.getLogger(__name__)


class Interrupted(errors.PipelineError):
    """The user stopped the run (Ctrl-C); it was saved at a step and can be resumed."""

    exit_code = errors.EXIT_INTERRUPTED


class StopOnInterrupt(keras.callbacks.Callback):
    """Runs after the run's checkpoint callback: once a stop is asked for, saves the state at
    the first clean point (a step's end inside an epoch, else the epoch's end) and raises
    Interrupted."""

    def __init__(self, saver: StepCheckpoint):
        super().__init__()
        self.saver = saver
        self.requested = False

    def request(self, signum=None, frame=None) -> None:
        """The SIGINT handler: the first asks to stop, the second stops now."""
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupted: stopping after this step, once it is saved (Ctrl-C again "
                    "stops at once, losing the steps since the last checkpoint)")

    def on_train_begin(self, logs=None):
        if self.requested:  # asked between two fits of the run (legs.Leg)
            self.stop_here()

    def after_training(self) -> None:
        """Asked during the last epoch's end: the run is saved there; stop all the same."""
        if self.requested:
            self.stop_here()

    def on_train_batch_end(self, batch, logs=None):
        if self.requested and self.saver.state.step % self.saver.steps_per_epoch:
            self.stop_here()

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:
            self.stop_here()

    def stop_here(self) -> None:
        """Save at the current step (unless saved there already) and raise Interrupted."""
        self.saver.save_now()
        state, per_epoch = self.saver.state, self.saver.steps_per_epoch
        epoch, within = divmod(state.step, per_epoch)
        where = (f"end of epoch {epoch - 1}" if within == 0
                 else f"epoch {epoch}, batch {within} of {per_epoch}")
        raise Interrupted(f"interrupted: saved at step {state.step} ({where}) in "
                          f"{self.saver.workdir}; the same command again resumes there")


@contextlib.contextmanager
def stop_on_interrupt(saver: StepCheckpoint):
    """The StopOnInterrupt callback for `saver`, taking SIGINT for the block (see the module
    doc); the previous handler is back after it."""
    stop = StopOnInterrupt(saver)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, stop.request)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
