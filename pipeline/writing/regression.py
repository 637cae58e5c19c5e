"""Regression listings: each image's numbers to predict, from `--target_columns`.

PetFinder's Pawpularity (`Id,...,Pawpularity`, 1-100) is the shape: one or more numeric
columns. Each value must be a finite number; an empty cell, text or NaN is an InputError naming
the line and the column, since a silently dropped or zeroed target trains the wrong thing.
The targets are stored as float32 (the record's `target`), their train split's mean, std, min
and max in dataset.json (`target_stats`, from `stats`). With --folds the train split is every
fold, so one fold's run standardises with statistics that include its held-out fold: they set
the loss's scale only (no weight is fit on them), and one set serves every fold's run.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from pipeline.core import schema
from pipeline.writing.sources import InputError, Listing, SourceImage


FLOAT32_MAX = float(np.finfo(np.float32).max)


def listing(csv_path: str, frame, paths: Sequence[str], base: str,
            target_columns: Sequence[str]) -> Listing:
    """The regression Listing of a CSV's rows: each image's `values`, in column order."""
    values = row_values(csv_path, frame, target_columns)
    images = tuple(SourceImage(p, os.path.join(base, p), schema.LABELED, values=row)
                   for p, row in zip(paths, values))
    return Listing(images, (), True,
                   f"CSV {csv_path} ({len(images):,} images, regression of "
                   f"{', '.join(target_columns)})",
                   target_kind=schema.REGRESSION, targets=tuple(target_columns))


def row_values(csv_path: str, frame, target_columns: Sequence[str],
               flag: str = "--target_columns") -> list[tuple[float, ...]]:
    """Each row's values of `target_columns` as floats (float32-exact, as stored);
    InputError naming the first line and column whose cell is not a finite number."""
    rows = []
    for line, cells in enumerate(frame[list(target_columns)].itertuples(index=False), 2):
        row = []
        for column, cell in zip(target_columns, cells):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if abs(value) > FLOAT32_MAX:  # stored as float32: it would be inf
                value = math.inf
            value = float(np.float32(value)) if math.isfinite(value) else value
            if not math.isfinite(value):
                raise InputError(f"{csv_path}: line {line} has {column}={cell!r}, not a "
                                 f"number float32 holds; every row needs a finite number in "
                                 f"each {flag} column")
            row.append(value)
        rows.append(tuple(row))
    return rows


def stats(values: Sequence[Sequence[float]], names: Sequence[str]) -> dict:
    """{name: {"mean", "std", "min", "max"}} of each target over `values` (population std;
    1.0 where all are equal, so standardising never divides by 0), to 9 significant digits
    (float32 needs 9 to round-trip)."""
    table = np.asarray(values, np.float64).reshape(-1, len(names))
    if not len(table):
        return {}

    def short(value) -> float:
        return float(f"{value:.9g}")

    stats = {}
    for k, name in enumerate(names):
        std = short(table[:, k].std())
        stats[name] = {"mean": short(table[:, k].mean()), "std": std if std > 0 else 1.0,
                       "min": short(table[:, k].min()), "max": short(table[:, k].max())}
    return stats


# Quantile bins of the first target that the val split and folds keep the shares of.
STRATA = 10


def strata(values: Sequence[Sequence[float]]) -> list[int]:
    """Each image's quantile bin (0..STRATA-1) of its first target, ties in one bin: what
    plan.by_class stratifies a regression listing by."""
    first = np.asarray([row[0] for row in values], np.float64)
    if not len(first):
        return []
    edges = np.quantile(first, np.linspace(0, 1, STRATA + 1)[1:-1])
    return np.searchsorted(edges, first, side="right").tolist()
