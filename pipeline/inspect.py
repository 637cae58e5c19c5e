r"""Look inside a written dataset: the manifest in words, a grid of its images, one record.

    python -m pipeline.inspect workspace/shards/digits                  # summary of the train split
    python -m pipeline.inspect workspace/shards/digits --split=val --grid=/tmp/val.png --n=64
    python -m pipeline.inspect workspace/shards/digits --record=0      # + one record in full
    python -m pipeline.inspect workspace/shards/leaves --fold=2 --split=val  # fold 2 held out

The summary (always printed) gives every split's record count, shards and bytes on disk, the
RAM `make_dataset(cache="memory")` needs for it, the image shape and format, the size of the
source images when they can still be found, and the classes of --split: counts as a text
histogram up to 20 classes (all of them with --histogram), above that the smallest and largest,
and the classes with no image in a split. A dataset written with --folds=K also gets a table
of its folds: each fold's records, shards and balance (records per class or tag, or each
target's mean/std). --fold=k shows fold k's view, the one `train_and_evaluate.fold=k` and
`predict --fold=k` read: split 'val' is fold k's held-out records, 'train' the other folds;
--split, --grid and --record then read that view. --grid writes a PNG of the first --n records of
--split in shard order, each tile captioned with its record index and class, and beside it
`<name>.tiles.csv` giving each tile's record, shard and source path; --record=N prints
record N of --split (0-based, shard order): its shard and position there, path, label,
per-channel statistics and its first bytes. The parts are in pipeline.tools (summary, grid,
record_view).

Exit codes: the table in pipeline.errors, which --help shows.

This module's name is the standard library's `inspect`, which is harmless as
`python -m pipeline.inspect` (the form every document uses); nothing imports it.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence, TextIO

from absl import flags

from pipeline import cli
from pipeline.core import schema
from pipeline.tools import grid as grid_lib
from pipeline.tools import inspection, summary

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define = dict(flag_values=flag_values)
    cli.define_data_dir_flag(flag_values)
    flags.DEFINE_string("split", None,
                        "The split whose classes are counted, and that --grid and --record "
                        "read (of --fold's view with --fold). Default: train, or the first split "
                        "by name when there is none.",
                        **define)
    flags.DEFINE_string("grid", None,
                        "Write a PNG grid of the first --n images of --split (shard order), "
                        "captioned '#<record index> <class>', and <name>.tiles.csv beside "
                        "it mapping each tile to its record, shard and source path; images "
                        f"under {grid_lib.MIN_TILE_PX} px are enlarged by a whole factor "
                        "(nearest neighbour).", **define)
    flags.DEFINE_integer("n", grid_lib.DEFAULT_GRID_IMAGES,
                         "Images in the --grid (all of the split's if it has fewer); "
                         "ceil(sqrt(n)) per row.", **define)
    flags.DEFINE_bool("histogram", False,
                      "Print every class's count in --split as a text histogram (by default: "
                      f"the whole histogram up to {summary.FULL_HISTOGRAM_CLASSES} classes, a "
                      "summary of the smallest and largest above).", **define)
    flags.DEFINE_integer("fold", None,
                         "A dataset written with --folds=K: show fold k's view (0..K-1), as "
                         "train_and_evaluate.fold=k and predict --fold=k read it: split 'val' "
                         "is fold k's held-out records, 'train' the other folds. Default: the "
                         "dataset as stored ('train' is every fold, no 'val').", **define)
    flags.DEFINE_integer("record", None,
                         "Print record N of --split (0-based, shard order): shard, path, label, "
                         "per-channel min/max/mean and its first bytes.", **define)


def inspect_command(data_dir: str, *, split: str | None = None, grid: str | None = None,
                    n: int = grid_lib.DEFAULT_GRID_IMAGES, record: int | None = None,
                    histogram: bool = False, fold: int | None = None,
                    out: TextIO | None = None) -> int:
    """The whole command without absl flags: prints to `out` (stdout), returns the exit code."""
    return cli.exit_code_of(inspection.inspect_dataset, data_dir, split=split, grid=grid, n=n,
                            record=record, histogram=histogram, fold=fold, out=out)


def main(argv: Sequence[str]) -> int:
    data_dir = cli.one_argument(
        argv, f"DATA_DIR (a folder holding {schema.MANIFEST_NAME})",
        "python -m pipeline.inspect workspace/shards/digits", ("data_dir", FLAGS.data_dir))
    return inspect_command(data_dir, split=FLAGS.split, grid=FLAGS.grid, n=FLAGS.n,
                           record=FLAGS.record, histogram=FLAGS.histogram, fold=FLAGS.fold)


if __name__ == "__main__":
    cli.run(main, define_flags)
