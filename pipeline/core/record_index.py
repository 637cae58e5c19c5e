"""The record index: where each record of an uncompressed shard, its image and its label lie.

    train-00003-of-00036.tfrecord.offsets      beside its shard (and its DALI .idx)

Random access reads a record with one `preadv` of exactly its bytes, the image straight into
its place in a batch. For that it needs, per record, where the record starts, how long its
data is, and where in the data the image and the label are. The writer stores this as it
writes each shard; a dataset written before the index existed gets it built on first read
(`load_or_build`), once, and saved beside the shard when the folder is writable.

File layout (little-endian):

    magic    8 bytes: b"RCHWIDX2" (format 1's indexes: b"RCHWIDX1", without data_crc)
    header   4-byte length N, then N bytes of UTF-8 JSON: {"shard": file name, "bytes": the
             shard's size, "sha256": the shard's sha256, "records": n, "image_bytes": bytes
             of one image, "columns": COLUMNS}
    table    n rows of 5 int64, one per record in file order: offset (of the record's 8-byte
             length field in the shard), data_length (of its serialised tf.train.Example),
             image_offset and label_offset (both from the start of that data), data_crc (the
             masked CRC32C in the record's footer)
    targets  multi-label and regression datasets only (the header then holds "target_size":
             T): n rows of T
             float32, each record's `target`. The reader takes a batch's targets from here
             (a numpy gather), not from the records: the record's CRC being the index's (checked
             at read) says they are the record's.

The chain of trust (format 2): dataset.json holds each index file's sha256, the index each
record's place and data CRC, the record its fields. At open (`load`, O(records) with numpy)
the index must hash to the manifest's digest and its rows must tile the shard: the first at 0,
each next where this one ends, the last ending at the shard's size, each image and label
inside its record. At read (pipeline.dataset.kernels) the record's CRC must be the index's and
the image and label must sit behind their own keys and framing (record_fields.image_lead,
label_lead). So a wrong row, a shifted offset or a foreign shard fails at the first record
read, without hashing whole shards; an index that does not hash right is rebuilt from the
shard, and kept only if the rebuilt one hashes right.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from pipeline.core import files, record_fields, records, schema

if TYPE_CHECKING:
    from pipeline.core import index_scan

MAGIC = b"RCHWIDX2"
COLUMNS = ("offset", "data_length", "image_offset", "label_offset", "data_crc")
OFFSET, DATA_LENGTH, IMAGE_OFFSET, LABEL_OFFSET, DATA_CRC = range(len(COLUMNS))
# Format 1's indexes: no data_crc column (read with UNKNOWN_CRC in it).
MAGIC_V1 = b"RCHWIDX1"
COLUMNS_V1 = COLUMNS[:DATA_CRC]
UNKNOWN_CRC = -1
# The float32 blocks after the table, in file order: (RecordIndex field, its header key).
FLOAT_BLOCKS = (("targets", "target_size"), ("features", "feature_size"))


@dataclasses.dataclass(frozen=True)
class Widths:
    """The float32 values a dataset's index rows hold beside the table (FLOAT_BLOCKS): its
    records' targets and features (0: none)."""

    targets: int = 0
    features: int = 0

    @classmethod
    def of(cls, manifest: schema.Manifest) -> "Widths":
        return cls(manifest.target_size, manifest.feature_size)


@dataclasses.dataclass(frozen=True)
class RecordIndex:
    shard: str  # file name
    bytes: int
    sha256: str
    image_bytes: int
    table: np.ndarray  # int64 [records, 5], COLUMNS
    # float32 [records, T] in a multi-label or regression dataset
    targets: np.ndarray | None = None
    features: np.ndarray | None = None  # float32 [records, F] with --feature_columns

    @property
    def records(self) -> int:
        return int(self.table.shape[0])

    @property
    def target_size(self) -> int:
        return 0 if self.targets is None else int(self.targets.shape[1])

    @property
    def feature_size(self) -> int:
        return 0 if self.features is None else int(self.features.shape[1])

    def matches(self, shard: schema.ShardInfo, image_bytes: int) -> bool:
        """Whether this index's header describes `shard` as the manifest lists it."""
        return (self.shard, self.bytes, self.sha256, self.image_bytes, self.records) == (
            shard.file, shard.bytes, shard.sha256, image_bytes, shard.count)

    def first_past(self, size: int) -> int | None:
        """The first record that does not fit in a file of `size` bytes (one cut short), or
        None."""
        ends = self.table[:, 0] + self.table[:, 1] + records.HEADER_BYTES + records.FOOTER_BYTES
        cut = int(np.searchsorted(ends, size, side="right"))
        return cut if cut < self.records else None


