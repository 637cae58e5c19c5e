"""The callbacks of a run: what each epoch adds to the logs, and what writes them.

Checkpoints, the CSV log and TensorBoard go to the workdir (pipeline.training.run_files);
BackupAndRestore lets a killed run resume at the epoch it was in.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from pipeline.training.distribute import AverageMovingStatistics
from pipeline.training.run_files import BACKUP_DIR, CHECKPOINT_DIR, CSV_LOG, TENSORBOARD_DIR
from pipeline.training.timing import InputTimer


def make_callbacks(workdir: str, timer: InputTimer, profile_batches,
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


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch's logs (CSV, TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
