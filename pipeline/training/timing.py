"""How fast a run trains and whether it waits for its input: InputTimer and the verdict.

The wait is measured where it happens: each training step fetches its batch eagerly (timed)
and then runs Keras's compiled step on it. A wait share near 0 means the input keeps up; a
large one means the accelerator idles for input (see WORKSPACE.md for what to try).
"""

from __future__ import annotations

import time
from typing import Sequence

import keras
import tensorflow as tf

from pipeline.core import schema
from pipeline.dataset import make_dataset
from pipeline.training import model as model_lib
from pipeline.training.settings import TrainingError

# Shares of step time spent waiting for input that decide the verdict.
INPUT_BOUND_WAIT = 0.2  # above: the accelerator idles a fifth of the time or more
INPUT_OK_WAIT = 0.05  # below: the input keeps up


def input_verdict(wait_fraction: float | None) -> str:
    """In plain words: is training input-bound, and which knob to try next."""
    if wait_fraction is None:
        return "input wait not measured (too few steps)"
    if wait_fraction < INPUT_OK_WAIT:
        return ("not input-bound: the input keeps up; a faster input pipeline will not speed "
                "training up")
    knobs = ("try, in this order: augment_on_device=True (the host then only reads and "
             "parses), cache='memory' if the split fits in RAM (see python -m pipeline.inspect), "
             "more shards than reader threads, then more CPUs per accelerator (tf.data service)")
    if wait_fraction < INPUT_BOUND_WAIT:
        return f"slightly input-bound: {knobs}"
    return f"input-bound: the accelerator waits for data; {knobs}"


def time_training_steps(data_dir: str, split: str, *, batch_size: int, steps_per_epoch: int,
                        seed: int, augment: str | Sequence[str] | None, cache: str | None = None,
                        mixed_precision: bool = False, to_device: str | None = None,
                        **model_options) -> "InputTimer":
    """Two epochs of `steps_per_epoch` steps of a ResNet (`model_options`: build_resnet's) on
    make_dataset, timed as train_and_evaluate times itself: the first epoch compiles, the
    returned InputTimer holds the second's images/s and input-wait share. For the bench and
    the profiler, which ask whether a model would wait for this reader. `to_device`: prefetch
    the batches into that device's memory (make_dataset's to_device)."""
    manifest = schema.read_manifest(data_dir)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        net = model_lib.build_resnet(num_classes=manifest.num_classes,
                                     image_shape=manifest.image_shape, mean=manifest.mean,
                                     std=manifest.std, **model_options)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=1)
    timer = InputTimer(batch_size)
    timer.instrument(net)
    # The run's stream from batch 0 (no .repeat(): a device prefetch must come last).
    data = make_dataset(data_dir, split, batch_size, training=True, cache=cache, seed=seed,
                        augment=augment, start_batch=0, to_device=to_device)
    net.fit(data, epochs=2, steps_per_epoch=steps_per_epoch, callbacks=[timer], verbose=0,
            shuffle=False)
    return timer


class InputTimer(keras.callbacks.Callback):
    """Images per second and the share of step time spent waiting for the next batch.

    `instrument(model)` makes each training step fetch its batch eagerly (timed) and then run
    Keras's compiled step on it: the wait is the time `get_next` blocks, the step time is from
    one fetch to the next. A wait share near 0 means the input keeps up; a large one means the
    accelerator idles for input (see WORKSPACE.md for what to try).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.last_images_per_second: float | None = None
        self.last_wait_fraction: float | None = None
        self._waits: list[float] = []
        self._starts: list[float] = []

    def instrument(self, model: keras.Model) -> None:
        if model.steps_per_execution != 1:
            raise TrainingError("InputTimer times single steps: compile with "
                                "steps_per_execution=1")
        make_train_function = model.make_train_function
        timer = self

        def make_timed_train_function(force=False):
            make_train_function(force)
            compiled = model.train_function
            if getattr(compiled, "_input_timed", False):
                return compiled

            def timed(iterator):
                start = time.perf_counter()
                try:
                    batch = iterator.get_next()
                except tf.errors.OutOfRangeError as err:
                    raise StopIteration from err
                timer._record(start, time.perf_counter() - start)
                # Keras's step function runs an iterable of batches one by one: the batch
                # is already fetched, so the step only computes.
                return compiled([batch])

            timed._input_timed = True
            model.train_function = timed
            return timed

        model.make_train_function = make_timed_train_function

    def _record(self, start: float, wait: float) -> None:
        self._starts.append(start)
        self._waits.append(wait)

    def on_epoch_begin(self, epoch, logs=None):
        self._waits, self._starts = [], []

    def on_train_batch_end(self, batch, logs=None):
        self._last_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # The first step of the first epoch compiles the model: leave it out of the rate.
        starts, waits = self._starts[1:], self._waits[1:]
        if not starts:
            return
        elapsed = self._last_end - starts[0]
        if elapsed <= 0:
            return
        self.last_images_per_second = len(starts) * self.batch_size / elapsed
        self.last_wait_fraction = min(sum(waits) / elapsed, 1.0)
        if logs is not None:
            logs["images_per_second"] = self.last_images_per_second
            logs["input_wait_fraction"] = self.last_wait_fraction
