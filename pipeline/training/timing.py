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

# Shares of step time spent waiting for input that decide the verdict: TensorBoard's Input
# Pipeline Analysis uses the same two (xprof's kModeratelyInfeedBoundThresholdInPercent = 5,
# kHighlyInfeedBoundThresholdInPercent = 20), so its words and ours are one scale.
INPUT_BOUND_WAIT = 0.2  # from here: highly input-bound, the accelerator idles a fifth or more
INPUT_OK_WAIT = 0.05  # below: not input-bound, the input keeps up
# The category words, TensorBoard's ("Your program is HIGHLY input-bound ...") in lower case.
NOT_BOUND, MODERATELY_BOUND, HIGHLY_BOUND = "not", "moderately", "highly"


def input_category(wait_fraction: float) -> str:
    """"not", "moderately" or "highly" (input-bound), by TensorBoard's thresholds."""
    if wait_fraction < INPUT_OK_WAIT:
        return NOT_BOUND
    return MODERATELY_BOUND if wait_fraction < INPUT_BOUND_WAIT else HIGHLY_BOUND


def input_verdict(wait_fraction: float | None) -> str:
    """In plain words: is training input-bound, and which knob to try next."""
    if wait_fraction is None:
        return "input wait not measured (too few steps)"
    category = input_category(wait_fraction)
    if category == NOT_BOUND:
        return ("not input-bound: the input keeps up; a faster input pipeline will not speed "
                "training up")
    knobs = ("try, in this order: augment_on_device=True (the host then only reads and "
             "parses), cache='memory' if the split fits in RAM (see python -m pipeline.inspect), "
             "more shards than reader threads, then more CPUs per accelerator (tf.data service)")
    if category == MODERATELY_BOUND:
        return f"moderately input-bound: {knobs}"
    return f"highly input-bound: the accelerator waits for data; {knobs}"


def time_training_steps(data_dir: str, split: str, *, batch_size: int, steps_per_epoch: int,
                        seed: int, augment: str | Sequence[str] | None, cache: str | None = None,
                        mixed_precision: bool = False, to_device: str | None = None,
                        profile_logdir: str | None = None, **model_options) -> "InputTimer":
    """Two epochs of `steps_per_epoch` steps of a ResNet (`model_options`: build_resnet's) on
    make_dataset, timed as train_and_evaluate times itself: the first epoch compiles, the
    returned InputTimer holds the second's images/s and input-wait share. For the bench and
    the profiler, which ask whether a model would wait for this reader. `to_device`: prefetch
    the batches into that device's memory (make_dataset's to_device). `profile_logdir`: trace
    the timed epoch there, its steps marked as training steps (TensorBoard's Profile tab)."""
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
    tracer = [ProfileEpoch(profile_logdir, epoch=1)] if profile_logdir else []
    try:
        net.fit(data, epochs=2, steps_per_epoch=steps_per_epoch, callbacks=[timer, *tracer],
                verbose=0, shuffle=False)
    finally:
        for callback in tracer:
            callback.stop()
    return timer


class ProfileEpoch(keras.callbacks.Callback):
    """Traces one epoch with the TensorFlow profiler into `logdir`: the same steps InputTimer
    times, so TensorBoard's analysis of the trace and the timer's verdict judge one thing."""

    def __init__(self, logdir: str, *, epoch: int):
        super().__init__()
        self.logdir, self.epoch, self._tracing = logdir, epoch, False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            tf.profiler.experimental.start(self.logdir)
            self._tracing = True

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.stop()

    def stop(self) -> None:
        if self._tracing:
            self._tracing = False
            tf.profiler.experimental.stop()


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
        self.steps_run = 0  # this process's training steps, the profiler's step numbers
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
                timer.steps_run += 1
                # Marked as a training step (_r=1: a root event with its number), as
                # tf.keras's own loop did: TensorBoard's Overview and Input Pipeline Analysis
                # then measure these steps, their wait in IteratorGetNext included. Costs
                # nothing while no profiler runs.
                with tf.profiler.experimental.Trace("train", step_num=timer.steps_run, _r=1):
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
