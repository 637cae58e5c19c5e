"""One bench run: prepare the inputs, run the rows, report (what `python -m pipeline.bench`
does with its flags)."""

from __future__ import annotations

from typing import Sequence

from absl import logging

from pipeline.core import files
from pipeline.tools.bench import photos, report, rows


def run_bench(*, workdir: str, images: int, image_size: int, names: Sequence[str] = (),
              repeats: int, read_min_images: int, json_path: str | None = None) -> str:
    """The report of `names` (all rows for none), each run `repeats` times; with `json_path`,
    the rows as JSON there too."""
    selected = rows.select_rows(names)
    bench = photos.prepare(workdir, images, image_size,
                           reader_inputs=any(name in rows.READER_ROWS for name in selected),
                           read_min_images=read_min_images)
    measured = rows.run_rows(bench, selected, repeats)
    if json_path:
        files.atomic_write_text(json_path, report.report_json(measured, bench, repeats))
        logging.info("rows written to %s", json_path)
    return report.format_report(measured, bench.image_size)
