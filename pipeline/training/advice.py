"""Likely mistakes in a run's settings, said once before training starts.

None of these is wrong enough to refuse (a one-epoch test run with the default warmup is
fine to try), but each makes the run's result mean less than a user expects: a warmup longer
than training never reaches the learning rate asked for, and a class with no validation image
is never measured. Each fix fits the dataset's layout: a dataset written with --folds has no
--val_fraction to raise, and its held-out fold misses a class that has fewer images than folds.
"""

from __future__ import annotations

from pipeline.core import schema

# Classes named in a warning; the rest are counted.
NAMED_CLASSES = 5


def likely_mistakes(*, manifest: schema.Manifest, epochs: int, warmup_epochs: float,
                    train_split: str, val_split: str) -> list[str]:
    """One line per likely mistake (see the module doc); [] when none."""
    found = []
    if 0 < epochs <= warmup_epochs:
        found.append(f"warmup_epochs={warmup_epochs:g} is not shorter than epochs={epochs}: "
                     "the learning rate never reaches its peak (base_learning_rate); set "
                     "warmup_epochs below epochs (e.g. 0 for a short trial run)")
    missing = classes_missing_from(manifest, val_split, among=train_split)
    if missing:
        named = ", ".join(missing[:NAMED_CLASSES])
        more = f" and {len(missing) - NAMED_CLASSES} more" if len(missing) > NAMED_CLASSES else ""
        found.append(f"{len(missing)} of {manifest.num_classes} classes have no image in the "
                     f"{val_split} split ({named}{more}): val_accuracy says nothing about "
                     f"them; {more_validation(manifest, missing)}")
    return found


def more_validation(manifest: schema.Manifest, missing: list[str]) -> str:
    """How to get images of the `missing` classes into validation, for the dataset's layout:
    fewer folds (a fold holds about 1/K of each class), or a larger validation split."""
    if manifest.fold is None:
        return "write the dataset with a larger --val_fraction"
    folds = len(manifest.folds)
    fewest = min(sum(split.class_counts.get(name, 0) for split in manifest.folds)
                 for name in missing)
    return (f"a class needs {folds} images to be in each of the {folds} folds, and these have "
            f"as few as {fewest}: write the dataset with fewer --folds, or train with more "
            "images of them")


def classes_missing_from(manifest: schema.Manifest, split: str, *, among: str) -> list[str]:
    """Classes with training images but none in `split`, in class order."""
    if split not in manifest.splits or among not in manifest.splits:
        return []
    present = manifest.split(split).class_counts
    trained = manifest.split(among).class_counts
    return [name for name in manifest.classes if trained.get(name) and not present.get(name)]
