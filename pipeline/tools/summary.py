"""The manifest in words: splits, sizes, RAM, image format, source ratio, class histogram.

`python -m pipeline.inspect DATA_DIR` prints this first. It reads only `dataset.json` and file
sizes: no TensorFlow, no records. Also here: the split and record-position checks every part
of inspect makes before it prints anything.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from pipeline import errors
from pipeline.core import record_index, schema, workspace
from pipeline.core.units import format_bytes
from pipeline.tools.folds import fold_lines, view_line
from pipeline.writing import settings, sources, tfds_source
from pipeline.writing.sample import sample_listings

UNLABELED_CAPTION = "unlabeled"
HISTOGRAM_WIDTH = 40  # characters of the longest bar
CLASSES_LISTED = 20  # an unlabeled split lists at most this many class names
# Up to this many classes the summary shows the whole histogram; above, the smallest and
# largest EXTREME_CLASSES and the spread (--histogram shows all: 176 lines for 176 classes).
FULL_HISTOGRAM_CLASSES = 20
EXTREME_CLASSES = 5
# The in-memory table (dataset.indexed.load_table) holds each image and its int64 label; while
# it is loaded the parsed batches and their concatenation coexist, so the peak is about twice.
LABEL_BYTES = 8
CACHE_LOAD_PEAK_FACTOR = 2
MISSING_NAMED = 3  # missing files named in a message


class InspectError(errors.PipelineError, ValueError):
    """The request cannot be answered from this dataset (the message says what to change)."""


class SourceUnavailable(Exception):
    """The source images the dataset was written from cannot be found from here."""


# ---------------------------------------------------------------------------------------------
# Splits and record positions (pure: manifest only)
# ---------------------------------------------------------------------------------------------


def default_split(manifest: schema.Manifest) -> str:
    """`train` when there is one; otherwise the first split by name (an unlabeled-only dataset
    has just `test`)."""
    if schema.TRAIN in manifest.splits:
        return schema.TRAIN
    if not manifest.splits:
        raise InspectError("dataset.json lists no splits; rewrite the dataset with "
                           "`python -m pipeline.write --overwrite`")
    return sorted(manifest.splits)[0]


def check_split(manifest: schema.Manifest, split: str) -> schema.SplitInfo:
    if split not in manifest.splits:
        folds = (f"; its {schema.TRAIN!r} is in {len(manifest.folds)} folds: --fold=k shows fold "
                 f"k's held-out records as {schema.VAL!r}, k in 0..{len(manifest.folds) - 1}"
                 if manifest.folds and manifest.fold is None else "")
        raise InspectError(f"--split={split!r} is not in this dataset; use one of "
                           f"{sorted(manifest.splits)}{folds}")
    return manifest.splits[split]


def locate_record(manifest: schema.Manifest, split: str, index: int) -> tuple[int, int]:
    """(shard position in the split, record position in that shard) of record `index`."""
    info = check_split(manifest, split)
    if not 0 <= index < info.count:
        valid = f"use 0..{info.count - 1}" if info.count else "it is empty"
        raise InspectError(f"--record={index} is out of range: split {split!r} has "
                           f"{info.count:,} records ({valid})")
    for position, shard in enumerate(info.shards):
        if index < shard.count:
            return position, index
        index -= shard.count
    raise AssertionError("unreachable: validate_manifest checks the shard counts add up")


def class_caption(label: int, classes: Sequence[str]) -> str:
    """The class name of `label`, "unlabeled" for -1, and a visible marker for a bad index."""
    if label == schema.UNLABELED:
        return UNLABELED_CAPTION
    if 0 <= label < len(classes):
        return classes[label]
    return f"<bad label {label}>"


# ---------------------------------------------------------------------------------------------
# Summary (manifest and file sizes only)
# ---------------------------------------------------------------------------------------------


def rejected_paths(data_dir: str) -> frozenset[str]:
    """The image paths rejects.csv lists (as the listing gives them); none without it."""
    path = os.path.join(data_dir, schema.REJECTS_NAME)
    if not os.path.isfile(path):
        return frozenset()
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return frozenset(row.get("path") or "" for row in csv.DictReader(f))


def disk_bytes(paths: Sequence[str]) -> tuple[int, list[str]]:
    """(total size of the files that exist, the paths that do not)."""
    total, missing = 0, []
    for path in paths:
        try:
            total += os.path.getsize(path)
        except FileNotFoundError:
            missing.append(path)
    return total, missing


def cache_bytes(manifest: schema.Manifest, count: int) -> int:
    """RAM of the uint8 image table + labels that `cache="memory"` keeps for `count` records
    (the peak while loading is CACHE_LOAD_PEAK_FACTOR times this)."""
    return count * (manifest.image_bytes + label_bytes(manifest))


def label_bytes(manifest: schema.Manifest) -> int:
    """A record's label in the table: an int64, or a multi-label float32 target row."""
    return 4 * manifest.target_size if manifest.target_size else LABEL_BYTES


