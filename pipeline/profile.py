r"""Profile the input pipeline with the TensorFlow profiler, for TensorBoard's Profile tab.

    python -m pipeline.profile --data_dir=workspace/shards/digits --logdir=workspace/profiles/digits
    python -m pipeline.profile --data_dir=... --logdir=... --train_steps=20 --depth=18
    tensorboard --logdir=workspace/profiles/digits      # then the Profile tab

Traces `make_dataset` alone and, with --train_steps, training steps of a ResNet fed by it
(pipeline.tools.profiling), then prints the reader's img/s and, with --train_steps, the share
of step time spent waiting for input with a plain-words verdict.

Exit codes: 0 done; 2 unusable input (no dataset, unknown split, bad augmentation spec or
flags).

This module's name is the standard library's `profile`, which is harmless as
`python -m pipeline.profile` (the form every document uses); nothing imports it.
"""

from __future__ import annotations

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
    flags.DEFINE_integer("steps", profiling.DEFAULT_STEPS, "Reader batches traced.",
                         lower_bound=1)
    flags.DEFINE_integer("batch_size", profiling.DEFAULT_BATCH, "Images per batch.",
                         lower_bound=1)
    flags.DEFINE_string("cache", None, "make_dataset's cache: memory, auto or a file path.")
    flags.DEFINE_string("augment", "default", "The augmentation spec run in the pipeline "
                        "('default' for the trainer's default; '' for none).")
    flags.DEFINE_integer("train_steps", 0, "Also trace this many training steps of a ResNet "
                         "fed by the reader, and report the share of time waiting for input.",
                         lower_bound=0)
    flags.DEFINE_integer("depth", 10, "ResNet depth for --train_steps (10, 18, 34, 50).")


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    result = profiling.profile_input(
        FLAGS.data_dir, FLAGS.logdir, split=FLAGS.split, steps=FLAGS.steps,
        batch_size=FLAGS.batch_size, cache=FLAGS.cache, augment=FLAGS.augment or None,
        train_steps=FLAGS.train_steps, depth=FLAGS.depth)
    print(f"reader alone: {result.reader_images_per_second:,.0f} img/s")
    if result.input_wait_fraction is not None:
        print(f"training: {100 * result.input_wait_fraction:.0f}% of step time waiting for "
              f"input. {result.verdict}")
    for path in result.trace_files:
        print(f"trace: {path}")
    print(f"open it: tensorboard --logdir={FLAGS.logdir}  (Profile tab)")


if __name__ == "__main__":
    cli.run(main, define_flags)