def encode(index: RecordIndex) -> bytes:
    """The index file's bytes: deterministic (sorted header keys), so an index built again from
    its shard hashes to the digest in dataset.json."""
    fields = {"shard": index.shard, "bytes": index.bytes, "sha256": index.sha256,
              "records": index.records, "image_bytes": index.image_bytes,
              "columns": list(COLUMNS)}
    blocks = b""
    for name, size_key in FLOAT_BLOCKS:  # a class dataset's index stays as it was
        block = getattr(index, name)
        if block is not None:
            fields[size_key] = int(block.shape[1])
            blocks += np.ascontiguousarray(block, dtype="<f4").tobytes()
    header = json.dumps(fields, sort_keys=True).encode("utf-8")
    table = np.ascontiguousarray(index.table, dtype="<i8")
    return MAGIC + struct.pack("<I", len(header)) + header + table.tobytes() + blocks


def digest(index: RecordIndex) -> str:
    """The sha256 hex of the index's file (what format 2's dataset.json lists)."""
    return hashlib.sha256(encode(index)).hexdigest()


def decode(data: bytes, source: str) -> RecordIndex:
    """The index in `data` (the bytes of `source`, format 2 or 1); FormatError when it is not
    one. A format 1 index gets UNKNOWN_CRC in its data_crc column."""
    try:
        columns = {MAGIC: COLUMNS, MAGIC_V1: COLUMNS_V1}.get(data[:len(MAGIC)])
        if columns is None:
            raise ValueError("not a record index (wrong magic)")
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start:start + size].decode("utf-8"))
        if header["columns"] != list(columns):
            raise ValueError(f"columns {header['columns']}, expected {list(columns)}")
        body = len(data) - start - size
        floats = sum(int(header.get(size_key, 0)) for _, size_key in FLOAT_BLOCKS)
        rows, rest = divmod(body, 8 * len(columns) + 4 * floats)
        if rest or rows != header["records"]:
            raise ValueError(f"{body} bytes of table ({rows} rows), header says "
                             f"{header['records']} rows")
        table = np.frombuffer(data, "<i8", rows * len(columns), start + size).reshape(
            -1, len(columns))
        at, blocks = start + size + table.nbytes, {}
        for name, size_key in FLOAT_BLOCKS:
            if size_key in header:
                width = int(header[size_key])
                blocks[name] = np.frombuffer(data, "<f4", rows * width, at).reshape(
                    rows, width).astype(np.float32)
                at += 4 * rows * width
        if columns == COLUMNS_V1:
            table = np.concatenate([table, np.full((rows, 1), UNKNOWN_CRC)], axis=1)
        return RecordIndex(header["shard"], int(header["bytes"]), header["sha256"],
                           int(header["image_bytes"]), table.astype(np.int64), **blocks)
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as err:
        raise schema.FormatError(f"{source}: {err}") from err


def tiling_problem(table: np.ndarray, shard_bytes: int, image_bytes: int) -> str | None:
    """Why `table`'s rows cannot be the records of a shard of `shard_bytes` bytes, or None:
    each record must start where the one before ends (the first at 0, the last ending at the
    file's end), with its image and label inside its data. O(records), numpy: catches a
    duplicated, dropped, swapped or shifted row before anything is read."""
    if len(table) == 0:
        return None if shard_bytes == 0 else f"no rows for a shard of {shard_bytes} bytes"
    offset, length, image, label, crc = (table[:, k] for k in range(len(COLUMNS)))
    ends = offset + length + records.HEADER_BYTES + records.FOOTER_BYTES
    starts = np.concatenate([[0], ends[:-1]])
    checks = (
        (offset != starts, "does not start where the record before it ends"),
        (length < image_bytes, "is shorter than an image"),
        ((image < 0) | (image + image_bytes > length), "puts its image outside its record"),
        ((label < 0) | (label >= length) | ((label >= image) & (label < image + image_bytes)),
         "puts its label outside its record, or inside the image"),
        ((crc < UNKNOWN_CRC) | (crc > 0xFFFFFFFF), "has no CRC32C in its data_crc column"),
    )
    for bad, what in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            return f"row {row} {what}"
    if int(ends[-1]) != shard_bytes:
        return f"its records end at byte {int(ends[-1])}, the shard at {shard_bytes}"
    return None


