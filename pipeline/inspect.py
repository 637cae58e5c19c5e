r"""Look inside a written dataset: the manifest in words, a grid of its images, one record.

    python -m pipeline.inspect workspace/shards/digits                  # summary of the train split
    python -m pipeline.inspect workspace/shards/digits --split=val --grid=/tmp/val.png --n=64
    python -m pipeline.inspect workspace/shards/digits --record=0      # + one record in full

The summary (always printed) gives every split's record count, shards and bytes on disk, the
RAM `make_dataset(cache="memory")` needs for it, the image shape and format, the size of the
source images when they can still be found, and the per-class counts of --split as a text
histogram. It reads only `dataset.json` and file sizes: no TensorFlow, no records.

--grid writes a PNG of the first --n records of --split in shard order (the order evaluation
reads them), each tile the stored uint8 CHW image shown as HWC RGB with its class name under
it. Small images are enlarged by a whole factor (nearest neighbour: each pixel becomes a
square) so tiles are at least MIN_TILE_PX; `grid_layout` says where every tile lands.
A wrong channel order or a transposed image is visible at a glance here.

--record=N prints record N of --split (0-based, shard order): its shard and position there,
path, label, per-channel statistics and its first bytes.

Exit codes: 0 done; 2 bad input (no dataset.json, unknown --split, --record out of range,
--n < 1, missing or damaged shards). Flag syntax errors are absl's (exit 1).

Run it with `-m` from the repository root: this module shares the standard library's name
`inspect`, which is harmless as `pipeline.inspect` but not as a script (`python
pipeline/inspect.py` would put pipeline/ first on sys.path and shadow the standard module).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import sys
from typing import Mapping, Sequence, TextIO

import numpy as np
from absl import app, flags, logging
from PIL import Image, ImageDraw, ImageFont

from pipeline import files, schema, sources, tfds_source, workspace

DEFAULT_GRID_IMAGES = 64
# Tiles smaller than this (pixels, on their short side) are enlarged by the smallest whole
# factor that reaches it: an 8x8 digit becomes 64x64 instead of a speck.
MIN_TILE_PX = 64
GRID_PADDING_PX = 4  # around the grid and between tiles
# The caption band under each tile (pixels): Pillow's default font is 10 px, ~12 px with
# descenders, drawn LABEL_GAP_PX below the tile.
LABEL_HEIGHT_PX = 14
LABEL_GAP_PX = 1
BACKGROUND_RGB = (255, 255, 255)
TEXT_RGB = (0, 0, 0)
UNLABELED_CAPTION = "unlabeled"
HISTOGRAM_WIDTH = 40  # characters of the longest bar
CLASSES_LISTED = 20  # an unlabeled split lists at most this many class names
HEX_BYTES = 32  # first bytes of the image shown by --record
CHANNEL_NAMES = ("R", "G", "B")  # the writer stores RGB (pipeline.images)
# The in-memory table (dataset.load_table) holds each image and its int64 label; while it is
# loaded the parsed batches and their concatenation coexist, so the peak is about twice that.
LABEL_BYTES = 8
CACHE_LOAD_PEAK_FACTOR = 2
# How write.manifest_flags records an --input left empty: the bundled sample, written under
# workspace.raw_dir() with a train.csv and a test.csv (see write.resolve_inputs).
SAMPLE_INPUT_PREFIX = "sample:"
SAMPLE_CSVS = ("train.csv", "test.csv")
MISSING_NAMED = 3  # missing files named in a message
EXIT_BAD_INPUT = 2


class InspectError(ValueError):
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
        raise InspectError(f"--split={split!r} is not in this dataset; use one of "
                           f"{sorted(manifest.splits)}")
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


def format_bytes(count: float) -> str:
    """`27.1 MB`: decimal units, as the writer's summary line uses."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


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
    """RAM of the uint8 image table + int64 labels that `cache="memory"` keeps for `count`
    records (the peak while loading is CACHE_LOAD_PEAK_FACTOR times this)."""
    return count * (manifest.image_bytes + LABEL_BYTES)


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
    if given.startswith(SAMPLE_INPUT_PREFIX):
        folder = os.path.join(workspace.raw_dir(), given[len(SAMPLE_INPUT_PREFIX):])
        return [os.path.join(folder, name) for name in SAMPLE_CSVS]
    listings = [given]
    if writer_flags.get("test_input"):
        listings.append(writer_flags["test_input"])
    return listings


