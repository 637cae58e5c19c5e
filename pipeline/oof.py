r"""Merge the folds' out-of-fold predictions into one scored table.

    python -m pipeline.oof workspace/runs/leaves-fold*/oof_fold*.csv     # -> ./oof.csv
    python -m pipeline.oof 'runs/fold*/oof_fold*.csv' --output=runs/oof.csv

Each file is one `python -m pipeline.predict --workdir=<fold k's run> --split=val` wrote
(`<workdir>/oof_fold<k>.csv`: the id, the prediction, the truth, the fold). The merged CSV
holds every row once, the files' rows in the order given (a quoted pattern: sorted), and the
log gives its score: accuracy for classes, micro F1 of the tags as predicted (at the
threshold predict applied) for multi-label, RMSE over every target for regression
(pipeline.training.oof). The named --output is replaced.

Exit codes: the table in pipeline.errors, which --help shows.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags, logging

from pipeline import cli, errors
from pipeline.training import oof

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("output", oof.MERGED_NAME, "The merged CSV to write (replaced if "
                        "there).")


def main(argv: Sequence[str]) -> None:
    if len(argv) < 2:
        raise errors.UsageError("give the out-of-fold CSVs to merge, e.g. python -m "
                                "pipeline.oof runs/fold*/oof_fold*.csv")
    table, metric, value = oof.merge(argv[1:], FLAGS.output)
    folds = oof.folds_in(table)
    logging.info("%d rows%s -> %s; %s %.4f", len(table.rows),
                 f" of folds {', '.join(folds)}" if folds else "", FLAGS.output, metric, value)


if __name__ == "__main__":
    cli.run(main, define_flags)
