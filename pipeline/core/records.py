"""The bytes of a record and of a shard: `tf.train.Example` wire encoding, TFRecord framing.

The writer encodes records here without importing TensorFlow (its worker processes stay light
and start fast); the encoding is the standard protobuf wire format with map keys sorted, so the
bytes are deterministic and `tf.io.parse_example` reads them (tests check both directions).
The feature keys and what each holds are pipeline.core.schema's; this module only knows how
they are laid out in bytes:

    record    = length (uint64 LE) | masked CRC32C of length | data | masked CRC32C of data
    data      = tf.train.Example{features: {image: bytes, label: int64, path: bytes}}
    shard     = records, one after the other; GZIP or ZLIB compressed as a whole stream
    DALI idx  = one "<offset> <size>" line per record of an uncompressed shard
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from typing import BinaryIO, Sequence

import google_crc32c

from pipeline.core.schema import (COMPRESSION_LEVEL, IMAGE_KEY, LABEL_KEY, PATH_KEY, FormatError,
                                  compression_suffix)


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