def blocks_problem(index: RecordIndex, widths: Widths) -> str | None:
    """Why `index`'s float blocks are not those of a dataset of `widths`, or None."""
    return (targets_problem(index.targets, widths.targets)
            or targets_problem(index.features, widths.features, "features"))


def targets_problem(targets: np.ndarray | None, target_size: int,
                    what: str = "targets") -> str | None:
    """Why `targets` cannot be those of a dataset with `target_size` targets a record, or
    None: that many a row, each a finite number (what each means, 0/1 for a multi-label
    dataset, is the records' to say: verify and the stream check it there)."""
    if (0 if targets is None else targets.shape[1]) != target_size:
        found = f"no {what}" if targets is None else f"{targets.shape[1]} {what} a row"
        return f"holds {found}, the dataset {target_size} a record"
    if targets is not None:
        bad = np.flatnonzero(~np.isfinite(targets).all(axis=1))
        if len(bad):
            return f"row {int(bad[0])} holds {what} that are not finite numbers"
    return None


def write(path: str, index: RecordIndex) -> None:
    files.atomic_write_bytes(path, encode(index))


def read(path: str) -> RecordIndex:
    with open(path, "rb") as f:
        return decode(f.read(), path)


def row(offset: int, framed_size: int, crc: int,
        layout: record_fields.ExampleLayout) -> tuple[int, ...]:
    """The table row of a record written at `offset` as `framed_size` bytes with the masked
    data CRC `crc` (RecordWriter)."""
    data_length = framed_size - records.HEADER_BYTES - records.FOOTER_BYTES
    return offset, data_length, layout.image_offset, layout.label_offset, crc


@dataclasses.dataclass(frozen=True)
class Loaded:
    index: RecordIndex
    problem: index_scan.ScanProblem | None  # where a scan found the shard broken, if it did
    built: bool  # scanned now (no index file, or one that did not check out)


# Every message about a shard or record that is not the one dataset.json lists says this
# (pipeline.dataset.damaged finds it in TensorFlow's errors by it).
MISMATCH = f"does not match {schema.MANIFEST_NAME}"


# What reading says of a whole record whose CRC is not the one its index lists.
NOT_INDEXED_PROBLEM = "its CRC32C is not the one its record index lists"


class IndexMismatch(schema.FormatError):
    """A shard whose records are not the ones dataset.json lists (through its index digest)."""


def load_or_build(data_dir: str, shard: schema.ShardInfo, image_bytes: int,
                  widths: Widths = Widths()) -> Loaded:
    """The index of `shard` from its file, checked (_read_checked); else built by scanning the
    shard, kept and saved beside it only if it is the one dataset.json lists (format 2), and
    IndexMismatch naming the shard if it is not. A format 1 dataset lists no index digest: its
    index is built, and saved when the shard is whole, as it was written then."""
    path = os.path.join(data_dir, schema.record_index_filename(shard.file, "NONE"))
    from pipeline.core import index_scan  # it imports this module

    index, why = _read_checked(path, shard, image_bytes, widths)
    if why is None:
        return Loaded(index, None, built=False)
    scan = index_scan.scan_shard(os.path.join(data_dir, shard.file), image_bytes, widths)
    problem = scan.problem
    rebuilt = RecordIndex(shard.file, shard.bytes, shard.sha256, image_bytes, scan.table,
                          scan.targets, scan.features)
    if shard.index_sha256 is None:
        if index is not None or "missing" not in why:
            logging.info("%s %s: building it again from %s", path, why, shard.file)
        if problem is None and rebuilt.records == shard.count:
            _save(path, rebuilt)
        return Loaded(rebuilt, problem, built=True)
    if problem is None and digest(rebuilt) == shard.index_sha256:
        logging.warning("%s %s; built it again from %s, which matches %s", path, why,
                        shard.file, schema.MANIFEST_NAME)
        _save(path, rebuilt)
        return Loaded(rebuilt, None, built=True)
    found = (f"record {problem.record}: {problem.message}" if problem
             else f"its {rebuilt.records} records are not the ones listed")
    raise IndexMismatch(
        f"{shard.file} {MISMATCH}: its record index {why}, and the "
        f"index built again from the shard does not match either ({found}). The shard, its "
        f"index or {schema.MANIFEST_NAME} changed after the write: `python -m pipeline.verify "
        f"{data_dir}` names what differs, and the same `python -m pipeline.write` command "
        "rewrites it")


