"""The in-memory table: a split decoded once into one uint8 tensor, served by gathering rows.

With `cache="memory"`, later epochs never touch the disk or parse a record: each batch is one
gather of rows from the table, one copy per image per epoch, in the same order as random
access (indexed.py). Loading checks every record as random access does (framing, CRC, label)
and names a damaged one; with on_corrupt="skip" the damaged records are left out.

Uncompressed local shards load through the random-access reader, each image read straight
into its row of the table; compressed or remote shards are read through, record after record
(inflated, framed and CRC-checked in Python; pipeline.core.streams, pipeline.core.records).
Peak memory is twice the table for a moment: the numpy table, then the TensorFlow variable
made from it. When the spec starts with ops the reader does itself (pipeline.dataset.fused),
no variable is made: the reader's threads gather from the numpy table, cropping and flipping
each row as they copy it (side by side, crop + flip: 26-31k img/s against 15-18k for
tf.gather then the XLA ops).
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import tensorflow as tf

from pipeline.core import record_fields, record_index, records, schema, streams
from pipeline.dataset import damaged
from pipeline.dataset.options import DamagedShards, DatasetError
from pipeline.dataset.random_access import DamagedRecord, Records, aligned_empty

# Records read per call while loading through the random-access reader.
LOAD_BATCH = 256


def load_records(records_: Records, variables: bool = True):
    """The readable records of `records_`, in order, as (uint8 [N, 3, H, W], labels: int64
    [N], or float32 [N, T] targets of a multi-label dataset): TensorFlow variables, or the
    numpy arrays (`variables=False`: the reader's own gather)."""
    reader = records_.reader
    count = len(records_)
    images = aligned_empty(count * reader.image_bytes, 64).reshape(count, *reader.image_shape)
    labels = np.empty(count, np.int64)
    for start in range(0, count, LOAD_BATCH):
        stop = min(start + LOAD_BATCH, count)
        try:
            reader.read_into(records_.readable[start:stop], images[start:stop],
                             labels[start:stop])
        except DamagedRecord as err:
            raise DatasetError(damaged.damaged_message(err.shard, err.record,
                                                       err.problem)) from None
        except record_index.IndexMismatch as err:
            raise DatasetError(str(err)) from None
    labels = records_.labels_at(records_.readable, labels)
    return to_variables(images, labels) if variables else (images, labels)


def load_streams(paths: Sequence[str], shards: Sequence[schema.ShardInfo],
                 manifest: schema.Manifest, split: str, data_dir: str,
                 policy: DamagedShards, variables: bool = True,
                 features: np.ndarray | None = None):
    """Every record of compressed or remote shards, read through in order; with "skip", each
    damaged shard up to its first bad record (past a bad record a stream cannot resync).
    Variables, or the numpy arrays, as load_records; `features` (float32 [count, F], with
    --feature_columns) gets the loaded records' features in its first rows."""
    count = sum(shard.count for shard in shards)
    images = aligned_empty(count * manifest.image_bytes, 64).reshape(count, *manifest.image_shape)
    labels = (np.empty((count, manifest.target_size), np.float32) if manifest.target_size
              else np.empty(count, np.int64))
    loaded = 0
    for path, shard in zip(paths, shards):
        read, problem = _load_shard(path, manifest, images[loaded:], labels[loaded:],
                                    None if features is None else features[loaded:])
        if problem is not None:
            if not policy.skip:
                raise DatasetError(damaged.damaged_message(shard.file, read, problem))
            damaged.warn_damaged(shard.file, shard.count - read, shard.count,
                                 f"record {read}: {problem}")
        loaded += read
    damaged.limit_losses(count - loaded, count, policy.max_fraction, split, data_dir)
    images, labels = images[:loaded], labels[:loaded]
    return to_variables(images, labels) if variables else (images, labels)


def _load_shard(path: str, manifest: schema.Manifest, images: np.ndarray,
                labels: np.ndarray, features: np.ndarray | None) -> tuple[int, str | None]:
    """Records of one shard into images[0..] / labels[0..] (a multi-label dataset's: its
    targets): (how many, the problem that stopped it or None)."""
    flat = images.reshape(len(images), -1)
    read = 0
    with tf.io.gfile.GFile(path, "rb") as raw:
        stream = (raw if manifest.compression == "NONE"
                  else streams.InflatingReader(raw, manifest.compression))
        try:
            for data in records.iter_framed_records(stream):
                if read == len(labels):
                    return read, "more records than the manifest lists"
                problem = _store(data, manifest, flat[read], labels, read, features)
                if problem is not None:
                    return read, problem
                read += 1
        except schema.FormatError as err:
            return read, str(err).removeprefix(f"record {read}: ")
        except (OSError, zlib.error) as err:
            return read, f"unreadable: {err}"
    return read, None


def _store(data: bytes, manifest: schema.Manifest, row: np.ndarray, labels: np.ndarray,
           slot: int, features: np.ndarray | None = None) -> str | None:
    try:
        layout = record_fields.layout_of(data)
    except schema.FormatError as err:
        return str(err)
    if layout.image_length != manifest.image_bytes:
        return f"image is {layout.image_length} bytes, manifest says {manifest.image_bytes}"
    label = record_fields.decode_int64(data, layout.label_offset)
    problem = schema.label_problem(label, manifest.label_values)
    if problem is None and manifest.target_size:
        try:
            labels[slot] = record_fields.target_values(
                lambda offset, n: data[offset:offset + n], layout, manifest.target_size)
        except schema.FormatError as err:
            return str(err)
        problem = (record_index.targets_problem(labels[slot:slot + 1], manifest.target_size)
                   or _binary_problem(manifest, labels[slot]))
    elif problem is None:
        labels[slot] = label
    if problem is None and features is not None:
        try:
            features[slot] = record_fields.feature_values(
                lambda offset, n: data[offset:offset + n], layout, manifest.feature_size)
        except schema.FormatError as err:
            return str(err)
        problem = record_index.targets_problem(features[slot:slot + 1], manifest.feature_size,
                                               "features")
    if problem is None:
        start = layout.image_offset
        row[:] = np.frombuffer(data, np.uint8, layout.image_length, start)
    return problem


def _binary_problem(manifest: schema.Manifest, target: np.ndarray) -> str | None:
    if manifest.target_kind == schema.MULTI_LABEL and not np.isin(target, (0.0, 1.0)).all():
        return f"{schema.TARGET_KEY!r} holds a value other than 0 or 1"
    return None


def to_variables(images: np.ndarray, labels: np.ndarray) -> tuple[tf.Variable, tf.Variable]:
    """Variables, not tensors: a tensor captured by a tf.data function is copied into the
    function's graph as a constant (measured: 8 s for a 2.1 GiB table), a variable is not."""
    image_table = tf.Variable(images, trainable=False, name="image_table")
    label_table = tf.Variable(labels, trainable=False, name="label_table")
    return image_table, label_table
