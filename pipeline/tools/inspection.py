"""`inspect_dataset`: what `python -m pipeline.inspect` prints and draws, without its flags.

    inspect_dataset("workspace/shards/digits", split="val", grid="val.png", record=0)
    inspect_dataset("workspace/shards/leaves", split="val", fold=2)  # fold 2's held-out part

The summary (summary.py) always, its classes compact unless `histogram`; with `record`, one
record in full (record_view.py); with `grid`, a PNG of the first `n` images and the CSV that
maps its tiles to records and paths (grid.py). With `fold` (a dataset written with --folds=K)
every part reads fold k's view, as the trainer and predict do: 'val' its held-out records,
'train' the other folds (folds.py). Every request is checked before anything is
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
                    histogram: bool = False, fold: int | None = None,
                    out: TextIO | None = None) -> None:
    """Print the summary of `split` (default: train) of `fold`'s view (default: the dataset as
    stored) to `out` (stdout), then the record and the grid when asked."""
    out = out or sys.stdout
    manifest = fold_view(schema.read_manifest(data_dir), fold, data_dir)
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
        print("", record_dump(data_dir, split, record, manifest), sep="\n", file=out)
    if grid is not None:
        records = grid_lib.grid_records(data_dir, split, n, manifest)
        image = grid_lib.render_grid(records, manifest.classes)
        grid_lib.write_png(image, grid, grid_lib.tile_map_csv(records, manifest.classes))
        print("", f"grid      {grid}: the first {len(records)} image(s) of {split!r} "
              f"({image.width}x{image.height} px), captioned #<record> <class>",
              f"          {grid_lib.tile_map_path(grid)}: each tile's record, shard and path",
              sep="\n", file=out)


def fold_view(manifest: schema.Manifest, fold: int | None, data_dir: str) -> schema.Manifest:
    """`manifest` as fold `fold` reads it (schema.Manifest.for_fold: 'train' the other folds,
    'val' this one); None: as stored. A dataset without folds, or a fold it does not have, is
    one InspectError."""
    if fold is None:
        return manifest
    if not manifest.folds:
        raise InspectError(f"--fold={fold}: {data_dir} has no folds (written without --folds); "
                           "leave --fold out, or write it with `python -m pipeline.write "
                           "--folds=K`")
    if not 0 <= fold < len(manifest.folds):
        raise InspectError(f"--fold={fold} is out of range: this dataset has "
                           f"{len(manifest.folds)} folds; use --fold=0..{len(manifest.folds) - 1}")
    return manifest.for_fold(fold)