def histogram_lines(counts: Sequence[tuple[str, int]], width: int = HISTOGRAM_WIDTH) -> list[str]:
    """One `name  count  ####` line per (name, count); the largest count gets `width` marks,
    and any non-zero count at least one."""
    if not counts:
        return []
    largest = max(count for _, count in counts)
    name_w = max(len(name) for name, _ in counts)
    count_w = max(len(f"{count:,}") for _, count in counts)
    lines = []
    for name, count in counts:
        marks = 0 if largest == 0 else max(round(count / largest * width), 1 if count else 0)
        lines.append(f"{name:<{name_w}}  {count:>{count_w},}  {'#' * marks}".rstrip())
    return lines


@dataclasses.dataclass(frozen=True)
class SourceSize:
    listings: tuple[str, ...]  # the CSVs or class-folder roots that were listed
    files: int
    bytes: int


def source_listings(writer_flags: Mapping) -> list[str]:
    """The inputs the writer listed (CSV files or class-folder roots), from dataset.json's
    flags; relative paths are as the writer was given them, so they resolve from here only
    when this runs where the writer ran."""
    given = writer_flags.get("input")
    if not given:
        raise SourceUnavailable("dataset.json does not record the writer's --input")
    if tfds_source.is_tfds_input(given):
        # Its images are the prepared TFDS split's records: no folder of source files to count.
        raise SourceUnavailable(f"the source is a TensorFlow Datasets split ({given}), not "
                                "image files")
    sample = sample_listings(given, workspace.raw_dir())
    if sample is not None:
        return sample
    listings = [given]
    if writer_flags.get("test_input"):
        listings.append(writer_flags["test_input"])
    return listings


def source_size(writer_flags: Mapping, rejected: frozenset[str] = frozenset()) -> SourceSize:
    """Files and bytes of the source images the writer listed; SourceUnavailable says why not
    when a listing or any image is gone (a partial sum would give a wrong ratio). An image in
    `rejected` (rejects.csv's paths: a missing file, say) was never in the shards: its absence
    now is no loss."""
    listings = source_listings(writer_flags)
    image_files: set[str] = set()
    rejected_files: set[str] = set()
    for listing in listings:
        if not os.path.exists(listing):
            raise SourceUnavailable(
                f"{listing} is not found from {os.getcwd()} (dataset.json records --input as "
                "the writer was given it)")
        try:
            columns, targets = (writer_flags.get(name) for name in ("label_columns",
                                                                    "target_columns"))
            found = sources.load_listing(
                listing, image_column=writer_flags.get("image_column", "image"),
                label_column=writer_flags.get("label_column", "label"),
                image_path=writer_flags.get("image_path"),
                label_columns=settings.column_names(columns),
                multi_label=bool(writer_flags.get("multi_label")),
                label_delimiter=writer_flags.get("label_delimiter", " "),
                target_columns=settings.column_names(targets),
                allow_outside=True)  # sizes only, of what the writer was allowed to read
        except sources.InputError as err:
            raise SourceUnavailable(f"{listing} cannot be listed: {err}") from err
        image_files.update(image.file for image in found.images)
        rejected_files.update(image.file for image in found.images if image.path in rejected)
    total, missing = disk_bytes(sorted(image_files))
    missing = [path for path in missing if path not in rejected_files]
    if missing:
        raise SourceUnavailable(f"{len(missing):,} of {len(image_files):,} source images are "
                                f"gone, e.g. {missing[:MISSING_NAMED]}")
    return SourceSize(tuple(listings), len(image_files), total)


