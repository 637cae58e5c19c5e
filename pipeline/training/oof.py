r"""Predictions of a labeled split beside the truth, and the folds' out-of-fold files merged.

    <workdir>/submission.csv        python -m pipeline.predict (the test split)
    <workdir>/oof_fold<k>.csv       --split=val of a fold-k run: fold k's out-of-fold rows
    <workdir>/predictions_<split>.csv   another split (--split=val without folds, train)
    ./submission.csv                an ensemble (several --workdir): the current directory
    ./oof.csv                       python -m pipeline.oof runs/fold*/oof_fold*.csv

A labeled split's table is the submission's columns (the id, the predicted class, tags or
values), then the truth, then, in a dataset written with --folds, each record's `fold`:

    class        image,label,true_class,fold            the true class's name
    multi_label  image_name,tags,true_tags,fold         the true tags, space-joined
    regression   Id,Pawpularity,true_Pawpularity,fold   each target's true value

The truth columns' names say the kind, so `merge` scores a table without its dataset:
accuracy, micro F1 of the tags as written (the threshold predict applied), or RMSE over
every target. Defaults never share a name, so no prediction replaces another kind's; a named
--output is replaced, and the log says so.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import logging
import math
import os
from typing import Sequence

import numpy as np

from pipeline import errors
from pipeline.core import files, schema

SUBMISSION_NAME = "submission.csv"
OOF_NAME = "oof_fold{fold}.csv"
SPLIT_NAME = "predictions_{split}.csv"
MERGED_NAME = "oof.csv"
FOLD_COLUMN = "fold"
TRUE_PREFIX = "true_"
TRUE_CLASS = TRUE_PREFIX + "class"
TRUE_TAGS = TRUE_PREFIX + "tags"
# The score merge logs per kind (training's headline metrics, on the table's rows).
METRIC = {schema.CLASS: "accuracy", schema.MULTI_LABEL: "micro F1", schema.REGRESSION: "RMSE"}

log = logging.getLogger(__name__)


class MergeError(errors.PipelineError, ValueError):
    """Files that do not make one out-of-fold table: overlapping, of other kinds, not ours."""


def default_output(workdirs: Sequence[str], split: str, fold: int | None) -> str:
    """Where a prediction goes without --output: its run's workdir, or for an ensemble the
    current directory (never into one of its members' workdirs); the name says what it
    holds (a test submission, fold k's out-of-fold rows, another split's)."""
    if split == schema.TEST:
        name = SUBMISSION_NAME
    elif split == schema.VAL and fold is not None:
        name = OOF_NAME.format(fold=fold)
    else:
        name = SPLIT_NAME.format(split=split if fold is None else f"{split}_fold{fold}")
    return os.path.join(workdirs[0] if len(workdirs) == 1 else os.curdir, name)


def truth_header(manifest: schema.Manifest) -> tuple[str, ...]:
    if manifest.target_kind == schema.REGRESSION:
        return tuple(TRUE_PREFIX + name for name in manifest.targets)
    return (TRUE_TAGS,) if manifest.target_kind == schema.MULTI_LABEL else (TRUE_CLASS,)


def truth_cells(manifest: schema.Manifest, labels) -> list[tuple[str, ...]]:
    """Each record's truth as the table writes it (dataset.split_labels' labels)."""
    if manifest.target_kind == schema.REGRESSION:
        return [tuple(f"{value:.6g}" for value in row) for row in labels]
    if manifest.target_kind == schema.MULTI_LABEL:
        return [(" ".join(name for name, on in zip(manifest.classes, row) if on > 0.5),)
                for row in labels]
    return [(manifest.classes[int(label)],) for label in labels]


def record_folds(manifest: schema.Manifest, split: str) -> list[int] | None:
    """Each record's fold in split order (a fold view's shards each hold one fold's records);
    None where the split's records are in no fold (no --folds, the test split)."""
    shards = manifest.split(split).shards
    if not manifest.folds or any(shard.fold is None for shard in shards):
        return None
    return [shard.fold for shard in shards for _ in range(shard.count)]


def labeled_table(manifest: schema.Manifest, split: str, header: Sequence[str],
                  rows: Sequence[Sequence[str]], labels) -> tuple[tuple[str, ...], list]:
    """The predictions' (header, rows) with the truth, and each record's fold if any."""
    folds = record_folds(manifest, split)
    truths = truth_cells(manifest, labels)
    header = (*header, *truth_header(manifest), *((FOLD_COLUMN,) if folds else ()))
    table = [(*row, *truth, *((folds[number],) if folds else ()))
             for number, (row, truth) in enumerate(zip(rows, truths))]
    return header, table


@dataclasses.dataclass(frozen=True)
class Table:
    path: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def read_table(path: str) -> Table:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except OSError as err:
        raise MergeError(f"{path}: {err.strerror}; give predict's out-of-fold CSVs") from None
    if not lines:
        raise MergeError(f"{path} is empty: give predict's out-of-fold CSVs")
    return Table(path, tuple(lines[0]), tuple(tuple(line) for line in lines[1:] if line))


