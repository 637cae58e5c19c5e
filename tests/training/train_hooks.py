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


@gin.configurable
class SigkillAtStep(keras.callbacks.Callback):
    """SIGKILLs this process before global step `step` (0-based, counted across epochs and
    resumes by the optimizer): mid-epoch, wherever the last checkpoint was."""

    def __init__(self, step: int = gin.REQUIRED):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


@gin.configurable
class SigintAtStep(keras.callbacks.Callback):
    """Sends this process SIGINT (what Ctrl-C sends) before global step `step` (0-based)."""

    def __init__(self, step: int = gin.REQUIRED):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@gin.configurable
class SigkillDuringSave(keras.callbacks.Callback):
    """From `epoch` on, the `nth` weights file Keras writes is cut to 96 bytes and the process
    SIGKILLed: what a kill in the middle of writing a checkpoint leaves."""

    def __init__(self, epoch: int = gin.REQUIRED, nth: int = 1):
        super().__init__()
        self.epoch, self.nth = epoch, nth

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        save_weights, calls = keras.Model.save_weights, []

        def cut_short(model, filepath, *args, **kwargs):
            save_weights(model, filepath, *args, **kwargs)
            calls.append(filepath)
            if len(calls) == self.nth:
                with open(filepath, "r+b") as f:
                    f.truncate(96)
                os.kill(os.getpid(), signal.SIGKILL)

        keras.Model.save_weights = cut_short
