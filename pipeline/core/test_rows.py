"""The test rows without a record: how dataset.json lists every row of the test CSV.

A test split's records are the test CSV's rows in the CSV's order (the writer never shuffles
it), but a row whose image cannot be read has no record. Written with --allow_missing_test,
dataset.json names those rows in `missing_test`, each by its position among the CSV's rows
(0-based, the header not counted) and its image path:

    "missing_test": [{"row": 3, "path": "images/27.png"}]

The records and this list together are every row, in order (every_row), which is what a
submission needs: predict gives the rows without a record the training prior
(pipeline.training.prior). The key is absent when every row has a record, so such a dataset's
dataset.json is byte for byte what it was before the key existed; code from before it ignores
the key and reads the test split's records as it always did, which is why the format_version
stays.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

KEY = "missing_test"


class MissingRow(NamedTuple):
    row: int  # position among the test CSV's rows, 0-based
    path: str  # the image path, as the records' `path` would hold it


def to_json(missing: Sequence[MissingRow]) -> list[dict]:
    """dataset.json's `missing_test` list."""
    return [{"row": entry.row, "path": entry.path} for entry in missing]


def from_json(entries) -> tuple[MissingRow, ...]:
    """`missing_test` as dataset.json holds it (absent: None or empty) -> MissingRows; a
    malformed entry raises KeyError, TypeError or ValueError (the manifest's FormatError)."""
    return tuple(MissingRow(int(entry["row"]), str(entry["path"])) for entry in entries or ())


def problem(missing: Sequence[MissingRow], records: int | None) -> str | None:
    """Why `missing` cannot go with a test split of `records` records (None: no test split),
    or None: rows in increasing order, each within the CSV's rows."""
    if not missing:
        return None
    if records is None:
        return f"{KEY} lists {len(missing)} row(s) but there is no test split"
    rows = [entry.row for entry in missing]
    total = records + len(missing)
    if rows != sorted(set(rows)) or rows[0] < 0 or rows[-1] >= total:
        return (f"{KEY} rows {rows[:5]} are not distinct increasing positions among the "
                f"test CSV's {total} rows")
    return None


def every_row(record_paths: Sequence[str],
              missing: Sequence[MissingRow]) -> list[tuple[str, bool]]:
    """Every row of the test CSV in its order: (image path, whether it has a record), from the
    test split's record paths (in record order) and the rows without a record."""
    rows: list[tuple[str, bool]] = []
    records = iter(record_paths)
    at = {entry.row: entry.path for entry in missing}
    for position in range(len(record_paths) + len(missing)):
        rows.append((at[position], False) if position in at else (next(records), True))
    return rows


def missing_rows(planned_paths: Sequence[str], rejected) -> tuple[MissingRow, ...]:
    """The MissingRows of a test split whose images, in the CSV's order, are `planned_paths`,
    of which those in `rejected` have no record."""
    return tuple(MissingRow(row, path) for row, path in enumerate(planned_paths)
                 if path in rejected)