def _read_checked(path: str, shard: schema.ShardInfo, image_bytes: int,
                  widths: Widths) -> tuple[RecordIndex | None, str | None]:
    """(index, None) when the index file at `path` is `shard`'s: it hashes to the manifest's
    digest (format 2), its header names the shard and its rows tile it; else (the index or
    None, why not, in words after "its record index")."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, "is missing"
    try:
        index = decode(data, path)
    except schema.FormatError as err:
        return None, f"is damaged ({err})"
    if shard.index_sha256 is not None and hashlib.sha256(data).hexdigest() != shard.index_sha256:
        return index, f"does not hash to the index_sha256 {schema.MANIFEST_NAME} lists"
    if not index.matches(shard, image_bytes):
        return index, "describes another version of the shard"
    wrong = tiling_problem(index.table, shard.bytes, image_bytes) or blocks_problem(index,
                                                                                    widths)
    if wrong:
        return index, f"is wrong: {wrong}"
    return index, None


def mismatch_message(shard: str, record: int, problem: str) -> str:
    """What reading says of a record that is not the one its index and dataset.json list."""
    return (f"{shard}: record {record} {MISMATCH} ({problem}): the shard was replaced or its "
            "record index is wrong. `python -m pipeline.verify` names what differs; the same "
            "`python -m pipeline.write` command rewrites it")


def foreign_record(path: str, index: RecordIndex, num_classes: int) -> int | None:
    """The first record of the shard at `path` that is whole and valid (its own CRCs hold, its
    image and label are ones of this dataset) but not the one `index` lists (its footer holds
    another CRC): what a stream, which checks each record only against itself, would read
    silently. One 4-byte footer per record is read (a page each, from the page cache after
    the first epoch); damaged records and those past a cut are left to the reader, which
    names them as damage."""
    size = os.path.getsize(path)
    table = index.table
    footers = table[:, OFFSET] + records.HEADER_BYTES + table[:, DATA_LENGTH]
    rows = np.flatnonzero((table[:, DATA_CRC] != UNKNOWN_CRC)
                          & (footers + records.FOOTER_BYTES <= size))
    if size == 0 or len(rows) == 0:
        return None
    shard = np.memmap(path, np.uint8, "r")
    found = shard[footers[rows, None] + np.arange(records.FOOTER_BYTES)].copy().view("<u4")
    differ = rows[found[:, 0] != table[rows, DATA_CRC]]
    with open(path, "rb") as f:
        for row in differ.tolist():
            f.seek(int(table[row, OFFSET]))
            try:
                payload = next(records.iter_framed_records(f))
                layout = record_fields.layout_of(payload)
            except (schema.FormatError, StopIteration):
                continue  # damaged: its own CRCs or fields do not hold
            label = record_fields.decode_int64(payload, layout.label_offset)
            if (layout.image_length == index.image_bytes
                    and schema.label_problem(label, num_classes) is None):
                return row
    return None


def _save(path: str, index: RecordIndex) -> None:
    try:
        write(path, index)
    except OSError as err:
        logging.warning("cannot save the record index %s (%s): it is built again on every "
                        "read; make the dataset folder writable, or rewrite the dataset with "
                        "`python -m pipeline.write --overwrite`, to keep it", path,
                        err.strerror or err)