def source_size(writer_flags: Mapping) -> SourceSize:
    """Files and bytes of the source images the writer listed; SourceUnavailable says why not
    when a listing or any image is gone (a partial sum would give a wrong ratio)."""
    listings = source_listings(writer_flags)
    image_files: set[str] = set()
    for listing in listings:
        if not os.path.exists(listing):
            raise SourceUnavailable(
                f"{listing} is not found from {os.getcwd()} (dataset.json records --input as "
                "the writer was given it)")
        try:
            found = sources.load_listing(
                listing, image_column=writer_flags.get("image_column", "image"),
                label_column=writer_flags.get("label_column", "label"))
        except sources.InputError as err:
            raise SourceUnavailable(f"{listing} cannot be listed: {err}") from err
        image_files.update(image.file for image in found.images)
    total, missing = disk_bytes(sorted(image_files))
    if missing:
        raise SourceUnavailable(f"{len(missing):,} of {len(image_files):,} source images are "
                                f"gone, e.g. {missing[:MISSING_NAMED]}")
    return SourceSize(tuple(listings), len(image_files), total)


def summarize(manifest: schema.Manifest, data_dir: str, split: str) -> str:
    """The manifest in words: splits, sizes, RAM, image format, source ratio, and the class
    histogram of `split`."""
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
    lines += ["", *split_table_lines(manifest, data_dir), ""]
    lines += source_lines(manifest, data_dir)
    lines += ["", *class_lines(manifest, split, info)]
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
                 f"{LABEL_BYTES} label) bytes;")
    lines.append(f"     loading needs about {CACHE_LOAD_PEAK_FACTOR}x that "
                 "(see pipeline.dataset.load_table)")
    return lines


def source_lines(manifest: schema.Manifest, data_dir: str) -> list[str]:
    try:
        found = source_size(manifest.flags)
    except SourceUnavailable as err:
        return [f"source    not available: {err}"]
    shards, _ = disk_bytes([path for name in manifest.splits
                            for path in manifest.shard_paths(data_dir, name)])
    ratio = f"{shards / found.bytes:.1f}x" if found.bytes else "n/a (0-byte source)"
    rejected = f", {manifest.rejects:,} of them rejected" if manifest.rejects else ""
    return [f"source    {', '.join(found.listings)}: {found.files:,} images{rejected}, "
            f"{found.bytes:,} bytes ({format_bytes(found.bytes)})",
            f"          shards on disk / source = {ratio}"]


def class_lines(manifest: schema.Manifest, split: str, info: schema.SplitInfo) -> list[str]:
    if not info.class_counts:
        names = ", ".join(manifest.classes[:CLASSES_LISTED])
        more = f", ... ({manifest.num_classes - CLASSES_LISTED} more)" if (
            manifest.num_classes > CLASSES_LISTED) else ""
        return [f"classes   {manifest.num_classes}: {names}{more}",
                f"          split {split!r} is unlabeled ({info.count:,} records): no class "
                "counts"]
    counts = [(name, int(info.class_counts.get(name, 0))) for name in manifest.classes]
    lines = [f"classes   {manifest.num_classes}, records per class in {split!r} "
             f"({info.count:,} records):"]
    lines += ["  " + line for line in histogram_lines(counts)]
    smallest = min(counts, key=lambda item: item[1])
    largest = max(counts, key=lambda item: item[1])
    spread = f"{largest[1] / smallest[1]:.2f}" if smallest[1] else "inf"
    lines.append(f"  min {smallest[1]:,} ({smallest[0]}), max {largest[1]:,} ({largest[0]}), "
                 f"max/min {spread}")
    return lines


