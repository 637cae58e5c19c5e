"""The training prior: the prediction of a test row whose image could not be read.

A dataset written with --allow_missing_test lists the test CSV's rows that have no record
(dataset.json's `missing_test`, pipeline.core.test_rows). A submission still needs a row for
each, in the CSV's order, so predict gives them what a model that never saw the image would
answer, from the train split alone:

    class        the class frequencies: the submission names the most frequent class, the
                 probabilities CSV holds the frequencies
    multi_label  each tag's frequency (the share of train images that carry it): the
                 submission names the tags whose frequency passes the run's threshold, the
                 rule every predicted row follows
    regression   each target's train mean (dataset.json's target_stats)

The rows go where the CSV has them, as rows of the same probabilities every predicted row has,
so the submission and probabilities CSVs treat them like any other row.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from pipeline.core import schema, test_rows

log = logging.getLogger(__name__)

# Rows without an image named in the log; the rest are counted.
NAMED = 5


def prior(manifest: schema.Manifest) -> np.ndarray:
    """float64 [outputs]: the train split's class or tag frequencies, or its target means."""
    if manifest.target_kind == schema.REGRESSION:
        return np.array([manifest.target_stats[name]["mean"] for name in manifest.targets],
                        np.float64)
    train = manifest.split(schema.TRAIN)
    counts = np.array([train.class_counts.get(name, 0) for name in manifest.classes],
                      np.float64)
    # Multi-label: the share of images with each tag (they need not sum to 1); one class per
    # image: the share of images in each class.
    images = train.count if manifest.target_kind == schema.MULTI_LABEL else counts.sum()
    return counts / max(images, 1)


def with_missing_rows(manifest: schema.Manifest, split: str, paths: Sequence[str],
                      probabilities: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(paths, probabilities) of every row of the test CSV, in its order: the records' as
    predicted, the rows without a record (manifest.missing_test) with the prior; other
    splits, and a test split with a record for every row, as they are."""
    if split != schema.TEST or not manifest.missing_test:
        return list(paths), probabilities
    rows = test_rows.every_row(paths, manifest.missing_test)
    filled = np.empty((len(rows), probabilities.shape[1]), np.float64)
    has_record = np.array([has for _, has in rows], bool)
    filled[has_record] = probabilities
    filled[~has_record] = prior(manifest)
    log_missing(manifest)
    return [path for path, _ in rows], filled


def log_missing(manifest: schema.Manifest) -> None:
    """One line: how many rows had no image, the first few, and what they were given."""
    missing = manifest.missing_test
    named = ", ".join(entry.path for entry in missing[:NAMED])
    more = f" and {len(missing) - NAMED} more" if len(missing) > NAMED else ""
    given = {schema.CLASS: "class frequencies", schema.MULTI_LABEL: "tag frequencies",
             schema.REGRESSION: "target means"}[manifest.target_kind]
    log.warning("%d test row(s) have no image (%s%s; listed in %s and %s): each is given the "
                "training prior, the train split's %s", len(missing), named, more,
                schema.MANIFEST_NAME, schema.REJECTS_NAME, given)
