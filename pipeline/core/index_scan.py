"""A record index built from its shard: for a dataset written before indexes existed, an index
that does not check out, a kept shard, and `verify`'s row by row comparison.

The shard is walked record by record with small preads: each record's header, and the
Example's fields around the image (pipeline.core.record_fields), never the image itself.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import NamedTuple

import numpy as np

from pipeline.core import record_fields, records, schema
from pipeline.core.record_index import COLUMNS, Widths

# Bytes read at once while walking a record's fields to build an index: the Example's framing
# before the image, and everything after it, fit in one read each.
SCAN_READ_BYTES = 512


@dataclasses.dataclass(frozen=True)
class ScanProblem:
    """Where building an index stopped: the record whose framing or fields are broken."""

    record: int
    message: str


class Scan(NamedTuple):
    """What scan_shard found: the index's table, where the scan stopped (None: the shard's
    end), and the records' float32 blocks (None where the dataset has none)."""

    table: np.ndarray
    problem: ScanProblem | None
    targets: np.ndarray | None = None
    features: np.ndarray | None = None


def scan_shard(path: str, image_bytes: int, widths: Widths = Widths()) -> Scan:
    """The index table of the shard at `path`, read record by record with small preads (the
    images are skipped, not read), where that stopped if the framing or a record's fields are
    broken (the table then holds the records before it), and the records' targets and
    features as `widths` says (float32 [records, width]; None where 0)."""
    target_size, feature_size = widths.targets, widths.features
    rows: list[tuple[int, ...]] = []
    targets: list[np.ndarray] = []
    features: list[np.ndarray] = []
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            problem = None
            try:
                data_length = _framed_length(fd, offset, size)
                read = _reader(fd, offset + records.HEADER_BYTES, data_length)
                layout = record_fields.example_layout(read, data_length)
                if layout.image_length != image_bytes:
                    problem = (f"image is {layout.image_length} bytes, manifest says "
                               f"{image_bytes}")
                if target_size:
                    targets.append(record_fields.target_values(read, layout, target_size))
                if feature_size:
                    features.append(record_fields.feature_values(read, layout, feature_size))
            except schema.FormatError as err:
                problem = str(err)
            if problem is not None:
                return Scan(_table(rows), ScanProblem(len(rows), problem),
                            _block(targets, rows, target_size),
                            _block(features, rows, feature_size))
            footer = offset + records.HEADER_BYTES + data_length
            (crc,) = struct.unpack("<I", os.pread(fd, records.FOOTER_BYTES, footer))
            rows.append((offset, data_length, layout.image_offset, layout.label_offset, crc))
            offset = footer + records.FOOTER_BYTES
    finally:
        os.close(fd)
    return Scan(_table(rows), None, _block(targets, rows, target_size),
                _block(features, rows, feature_size))


def _table(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, len(COLUMNS))


def _block(values: list[np.ndarray], rows: list, size: int) -> np.ndarray | None:
    """The float rows of the records in `rows` (a scan may have read one more), or None."""
    if not size:
        return None
    return np.array(values[:len(rows)], np.float32).reshape(-1, size)


def _framed_length(fd: int, offset: int, size: int) -> int:
    """The data length in the record header at `offset`, its CRC checked."""
    length = records.framed_length(os.pread(fd, records.HEADER_BYTES, offset))
    if offset + records.HEADER_BYTES + length + records.FOOTER_BYTES > size:
        raise schema.FormatError(f"truncated data (the record says {length} bytes)")
    return length


def _reader(fd: int, start: int, length: int):
    """read(offset, n) into one record's data, served from SCAN_READ_BYTES-sized preads."""
    window = {"at": -1, "bytes": b""}

    def read(offset: int, n: int) -> bytes:
        n = max(0, min(n, length - offset))
        at = window["at"]
        if not (at <= offset and offset + n <= at + len(window["bytes"])):
            window["at"] = offset
            window["bytes"] = os.pread(fd, max(n, SCAN_READ_BYTES), start + offset)
            at = offset
        return window["bytes"][offset - at:offset - at + n]

    return read
