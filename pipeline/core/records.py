"""The bytes of a record and of a shard: `tf.train.Example` wire encoding, TFRecord framing.

The writer encodes records here without importing TensorFlow (its worker processes stay light
and start fast); the encoding is the standard protobuf wire format with map keys sorted, so the
bytes are deterministic and `tf.io.parse_example` reads them (tests check both directions).
The feature keys and what each holds are pipeline.core.schema's; this module only knows how
they are laid out in bytes:

    record    = length (uint64 LE) | masked CRC32C of length | data | masked CRC32C of data
    data      = tf.train.Example{features: {image: bytes, label: int64, path: bytes
                                          [, target: float32 list, packed]}}
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

import numpy as np

from pipeline.core.schema import (COMPRESSION_LEVEL, FEATURES_KEY, IMAGE_KEY, LABEL_KEY,
                                  PATH_KEY, TARGET_KEY, FormatError, compression_suffix)


def varint(value: int) -> bytes:
    """The protobuf varint of `value`."""
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


def length_delimited(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: its key, the length, `payload`."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    # Feature{bytes_list (1): BytesList{value (1): [value]}}
    return length_delimited(1, length_delimited(1, value))


def _int64_feature(value: int) -> bytes:
    # Feature{int64_list (3): Int64List{value (1): packed [value]}}
    return length_delimited(3, length_delimited(1, varint(value)))


def _float_feature(values) -> bytes:
    # Feature{float_list (2): FloatList{value (1): packed little-endian float32}}
    return length_delimited(2, length_delimited(1, np.asarray(values, "<f4").tobytes()))


def encode_example(image: bytes, label: int, path: str, target=None, features=None) -> bytes:
    """Serialise one record as a `tf.train.Example`, byte-identical for identical inputs;
    `target` and `features` (float32 values), when given: a multi-label or regression
    dataset's target row, the --feature_columns row."""
    fields = {
        IMAGE_KEY: _bytes_feature(image),
        LABEL_KEY: _int64_feature(label),
        PATH_KEY: _bytes_feature(path.encode("utf-8")),
    }
    if target is not None:
        fields[TARGET_KEY] = _float_feature(target)
    if features is not None:
        fields[FEATURES_KEY] = _float_feature(features)
    entries = b"".join(
        # map<string, Feature> entry: {key (1), value (2)}; keys sorted like TF's deterministic
        # serialiser does.
        length_delimited(1, length_delimited(1, key.encode()) + length_delimited(2, value))
        for key, value in sorted(fields.items())
    )
    return length_delimited(1, entries)  # Example{features (1): Features{feature (1): ...}}


def crc32c(data) -> int:
    """CRC32C with the CPU's CRC instruction (google-crc32c): about 6 us per 147 KiB image.
    `data`: bytes, or a read-only numpy array."""
    return google_crc32c.value(data)


def crc32c_extend(crc: int, data) -> int:
    """The CRC32C of what `crc` covered followed by `data`."""
    return google_crc32c.extend(crc, data)


def mask_crc(crc: int) -> int:
    """TFRecord's masked CRC32C: rotated and offset, so a CRC of data holding CRCs stays
    meaningful."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    return struct.pack("<I", mask_crc(google_crc32c.value(data)))


def frame_record(data: bytes) -> bytes:
    """TFRecord framing: length, masked CRC32C of length, data, masked CRC32C of data."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def dali_index_text(spans: Sequence[tuple[int, int]]) -> str:
    """A DALI index, byte for byte what DALI's `tfrecord2idx` writes for the same shard: one
    line `<offset> <size>` per record, where offset is where the record's 8-byte length starts
    in the file and size covers the whole framed record (8 + 4 + data + 4)."""
    return "".join(f"{offset} {size}\n" for offset, size in spans)


def framed_length(header: bytes) -> int:
    """The data length a record's 12-byte header gives, or FormatError when the header is
    cut short or its length CRC does not match."""
    if len(header) < HEADER_BYTES:
        raise FormatError(f"truncated header ({len(header)} of {HEADER_BYTES} bytes)")
    if _masked_crc(header[:8]) != header[8:HEADER_BYTES]:
        raise FormatError("length CRC mismatch")
    (length,) = struct.unpack("<Q", header[:8])
    return length


def iter_framed_records(stream: BinaryIO):
    """Yield the payloads of an uncompressed TFRecord stream, checking both CRCs.

    A plain-Python reader for tools and tests that must not depend on TensorFlow.
    """
    index = 0
    while True:
        header = stream.read(HEADER_BYTES)
        if not header:
            return
        try:
            length = framed_length(header)
        except FormatError as err:
            raise FormatError(f"record {index}: {err}") from None
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
        self.last_crc = 0  # the masked data CRC32C of the record written last (its footer)

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
        (self.last_crc,) = struct.unpack_from("<I", framed, len(framed) - FOOTER_BYTES)
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



# TFRecord framing around a record's data: 8-byte length + its 4-byte CRC before, the data's
# 4-byte CRC after.
HEADER_BYTES = 12
FOOTER_BYTES = 4
