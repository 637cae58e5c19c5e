"""dataset.json as text: the manifest (pipeline.core.schema.Manifest) to JSON and back.

Versions read: FORMAT_VERSION (3), 2 and 1. Format 3 is that of multi-label and regression
datasets (`target_kind`, `targets`, `target_stats`); class datasets are still written as 2.
Format 2 added, per uncompressed shard, the sha256 of
its record index (`index_sha256`), which ties every record's place and CRC to this file
(pipeline.core.record_index); the shard files themselves are byte for byte those of format 1.
A multi-label dataset (format 2 on) says so in `target_kind`; a class dataset has no such key.
A format 1 dataset reads on with the checks its indexes allow, and says how to upgrade it
(pipeline.dataset.options). `missing_test`, the test CSV's rows without a record, is optional
in any format (pipeline.core.test_rows).
"""

from __future__ import annotations

import json
import math

from pipeline.core import schema, test_rows
from pipeline.core.schema import FormatError, Manifest, ShardInfo, SplitInfo

# The oldest format_version this code reads.
OLDEST_FORMAT_VERSION = 1


def to_json(manifest: Manifest) -> str:
    if manifest.fold is not None:
        raise ValueError("a fold view is not a manifest to store; store the dataset's")
    document = {
        "format_version": manifest.format_version,
        "image_shape": list(manifest.image_shape),
        "dtype": manifest.dtype,
        "layout": manifest.layout,
        "compression": manifest.compression,
        "classes": list(manifest.classes),
        "mean": None if manifest.mean is None else list(manifest.mean),
        "std": None if manifest.std is None else list(manifest.std),
        "rejects": manifest.rejects,
        "splits": {
            name: {
                "count": info.count,
                "class_counts": dict(info.class_counts),
                "shards": [shard.to_dict() for shard in info.shards],
            }
            for name, info in manifest.splits.items()
        },
        "flags": dict(manifest.flags),
        "fingerprint": manifest.fingerprint,
    }
    if manifest.target_kind != schema.CLASS:  # a class dataset's text stays as it was
        document["target_kind"] = manifest.target_kind
    if manifest.features:
        document["features"] = list(manifest.features)
        document["feature_stats"] = {name: dict(stats)
                                     for name, stats in manifest.feature_stats.items()}
    if manifest.targets:
        document["targets"] = list(manifest.targets)
        document["target_stats"] = {name: dict(stats)
                                    for name, stats in manifest.target_stats.items()}
    if manifest.folds:
        document["folds"] = [{"count": fold.count, "class_counts": dict(fold.class_counts)}
                             for fold in manifest.folds]
    if manifest.missing_test:  # absent otherwise: such a dataset's text stays as it was
        document[test_rows.KEY] = test_rows.to_json(manifest.missing_test)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def from_json(text: str, source: str = schema.MANIFEST_NAME) -> Manifest:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(f"{source} is not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise FormatError(f"{source} must hold a JSON object, got {type(doc).__name__}")
    version = doc.get("format_version")
    if version not in range(OLDEST_FORMAT_VERSION, schema.FORMAT_VERSION + 1):
        raise FormatError(
            f"{source} has format_version {version!r}; this code reads "
            f"{OLDEST_FORMAT_VERSION}..{schema.FORMAT_VERSION}. Rewrite the dataset with "
            "`python -m pipeline.write --overwrite`, or use the code that wrote it."
        )
    try:
        manifest = Manifest(
            image_shape=tuple(int(d) for d in doc["image_shape"]),
            classes=tuple(doc["classes"]),
            splits={name: _split(info) for name, info in doc["splits"].items()},
            mean=None if doc.get("mean") is None else tuple(doc["mean"]),
            std=None if doc.get("std") is None else tuple(doc["std"]),
            compression=doc.get("compression", "NONE"),
            rejects=int(doc.get("rejects", 0)),
            flags=doc.get("flags", {}),
            fingerprint=doc.get("fingerprint", ""),
            format_version=version,
            dtype=doc["dtype"],
            layout=doc["layout"],
            folds=tuple(SplitInfo(int(fold["count"]), (), dict(fold["class_counts"]))
                        for fold in doc.get("folds", ())),
            target_kind=doc.get("target_kind", schema.CLASS),
            targets=tuple(doc.get("targets", ())),
            target_stats=doc.get("target_stats", {}),
            features=tuple(doc.get("features", ())),
            feature_stats=doc.get("feature_stats", {}),
            missing_test=test_rows.from_json(doc.get(test_rows.KEY)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise FormatError(f"{source} is missing or has a malformed field: {err!r}") from err
    validate_manifest(manifest, source)
    return manifest


def _split(info: dict) -> SplitInfo:
    return SplitInfo(count=int(info["count"]),
                     shards=tuple(ShardInfo(**shard) for shard in info["shards"]),
                     class_counts=dict(info.get("class_counts", {})))


def validate_manifest(manifest: Manifest, source: str = schema.MANIFEST_NAME) -> None:
    if (manifest.dtype, manifest.layout) != (schema.DTYPE, schema.LAYOUT):
        raise FormatError(f"{source}: dtype/layout {manifest.dtype}/{manifest.layout}; "
                          f"expected {schema.DTYPE}/{schema.LAYOUT}")
    if len(manifest.image_shape) != 3 or manifest.image_shape[0] != schema.CHANNELS:
        raise FormatError(f"{source}: image_shape {list(manifest.image_shape)} is not [3, H, W]")
    schema.compression_suffix(manifest.compression)
    needs = schema.format_version_for(manifest.target_kind, manifest.features)
    if needs > schema.CLASS_FORMAT_VERSION and manifest.format_version < needs:
        raise FormatError(f"{source}: a {manifest.target_kind} dataset"
                          f"{' with features' if manifest.features else ''} needs "
                          f"format_version {needs}, it says {manifest.format_version}")
    _validate_target_stats(manifest, source)
    if manifest.target_kind not in schema.TARGET_KINDS:
        raise FormatError(f"{source}: target_kind {manifest.target_kind!r} is none of "
                          f"{list(schema.TARGET_KINDS)}; rewrite the dataset with this code's "
                          "`python -m pipeline.write`, or read it with the code that wrote it")
    if (manifest.target_kind == schema.REGRESSION) != bool(manifest.targets):
        raise FormatError(f"{source}: a regression dataset, and only one, names its targets "
                          f"(target_kind {manifest.target_kind!r}, targets "
                          f"{list(manifest.targets)})")
    for name, info in manifest.splits.items():
        total = sum(shard.count for shard in info.shards)
        if total != info.count:
            raise FormatError(
                f"{source}: split {name!r} says count={info.count} but its shards hold {total}"
            )
        _validate_index_digests(manifest, info, source)
    validate_folds(manifest, source)
    test = manifest.splits.get(schema.TEST)
    problem = test_rows.problem(manifest.missing_test, test.count if test else None)
    if problem:
        raise FormatError(f"{source}: {problem}")


def _validate_target_stats(manifest: Manifest, source: str) -> None:
    """A regression dataset's target_stats: each target's mean, min and max, and a std above
    0 (the trainer divides by it)."""
    named = [(name, manifest.target_stats) for name in manifest.targets] + [
        (name, manifest.feature_stats) for name in manifest.features]
    for name, all_stats in named:
        stats = all_stats.get(name, {})
        try:
            if not all(math.isfinite(float(stats[key])) for key in ("mean", "min", "max")) \
                    or not float(stats["std"]) > 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{source}: target_stats[{name!r}] is {stats!r}; it needs a "
                              "finite mean, min and max and a std above 0") from None


def _validate_index_digests(manifest: Manifest, info: SplitInfo, source: str) -> None:
    """Format 2 lists an index digest for exactly the shards that have an index."""
    if manifest.format_version < 2:
        return
    indexed = manifest.compression == "NONE"
    for shard in info.shards:
        if (shard.index_sha256 is not None) != indexed:
            needs = "needs" if indexed else "cannot have"
            raise FormatError(f"{source}: shard {shard.file} {needs} an index_sha256 (format "
                              f"{manifest.format_version}, compression {manifest.compression})")


def validate_folds(manifest: Manifest, source: str) -> None:
    """Every shard of a folded train split in a fold, each fold's count its shards'."""
    if not manifest.folds:
        return
    shards = manifest.split(schema.TRAIN).shards
    for number, fold in enumerate(manifest.folds):
        total = sum(shard.count for shard in shards if shard.fold == number)
        if total != fold.count:
            raise FormatError(f"{source}: fold {number} says count={fold.count} but its "
                              f"shards hold {total}")
    if sum(fold.count for fold in manifest.folds) != manifest.split(schema.TRAIN).count:
        raise FormatError(f"{source}: a {schema.TRAIN!r} shard is in none of its folds")
