"""Multi-label listings: each image's classes (its tags), from a tag column or class columns.

Two shapes of CSV hold them, both common on Kaggle:
- a tag column (`--label_column=tags --multi_label`): Planet's `image_name,tags` with
  "agriculture clear primary", the delimiter `--label_delimiter` (space by default); the
  classes are the sorted union of the tags, and an empty cell is an image with no class;
- class columns (`--label_columns=a,b,c`) holding 0 or 1, with any number of 1s in a row (Plant
  Pathology's rows with several diseases). Exactly one 1 in every row is a single-label
  dataset (sources._one_hot_names) unless `--multi_label` says otherwise.

Writing it as multi-label, not as one class per combination of tags (86 "classes" of Planet's
8 tags), is what lets the trainer learn each tag and the submission name any combination.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import logging

from pipeline.writing import sources
from pipeline.writing.sources import InputError

# What a class column may hold, and which of those mean "this class".
ONE_HOT_VALUES = ("0", "1", "0.0", "1.0")
ONE_HOT_ONES = ("1", "1.0")


def row_tags(csv_path: str, frame, label_column: str, label_columns: Sequence[str],
             multi_label: bool, delimiter: str):
    """(each row's classes as ascending indices, the classes) of a multi-label CSV; (None, ())
    when the CSV is single-label (no --multi_label, and class columns with one 1 a row)."""
    if label_columns:
        hot = hot_matrix(csv_path, frame, label_columns)
        counts = hot.sum(axis=1)
        if not multi_label and (counts == 1).all():
            return None, ()
        if not multi_label:  # the rule; said, since it changes what is learned
            line = int(np.flatnonzero(counts != 1)[0]) + 2
            logging.warning("%s: %d row(s) hold no 1 or several 1s in the class columns "
                            "(first: line %d): written as multi-label (a sigmoid per class, "
                            "any number of classes an image); give --multi_label to say so, "
                            "or fix the rows for one class an image", csv_path,
                            int((counts != 1).sum()), line)
        return [tuple(np.flatnonzero(row).tolist()) for row in hot], tuple(label_columns)
    if not multi_label:
        return None, ()
    cells = [split_tags(cell, delimiter) for cell in frame[label_column].tolist()]
    classes = sources.sort_class_names({tag for cell in cells for tag in cell})
    if not classes:
        raise InputError(f"{csv_path}: the {label_column!r} column holds no tags (delimiter "
                         f"{delimiter!r}); name the tag column with --label_column and its "
                         "delimiter with --label_delimiter")
    index = {name: i for i, name in enumerate(classes)}
    return [tuple(sorted({index[tag] for tag in cell})) for cell in cells], classes


def split_tags(cell: str, delimiter: str) -> list[str]:
    """The tags in one cell: split at `delimiter` (a space also at runs of whitespace),
    stripped, empty ones dropped."""
    parts = cell.split() if delimiter == " " else cell.split(delimiter)
    return [part.strip() for part in parts if part.strip()]


def hot_matrix(csv_path: str, frame, label_columns: Sequence[str]) -> np.ndarray:
    """bool [rows, classes]: which class columns hold 1; InputError naming the line of a value
    other than 0 or 1."""
    values = frame[list(label_columns)].apply(lambda column: column.str.strip())
    bad = ~values.isin(ONE_HOT_VALUES).all(axis=1)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        shown = ", ".join(f"{name}={values.iloc[row][name]!r}" for name in label_columns)
        raise InputError(f"{csv_path}: line {row + 2} holds something other than 0 or 1 in "
                         f"the class columns ({shown}); each class column holds 1 for the "
                         "row's class(es) and 0 for the others")
    return values.isin(ONE_HOT_ONES).to_numpy()


def description(csv_path: str, images: Sequence[sources.SourceImage],
                classes: Sequence[str]) -> str:
    """For the log: "CSV train.csv (40,479 images, 17 classes, multi-label: 2.87 a image,
    0 without one)"."""
    counts = [len(image.tags) for image in images]
    return (f"CSV {csv_path} ({len(images):,} images, {len(classes)} classes, multi-label: "
            f"{np.mean(counts):.2f} an image, {counts.count(0):,} without one)")


def multi_hot(tags: Sequence[int], num_classes: int) -> np.ndarray:
    """float32 [num_classes]: 1 at each of `tags`, 0 elsewhere (a record's `target`)."""
    target = np.zeros(num_classes, np.float32)
    target[list(tags)] = 1.0
    return target
