"""The callbacks of a run: what each epoch adds to the logs, and what saves them.

The run's state (weights, optimizer, step, epoch logs, best epoch) goes to checkpoints/
through checkpoints.StepCheckpoint, which also rewrites train_log.csv from it; TensorBoard
gets the same epochs, numbered across resumes.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from pipeline.training.checkpoints import StepCheckpoint
from pipeline.training.distribute import AverageMovingStatistics
from pipeline.training.run_files import TENSORBOARD_DIR
from pipeline.training.timing import InputTimer


def make_callbacks(workdir: str, timer: InputTimer, profile_batches,
                   checkpoint: StepCheckpoint,
                   strategy: tf.distribute.Strategy | None = None) -> list:
    """In order: the callbacks that add to the epoch's logs run before those that save them."""
    replicas = strategy.num_replicas_in_sync if strategy else 1
    return [
        *([AverageMovingStatistics(strategy)] if replicas > 1 else []),
        LearningRateLogger(),
        timer,
        keras.callbacks.TerminateOnNaN(),
        checkpoint,
        keras.callbacks.TensorBoard(os.path.join(workdir, TENSORBOARD_DIR),
                                    profile_batch=profile_batches),
    ]


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch's logs (CSV, TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
