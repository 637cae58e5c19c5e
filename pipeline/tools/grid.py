"""`--grid`: a PNG of a split's first records in shard order, each captioned with its record
index and class, and beside it a CSV mapping every tile to its record and source path.

Each tile is the stored uint8 CHW image shown as HWC RGB with `#<record index> <class>`
under it; a class name too wide for the tile is shortened in the middle (`hubb..eld_2`), so names
that differ at their end stay apart. Small images are enlarged by a whole factor (nearest
neighbour: each pixel becomes a square) so tiles are at least MIN_TILE_PX; `grid_layout` says
where every tile lands. A wrong channel order or a transposed image is visible at a glance
here, and `<grid>.tiles.csv` (tile_map_path) names the file a suspect tile came from.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.core import files, schema
from pipeline.tools.record_view import Record, read_records
from pipeline.tools.summary import InspectError, check_split

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


TILE_MAP_SUFFIX = ".tiles.csv"
TILE_MAP_COLUMNS = ("tile", "row", "column", "record", "shard", "index_in_shard", "label",
                    "class", "path")


def fit_caption(text: str, font, width: int, *, keep: str = "") -> str:
    """`keep + text`, with `text` shortened in the middle ('..') to fit `width` pixels: the
    start and the end of a name tell most names apart (`hubble_deep_field_1` and `_2`)."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Pillow's bitmap fallback font (no FreeType) cannot encode past Latin-1.
        text = text.encode("latin-1", "replace").decode("latin-1")
    if font.getlength(keep + text) <= width:
        return keep + text
    for kept in range(len(text) - 1, 0, -1):
        head, tail = text[:(kept + 1) // 2], text[len(text) - kept // 2:]
        candidate = f"{keep}{head}..{tail}"
        if font.getlength(candidate) <= width:
            return candidate
    return f"{keep}{text[:1]}.."


def tile_caption(record: Record, classes: Sequence[str], font, width: int) -> str:
    """`#17 hubb..eld_2`: the record's index in the split, its class fitted to `width`."""
    return fit_caption(record.described(classes), font, width,
                       keep=f"#{record.index} ")


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
        caption = tile_caption(record, classes, font, layout.tile_w)
        draw.text((left, top + layout.tile_h + LABEL_GAP_PX), caption, fill=TEXT_RGB, font=font)
    return canvas


def grid_records(data_dir: str, split: str, n: int = DEFAULT_GRID_IMAGES,
                 manifest: schema.Manifest | None = None) -> list[Record]:
    """The first `n` records of `split` (all of them if it has fewer), to draw; `manifest`:
    the dataset's, when the caller has read it already."""
    manifest = manifest or schema.read_manifest(data_dir)
    info = check_split(manifest, split)
    if n < 1:
        raise InspectError(f"--n={n}: a grid needs at least 1 image")
    if info.count == 0:
        raise InspectError(f"split {split!r} has no records to draw")
    return read_records(data_dir, split, 0, min(n, info.count), manifest)


def tile_map_path(png_path: str) -> str:
    """`grids/val.png` -> `grids/val.tiles.csv`."""
    return os.path.splitext(png_path)[0] + TILE_MAP_SUFFIX


def tile_map_csv(records: Sequence[Record], classes: Sequence[str]) -> str:
    """One row per tile (row-major, as drawn): where it is, and the record and path it shows."""
    columns = grid_layout(len(records), *records[0].image.shape[1:]).columns
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TILE_MAP_COLUMNS)
    for tile, record in enumerate(records):
        writer.writerow((tile, tile // columns, tile % columns, record.index, record.shard,
                         record.index_in_shard, record.label,
                         record.described(classes), record.path))
    return buffer.getvalue()


def write_png(image: Image.Image, path: str, tile_map: str | None = None) -> None:
    """Save atomically (a reader never sees half a PNG), creating the folder if needed, and
    the tile map (tile_map_csv) beside it when given."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        files.atomic_write_bytes(path, buffer.getvalue())
        if tile_map is not None:
            files.atomic_write_text(tile_map_path(path), tile_map)
    except OSError as err:
        raise InspectError(f"cannot write --grid={path}: {err}; choose a writable path") from err
