"""The record format and the manifest: the only module that knows either.

A dataset directory holds sharded TFRecord files and one `dataset.json`:

    train-00000-of-00036.tfrecord ... train-00035-of-00036.tfrecord
    val-00000-of-00004.tfrecord ...
    train-00000-of-00036.tfrecord.idx ...  # DALI index of each uncompressed shard
    dataset.json      # written last: its presence means the dataset is complete
    rejects.csv       # source images that could not be decoded, with the reason
    dataset_info.json, features.json, label.labels.txt   # TFDS's view (pipeline.tfds_export)

Each record is a serialised `tf.train.Example` with three features:

    image: bytes  the raw uint8 tensor, shape `image_shape` = [3, H, W] (CHW), C-contiguous
    label: int64  class index into `classes`, or -1 for an unlabeled (test) image
    path:  bytes  the source image's path relative to the input (UTF-8)

The writer encodes records here without importing TensorFlow (its worker processes stay light
and start fast); the encoding is the standard protobuf wire format with map keys sorted, so the
bytes are deterministic and `tf.io.parse_example` reads them (tests check both directions).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import struct
import zlib
from typing import Any, BinaryIO, Mapping, Sequence

import google_crc32c

FORMAT_VERSION = 1
MANIFEST_NAME = "dataset.json"
REJECTS_NAME = "rejects.csv"

IMAGE_KEY = "image"
LABEL_KEY = "label"
PATH_KEY = "path"

DTYPE = "uint8"
LAYOUT = "CHW"
CHANNELS = 3
UNLABELED = -1  # label of every image in an unlabeled split (e.g. a Kaggle test.csv)

# Split names the writer produces; readers accept any split named in the manifest.
TRAIN, VAL, TEST = "train", "val", "test"

# TFRecord compression as TensorFlow names it -> file-name suffix.
COMPRESSION_SUFFIXES = {"NONE": "", "GZIP": ".gz", "ZLIB": ".zlib"}
# Fixed compression level so output bytes never depend on a library default.
COMPRESSION_LEVEL = 6
# NVIDIA DALI's fn.readers.tfrecord needs, per shard, the index its `tfrecord2idx` tool makes.
# It is named `<shard>.idx`, beside its shard: the pair sorts together in a listing, and the
# index paths are the shard paths plus a suffix. DALI reads only uncompressed TFRecords, so
# compressed shards get none.
DALI_INDEX_SUFFIX = ".idx"


class FormatError(ValueError):
    """A dataset directory, manifest or record does not match this format."""


# ---------------------------------------------------------------------------------------------
# Shard names
# ---------------------------------------------------------------------------------------------


def shard_filename(split: str, index: int, count: int, compression: str = "NONE") -> str:
    """`train-00003-of-00036.tfrecord` (+ `.gz` / `.zlib` when compressed)."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} out of range for {count} shards")
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord{compression_suffix(compression)}"


def dali_index_filename(shard_file: str, compression: str) -> str | None:
    """`train-00003-of-00036.tfrecord.idx` for an uncompressed shard; None for a compressed one
    (DALI cannot read it, so it has no index)."""
    compression_suffix(compression)  # validates
    return None if compression != "NONE" else shard_file + DALI_INDEX_SUFFIX


