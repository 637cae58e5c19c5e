"""The end of a write: check what was written against the plan, then the dataset-wide files.

Every planned shard must exist with its planned records (written or rejected), its size and,
uncompressed, its DALI index; then rejects.csv, the TFDS metadata and, last and atomically,
dataset.json are written, and `.progress/` is dropped. dataset.json's presence is what says
the dataset is complete. A write's `Summary` and its last log line are here too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

from absl import logging

from pipeline import errors
from pipeline.core import files, schema, test_rows, units
from pipeline.writing import kept, plan, progress_dir, regression, settings, tfds_export
from pipeline.writing.output_dir import shard_files
from pipeline.writing.rejects import check_rejects, planned_images, write_rejects_csv
from pipeline.writing.settings import WriteConfig
from pipeline.writing.shard_writer import ShardResult
from pipeline.writing.write_plan import WritePlan


class VerificationError(errors.PipelineError, RuntimeError):
    """What was written does not match the plan (a shard removed or changed meanwhile)."""

    exit_code = errors.EXIT_FAILED


@dataclasses.dataclass(frozen=True)
class Summary:
    """What write_dataset did, for its caller and its last log line (log_summary)."""

    output_dir: str
    manifest: schema.Manifest | None  # None after one task of several (no --finalize yet)
    written: int  # shards written by this run
    reused: int  # shards kept from an interrupted run
    seconds: float
    warnings: tuple[str, ...] = ()  # about the input: empty classes, skipped folders, ...
    rejects: Mapping[str, int] = dataclasses.field(default_factory=dict)  # split -> images


def check_written(output_dir: str, shards: Sequence[plan.ShardSpec],
           results: Mapping[tuple[str, int], ShardResult], compression: str) -> None:
    """Every planned shard exists, holds planned minus rejected records, has its size, and
    (uncompressed) has its DALI index."""
    for spec in shards:
        result = results.get((spec.split, spec.index))
        name = spec.filename(compression)
        if result is None:
            raise VerificationError(f"shard {name} was planned but never written")
        if result.images_seen != len(spec.images):
            raise VerificationError(
                f"{name}: planned {len(spec.images)} images, wrote {result.count} records and "
                f"rejected {len(result.rejects)}"
            )
        size = os.path.getsize(os.path.join(output_dir, name))
        if size != result.bytes:
            raise VerificationError(f"{name}: {size} bytes on disk, {result.bytes} written")
        missing = [f for f in shard_files(spec, compression)
                   if not os.path.exists(os.path.join(output_dir, f))]
        if missing:
            raise VerificationError(f"{name}: {missing[0]} is missing; run the same command "
                                    "again to rewrite the shard with it")


def finish(config: WriteConfig, write_plan: WritePlan,
           results: Mapping[tuple[str, int], ShardResult]) -> schema.Manifest:
    """Verify, then write rejects.csv, the TFDS metadata and (last) dataset.json, then drop
    `.progress/`."""
    output_dir, shards = config.output_dir, write_plan.shards
    check_written(output_dir, shards, results, config.compression)
    results = {key: with_index_digest(output_dir, result, config.compression)
               for key, result in results.items()}
    check_rejects(shards, results, planned_images(shards), config)
    write_rejects_csv(output_dir, [r for result in results.values() for r in result.rejects])
    manifest = build_manifest(write_plan, results, config)
    no_tfds = tfds_export.write_metadata(output_dir, manifest)
    if no_tfds is not None:
        logging.info("no TFDS metadata (tfds.builder_from_directory): %s", no_tfds)
    if config.compression != "NONE":
        logging.info("no DALI index files: DALI reads only uncompressed TFRecords")
    files.atomic_write_text(schema.manifest_path(output_dir), manifest.to_json())
    progress_dir.remove(output_dir)
    return manifest


def with_index_digest(output_dir: str, result, compression: str):
    """`result` with its record index's sha256: a `.progress/` record of an older write has
    none, and its index file was rebuilt from the shard and checked when it was kept."""
    if compression != "NONE" or result.index_sha256 is not None:
        return result
    return dataclasses.replace(result, index_sha256=kept.index_digest(output_dir, result.file))


def split_info(specs, results, classes) -> schema.SplitInfo:
    """The manifest's entry for the shards `specs`, from what writing them counted."""
    split_results = [results[(spec.split, spec.index)] for spec in specs]
    label_counts: dict[int, int] = {}
    for result in split_results:
        for label, n in result.label_counts.items():
            label_counts[label] = label_counts.get(label, 0) + n
    return schema.SplitInfo(
        count=sum(r.count for r in split_results),
        shards=tuple(schema.ShardInfo(r.file, r.count, r.bytes, r.sha256, spec.fold,
                                      r.index_sha256)
                     for spec, r in zip(specs, split_results)),
        class_counts={classes[label]: label_counts[label] for label in sorted(label_counts)
                      if label != schema.UNLABELED},
    )


