"""Pure planning of a write: which image goes to which split, and which shard, in what order.

Nothing here touches pixels or output files, so the whole plan is cheap, testable and
identical on every run with the same listing and flags; the writer only executes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Mapping, Sequence

from pipeline import errors
from pipeline.core import schema
from pipeline.writing.sources import SourceImage

_HASH_SCALE = float(1 << 64)


class PlanError(errors.PipelineError, ValueError):
    """The flags cannot produce a valid plan for this listing (e.g. more shards than images)."""


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    num_shards: int
    images: tuple[SourceImage, ...]

    def filename(self, compression: str = "NONE") -> str:
        return schema.shard_filename(self.split, self.index, self.num_shards, compression)


def path_hash(path: str) -> int:
    """A 64-bit hash of a relative path, the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big")


def assign_split(path: str, *, val_fraction: float, folds: int = 0, fold: int = 0) -> str:
    """train or val, decided by the path alone: adding images never moves existing ones.

    With `folds` > 1 the hash picks one of `folds` buckets and bucket `fold` is validation,
    so the k runs of a cross-validation see disjoint validation sets covering everything.
    """
    digest = path_hash(path)
    if folds > 1:
        return schema.VAL if digest % folds == fold else schema.TRAIN
    return schema.VAL if digest / _HASH_SCALE < val_fraction else schema.TRAIN


def split_labeled(
    images: Sequence[SourceImage], *, val_fraction: float, folds: int = 0, fold: int = 0
) -> dict[str, list[SourceImage]]:
    splits: dict[str, list[SourceImage]] = {schema.TRAIN: [], schema.VAL: []}
    for image in images:
        splits[assign_split(image.path, val_fraction=val_fraction, folds=folds, fold=fold)].append(
            image
        )
    return {name: members for name, members in splits.items() if members}


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
        digest.update(f"\n{shard.split}/{shard.index}/{shard.num_shards}".encode())
        for image in shard.images:
            digest.update(f"\n{image.path}\t{image.label}".encode("utf-8"))
    return digest.hexdigest()