def compression_suffix(compression: str) -> str:
    try:
        return COMPRESSION_SUFFIXES[compression]
    except KeyError:
        raise ValueError(
            f"unknown compression {compression!r}; use one of {sorted(COMPRESSION_SUFFIXES)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Record encoding (protobuf wire format of tf.train.Example, and TFRecord framing)
# ---------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 are encoded as their 64-bit two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    # Feature{bytes_list (1): BytesList{value (1): [value]}}
    return _length_delimited(1, _length_delimited(1, value))


def _int64_feature(value: int) -> bytes:
    # Feature{int64_list (3): Int64List{value (1): packed [value]}}
    return _length_delimited(3, _length_delimited(1, _varint(value)))


def encode_example(image: bytes, label: int, path: str) -> bytes:
    """Serialise one record as a `tf.train.Example`, byte-identical for identical inputs."""
    features = {
        IMAGE_KEY: _bytes_feature(image),
        LABEL_KEY: _int64_feature(label),
        PATH_KEY: _bytes_feature(path.encode("utf-8")),
    }
    entries = b"".join(
        # map<string, Feature> entry: {key (1), value (2)}; keys sorted like TF's deterministic
        # serialiser does.
        _length_delimited(1, _length_delimited(1, key.encode()) + _length_delimited(2, value))
        for key, value in sorted(features.items())
    )
    return _length_delimited(1, entries)  # Example{features (1): Features{feature (1): ...}}


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return struct.pack("<I", masked)


def frame_record(data: bytes) -> bytes:
    """TFRecord framing: length, masked CRC32C of length, data, masked CRC32C of data."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def dali_index_text(spans: Sequence[tuple[int, int]]) -> str:
    """A DALI index, byte for byte what DALI's `tfrecord2idx` writes for the same shard: one
    line `<offset> <size>` per record, where offset is where the record's 8-byte length starts
    in the file and size covers the whole framed record (8 + 4 + data + 4)."""
    return "".join(f"{offset} {size}\n" for offset, size in spans)


def iter_framed_records(stream: BinaryIO):
    """Yield the payloads of an uncompressed TFRecord stream, checking both CRCs.

    A plain-Python reader for tools and tests that must not depend on TensorFlow.
    """
    index = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise FormatError(f"record {index}: truncated header ({len(header)} of 12 bytes)")
        length_bytes, length_crc = header[:8], header[8:]
        if _masked_crc(length_bytes) != length_crc:
            raise FormatError(f"record {index}: length CRC mismatch")
        (length,) = struct.unpack("<Q", length_bytes)
        data = stream.read(length)
        data_crc = stream.read(4)
        if len(data) < length or len(data_crc) < 4:
            raise FormatError(f"record {index}: truncated data ({len(data)} of {length} bytes)")
        if _masked_crc(data) != data_crc:
            raise FormatError(f"record {index}: data CRC mismatch")
        yield data
        index += 1


class _HashingSink:
    """A write-only file object that hashes and counts the bytes that reach the disk."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


class RecordWriter:
    """Write framed records to an open binary file, compressed as asked, hashing the output.

    GZIP output is a standard gzip member with mtime 0 and no file name, and ZLIB a standard
    zlib stream, both at a fixed level, so compressed shards are deterministic too; these are
    the streams `tf.data.TFRecordDataset(compression_type=...)` reads.
    """

    def __init__(self, raw: BinaryIO, compression: str = "NONE"):
        compression_suffix(compression)  # validates
        self._sink = _HashingSink(raw)
        self._gzip = None
        self._zlib = None
        if compression == "GZIP":
            self._gzip = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._sink, compresslevel=COMPRESSION_LEVEL,
                mtime=0,
            )
        elif compression == "ZLIB":
            self._zlib = zlib.compressobj(COMPRESSION_LEVEL)
        self.records = 0
        self.stream_bytes = 0  # framed bytes written so far, before compression

    def write(self, payload: bytes) -> tuple[int, int]:
        """Append one record; returns its (offset, size) in the uncompressed record stream,
        which for an uncompressed file are the record's place in the file (a DALI index line)."""
        framed = frame_record(payload)
        if self._gzip is not None:
            self._gzip.write(framed)
        elif self._zlib is not None:
            self._sink.write(self._zlib.compress(framed))
        else:
            self._sink.write(framed)
        span = (self.stream_bytes, len(framed))
        self.stream_bytes += len(framed)
        self.records += 1
        return span

    def close(self) -> tuple[int, str]:
        """Finish the stream; returns (bytes written, sha256 hex) of the file's contents."""
        if self._gzip is not None:
            self._gzip.close()
        elif self._zlib is not None:
            self._sink.write(self._zlib.flush())
        self._sink.flush()
        return self._sink.bytes, self._sink.sha256.hexdigest()


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    file: str
    count: int
    bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    count: int
    shards: tuple[ShardInfo, ...]
    class_counts: Mapping[str, int]  # class name -> records; empty for unlabeled splits


