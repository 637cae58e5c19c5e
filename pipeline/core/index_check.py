"""`verify`'s check of a record index (`<shard>.offsets`) against dataset.json and its shard.

Each problem goes on its own line, named by the index file, never by the shard: a bad index
says nothing about the records (the reader builds the index again from the shard when it is
the listed one), so on_corrupt="skip", which leaves out the records of the shards verify names,
must not drop good records because of it.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from pipeline.core import index_scan, record_index, schema

# Leading hex digits of a sha256 shown when two differ.
SHA256_SHOWN_CHARS = 16


def index_problems(data_dir: str, shard: schema.ShardInfo, image_bytes: int,
                   widths: record_index.Widths = record_index.Widths()) -> list[str]:
    """What is wrong with the record index of the uncompressed `shard`, in words: missing
    (format 2), not its dataset.json digest, unreadable, describing another shard, rows that
    do not tile the shard, or rows that are not where the shard's records lie."""
    path = os.path.join(data_dir, schema.record_index_filename(shard.file, "NONE"))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if shard.index_sha256 is None:  # format 1: built on first read
            return []
        return ["missing: the reader builds it again from the shard, or the same `python -m "
                "pipeline.write` command writes it"]
    problems = []
    found = hashlib.sha256(data).hexdigest()
    if shard.index_sha256 is not None and found != shard.index_sha256:
        problems.append(f"sha256 {found[:SHA256_SHOWN_CHARS]}..., {schema.MANIFEST_NAME} says "
                        f"{shard.index_sha256[:SHA256_SHOWN_CHARS]}...")
    try:
        index = record_index.decode(data, os.path.basename(path))
    except schema.FormatError as err:
        return problems + [f"not a record index: {err}"]
    if not index.matches(shard, image_bytes):
        problems.append(f"its header ({index.shard}, {index.records} records, {index.bytes} "
                        f"bytes, sha256 {index.sha256[:SHA256_SHOWN_CHARS]}...) is not "
                        f"{schema.MANIFEST_NAME}'s entry for the shard")
    wrong = (record_index.tiling_problem(index.table, shard.bytes, image_bytes)
             or record_index.blocks_problem(index, widths))
    if wrong:
        problems.append(wrong)
    return problems + _rows_problem(os.path.join(data_dir, shard.file), index, image_bytes,
                                    widths)


def _rows_problem(shard_path: str, index: record_index.RecordIndex, image_bytes: int,
                  widths: record_index.Widths) -> list[str]:
    """The first row that is not where the shard's record of that number lies (its place,
    image, label and CRC), from a scan of the shard; nothing when the shard cannot be scanned
    (its own problems are named on the shard's lines)."""
    try:
        scan = index_scan.scan_shard(shard_path, image_bytes, widths)
    except OSError:
        return []
    if scan.problem is not None:
        return []
    table = scan.table
    if len(table) != index.records:
        return [f"{index.records} rows, the shard holds {len(table)} records"]
    known = index.table[:, record_index.DATA_CRC] != record_index.UNKNOWN_CRC
    expected = table.copy()
    expected[~known, record_index.DATA_CRC] = record_index.UNKNOWN_CRC  # a format 1 index
    wrong = index.table != expected
    names = list(record_index.COLUMNS)
    for name, _ in record_index.FLOAT_BLOCKS:  # those of another width: said by blocks_problem
        ours, found = getattr(index, name), getattr(scan, name)
        if found is not None and ours is not None and ours.shape == found.shape:
            wrong = np.concatenate([wrong, (ours != found).any(axis=1, keepdims=True)], axis=1)
            names.append(name)
    differ = np.flatnonzero(wrong.any(axis=1))
    if not len(differ):
        return []
    row = int(differ[0])
    columns = [name for name, bad in zip(names, wrong[row]) if bad]
    return [f"row {row} is not where the shard's record {row} lies (its {', '.join(columns)} "
            f"differ); {len(differ)} row(s) differ in all"]