def fold_infos(shards, results, classes) -> tuple[schema.SplitInfo, ...]:
    """One entry per fold (count and class counts; its shards are in the train split's)."""
    folds = sorted({spec.fold for spec in shards if spec.fold is not None})
    return tuple(dataclasses.replace(split_info([s for s in shards if s.fold == fold], results,
                                                classes), shards=())
                 for fold in folds)


def build_manifest(write_plan: WritePlan, results, config: WriteConfig) -> schema.Manifest:
    """dataset.json of the planned shards once written (`results`)."""
    shards, main = write_plan.shards, write_plan.main
    classes = main.classes
    splits = {}
    stats = {}
    for split in sorted({spec.split for spec in shards}):
        specs = [spec for spec in shards if spec.split == split]
        split_results = [results[(spec.split, spec.index)] for spec in specs]
        splits[split] = split_info(specs, results, classes)
        stats[split] = channel_stats(
            [sum(r.pixel_sum[c] for r in split_results) for c in range(schema.CHANNELS)],
            [sum(r.pixel_sq_sum[c] for r in split_results) for c in range(schema.CHANNELS)],
            sum(r.pixels for r in split_results),
        )
    mean, std = stats.get(schema.TRAIN, (None, None))
    return schema.Manifest(
        image_shape=(schema.CHANNELS, config.image_size, config.image_size),
        classes=tuple(classes),
        splits=splits,
        mean=mean,
        std=std,
        compression=config.compression,
        rejects=sum(len(r.rejects) for r in results.values()),
        flags={**settings.manifest_flags(config), **write_plan.sources},
        fingerprint=write_plan.fingerprint,
        folds=fold_infos(shards, results, classes),
        target_kind=main.target_kind, targets=main.targets,
        format_version=schema.format_version_for(main.target_kind, main.features),
        target_stats=train_stats(shards, results, main.targets, "values"),
        features=main.features,
        feature_stats=train_stats(shards, results, main.features, "features"),
        missing_test=missing_test(shards, results),
    )


def missing_test(shards, results) -> tuple[test_rows.MissingRow, ...]:
    """The test split's rows without a record (its rejects), by their place in its listing."""
    specs = [spec for spec in shards if spec.split == schema.TEST]
    rejected = {path for spec in specs for path, _ in results[(spec.split, spec.index)].rejects}
    return test_rows.missing_rows([image.path for spec in specs for image in spec.images],
                                  rejected)


def train_stats(shards, results, names, field: str) -> dict:
    """Each of `names`' mean, std, min and max over the train split's written records (its
    rejects left out), from each image's `field` (a regression's `values`, `features`); {}
    without names."""
    if not names:
        return {}
    specs = [spec for spec in shards if spec.split == schema.TRAIN]
    rejected = {path for spec in specs for path, _ in results[(spec.split, spec.index)].rejects}
    return regression.stats([getattr(image, field) for spec in specs for image in spec.images
                             if image.path not in rejected], names)


def channel_stats(pixel_sum: Sequence[int], pixel_sq_sum: Sequence[int], pixels: int):
    """Per-channel mean and std (population) from exact integer sums over `pixels` per channel."""
    if pixels == 0:
        return None, None
    mean = tuple(round(s / pixels, 4) for s in pixel_sum)
    # Integer arithmetic until the last step: var = (n*sum(x^2) - sum(x)^2) / n^2, exactly.
    var = [(pixels * sq - s * s) / (pixels * pixels) for s, sq in zip(pixel_sum, pixel_sq_sum)]
    std = tuple(round(max(v, 0.0) ** 0.5, 4) for v in var)
    return mean, std


def log_summary(summary: Summary, total_images: int) -> None:
    """The write's last line: what was written, how fast, where."""
    manifest = summary.manifest
    split_text = " + ".join(f"{info.count:,} {name}" for name, info in manifest.splits.items())
    num_shards = sum(len(info.shards) for info in manifest.splits.values())
    size = sum(shard.bytes for info in manifest.splits.values() for shard in info.shards)
    rate = total_images / max(summary.seconds, 1e-9)
    logging.info(
        "wrote %s images in %d shards (%s; %d written, %d kept) in %.1f s (%.0f img/s); "
        "%d rejected (%s) -> %s", split_text, num_shards, units.format_bytes(size),
        summary.written, summary.reused, summary.seconds, rate, manifest.rejects,
        ", ".join(f"{n:,} {split}" for split, n in sorted(summary.rejects.items())),
        schema.manifest_path(summary.output_dir))
    if manifest.missing_test:
        logging.warning("%d test row(s) have no image (--allow_missing_test): %s lists them, "
                        "and predict gives them the training prior", len(manifest.missing_test),
                        schema.MANIFEST_NAME)
    for warning in summary.warnings:  # said at planning too; repeated where it is seen
        logging.warning("note: %s", warning)
