"""`inspect_dataset`: what `python -m pipeline.inspect` prints and draws, without its flags.

    inspect_dataset("workspace/shards/digits", split="val", grid="/tmp/val.png", record=0)

The summary (summary.py) always, its classes compact unless `histogram`; with `record`, one
record in full (record_view.py); with `grid`, a PNG of the first `n` images and the CSV that
maps its tiles to records and paths (grid.py). Every request is checked before anything is
printed, so bad input gives one error (InspectError, FormatError) and no partial output.
"""

from __future__ import annotations

import sys
from typing import TextIO

from pipeline.core import schema
from pipeline.tools import grid as grid_lib
from pipeline.tools.record_view import record_dump
from pipeline.tools.summary import (InspectError, check_split, default_split, locate_record,
                                    summarize)


def inspect_dataset(data_dir: str, *, split: str | None = None, grid: str | None = None,
                    n: int = grid_lib.DEFAULT_GRID_IMAGES, record: int | None = None,
                    histogram: bool = False, out: TextIO | None = None) -> None:
    """Print the summary of `split` (default: train) to `out` (stdout), then the record and
    the grid when asked."""
    out = out or sys.stdout
    manifest = schema.read_manifest(data_dir)
    split = split or default_split(manifest)
    info = check_split(manifest, split)
    if record is not None:
        locate_record(manifest, split, record)
    if grid is not None and n < 1:
        raise InspectError(f"--n={n}: a grid needs at least 1 image")
    if grid is not None and info.count == 0:
        raise InspectError(f"split {split!r} has no records to draw; choose another --split")
    print(summarize(manifest, data_dir, split, histogram=histogram), file=out)
    if record is not None:
        print("", record_dump(data_dir, split, record), sep="\n", file=out)
    if grid is not None:
        records = grid_lib.grid_records(data_dir, split, n, manifest)
        image = grid_lib.render_grid(records, manifest.classes)
        grid_lib.write_png(image, grid, grid_lib.tile_map_csv(records, manifest.classes))
        print("", f"grid      {grid}: the first {len(records)} image(s) of {split!r} "
              f"({image.width}x{image.height} px), captioned #<record> <class>",
              f"          {grid_lib.tile_map_path(grid)}: each tile's record, shard and path",
              sep="\n", file=out)
