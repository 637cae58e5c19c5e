r"""Profile the input pipeline with the TensorFlow profiler, for TensorBoard's Profile tab.

    result = profile_input("workspace/shards/digits", "workspace/profiles/digits")
    # python -m pipeline.profile --data_dir=... --logdir=... [--train_steps=20 --depth=18]

Runs `make_dataset` alone for --steps batches (after a warm-up batch, so start-up is not in the
trace), and with --train_steps also that many training steps of a ResNet fed by it, under
`tf.profiler.experimental`. The trace lands in `<logdir>/plugins/profile/<run>/*.xplane.pb`:
the trace viewer shows every tf.data stage on its thread, and the tf.data bottleneck analysis
names the slowest one. The command also prints what it measured: the reader's img/s alone and,
with --train_steps, the share of step time spent waiting for input with a plain-words verdict.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline.core import schema
from pipeline.dataset import make_dataset
from pipeline.training import timing

DEFAULT_STEPS = 20
DEFAULT_BATCH = 256


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    trace_files: tuple[str, ...]  # the .xplane.pb files written
    reader_images_per_second: float
    input_wait_fraction: float | None  # with train steps
    verdict: str | None


def profile_input(data_dir: str, logdir: str, *, split: str = schema.TRAIN,
                  steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH,
                  cache: str | None = None,
                  augment: str | None = "default", train_steps: int = 0, depth: int = 10,
                  seed: int = 0) -> ProfileResult:
    """Trace the reader (and optionally training steps) into `logdir`; see the module doc."""
    spec = augment_lib.DEFAULT_TRAIN_AUGMENT if augment == "default" else augment
    manifest = schema.read_manifest(data_dir)
    batch_size = min(batch_size, manifest.split(split).count)
    batches = make_dataset(data_dir, split, batch_size, training=True, cache=cache, seed=seed,
                           augment=spec)
    iterator = iter(batches.repeat())
    next(iterator)  # warm-up: threads, autotuning, XLA compilation, the cache's load
    before = set(_trace_files(logdir))
    tf.profiler.experimental.start(logdir)
    try:
        start = time.perf_counter()
        for step in range(steps):
            with tf.profiler.experimental.Trace("input", step_num=step, _r=1):
                next(iterator)
        reader_rate = steps * batch_size / (time.perf_counter() - start)
        wait = verdict = None
        if train_steps:
            # Two epochs of half the steps: the first compiles the model, the second is timed.
            wait = timing.time_training_steps(
                data_dir, split, batch_size=batch_size, steps_per_epoch=max(train_steps // 2, 2),
                seed=seed, augment=spec, cache=cache, depth=depth).last_wait_fraction
            verdict = timing.input_verdict(wait)
    finally:
        tf.profiler.experimental.stop()
    written = tuple(sorted(set(_trace_files(logdir)) - before))
    return ProfileResult(written, reader_rate, wait, verdict)


def _trace_files(logdir: str) -> list[str]:
    return glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
