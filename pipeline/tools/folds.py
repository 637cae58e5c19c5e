"""A dataset written with `--folds=K` in words: each fold's size and balance, and one fold's view.

    fold      1 of 3: 'val' is fold 1 (17 records), 'train' folds 0, 2 (33 records)
    ...
    folds     3, stratified by class; --fold=k: 'val' is fold k, 'train' the others
      fold  records  shards  cat  dog  owl
         0       17       3    6    6    5
       * 1       17       2    6    5    6
         2       16       2    5    6    5

Balance is what the writer stratified by: records per class (per tag for multi-label: a record
counts under each of its tags), the smallest and largest class above FOLD_CLASS_COLUMNS
classes; for regression each target's mean and std, read from the folds' record indexes. The
view itself is schema.Manifest.for_fold, the one the trainer and predict read with `fold=k`
(inspection.fold_view checks --fold). Manifest and record indexes only: no TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.core import record_index, schema

# Up to this many classes (or tags) each gets a column of per-fold counts; above, each fold
# shows its smallest and largest class (a 176-class table would not fit a console).
FOLD_CLASS_COLUMNS = 8
CHOSEN_MARK = "*"


def fold_lines(manifest: schema.Manifest, data_dir: str) -> list[str]:
    """The folds table (empty without folds), the chosen fold of a view marked."""
    if not manifest.folds:
        return []
    count = len(manifest.folds)
    stratified = {schema.REGRESSION: "by the target's range",
                  schema.MULTI_LABEL: "by tag"}.get(manifest.target_kind, "by class")
    names, rows = balance_columns(manifest, data_dir)
    shards = [sum(1 for shard in fold_shards(manifest) if shard.fold == number)
              for number in range(count)]
    header = ("fold", "records", "shards", *names)
    table = [header] + [
        (f"{CHOSEN_MARK} {number}" if number == manifest.fold else str(number),
         f"{info.count:,}", f"{shards[number]:,}", *rows[number])
        for number, info in enumerate(manifest.folds)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"folds     {count}, stratified {stratified}; --fold=k: {schema.VAL!r} is fold k, "
             f"{schema.TRAIN!r} the others"]
    lines += ["  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip()
              for row in table]
    return lines


def fold_shards(manifest: schema.Manifest) -> list[schema.ShardInfo]:
    """The shards of every fold, as stored ('train') or in a view ('train' and 'val')."""
    return [shard for name in sorted(manifest.splits) for shard in manifest.split(name).shards
            if shard.fold is not None]


def view_line(manifest: schema.Manifest) -> list[str]:
    """What a fold view's 'train' and 'val' are (nothing for the manifest as stored)."""
    if manifest.fold is None:
        return []
    rest = ", ".join(str(n) for n in range(len(manifest.folds)) if n != manifest.fold)
    return [f"fold      {manifest.fold} of {len(manifest.folds)}: {schema.VAL!r} is fold "
            f"{manifest.fold} ({manifest.split(schema.VAL).count:,} records), "
            f"{schema.TRAIN!r} folds {rest} ({manifest.split(schema.TRAIN).count:,} records)"]


def balance_columns(manifest: schema.Manifest,
                    data_dir: str) -> tuple[Sequence[str], list[Sequence[str]]]:
    """(column names, one row of cells per fold): what each fold holds of each class, tag or
    target."""
    if manifest.target_kind == schema.REGRESSION:
        return target_columns(manifest, data_dir)
    per_fold = [[int(fold.class_counts.get(name, 0)) for name in manifest.classes]
                for fold in manifest.folds]
    if len(manifest.classes) <= FOLD_CLASS_COLUMNS:
        return manifest.classes, [[f"{n:,}" for n in counts] for counts in per_fold]
    rows = []
    for counts in per_fold:
        order = sorted(range(len(counts)), key=lambda k: (counts[k], manifest.classes[k]))
        small, large = order[0], order[-1]
        rows.append([f"{counts[small]:,} ({manifest.classes[small]})",
                     f"{counts[large]:,} ({manifest.classes[large]})"])
    kind = "tag" if manifest.target_kind == schema.MULTI_LABEL else "class"
    return (f"smallest {kind}", f"largest {kind}"), rows


def target_columns(manifest: schema.Manifest,
                   data_dir: str) -> tuple[Sequence[str], list[Sequence[str]]]:
    """Each target's mean and std in each fold, from the record indexes (none: compressed
    shards have no index)."""
    if manifest.compression != "NONE":
        return ("targets",), [["(compressed shards: not read)"] for _ in manifest.folds]
    widths = record_index.Widths.of(manifest)
    shards = fold_shards(manifest)
    names = [f"{name} mean/std" for name in manifest.targets]
    rows = []
    for number in range(len(manifest.folds)):
        loaded = [record_index.load_or_build(data_dir, shard, manifest.image_bytes,
                                             widths).index.targets
                  for shard in shards if shard.fold == number]
        values = (np.concatenate(loaded) if loaded
                  else np.zeros((0, len(manifest.targets)), np.float32))
        rows.append([f"{column.mean():.4g}/{column.std():.4g}" if len(column) else "-"
                     for column in values.T])
    return names, rows
