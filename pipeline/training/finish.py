"""The end of a run: the final evaluation, model.keras, the SavedModel and metrics.json, each
written atomically (a kill leaves the previous version, and the rerun finishes again), and the
rerun of a finished run, which trains nothing. Each long step (the SavedModel export takes
40-66 s for a ResNet-50 on a CPU) says what it does before it starts and how long it took."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any

import keras
import tensorflow as tf

from pipeline.core import files
from pipeline.training import checkpoints, run_files, targets
from pipeline.training.start import Run
from pipeline.training.timing import InputTimer, input_verdict

log = logging.getLogger(__name__)


def finish_run(net: keras.Model, run: Run, val, val_steps: int, timer: InputTimer,
               state: checkpoints.RunState, *, epochs_this_run: int,
               seconds: float) -> dict[str, Any]:
    """Evaluate on `val` (`val_steps` batches), save the model and the SavedModel, write
    metrics.json; returns the metrics."""
    with timed(f"final evaluation on {run.val_split!r} ({val_steps} steps)"):
        evaluation = net.evaluate(val, steps=val_steps, return_dict=True, verbose=0)
    model_file = os.path.join(run.workdir, run_files.MODEL_FILE)
    with timed(f"saving {model_file}"), files.atomic_path(model_file, ".keras") as path:
        net.save(path)
    export_dir = os.path.join(run.workdir, run_files.EXPORT_DIR)
    with timed(f"exporting the SavedModel to {export_dir}"), \
            files.staged_directory(export_dir) as staging, tensorflow_logs_at(logging.WARNING):
        # Its INFO lines (renamed inputs, sharding callbacks, assets, fingerprint) are six of
        # a smoke run's twenty.
        net.export(staging, verbose=False)
    headline = targets.monitor(run.manifest)
    metrics = {
        headline: float(evaluation[headline.removeprefix("val_")]),
        **targets.val_metrics(run.manifest, evaluation),
        "epochs": run.epochs,
        "epochs_this_run": epochs_this_run,
        "images_per_second": timer.last_images_per_second,
        "input_wait_fraction": timer.last_wait_fraction,
        "seconds": seconds,
        "batch_size": run.batch_size,
        "replicas": run.strategy.num_replicas_in_sync,
        "mixed_precision": run.policy,
        "input_verdict": input_verdict(timer.last_wait_fraction),
        "resumes": state.resumes,
        "best_epoch": (state.best or {}).get("epoch"),
        "checkpoints": state.saves,
        "checkpoint_seconds": state.save_seconds,
    }
    files.atomic_write_text(os.path.join(run.workdir, run_files.METRICS_FILE),
                            json.dumps(metrics, indent=2) + "\n")
    state.finished = True
    checkpoints.write_state(run.workdir, state)
    log.info("done: %s %.4f, val_loss %.4f, %.0f img/s, input wait %.0f%% (%s) -> %s",
             headline, metrics[headline], metrics["val_loss"], metrics["images_per_second"] or 0,
             100 * (metrics["input_wait_fraction"] or 0), metrics["input_verdict"], run.workdir)
    return metrics


@contextlib.contextmanager
def timed(what: str):
    """`what ...` logged before the block, `what: done in 12.3 s` after it."""
    log.info("%s ...", what)
    started = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", what, time.perf_counter() - started)


@contextlib.contextmanager
def tensorflow_logs_at(level: int):
    """Only records of `level` and above from TensorFlow's Python logging for the block: its
    own logger, and absl's, which its saving code logs through. (A filter, not setLevel: the
    export resets the absl logger's level.)"""
    loggers = [tf.get_logger(), logging.getLogger("absl")]
    below = _BelowLevel(level)
    for logger in loggers:
        logger.addFilter(below)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(below)


class _BelowLevel(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def finished_metrics(run: Run, state: checkpoints.RunState) -> dict[str, Any]:
    """A rerun of a finished run: nothing to train; its files made whole again, its metrics."""
    checkpoints.publish(run.workdir, state)
    run_files.write_train_log(run.workdir, state.rows)
    with open(os.path.join(run.workdir, run_files.METRICS_FILE), encoding="utf-8") as f:
        metrics = json.load(f)
    headline = targets.monitor(run.manifest)
    log.info("%s has finished its %d epochs: nothing to train (%s %.4f); more epochs "
             "continue it", run.workdir, run.epochs, headline, metrics[headline])
    return metrics
