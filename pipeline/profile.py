r"""Profile the input pipeline with the TensorFlow profiler, for TensorBoard's Profile tab.

    python -m pipeline.profile --data_dir=workspace/shards/digits --logdir=workspace/profiles/digits
    python -m pipeline.profile --data_dir=... --logdir=... --train_steps=20 --depth=18
    tensorboard --logdir=workspace/profiles/digits      # then the Profile tab

Traces `make_dataset` alone (the run `reader-only` in the Profile tab) and, with --train_steps,
real training steps of a ResNet fed by it (the run `training`; pipeline.tools.profiling), then
prints the reader's img/s and, with --train_steps, the share of step time spent waiting for
input with a plain-words verdict, beside TensorBoard's own conclusion on the same trace.

Exit codes: the table in pipeline.errors, which --help shows.

This module's name is the standard library's `profile`, which is harmless as
`python -m pipeline.profile` (the form every document uses); nothing imports it.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags

from pipeline import cli
from pipeline.core import schema
from pipeline.tools import profiling

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("data_dir", None, "A dataset written by python -m pipeline.write.",
                        required=True)
    flags.DEFINE_string("logdir", None, "Where the trace goes (open it with tensorboard "
                        "--logdir=...).", required=True)
    flags.DEFINE_string("split", schema.TRAIN, "The split to read.")
    flags.DEFINE_integer("steps", profiling.DEFAULT_STEPS, "Reader batches traced alone (the "
                         "reader-only run).", lower_bound=1)
    flags.DEFINE_integer("batch_size", profiling.DEFAULT_BATCH, "Images per batch.",
                         lower_bound=1)
    flags.DEFINE_string("cache", None, "make_dataset's cache: memory, auto or a file path.")
    flags.DEFINE_string("augment", "default", "The augmentation spec run in the pipeline "
                        "('default' for the trainer's default; '' for none).")
    flags.DEFINE_integer("train_steps", 0, "Also run this many training steps of a ResNet fed "
                         "by the reader: the first half compiles and warms up, the second is "
                         "traced (the training run) and timed, and the share of step time "
                         "waiting for input is reported with TensorBoard's own verdict.",
                         lower_bound=0)
    flags.DEFINE_integer("depth", 10, "ResNet depth for --train_steps (10, 18, 34, 50).")


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    result = profiling.profile_input(
        FLAGS.data_dir, FLAGS.logdir, split=FLAGS.split, steps=FLAGS.steps,
        batch_size=FLAGS.batch_size, cache=FLAGS.cache, augment=FLAGS.augment or None,
        train_steps=FLAGS.train_steps, depth=FLAGS.depth)
    print(f"reader alone: {result.reader_images_per_second:,.0f} img/s (the reader-only "
          "trace; its batches are not training steps)")
    if result.input_wait_fraction is not None:
        print(f"training: {100 * result.input_wait_fraction:.0f}% of step time waiting for "
              f"input. {result.verdict}")
    if result.tensorboard is not None:
        print(f"TensorBoard's Input Pipeline Analysis of the training trace: "
              f"{result.tensorboard.conclusion}")
    for path in result.trace_files:
        print(f"trace: {path}")
    print(f"open it: tensorboard --logdir={FLAGS.logdir}  (Profile tab)")


if __name__ == "__main__":
    cli.run(main, define_flags)