def summarize(manifest: schema.Manifest, data_dir: str, split: str, *,
              histogram: bool = False) -> str:
    """The manifest in words: splits, sizes, RAM, image format, source ratio, and the classes
    of `split` (the whole histogram with `histogram`, else compact above
    FULL_HISTOGRAM_CLASSES)."""
    info = check_split(manifest, split)
    channels, height, width = manifest.image_shape
    lines = [
        f"dataset   {data_dir}",
        f"images    (C,H,W) = ({channels}, {height}, {width}), {manifest.dtype}, layout "
        f"{manifest.layout}, {manifest.image_bytes:,} bytes each, compression "
        f"{manifest.compression}",
        f"format    version {manifest.format_version}, fingerprint {manifest.fingerprint[:16]}, "
        f"{manifest.rejects:,} source image(s) rejected (see {schema.REJECTS_NAME})",
    ]
    if manifest.mean is not None:
        lines.append("mean/std  of train, per channel (0-255): "
                     + " ".join(f"{m:.2f}" for m in manifest.mean) + " / "
                     + " ".join(f"{s:.2f}" for s in manifest.std or ()))
    lines += view_line(manifest)
    lines += ["", *split_table_lines(manifest, data_dir), ""]
    lines += [*fold_lines(manifest, data_dir), ""] if manifest.folds else []
    lines += source_lines(manifest, data_dir)
    if manifest.target_kind == schema.REGRESSION:
        lines += ["", *target_lines(manifest, data_dir, split)]
    else:
        lines += ["", *class_lines(manifest, split, info, histogram=histogram)]
    if manifest.features:
        lines += ["", f"features  {manifest.feature_size} (train split):", *[
            f"  {name}: {stats_text(manifest.feature_stats.get(name, {}))}"
            for name in manifest.features]]
    lines += missing_class_lines(manifest)
    return "\n".join(lines)


def split_table_lines(manifest: schema.Manifest, data_dir: str) -> list[str]:
    rows = []
    total_records = total_shards = total_bytes = 0
    for name in sorted(manifest.splits):
        info = manifest.splits[name]
        size, missing = disk_bytes(manifest.shard_paths(data_dir, name))
        note = f"  ({len(missing)} shard file(s) missing)" if missing else ""
        ram = cache_bytes(manifest, info.count)
        rows.append((name, f"{info.count:,}", f"{len(info.shards):,}",
                     f"{size:,} ({format_bytes(size)})",
                     f"{format_bytes(ram)} (load peak {format_bytes(ram * CACHE_LOAD_PEAK_FACTOR)})"
                     + note))
        total_records += info.count
        total_shards += len(info.shards)
        total_bytes += size
    rows.append(("total", f"{total_records:,}", f"{total_shards:,}",
                 f"{total_bytes:,} ({format_bytes(total_bytes)})", ""))
    header = ("split", "records", "shards", "bytes on disk", 'cache="memory" RAM')
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
                     f"{row[3]:>{widths[3]}}  {row[4]}".rstrip())
    lines.append(f"RAM: cache=\"memory\" keeps records x ({manifest.image_bytes:,} image + "
                 f"{label_bytes(manifest)} label) bytes;")
    lines.append(f"     loading needs about {CACHE_LOAD_PEAK_FACTOR}x that "
                 "(see pipeline.dataset.table)")
    return lines


def source_lines(manifest: schema.Manifest, data_dir: str) -> list[str]:
    try:
        found = source_size(manifest.flags, rejected_paths(data_dir))
    except SourceUnavailable as err:
        return [f"source    not available: {err}"]
    shards, _ = disk_bytes([path for name in manifest.splits
                            for path in manifest.shard_paths(data_dir, name)])
    ratio = f"{shards / found.bytes:.1f}x" if found.bytes else "n/a (0-byte source)"
    rejected = f", {manifest.rejects:,} of them rejected" if manifest.rejects else ""
    return [f"source    {', '.join(found.listings)}: {found.files:,} images{rejected}, "
            f"{found.bytes:,} bytes ({format_bytes(found.bytes)})",
            f"          shards on disk / source = {ratio}"]


