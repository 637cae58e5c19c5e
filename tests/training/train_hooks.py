"""Gin-configurable callbacks that tests put into train.py runs (`import
tests.training.train_hooks` in a gin file). Not part of the project: they exist to crash a run
on purpose."""

import os
import signal

import gin
import keras


@gin.configurable
class SigkillAt(keras.callbacks.Callback):
    """SIGKILLs this process when `batch` of `epoch` (both 0-based) starts: no cleanup, no
    flushing, as a power cut or the kernel's OOM killer would."""

    def __init__(self, epoch: int = gin.REQUIRED, batch: int = 0):
        super().__init__()
        self.epoch, self.batch = epoch, batch
        self._current = None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._current == self.epoch and batch == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