# ---------------------------------------------------------------------------------------------
# Reading records (TensorFlow, imported lazily: the summary never needs it)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    index: int  # in the split, shard order
    shard: str  # file name
    index_in_shard: int
    path: str
    label: int
    image: np.ndarray  # uint8 [3, H, W], as stored


def decode_image(raw: bytes, image_shape: Sequence[int], where: str) -> np.ndarray:
    """Stored image bytes -> uint8 [C, H, W], or a FormatError naming the record."""
    expected = math.prod(image_shape)
    if len(raw) != expected:
        raise schema.FormatError(f"{where}: the image holds {len(raw):,} bytes; image_shape "
                                 f"{list(image_shape)} in dataset.json needs {expected:,}")
    return np.frombuffer(raw, np.uint8).reshape(image_shape)


def read_records(data_dir: str, split: str, start: int, count: int,
                 manifest: schema.Manifest | None = None) -> list[Record]:
    """Records start..start+count-1 of `split`, in shard order, each with where it lies.

    Reads shard by shard from the one holding `start`, so a record deep in a large split costs
    reading its own shard, not the ones before it.
    """
    import tensorflow as tf

    from pipeline import dataset as reader  # imports TensorFlow: only when records are read

    manifest = manifest or schema.read_manifest(data_dir)
    info = check_split(manifest, split)
    if count < 1:
        return []
    position, offset = locate_record(manifest, split, start)
    locate_record(manifest, split, start + count - 1)  # the last one must exist too
    paths = manifest.shard_paths(data_dir, split)
    _, missing = disk_bytes(paths)
    if missing:
        raise InspectError(f"{len(missing)} shard file(s) of {split!r} are missing, e.g. "
                           f"{missing[:MISSING_NAMED]}; copy them back or rewrite the dataset")
    compression = schema.tf_compression_type(manifest.compression)
    records: list[Record] = []
    while len(records) < count:
        shard = info.shards[position]
        wanted = min(count - len(records), shard.count - offset)
        dataset = reader.read_shards(paths[position], compression).skip(offset).take(wanted)
        try:
            batches = list(dataset.batch(wanted))
        except tf.errors.OpError as err:
            raise InspectError(f"{shard.file} cannot be read ({err.message}); it is damaged: "
                               "rewrite the dataset with `python -m pipeline.write "
                               "--overwrite`") from err
        got = sum(int(batch.shape[0]) for batch in batches)
        if got != wanted:
            raise InspectError(f"{shard.file} holds {offset + got} records, dataset.json says "
                               f"{shard.count}; rewrite the dataset")
        parsed = tf.io.parse_example(batches[0], schema.tf_feature_spec())
        for i in range(wanted):
            where = f"{shard.file} record {offset + i}"
            records.append(Record(
                index=start + len(records),
                shard=shard.file,
                index_in_shard=offset + i,
                path=parsed[schema.PATH_KEY][i].numpy().decode("utf-8"),
                label=int(parsed[schema.LABEL_KEY][i]),
                image=decode_image(parsed[schema.IMAGE_KEY][i].numpy(), manifest.image_shape,
                                   where),
            ))
        position, offset = position + 1, 0
    return records


# ---------------------------------------------------------------------------------------------
# --record
# ---------------------------------------------------------------------------------------------


