r"""Profile the input pipeline with the TensorFlow profiler, for TensorBoard's Profile tab.

    python -m pipeline.profile --data_dir=workspace/shards/digits --logdir=workspace/profiles/digits
    python -m pipeline.profile --data_dir=... --logdir=... --train_steps=20 --depth=18
    tensorboard --logdir=workspace/profiles/digits      # then the Profile tab

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
from typing import Sequence

from absl import app, flags, logging

from pipeline import schema

DEFAULT_STEPS = 20
DEFAULT_BATCH = 256
EXIT_BAD_INPUT = 2


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    trace_files: tuple[str, ...]  # the .xplane.pb files written
    reader_images_per_second: float
    input_wait_fraction: float | None  # with train steps
    verdict: str | None


def profile_input(data_dir: str, logdir: str, *, split: str = schema.TRAIN, steps: int = DEFAULT_STEPS,
                  batch_size: int = DEFAULT_BATCH, cache: str | None = None,
                  augment: str | None = "default", train_steps: int = 0, depth: int = 10,
                  seed: int = 0) -> ProfileResult:
    """Trace the reader (and optionally training steps) into `logdir`; see the module doc."""
    import tensorflow as tf

    from pipeline import augment as augment_lib
    from pipeline import dataset

    spec = augment_lib.DEFAULT_TRAIN_AUGMENT if augment == "default" else augment
    manifest = schema.read_manifest(data_dir)
    batch_size = min(batch_size, manifest.split(split).count)
    batches = dataset.make_dataset(data_dir, split, batch_size, training=True, cache=cache,
                                   seed=seed, augment=spec)
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
            from pipeline import training

            # Two epochs of half the steps: the first compiles the model, the second is timed.
            wait = training.time_training_steps(
                data_dir, split, batch_size=batch_size, steps_per_epoch=max(train_steps // 2, 2),
                seed=seed, augment=spec, cache=cache, depth=depth).last_wait_fraction
            verdict = training.input_verdict(wait)
    finally:
        tf.profiler.experimental.stop()
    written = tuple(sorted(set(_trace_files(logdir)) - before))
    return ProfileResult(written, reader_rate, wait, verdict)


def _trace_files(logdir: str) -> list[str]:
    return glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("data_dir", None, "A dataset written by python -m pipeline.write.",
                        required=True)
    flags.DEFINE_string("logdir", None, "Where the trace goes (open it with tensorboard "
                        "--logdir=...).", required=True)
    flags.DEFINE_string("split", schema.TRAIN, "The split to read.")
    flags.DEFINE_integer("steps", DEFAULT_STEPS, "Reader batches traced.", lower_bound=1)
    flags.DEFINE_integer("batch_size", DEFAULT_BATCH, "Images per batch.", lower_bound=1)
    flags.DEFINE_string("cache", None, "make_dataset's cache: memory, auto or a file path.")
    flags.DEFINE_string("augment", "default", "The augmentation spec run in the pipeline "
                        "('default' for the trainer's default; '' for none).")
    flags.DEFINE_integer("train_steps", 0, "Also trace this many training steps of a ResNet "
                         "fed by the reader, and report the share of time waiting for input.",
                         lower_bound=0)
    flags.DEFINE_integer("depth", 10, "ResNet depth for --train_steps (10, 18, 34, 50).")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    try:
        result = profile_input(FLAGS.data_dir, FLAGS.logdir, split=FLAGS.split,
                               steps=FLAGS.steps, batch_size=FLAGS.batch_size,
                               cache=FLAGS.cache, augment=FLAGS.augment or None,
                               train_steps=FLAGS.train_steps, depth=FLAGS.depth)
    except (schema.FormatError, ValueError) as err:
        logging.error("%s", err)
        return EXIT_BAD_INPUT
    print(f"reader alone: {result.reader_images_per_second:,.0f} img/s")
    if result.input_wait_fraction is not None:
        print(f"training: {100 * result.input_wait_fraction:.0f}% of step time waiting for "
              f"input. {result.verdict}")
    for path in result.trace_files:
        print(f"trace: {path}")
    print(f"open it: tensorboard --logdir={FLAGS.logdir}  (Profile tab)")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