@dataclasses.dataclass(frozen=True)
class Manifest:
    """`dataset.json`: everything a reader or trainer needs to know about a dataset."""

    image_shape: tuple[int, int, int]  # (3, H, W)
    classes: tuple[str, ...]  # index -> class name
    splits: Mapping[str, SplitInfo]
    mean: tuple[float, ...] | None  # per channel, 0-255 scale, of the train split
    std: tuple[float, ...] | None
    compression: str = "NONE"
    rejects: int = 0
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Digest of the write plan and settings (see plan.fingerprint): equal means same output.
    fingerprint: str = ""
    format_version: int = FORMAT_VERSION
    dtype: str = DTYPE
    layout: str = LAYOUT

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_bytes(self) -> int:
        channels, height, width = self.image_shape
        return channels * height * width

    def split(self, name: str) -> SplitInfo:
        try:
            return self.splits[name]
        except KeyError:
            raise FormatError(
                f"split {name!r} is not in this dataset; it has {sorted(self.splits)}"
            ) from None

    def shard_paths(self, data_dir: str, split: str) -> list[str]:
        return [os.path.join(data_dir, shard.file) for shard in self.split(split).shards]

    def to_json(self) -> str:
        document = {
            "format_version": self.format_version,
            "image_shape": list(self.image_shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "compression": self.compression,
            "classes": list(self.classes),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "rejects": self.rejects,
            "splits": {
                name: {
                    "count": info.count,
                    "class_counts": dict(info.class_counts),
                    "shards": [dataclasses.asdict(shard) for shard in info.shards],
                }
                for name, info in self.splits.items()
            },
            "flags": dict(self.flags),
            "fingerprint": self.fingerprint,
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise FormatError(f"{source} is not valid JSON: {err}") from err
        if not isinstance(doc, dict):
            raise FormatError(f"{source} must hold a JSON object, got {type(doc).__name__}")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatError(
                f"{source} has format_version {version!r}; this code reads {FORMAT_VERSION}. "
                "Rewrite the dataset with `python -m pipeline.write --overwrite`."
            )
        try:
            splits = {
                name: SplitInfo(
                    count=int(info["count"]),
                    shards=tuple(ShardInfo(**shard) for shard in info["shards"]),
                    class_counts=dict(info.get("class_counts", {})),
                )
                for name, info in doc["splits"].items()
            }
            manifest = cls(
                image_shape=tuple(int(d) for d in doc["image_shape"]),
                classes=tuple(doc["classes"]),
                splits=splits,
                mean=None if doc.get("mean") is None else tuple(doc["mean"]),
                std=None if doc.get("std") is None else tuple(doc["std"]),
                compression=doc.get("compression", "NONE"),
                rejects=int(doc.get("rejects", 0)),
                flags=doc.get("flags", {}),
                fingerprint=doc.get("fingerprint", ""),
                dtype=doc["dtype"],
                layout=doc["layout"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"{source} is missing or has a malformed field: {err!r}") from err
        validate_manifest(manifest, source)
        return manifest


def validate_manifest(manifest: Manifest, source: str = MANIFEST_NAME) -> None:
    if manifest.dtype != DTYPE or manifest.layout != LAYOUT:
        raise FormatError(
            f"{source}: dtype/layout {manifest.dtype}/{manifest.layout}; expected {DTYPE}/{LAYOUT}"
        )
    if len(manifest.image_shape) != 3 or manifest.image_shape[0] != CHANNELS:
        raise FormatError(f"{source}: image_shape {list(manifest.image_shape)} is not [3, H, W]")
    compression_suffix(manifest.compression)
    for name, info in manifest.splits.items():
        total = sum(shard.count for shard in info.shards)
        if total != info.count:
            raise FormatError(
                f"{source}: split {name!r} says count={info.count} but its shards hold {total}"
            )


def manifest_path(data_dir: str) -> str:
    return os.path.join(data_dir, MANIFEST_NAME)


def read_manifest(data_dir: str) -> Manifest:
    """Load `dataset.json` from a dataset directory, with a fix in the error if it is absent."""
    path = manifest_path(data_dir)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FormatError(
            f"no {MANIFEST_NAME} in {data_dir!r}: it is not a complete dataset. "
            "Write one with `python -m pipeline.write --output_dir=...`."
        ) from None
    return Manifest.from_json(text, source=path)


def channel_stats(pixel_sum: Sequence[int], pixel_sq_sum: Sequence[int], pixels: int):
    """Per-channel mean and std (population) from exact integer sums over `pixels` per channel."""
    if pixels == 0:
        return None, None
    mean = tuple(round(s / pixels, 4) for s in pixel_sum)
    # Integer arithmetic until the last step: var = (n*sum(x^2) - sum(x)^2) / n^2, exactly.
    var = [(pixels * sq - s * s) / (pixels * pixels) for s, sq in zip(pixel_sum, pixel_sq_sum)]
    std = tuple(round(max(v, 0.0) ** 0.5, 4) for v in var)
    return mean, std


# ---------------------------------------------------------------------------------------------
# TensorFlow side (imported lazily: the writer never needs it)
# ---------------------------------------------------------------------------------------------


def parse_batch(serialized, image_shape):
    """A batch of serialised records -> (uint8 images [B, *image_shape], int64 labels [B]).

    One parse_example and one decode_raw for the whole batch: the per-record cost is a memcpy
    of the image bytes. The path feature is not parsed (most readers never need it).
    """
    import tensorflow as tf

    spec = tf_feature_spec()
    features = tf.io.parse_example(serialized, {IMAGE_KEY: spec[IMAGE_KEY],
                                                LABEL_KEY: spec[LABEL_KEY]})
    images = tf.io.decode_raw(features[IMAGE_KEY], tf.uint8)
    return tf.reshape(images, [-1, *image_shape]), features[LABEL_KEY]


def tf_compression_type(compression: str) -> str:
    """The `compression_type` argument of tf.data.TFRecordDataset ("" means none)."""
    compression_suffix(compression)  # validates
    return "" if compression == "NONE" else compression


def tf_feature_spec():
    """The `tf.io.parse_example` spec of a record."""
    import tensorflow as tf

    return {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