def kind_of(header: Sequence[str], path: str) -> str:
    """The kind of target a table's truth columns name (see the module doc). A regression
    with a single target named "class" or "tags" reads as the class or tags kind."""
    truth = [name for name in header[1:] if name.startswith(TRUE_PREFIX)]
    predicted = [name for name in header[1:] if name not in truth and name != FOLD_COLUMN]
    if truth == [TRUE_CLASS] and len(predicted) == 1:
        return schema.CLASS
    if truth == [TRUE_TAGS] and len(predicted) == 1:
        return schema.MULTI_LABEL
    if truth and [TRUE_PREFIX + name for name in predicted] == truth:
        return schema.REGRESSION
    raise MergeError(f"{path} has the columns {list(header)}, no truth column beside each "
                     f"prediction ({TRUE_CLASS}, {TRUE_TAGS} or {TRUE_PREFIX}<target>): give "
                     "the files python -m pipeline.predict --split=val writes")


def expand(patterns: Sequence[str]) -> list[str]:
    """The files to merge: each argument a path or a glob pattern (quoted for the shell)."""
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise MergeError(f"{pattern!r} matches no file: give the out-of-fold CSVs, e.g. "
                             "runs/fold*/oof_fold*.csv")
        paths.extend(found)
    return list(dict.fromkeys(paths))


def merge_tables(tables: Sequence[Table]) -> Table:
    """The tables' rows as one, each image once: refused when the columns differ, or an image
    or a fold is in two files (or twice in one)."""
    first = tables[0]
    images: dict[str, str] = {}
    folds: dict[str, str] = {}
    for table in tables:
        if table.header != first.header:
            raise MergeError(f"{table.path} has the columns {list(table.header)}, {first.path} "
                             f"{list(first.header)}: merge the folds of one dataset's runs")
        fold_at = table.header.index(FOLD_COLUMN) if FOLD_COLUMN in table.header else None
        for fold in sorted({row[fold_at] for row in table.rows} if fold_at else ()):
            if folds.setdefault(fold, table.path) != table.path:
                raise MergeError(f"fold {fold} is in {folds[fold]} and in {table.path}: "
                                 "merge each fold's out-of-fold file once")
        for row in table.rows:
            if len(row) != len(table.header):
                raise MergeError(f"{table.path}: the row of {row[0]!r} has {len(row)} cells "
                                 f"for {len(table.header)} columns")
            if row[0] in images:
                raise MergeError(f"{row[0]} is in {images[row[0]]} and in {table.path}: "
                                 "merge files of distinct images, each once")
            images[row[0]] = table.path
    return Table("", first.header, tuple(row for table in tables for row in table.rows))


def score(kind: str, table: Table) -> float:
    """The table's score for its kind: METRIC[kind]."""
    truth = [n for n, name in enumerate(table.header) if name.startswith(TRUE_PREFIX)]
    predicted = [n - len(truth) for n in truth]  # each truth column follows its predictions
    if kind == schema.REGRESSION:
        try:
            got = np.array([[float(row[n]) for n in predicted] for row in table.rows])
            want = np.array([[float(row[n]) for n in truth] for row in table.rows])
        except ValueError as err:
            raise MergeError(f"a value to score is no number ({err})") from None
        return float(np.sqrt(np.mean((got - want) ** 2))) if len(got) else math.nan
    pairs = [(row[predicted[0]], row[truth[0]]) for row in table.rows]
    if kind == schema.CLASS:
        return sum(got == want for got, want in pairs) / len(pairs) if pairs else math.nan
    hits = misses = 0
    for got, want in ((set(a.split()), set(b.split())) for a, b in pairs):
        hits += len(got & want)
        misses += len(got ^ want)  # false positives and false negatives
    return 2 * hits / (2 * hits + misses) if hits + misses else 1.0


def merge(patterns: Sequence[str], output: str = MERGED_NAME) -> tuple[Table, str, float]:
    """The out-of-fold files as one table at `output` (written atomically); returns (the
    table, the metric's name, its score)."""
    paths = expand(patterns)
    if os.path.abspath(output) in map(os.path.abspath, paths):
        raise MergeError(f"--output={output} is one of the files to merge: name another")
    tables = [read_table(path) for path in paths]
    kind = kind_of(tables[0].header, tables[0].path)
    merged = merge_tables(tables)
    value = score(kind, merged)  # before writing: a cell that is no number writes nothing
    write_text(output, csv_text(merged.header, merged.rows))
    return merged, METRIC[kind], value


def folds_in(table: Table) -> list[str]:
    """The folds a table's rows come from, in order; none without a fold column."""
    if FOLD_COLUMN not in table.header:
        return []
    at = table.header.index(FOLD_COLUMN)
    return sorted({row[at] for row in table.rows}, key=lambda fold: (len(fold), fold))


def write_text(path: str, text: str) -> None:
    """`text` at `path`, atomically; a file already there is replaced, and the log says so."""
    if os.path.exists(path):
        log.info("%s exists: replacing it", path)
    files.atomic_write_text(path, text)


def csv_text(header: Sequence[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
