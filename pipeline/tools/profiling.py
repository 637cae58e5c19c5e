r"""Profile the input pipeline with the TensorFlow profiler, for TensorBoard's Profile tab.

    result = profile_input("workspace/shards/digits", "workspace/profiles/digits")
    # python -m pipeline.profile --data_dir=... --logdir=... [--train_steps=20 --depth=18]

Two traces, each a run of its own in the Profile tab's run list:

    <logdir>/reader-only/   `make_dataset` alone for --steps batches (after a warm-up batch,
                            so start-up is not in it). Its batches are not training steps:
                            TensorBoard's step-based pages (Overview, Input Pipeline Analysis)
                            have nothing to judge here; the trace viewer shows each tf.data
                            stage on its threads.
    <logdir>/training/      with --train_steps: real training steps of a ResNet fed by the
                            reader, each marked as a step (InputTimer), traced over the epoch
                            the timer measures. TensorBoard's Input Pipeline Analysis of it
                            and our verdict judge the same steps on the same thresholds.

The command prints the reader's img/s, our share of step time waiting for input with its
verdict, and TensorBoard's own conclusion on the training trace, read with the installed
profile plugin's converter (the code behind the Profile tab).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import re
import time

import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline.core import schema
from pipeline.dataset import make_dataset
from pipeline.training import timing

DEFAULT_STEPS = 20
DEFAULT_BATCH = 256
READER_RUN = "reader-only"  # the runs' folders under --logdir, their names in TensorBoard
TRAINING_RUN = "training"

log = logging.getLogger(__name__)

# xprof's input_pipeline_analyzer: "Your program is HIGHLY input-bound because 82.1% of the
# total step time sampled is waiting for input. ..." (MODERATELY, "NOT ... because only 0.2%");
# "POTENTIALLY input-bound because 8.4% ... is spent on 'All Others' time" when the input share
# is under 5% but other host time (Python between steps, often) is 3% or more.
_CONCLUSION = re.compile(r"Your program (?:is|COULD) (?:be )?(HIGHLY|MODERATELY|NOT|POTENTIALLY)?"
                         r" ?input-bound because (?:only )?([0-9.]+)%")
_INPUT_SHARE_WORDS = ("HIGHLY", "MODERATELY", "NOT")  # their number is the input share


@dataclasses.dataclass(frozen=True)
class TensorBoardVerdict:
    """What TensorBoard's Input Pipeline Analysis concludes from a trace."""

    # timing's words, "not", "moderately", "highly", or TensorBoard's "potentially" (input
    # share under 5%, other host time 3% or more) or "could"; None: it found no steps
    category: str | None
    input_percent: float | None  # the input share it measured, with the first three
    conclusion: str  # its sentence, as the Profile tab shows it


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    trace_files: tuple[str, ...]  # the .xplane.pb files written (reader-only, training)
    reader_images_per_second: float
    input_wait_fraction: float | None  # with train steps
    verdict: str | None
    tensorboard: TensorBoardVerdict | None = None  # of the training trace


def profile_input(data_dir: str, logdir: str, *, split: str = schema.TRAIN,
                  steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH,
                  cache: str | None = None,
                  augment: str | None = "default", train_steps: int = 0, depth: int = 10,
                  seed: int = 0) -> ProfileResult:
    """Trace the reader (and optionally training steps) into `logdir`; see the module doc.
    Each phase is logged before it starts (a profile takes minutes on a CPU)."""
    spec = augment_lib.DEFAULT_TRAIN_AUGMENT if augment == "default" else augment
    manifest = schema.read_manifest(data_dir)
    batch_size = min(batch_size, manifest.split(split).count)
    reader_dir, training_dir = (os.path.join(logdir, run) for run in (READER_RUN, TRAINING_RUN))
    before = set(_trace_files(logdir))
    log.info("reader alone: %d batches of %d into %s (after a warm-up batch: threads, "
             "autotuning, caches)", steps, batch_size, reader_dir)
    reader_rate = trace_reader(data_dir, split, reader_dir, steps=steps, batch_size=batch_size,
                               cache=cache, seed=seed, augment=spec)
    wait = verdict = tensorboard = None
    if train_steps:
        per_epoch = max(train_steps // 2, 2)
        log.info("training: a ResNet-%d, %d steps to compile and warm up, then %d traced into "
                 "%s", depth, per_epoch, per_epoch, training_dir)
        wait = timing.time_training_steps(
            data_dir, split, batch_size=batch_size, steps_per_epoch=per_epoch, seed=seed,
            augment=spec, cache=cache, depth=depth,
            profile_logdir=training_dir).last_wait_fraction
        verdict = timing.input_verdict(wait)
    written = tuple(sorted(set(_trace_files(logdir)) - before))
    if train_steps:
        tensorboard = tensorboard_verdict(
            [path for path in written if path.startswith(training_dir + os.sep)])
    return ProfileResult(written, reader_rate, wait, verdict, tensorboard)


def trace_reader(data_dir: str, split: str, logdir: str, *, steps: int, batch_size: int,
                 cache: str | None, seed: int, augment) -> float:
    """make_dataset's batches under the profiler: their img/s. Each batch is a named span,
    not a step (no step number): nothing trains here."""
    batches = make_dataset(data_dir, split, batch_size, training=True, cache=cache, seed=seed,
                           augment=augment)
    iterator = iter(batches.repeat())
    next(iterator)  # warm-up: threads, autotuning, XLA compilation, the cache's load
    tf.profiler.experimental.start(logdir)
    try:
        start = time.perf_counter()
        for number in range(steps):
            with tf.profiler.experimental.Trace("reader-only batch", batch=number):
                next(iterator)
        return steps * batch_size / (time.perf_counter() - start)
    finally:
        tf.profiler.experimental.stop()


def tensorboard_verdict(trace_files) -> TensorBoardVerdict | None:
    """TensorBoard's Input Pipeline Analysis of `trace_files`, by the installed profile
    plugin's converter; None without the plugin (tensorboard-plugin-profile)."""
    if not trace_files:
        return None
    try:
        from xprof.convert import raw_to_tool_data
    except ImportError:
        return None
    data, _ = raw_to_tool_data.xspace_to_tool_data(list(trace_files),
                                                   "input_pipeline_analyzer", {})
    return verdict_of(next((table["p"]["input_conclusion"] for table in json.loads(data or "[]")
                            if "input_conclusion" in (table.get("p") or {})), ""))


def verdict_of(conclusion: str) -> TensorBoardVerdict:
    """The Input Pipeline Analysis sentence as a TensorBoardVerdict."""
    found = _CONCLUSION.search(conclusion)
    if not found:  # "No step time measured. ..."
        return TensorBoardVerdict(None, None, conclusion)
    word = found.group(1) or "COULD"
    share = float(found.group(2)) if word in _INPUT_SHARE_WORDS else None
    return TensorBoardVerdict(word.lower(), share, conclusion)


def _trace_files(logdir: str) -> list[str]:
    return glob.glob(os.path.join(logdir, "**", "plugins", "profile", "*", "*.xplane.pb"),
                     recursive=True)
