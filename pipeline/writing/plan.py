"""Pure planning of a write: which image goes to which split, and which shard, in what order.

Nothing here touches pixels or output files, so the whole plan is cheap, testable and
identical on every run with the same listing and flags; the writer only executes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from typing import Mapping, Sequence

from pipeline import errors
from pipeline.core import record_index, schema, units
from pipeline.writing import regression, stratify
from pipeline.writing.sources import SourceImage

class PlanError(errors.PipelineError, ValueError):
    """The flags cannot produce a valid plan for this listing (e.g. more shards than images)."""


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    num_shards: int
    images: tuple[SourceImage, ...]
    fold: int | None = None  # written with --folds: the fold all its images are in
    # Each record's target floats: a multi-label dataset's classes, a regression's targets.
    target_size: int = 0
    feature_size: int = 0  # each record's --feature_columns floats

    @property
    def widths(self) -> record_index.Widths:
        """What each record's index row holds beside the table."""
        return record_index.Widths(self.target_size, self.feature_size)

    def filename(self, compression: str = "NONE") -> str:
        return schema.shard_filename(self.split, self.index, self.num_shards, compression)


def path_hash(path: str) -> int:
    """A 64-bit hash of a relative path, the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big")


def by_class(images: Sequence[SourceImage]) -> dict[int, list[SourceImage]]:
    """Each class's images in path-hash order: an order no listing decides, in which an added
    image lands at a random place and moves no other. A regression listing's "classes" are
    the quantile bins of its first target (regression.strata)."""
    classes: dict[int, list[SourceImage]] = {}
    keys = ([image.label for image in images] if not images or images[0].values is None
            else regression.strata([image.values for image in images]))
    for image, key in zip(images, keys):
        classes.setdefault(key, []).append(image)
    return {label: sorted(members, key=lambda image: (path_hash(image.path), image.path))
            for label, members in sorted(classes.items())}


def hash_order(images: Sequence[SourceImage]) -> list[SourceImage]:
    """`images` in path-hash order (see by_class)."""
    return sorted(images, key=lambda image: (path_hash(image.path), image.path))


def num_tags(images: Sequence[SourceImage]) -> int | None:
    """The classes a multi-label listing's tags index (its highest tag + 1); None when the
    images are single-label."""
    if not images or images[0].tags is None:
        return None
    return max((max(image.tags) for image in images if image.tags), default=-1) + 1


def val_count(count: int, val_fraction: float) -> int:
    """A class's val images: its share, rounded, but at least one where the class has two or
    more images, and never all of them."""
    if count < 2 or val_fraction <= 0:
        return 0
    return min(count - 1, max(1, math.floor(count * val_fraction + 0.5)))


def split_labeled(images: Sequence[SourceImage], *,
                  val_fraction: float) -> dict[str, list[SourceImage]]:
    """train and val, stratified: each class's first val_count images in path-hash order are
    val. Adding an image to a class moves at most one of its images between the splits (the
    one at the boundary); no other class changes. A regression listing's classes are the
    tenths of its first target (by_class, where an added image can shift a boundary); a
    multi-label listing is split by iterative stratification (stratify.py)."""
    splits: dict[str, list[SourceImage]] = {schema.TRAIN: [], schema.VAL: []}
    tags = num_tags(images)
    if tags is not None:  # multi-label: every class keeps its share of val (stratify.py)
        held = val_count(len(images), val_fraction)
        splits[schema.TRAIN], splits[schema.VAL] = stratify.stratified_parts(
            hash_order(images), tags, [len(images) - held, held])
    for members in ({} if tags is not None else by_class(images)).values():
        held = val_count(len(members), val_fraction)
        splits[schema.VAL] += members[:held]
        splits[schema.TRAIN] += members[held:]
    return {name: members for name, members in splits.items() if members}


def fold_sizes(count: int, folds: int, first_larger: int) -> list[int]:
    """`count` images in `folds` sizes differing by at most one, the larger ones from fold
    `first_larger` on (cyclically)."""
    base, extra = divmod(count, folds)
    return [base + int((number - first_larger) % folds < extra) for number in range(folds)]


def assign_folds(images: Sequence[SourceImage], classes: Sequence[str],
                 folds: int) -> list[list[SourceImage]]:
    """The images of each of `folds` folds, stratified like scikit-learn's StratifiedKFold:
    each class's images, in path-hash order, cut into contiguous blocks whose sizes differ by
    at most one, so a class with at least `folds` images is in every fold. Which folds get a
    class's larger blocks follows a hash of its name: fold sizes balance without one class's
    count moving another's images. Adding an image to a class moves at most folds-1 of its
    images to another fold (each boundary shifts by at most one)."""
    tags = num_tags(images)
    if tags is not None:  # multi-label: every class in every fold, in its share (stratify.py)
        return stratify.stratified_parts(hash_order(images), tags,
                                         fold_sizes(len(images), folds, 0))
    per_fold: list[list[SourceImage]] = [[] for _ in range(folds)]
    for label, members in by_class(images).items():
        name = classes[label] if label < len(classes) else f"stratum {label}"  # regression
        first_larger = path_hash(name) % folds
        start = 0
        for number, size in enumerate(fold_sizes(len(members), folds, first_larger)):
            per_fold[number] += members[start:start + size]
            start += size
    return per_fold


def fold_shards(images: Sequence[SourceImage], classes: Sequence[str], *, folds: int,
                num_shards: int, seed: int) -> list[ShardSpec]:
    """The train split in `folds` folds, one copy: each fold in whole shards of its own
    (ShardSpec.fold), folds in order, `num_shards` in all, as evenly as the folds allow."""
    if num_shards < folds:
        raise PlanError(f"--shards={num_shards} with --folds={folds}: every fold needs shards "
                        f"of its own; use --shards>={folds}")
    shards: list[ShardSpec] = []
    shard_counts = fold_sizes(num_shards, folds, 0)
    for number, members in enumerate(assign_folds(images, classes, folds)):
        count = shard_counts[number]
        if count > len(members):
            raise PlanError(f"fold {number} has {len(members)} images, fewer than its {count} "
                            f"shards; use --shards<={folds * len(members)} or fewer --folds")
        ordered = order_split(members, split=f"{schema.TRAIN}/fold{number}", seed=seed,
                              shuffle=True)
        first = len(shards)
        shards += [dataclasses.replace(spec, index=first + spec.index, num_shards=num_shards,
                                       fold=number)
                   for spec in cut_into_shards(ordered, split=schema.TRAIN, num_shards=count)]
    return shards


# Shards of about this size read fastest: few enough files to open and interleave, each
# large enough that reading is sequential (TFDS and the tf.data guide aim at 100-200 MB).
GOOD_SHARD_BYTES = 100 << 20  # 100 MiB
# An average train shard below this draws a warning with a count that fits the data.
SMALL_SHARD_BYTES = 10 << 20  # 10 MiB


def small_shards_warning(images: int, shards: int, image_bytes: int, *,
                         folds: int = 0) -> str | None:
    """A warning when the train split's shards are much smaller than GOOD_SHARD_BYTES (36
    shards of 1.3 MiB for 1,800 images), suggesting a --shards that fits; else None. Data of
    less than SMALL_SHARD_BYTES in all is too small for shard sizes to matter. With --folds,
    a multiple of the folds: each fold needs shards of its own (fold_shards refuses fewer
    shards than folds), and as many as the others keeps the folds' shards of one size."""
    total = images * image_bytes
    suggested = max(1, math.ceil(total / GOOD_SHARD_BYTES))
    if folds > 1:
        suggested = folds * math.ceil(suggested / folds)
    if shards <= suggested or total < SMALL_SHARD_BYTES or total / shards >= SMALL_SHARD_BYTES:
        return None
    per_fold = f" (a multiple of --folds={folds})" if folds > 1 else ""
    return (f"{shards} train shards of ~{units.format_bytes(total / shards)} each for "
            f"{images:,} images: shards of ~{GOOD_SHARD_BYTES // units.MIB} MiB read fastest "
            f"(fewer files to open and interleave); --shards={suggested} fits this data"
            f"{per_fold}")


