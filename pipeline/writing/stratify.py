"""Multi-label stratification: a val split or folds in which every class keeps its share.

Splitting a multi-label set by one label (as plan.by_class does for classes) cannot keep the
share of every tag; a random split loses rare tags from whole folds (Planet's `blow_down`:
98 of 40,479 images). This is the iterative stratification of Sechidis, Tsoumakas and Vlahavas
(2011), as the `iterative-stratification` package and scikit-multilearn implement it, made
deterministic: images are taken in the order given (path-hash order, from
pipeline.writing.plan), so the same listing gives the same parts on every machine, with no
random state.

The rarest class is placed first: each of its images goes to the part that most wants that
class (then the part that most wants images at all, then the lowest part number), and every
class of the image counts against that part's wants. Images with no class fill the parts that
want images most.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.writing.sources import SourceImage


def stratified_parts(images: Sequence[SourceImage], num_classes: int,
                     sizes: Sequence[int]) -> list[list[SourceImage]]:
    """`images` (each with its `tags`) in parts of exactly `sizes` images (summing to
    len(images)), each class's images spread across the parts in proportion to their sizes.
    Each part keeps the order of `images`."""
    ordered = list(images)
    hot = np.zeros((len(ordered), num_classes), bool)
    for row, image in enumerate(ordered):
        hot[row, list(image.tags or ())] = True
    wants = np.array(sizes, np.float64)
    class_wants = np.outer(wants / max(len(ordered), 1), hot.sum(axis=0))  # [parts, classes]
    part_of = np.full(len(ordered), -1)
    left = hot.copy()
    while left.any():
        counts = left.sum(axis=0)
        rarest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        for row in np.flatnonzero(left[:, rarest]):
            part = _choose(class_wants[:, rarest], wants)
            part_of[row] = part
            wants[part] -= 1
            class_wants[part] -= hot[row]
            left[row] = False
    for row in np.flatnonzero(part_of < 0):  # images without a class
        part = _choose(wants, wants)
        part_of[row] = part
        wants[part] -= 1
    return [[ordered[row] for row in np.flatnonzero(part_of == part)]
            for part in range(len(sizes))]


def _choose(first: np.ndarray, then: np.ndarray) -> int:
    """The part with the largest `first`, ties broken by the largest `then`, then the lowest
    part number; only parts with room (then > 0) when any has room."""
    room = then > 0.5 if (then > 0.5).any() else np.ones(len(then), bool)
    candidates = np.flatnonzero(room)
    key = np.lexsort((candidates, -then[candidates], -first[candidates]))
    return int(candidates[key[0]])
