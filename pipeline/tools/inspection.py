"""`inspect_dataset`: what `python -m pipeline.inspect` prints and draws, without its flags.

    inspect_dataset("workspace/shards/digits", split="val", grid="/tmp/val.png", record=0)

The summary (summary.py) always; with `record`, one record in full (record_view.py); with
`grid`, a PNG of the first `n` images (grid.py). Every request is checked before anything is
printed, so bad input gives one error (InspectError, FormatError) and no partial output.
"""

from __future__ import annotations

import sys
from typing import TextIO

from absl import logging

from pipeline.core import schema
from pipeline.tools import grid as grid_lib
from pipeline.tools.record_view import record_dump
from pipeline.tools.summary import (InspectError, check_split, default_split, locate_record,
                                    summarize)


def inspect_dataset(data_dir: str, *, split: str | None = None, grid: str | None = None,
                    n: int = grid_lib.DEFAULT_GRID_IMAGES, record: int | None = None,
                    out: TextIO | None = None) -> None:
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
    print(summarize(manifest, data_dir, split), file=out)
    if record is not None:
        print("", record_dump(data_dir, split, record), sep="\n", file=out)
    if grid is not None:
        image = grid_lib.make_grid(data_dir, split, n)
        grid_lib.write_png(image, grid)
        logging.info("grid of the first %d image(s) of %r (%dx%d px) -> %s",
                     min(n, info.count), split, image.width, image.height, grid)
