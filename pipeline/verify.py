r"""Check a written dataset against its `dataset.json`: every shard, every record, every byte.

    python -m pipeline.verify workspace/shards/digits
    python -m pipeline.verify workspace/shards/leaves --split=train --split=val --num_workers=8

Prints one line per problem, naming the shard file and, where there is one, the 0-based
record (`train-00003-of-00036.tfrecord: record 17: data CRC mismatch`), then one summary
line. A record index problem gets a line of its own, named by the index file
(`train-00003-of-00036.tfrecord.offsets: sha256 ..., dataset.json says ...`). What is
checked, and how, is in pipeline.core.integrity and pipeline.core.index_check.

Exit codes: the table in pipeline.errors, which --help shows.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags

from pipeline import cli, errors
from pipeline.core import integrity, schema

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define = dict(flag_values=flag_values)
    cli.define_data_dir_flag(flag_values)
    flags.DEFINE_multi_string(
        "split", [],
        "A split to check (repeat the flag for several, e.g. --split=train --split=val). "
        "Default: every split in dataset.json.", **define)
    flags.DEFINE_integer(
        "num_workers", 0,
        "Processes checking shards in parallel (0: one per CPU; 1: no worker processes). "
        "Each reads one shard at a time, streaming.", lower_bound=0, **define)


def main(argv: Sequence[str]) -> int:
    data_dir = cli.one_argument(
        argv, f"DATA_DIR (a directory holding {schema.MANIFEST_NAME})",
        "python -m pipeline.verify DATA_DIR [--split=NAME ...]", ("data_dir", FLAGS.data_dir))
    report = integrity.verify_dataset(data_dir, FLAGS.split, FLAGS.num_workers)
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return errors.EXIT_OK if report.ok else errors.EXIT_FAILED


if __name__ == "__main__":
    cli.run(main, define_flags)