def record_dump(data_dir: str, split: str, index: int) -> str:
    """Record `index` of `split` (0-based, shard order) in words."""
    manifest = schema.read_manifest(data_dir)
    locate_record(manifest, split, index)  # the range error before TensorFlow starts
    (record,) = read_records(data_dir, split, index, 1, manifest)
    info = manifest.split(split)
    shard_count = next(s.count for s in info.shards if s.file == record.shard)
    image = record.image
    flat = image.reshape(image.shape[0], -1)
    raw = image.tobytes()
    lines = [
        f"record    {index:,} of {split!r} (0-based, shard order; the split has "
        f"{info.count:,})",
        f"shard     {record.shard}, record {record.index_in_shard} of {shard_count} there",
        f"path      {record.path}",
        f"label     {record.label} ({class_caption(record.label, manifest.classes)})",
        f"image     {tuple(image.shape)} {image.dtype} {manifest.layout}, {len(raw):,} bytes",
        "channel   min  max     mean",
    ]
    for name, values in zip(CHANNEL_NAMES, flat):
        lines.append(f"  {name:<6}{values.min():>5}{values.max():>5}{values.mean():>9.2f}")
    shown = raw[:HEX_BYTES]
    lines.append(f"bytes     first {len(shown)} of {len(raw):,} ({CHANNEL_NAMES[0]} channel, "
                 f"row 0 first): {shown.hex(' ')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# --grid
# ---------------------------------------------------------------------------------------------


def upscale_factor(height: int, width: int, min_tile: int = MIN_TILE_PX) -> int:
    """The smallest whole factor that makes the short side at least `min_tile` (1 if it is)."""
    return max(1, math.ceil(min_tile / min(height, width)))


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Where each tile of a grid lands; all sizes in pixels of the PNG."""

    count: int  # tiles
    columns: int
    rows: int
    scale: int  # each stored pixel is a scale x scale square
    tile_h: int  # displayed tile size: stored size x scale
    tile_w: int
    padding: int
    label_h: int
    width: int
    height: int

    def tile_origin(self, i: int) -> tuple[int, int]:
        """(left, top) of tile `i` (row-major: left to right, then down)."""
        if not 0 <= i < self.count:
            raise IndexError(f"tile {i} of a {self.count}-tile grid")
        row, column = divmod(i, self.columns)
        return (self.padding + column * (self.tile_w + self.padding),
                self.padding + row * (self.tile_h + self.label_h + self.padding))

    def tile_box(self, i: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of tile `i`'s image, right and bottom exclusive."""
        left, top = self.tile_origin(i)
        return left, top, left + self.tile_w, top + self.tile_h


def grid_layout(n: int, tile_h: int, tile_w: int, *, padding: int = GRID_PADDING_PX,
                label_h: int = LABEL_HEIGHT_PX, min_tile: int = MIN_TILE_PX) -> GridLayout:
    """ceil(sqrt(n)) columns of (upscaled) tiles, each with a caption band under it."""
    if n < 1:
        raise InspectError(f"--n={n}: a grid needs at least 1 image")
    scale = upscale_factor(tile_h, tile_w, min_tile)
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    shown_h, shown_w = tile_h * scale, tile_w * scale
    return GridLayout(
        count=n, columns=columns, rows=rows, scale=scale, tile_h=shown_h, tile_w=shown_w,
        padding=padding, label_h=label_h,
        width=padding + columns * (shown_w + padding),
        height=padding + rows * (shown_h + label_h + padding),
    )


def tile_pixels(image_chw: np.ndarray, scale: int) -> np.ndarray:
    """Stored uint8 [C, H, W] -> displayed [H*scale, W*scale, C], each pixel a square."""
    hwc = image_chw.transpose(1, 2, 0)
    return np.ascontiguousarray(hwc.repeat(scale, axis=0).repeat(scale, axis=1))


def fit_caption(text: str, font, width: int) -> str:
    """`text`, cut to `width` pixels with a trailing '..' when it is wider."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Pillow's bitmap fallback font (no FreeType) cannot encode past Latin-1.
        text = text.encode("latin-1", "replace").decode("latin-1")
    if font.getlength(text) <= width:
        return text
    while len(text) > 1 and font.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".."


def render_grid(records: Sequence[Record], classes: Sequence[str]) -> Image.Image:
    """The records' images as tiles in `grid_layout` order, each captioned with its class."""
    if not records:
        raise InspectError("no records to draw")
    _, height, width = records[0].image.shape
    layout = grid_layout(len(records), height, width)
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, record in enumerate(records):
        left, top = layout.tile_origin(i)
        canvas.paste(Image.fromarray(tile_pixels(record.image, layout.scale), "RGB"), (left, top))
        caption = fit_caption(class_caption(record.label, classes), font, layout.tile_w)
        draw.text((left, top + layout.tile_h + LABEL_GAP_PX), caption, fill=TEXT_RGB, font=font)
    return canvas


def make_grid(data_dir: str, split: str, n: int = DEFAULT_GRID_IMAGES) -> Image.Image:
    """A captioned grid of the first `n` images of `split` (all of them if it has fewer)."""
    manifest = schema.read_manifest(data_dir)
    info = check_split(manifest, split)
    if n < 1:
        raise InspectError(f"--n={n}: a grid needs at least 1 image")
    if info.count == 0:
        raise InspectError(f"split {split!r} has no records to draw")
    records = read_records(data_dir, split, 0, min(n, info.count), manifest)
    return render_grid(records, manifest.classes)


def write_png(image: Image.Image, path: str) -> None:
    """Save atomically (a reader never sees half a PNG), creating the folder if needed."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        files.atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        raise InspectError(f"cannot write --grid={path}: {err}; choose a writable path") from err


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def inspect_command(data_dir: str, *, split: str | None = None, grid: str | None = None,
                    n: int = DEFAULT_GRID_IMAGES, record: int | None = None,
                    out: TextIO | None = None) -> int:
    """The whole command without absl flags: prints to `out` (stdout), returns the exit code.

    Every request is checked before anything is printed, so bad input gives one error and no
    partial output.
    """
    out = out or sys.stdout
    try:
        manifest = schema.read_manifest(data_dir)
        split = split or default_split(manifest)
        info = check_split(manifest, split)
        if record is not None:
            locate_record(manifest, split, record)
        if grid is not None and n < 1:
            raise InspectError(f"--n={n}: a grid needs at least 1 image")
        if grid is not None and info.count == 0:
            raise InspectError(f"split {split!r} has no records to draw; choose another --split")
        print(summarize(manifest, data_dir, split), file=out)
        if record is not None:
            print("", record_dump(data_dir, split, record), sep="\n", file=out)
        if grid is not None:
            image = make_grid(data_dir, split, n)
            write_png(image, grid)
            logging.info("grid of the first %d image(s) of %r (%dx%d px) -> %s",
                         min(n, info.count), split, image.width, image.height, grid)
    except (schema.FormatError, InspectError) as err:
        logging.error("%s", err)
        return EXIT_BAD_INPUT
    return 0


FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The command's flags. Defined only when the module runs as a command, so importing it
    (tests, other tools) adds no flags to the importer's."""
    define = dict(flag_values=flag_values)
    flags.DEFINE_string("split", None,
                        "The split whose classes are counted, and that --grid and --record "
                        "read. Default: train, or the first split by name when there is none.",
                        **define)
    flags.DEFINE_string("grid", None,
                        "Write a PNG grid of the first --n images of --split (shard order), "
                        f"captioned with class names; images under {MIN_TILE_PX} px are "
                        "enlarged by a whole factor (nearest neighbour).", **define)
    flags.DEFINE_integer("n", DEFAULT_GRID_IMAGES,
                         "Images in the --grid (all of the split's if it has fewer); "
                         "ceil(sqrt(n)) per row.", **define)
    flags.DEFINE_integer("record", None,
                         "Print record N of --split (0-based, shard order): shard, path, label, "
                         "per-channel min/max/mean and its first bytes.", **define)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        raise app.UsageError(
            f"give one DATA_DIR (a folder holding {schema.MANIFEST_NAME}), got {argv[1:]}; "
            "e.g. python -m pipeline.inspect workspace/shards/digits", exitcode=EXIT_BAD_INPUT)
    return inspect_command(argv[1], split=FLAGS.split, grid=FLAGS.grid, n=FLAGS.n,
                           record=FLAGS.record)


if __name__ == "__main__":
    define_flags()
    app.run(main)