def class_lines(manifest: schema.Manifest, split: str, info: schema.SplitInfo, *,
                histogram: bool = False) -> list[str]:
    """`split`'s records per class: a histogram, or above FULL_HISTOGRAM_CLASSES (unless
    `histogram`) the smallest and largest classes; then the spread."""
    if not info.class_counts:
        return [f"classes   {manifest.num_classes}: {listed(manifest.classes)}",
                f"          split {split!r} is unlabeled ({info.count:,} records): no class "
                "counts"]
    counts = [(name, int(info.class_counts.get(name, 0))) for name in manifest.classes]
    lines = [f"classes   {manifest.num_classes}, records per class in {split!r} "
             f"({info.count:,} records):"]
    if manifest.target_kind == schema.MULTI_LABEL:  # a record counts under each of its classes
        per_record = sum(count for _, count in counts) / max(info.count, 1)
        lines = [f"classes   {manifest.num_classes}, multi-label, records per class in "
                 f"{split!r} ({info.count:,} records, {per_record:.2f} classes a record):"]
    by_size = sorted(counts, key=lambda item: (item[1], item[0]))
    if histogram or len(counts) <= FULL_HISTOGRAM_CLASSES:
        lines += ["  " + line for line in histogram_lines(counts)]
    else:
        shown = EXTREME_CLASSES
        lines += [f"  smallest {shown}: " + _named_counts(by_size[:shown]),
                  f"  largest {shown}:  " + _named_counts(reversed(by_size[-shown:])),
                  f"  median {by_size[len(by_size) // 2][1]:,}; --histogram lists all "
                  f"{len(counts)}"]
    (small_name, small), (large_name, large) = by_size[0], by_size[-1]
    spread = f"{large / small:.2f}" if small else "inf"
    lines.append(f"  min {small:,} ({small_name}), max {large:,} ({large_name}), "
                 f"max/min {spread}")
    return lines


def _named_counts(items) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in items)


# Bins of a regression target's histogram.
TARGET_BINS = 10


def target_lines(manifest: schema.Manifest, data_dir: str, split: str) -> list[str]:
    """A regression dataset's targets: the train split's mean, std and range (dataset.json),
    and a histogram of `split`'s values, read from its record indexes (uncompressed local
    shards; numpy, no TensorFlow)."""
    lines = [f"targets   {len(manifest.targets)}, regression:"]
    for name in manifest.targets:
        lines.append(f"  {name}: train {stats_text(manifest.target_stats.get(name, {}))}")
    values = split_targets(manifest, data_dir, split)
    if values is None or split == schema.TEST:  # a CSV's test split is unlabeled: zeros
        return lines
    counts, edges = np.histogram(values[:, 0], bins=TARGET_BINS)
    lines.append(f"  {manifest.targets[0]} in {split!r} ({len(values):,} records):")
    lines += ["  " + line for line in histogram_lines(
        [(f"{low:.4g}-{high:.4g}", int(n)) for low, high, n in
         zip(edges[:-1], edges[1:], counts)])]
    return lines


def stats_text(stats) -> str:
    """"mean 59.8, std 27.8, min 1, max 98" of dataset.json's target or feature stats."""
    return ", ".join(f"{key} {stats.get(key, 0):.4g}" for key in ("mean", "std", "min", "max"))


def split_targets(manifest: schema.Manifest, data_dir: str, split: str):
    """float32 [records, targets] of `split`, from its record indexes; None for compressed
    shards (they have none)."""
    if manifest.compression != "NONE":
        return None
    loaded = [record_index.load_or_build(data_dir, shard, manifest.image_bytes,
                                         record_index.Widths.of(manifest)).index.targets
              for shard in manifest.split(split).shards]
    return np.concatenate(loaded) if loaded else np.zeros((0, manifest.target_size))


def missing_class_lines(manifest: schema.Manifest) -> list[str]:
    """For each labeled split, the classes it has no image of (a class never validated)."""
    lines = []
    for name in sorted(manifest.splits):
        counts = manifest.splits[name].class_counts
        if not counts:
            continue  # unlabeled
        missing = [cls for cls in manifest.classes if not counts.get(cls)]
        if missing:
            lines.append(f"  no image in {name!r}: {len(missing)} class(es): "
                         f"{listed(missing)}")
    return lines


def listed(names: Sequence[str]) -> str:
    """`a, b, c`, or the first CLASSES_LISTED and `, ... (N more)`."""
    more = (f", ... ({len(names) - CLASSES_LISTED} more)" if len(names) > CLASSES_LISTED
            else "")
    return ", ".join(names[:CLASSES_LISTED]) + more
