"""The record index: where each record of an uncompressed shard, its image and its label lie.

    train-00003-of-00036.tfrecord.offsets      beside its shard (and its DALI .idx)

Random access reads a record with one `preadv` of exactly its bytes, the image straight into
its place in a batch. For that it needs, per record, where the record starts, how long its
data is, and where in the data the image and the label are. The writer stores this as it
writes each shard; a dataset written before the index existed gets it built on first read
(`load_or_build`), once, and saved beside the shard when the folder is writable.

File layout (little-endian):

    magic    8 bytes: b"RCHWIDX1"
    header   4-byte length N, then N bytes of UTF-8 JSON: {"shard": file name, "bytes": the
             shard's size, "sha256": the shard's sha256, "records": n, "image_bytes": bytes
             of one image, "columns": COLUMNS}
    table    n rows of 4 int64, one per record in file order: offset (of the record's 8-byte
             length field in the shard), data_length (of its serialised tf.train.Example),
             image_offset and label_offset (both from the start of that data)

An index belongs to the shard whose size and sha256 it names: a shard that was rewritten
(another sha256 in dataset.json) makes it stale, and it is built again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct

import numpy as np
from absl import logging

from pipeline.core import files, records, schema

MAGIC = b"RCHWIDX1"
COLUMNS = ("offset", "data_length", "image_offset", "label_offset")
OFFSET, DATA_LENGTH, IMAGE_OFFSET, LABEL_OFFSET = range(len(COLUMNS))
ROW_BYTES = 8 * len(COLUMNS)
# Bytes read at once while walking a record's fields to build an index: the Example's framing
# before the image, and everything after it, fit in one read each.
SCAN_READ_BYTES = 512


@dataclasses.dataclass(frozen=True)
class RecordIndex:
    shard: str  # file name
    bytes: int
    sha256: str
    image_bytes: int
    table: np.ndarray  # int64 [records, 4], COLUMNS

    @property
    def records(self) -> int:
        return int(self.table.shape[0])

    def matches(self, shard: schema.ShardInfo, image_bytes: int) -> bool:
        """Whether this index describes `shard` as the manifest lists it."""
        return (self.shard, self.bytes, self.sha256, self.image_bytes, self.records) == (
            shard.file, shard.bytes, shard.sha256, image_bytes, shard.count)


    def first_past(self, size: int) -> int | None:
        """The first record that does not fit in a file of `size` bytes (one cut short), or
        None."""
        ends = self.table[:, 0] + self.table[:, 1] + records.HEADER_BYTES + records.FOOTER_BYTES
        cut = int(np.searchsorted(ends, size, side="right"))
        return cut if cut < self.records else None


@dataclasses.dataclass(frozen=True)
class ScanProblem:
    """Where building an index stopped: the record whose framing or fields are broken."""

    record: int
    message: str


def encode(index: RecordIndex) -> bytes:
    header = json.dumps({"shard": index.shard, "bytes": index.bytes, "sha256": index.sha256,
                         "records": index.records, "image_bytes": index.image_bytes,
                         "columns": list(COLUMNS)}, sort_keys=True).encode("utf-8")
    table = np.ascontiguousarray(index.table, dtype="<i8")
    return MAGIC + struct.pack("<I", len(header)) + header + table.tobytes()


def decode(data: bytes, source: str) -> RecordIndex:
    """The index in `data` (the bytes of `source`); FormatError when it is not one."""
    try:
        if data[:len(MAGIC)] != MAGIC:
            raise ValueError("not a record index (wrong magic)")
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start:start + size].decode("utf-8"))
        if header["columns"] != list(COLUMNS):
            raise ValueError(f"columns {header['columns']}, expected {list(COLUMNS)}")
        body = len(data) - start - size
        rows, rest = divmod(body, ROW_BYTES)
        if rest or rows != header["records"]:
            raise ValueError(f"{body} bytes of table ({rows} rows), header says "
                             f"{header['records']} rows")
        table = np.frombuffer(data, "<i8", offset=start + size).reshape(-1, len(COLUMNS))
        return RecordIndex(header["shard"], int(header["bytes"]), header["sha256"],
                           int(header["image_bytes"]), table.astype(np.int64))
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise schema.FormatError(f"{source}: {err}") from err


def write(path: str, index: RecordIndex) -> None:
    files.atomic_write_bytes(path, encode(index))


def read(path: str) -> RecordIndex:
    with open(path, "rb") as f:
        return decode(f.read(), path)


def row(offset: int, framed_size: int, layout: records.ExampleLayout) -> tuple[int, ...]:
    """The table row of a record written at `offset` as `framed_size` bytes (RecordWriter)."""
    data_length = framed_size - records.HEADER_BYTES - records.FOOTER_BYTES
    return offset, data_length, layout.image_offset, layout.label_offset


# ---------------------------------------------------------------------------------------------
# Building one for a shard that has none (written before the index existed)
# ---------------------------------------------------------------------------------------------


def scan_shard(path: str, image_bytes: int) -> tuple[np.ndarray, ScanProblem | None]:
    """The index table of the shard at `path`, read record by record with small preads (the
    images are skipped, not read), and where that stopped if the framing or a record's
    fields are broken (the table then holds the records before it)."""
    rows: list[tuple[int, ...]] = []
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            problem = None
            try:
                data_length = _framed_length(fd, offset, size)
                layout = records.example_layout(_reader(fd, offset + records.HEADER_BYTES,
                                                        data_length), data_length)
                if layout.image_length != image_bytes:
                    problem = (f"image is {layout.image_length} bytes, manifest says "
                               f"{image_bytes}")
            except schema.FormatError as err:
                problem = str(err)
            if problem is not None:
                return _table(rows), ScanProblem(len(rows), problem)
            rows.append((offset, data_length, layout.image_offset, layout.label_offset))
            offset += records.HEADER_BYTES + data_length + records.FOOTER_BYTES
    finally:
        os.close(fd)
    return _table(rows), None


def _table(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, len(COLUMNS))


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


@dataclasses.dataclass(frozen=True)
class Loaded:
    index: RecordIndex
    problem: ScanProblem | None  # where a scan found the shard broken, if it did
    built: bool  # scanned now (no index file, or a stale one)


def load_or_build(data_dir: str, shard: schema.ShardInfo, image_bytes: int) -> Loaded:
    """The index of `shard` from its file, or built by scanning the shard and saved beside it
    (when the folder is writable and the shard whole)."""
    path = os.path.join(data_dir, schema.record_index_filename(shard.file, "NONE"))
    try:
        index = read(path)
        if index.matches(shard, image_bytes):
            return Loaded(index, None, built=False)
        logging.info("%s describes another version of %s: building it again", path, shard.file)
    except FileNotFoundError:
        pass
    except schema.FormatError as err:
        logging.warning("%s is damaged (%s): building it again", path, err)
    table, problem = scan_shard(os.path.join(data_dir, shard.file), image_bytes)
    index = RecordIndex(shard.file, shard.bytes, shard.sha256, image_bytes, table)
    if problem is None and index.records == shard.count:
        _save(path, index)
    return Loaded(index, problem, built=True)


def _save(path: str, index: RecordIndex) -> None:
    try:
        write(path, index)
    except OSError as err:
        logging.warning("cannot save the record index %s (%s): it is built again on every "
                        "read; make the dataset folder writable, or rewrite the dataset with "
                        "`python -m pipeline.write --overwrite`, to keep it", path,
                        err.strerror or err)