def shard_counts(
    split_sizes: Mapping[str, int], train_shards: int, overrides: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Shards per split: `train_shards` for train, others proportional (at least 1).

    Proportional sizing keeps shards of every split about the same size in bytes, which is what
    makes parallel reads balanced. An override (e.g. --val_shards) wins when positive.
    """
    overrides = overrides or {}
    reference = split_sizes.get(schema.TRAIN) or max(split_sizes.values(), default=0)
    counts = {}
    for name, size in split_sizes.items():
        if overrides.get(name, 0) > 0:
            wanted = overrides[name]
        elif name == schema.TRAIN or reference == 0:
            wanted = train_shards
        else:
            wanted = max(1, round(train_shards * size / reference))
            wanted = min(wanted, size)  # a derived count never asks for empty shards
        counts[name] = wanted
    for name, wanted in counts.items():
        size = split_sizes[name]
        if wanted > size:
            flag = "--shards" if name == schema.TRAIN else f"--{name}_shards"
            raise PlanError(
                f"{flag}={wanted} but split {name!r} has only {size} images; "
                f"use {flag}<={size}"
            )
        if wanted < 1:
            raise PlanError(f"split {name!r} needs at least 1 shard, got {wanted}")
    return counts


def order_split(images: Sequence[SourceImage], *, split: str, seed: int, shuffle: bool):
    """The record order of a split: shuffled with the seed, or the listing's order if not.

    Images are sorted by path before shuffling so the order depends only on the set of images
    and the seed, never on how a directory listing or CSV happened to be ordered.
    """
    if not shuffle:
        return list(images)
    ordered = sorted(images, key=lambda image: image.path)
    # Seeding with a string is stable across Python versions and platforms (sha512 of it).
    random.Random(f"{seed}/{split}").shuffle(ordered)
    return ordered


def cut_into_shards(images: Sequence[SourceImage], *, split: str, num_shards: int):
    """Contiguous blocks whose sizes differ by at most one; read in order they give `images`."""
    size, extra = divmod(len(images), num_shards)
    shards, start = [], 0
    for index in range(num_shards):
        stop = start + size + (1 if index < extra else 0)
        shards.append(ShardSpec(split, index, num_shards, tuple(images[start:stop])))
        start = stop
    return shards


def plan_shards(
    splits: Mapping[str, Sequence[SourceImage]], counts: Mapping[str, int], *, seed: int,
    unshuffled: frozenset[str] = frozenset({schema.TEST}),
) -> list[ShardSpec]:
    """Every shard of every split, in a fixed order (split by name, then index)."""
    shards = []
    for split in sorted(splits):
        ordered = order_split(
            splits[split], split=split, seed=seed, shuffle=split not in unshuffled
        )
        shards.extend(cut_into_shards(ordered, split=split, num_shards=counts[split]))
    return shards


def fingerprint(shards: Sequence[ShardSpec], settings: Mapping[str, object]) -> str:
    """A digest of everything that decides the output bytes: the plan and the settings.

    Two runs with the same fingerprint write the same files, so a rerun may keep shards that
    an interrupted run completed; any difference means a different command.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for shard in shards:
        fold = "" if shard.fold is None else f"/fold{shard.fold}"
        digest.update(f"\n{shard.split}/{shard.index}/{shard.num_shards}{fold}".encode())
        for image in shard.images:
            tags = "" if image.tags is None else "\t" + " ".join(map(str, image.tags))
            tags += "" if image.values is None else "\t" + " ".join(map(repr, image.values))
            tags += "" if image.features is None else "\tf " + " ".join(
                map(repr, image.features))
            digest.update(f"\n{image.path}\t{image.label}{tags}".encode("utf-8"))
    return digest.hexdigest()
