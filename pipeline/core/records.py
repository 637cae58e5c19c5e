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

import dataclasses
import gzip
import hashlib
import struct
import zlib
from typing import BinaryIO, Callable, Sequence

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


def crc32c(data) -> int:
    """CRC32C with the CPU's CRC instruction (google-crc32c): about 6 us per 150 KB image.
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


# ---------------------------------------------------------------------------------------------
# Where a record's image and label lie (for reading records at random, see record_index)
# ---------------------------------------------------------------------------------------------

# TFRecord framing around a record's data: 8-byte length + its 4-byte CRC before, the data's
# 4-byte CRC after.
HEADER_BYTES = 12
FOOTER_BYTES = 4
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LENGTH, _WIRE_FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


def decode_varint(data, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the protobuf varint at `pos` of `data`."""
    value = shift = 0
    for end in range(pos, min(pos + _MAX_VARINT_BYTES, len(data))):
        byte = data[end]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, end + 1
        shift += 7
    raise FormatError(f"a varint at byte {pos} runs past its 10 bytes or the data")


def decode_int64(data, pos: int = 0) -> int:
    """The int64 varint at `pos` (negative values are 64-bit two's complement)."""
    value, _ = decode_varint(data, pos)
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclasses.dataclass(frozen=True)
class ExampleLayout:
    """Where the image bytes and the label varint lie inside a record's data."""

    image_offset: int
    image_length: int
    label_offset: int


def example_layout(read: Callable[[int, int], bytes], length: int) -> ExampleLayout:
    """Find the image and label of a serialised tf.train.Example of `length` bytes, reading it
    through `read(offset, n)` without reading the image itself (the walk skips its bytes).

    Example{features (1): Features{feature (1): map entry {key (1), value (2): Feature}}}, with
    the image a Feature{bytes_list (1): BytesList{value (1)}} and the label a
    Feature{int64_list (3): Int64List{value (1)}}, packed or not. Any field order is accepted.
    """
    found = _feature_values(read, length, (IMAGE_KEY, LABEL_KEY))
    if IMAGE_KEY not in found or LABEL_KEY not in found:
        raise FormatError(f"no {IMAGE_KEY!r} or no {LABEL_KEY!r} feature")
    image_offset, image_length = found[IMAGE_KEY]
    return ExampleLayout(image_offset, image_length, found[LABEL_KEY][0])


def image_lead(image_bytes: int) -> bytes:
    """The bytes right before the image in a record holding `image_bytes` of it: its map
    entry's key and the Feature, BytesList and value framing (tags and lengths). A record index
    row whose image offset is not preceded by these does not point at an image."""
    value = _varint(1 << 3 | 2) + _varint(image_bytes)  # BytesList.value
    byte_list = _varint(1 << 3 | 2) + _varint(len(value) + image_bytes)  # Feature.bytes_list
    feature = _varint(2 << 3 | 2) + _varint(len(byte_list) + len(value) + image_bytes)
    return _length_delimited(1, IMAGE_KEY.encode()) + feature + byte_list + value


# A label's varint is 1..10 bytes long (-1 takes 10).
LABEL_VARINT_BYTES = range(1, _MAX_VARINT_BYTES + 1)


def label_lead(varint_bytes: int) -> bytes:
    """The bytes right before a label varint of `varint_bytes` bytes: its map entry's key and
    the Feature and packed Int64List framing (label_lead(1): b"\n\x05label\x12\x05\x1a\x03
    \n\x01"), the same length for every varint length."""
    packed = _varint(1 << 3 | 2) + _varint(varint_bytes)  # Int64List.value, packed
    int64_list = _varint(3 << 3 | 2) + _varint(len(packed) + varint_bytes)
    feature = _varint(2 << 3 | 2) + _varint(len(int64_list) + len(packed) + varint_bytes)
    return _length_delimited(1, LABEL_KEY.encode()) + feature + int64_list + packed


def path_of(payload: bytes) -> str:
    """The source path a serialised Example holds (its `path` feature)."""
    found = _feature_values(lambda offset, n: payload[offset:offset + n], len(payload),
                            (PATH_KEY,))
    if PATH_KEY not in found:
        raise FormatError(f"no {PATH_KEY!r} feature")
    offset, size = found[PATH_KEY]
    return payload[offset:offset + size].decode("utf-8", "surrogateescape")


def _feature_values(read, length: int, keys) -> dict[str, tuple[int, int]]:
    """{key: (offset, length) of its single value} of the Example features named `keys`."""
    found: dict[str, tuple[int, int]] = {}
    for field, start, end in _fields(read, 0, length):
        if field == 1:  # Example.features
            for entry_field, entry_start, entry_end in _fields(read, start, end):
                if entry_field == 1:  # Features.feature, a map entry
                    key, value = _map_entry(read, entry_start, entry_end)
                    if key in keys and value is not None:
                        found[key] = _only_value(read, value, key)
    return found


def layout_of(payload: bytes) -> ExampleLayout:
    """example_layout of a whole serialised Example in memory."""
    return example_layout(lambda offset, n: payload[offset:offset + n], len(payload))


def _fields(read, start: int, end: int):
    """(field number, value start, value end) of each length-delimited field in
    [start, end); varint fields are yielded as (field, start, start) with their start."""
    pos = start
    while pos < end:
        key, pos = _varint_at(read, pos)
        field, wire = key >> 3, key & 7
        if wire == _WIRE_LENGTH:
            size, pos = _varint_at(read, pos)
            if pos + size > end:
                raise FormatError(f"field {field} runs past its message ({pos + size} > {end})")
            yield field, pos, pos + size
            pos += size
        elif wire == _WIRE_VARINT:
            yield field, pos, pos
            _, pos = _varint_at(read, pos)
        elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
            pos += 8 if wire == _WIRE_FIXED64 else 4
        else:
            raise FormatError(f"field {field} has wire type {wire}, which Example never uses")


def _varint_at(read, pos: int) -> tuple[int, int]:
    chunk = read(pos, _MAX_VARINT_BYTES)
    value, used = decode_varint(chunk, 0)
    return value, pos + used


def _map_entry(read, start: int, end: int):
    """(key, (start, end) of its Feature) of one Features map entry."""
    key, value = None, None
    for field, field_start, field_end in _fields(read, start, end):
        if field == 1:
            key = bytes(read(field_start, field_end - field_start)).decode("utf-8", "replace")
        elif field == 2:
            value = (field_start, field_end)
    return key, value


def _only_value(read, feature: tuple[int, int], key: str) -> tuple[int, int]:
    """(offset, length) of the single value of an image, path or label Feature."""
    want = 3 if key == LABEL_KEY else 1  # Feature.int64_list, Feature.bytes_list
    kinds = list(_fields(read, *feature))
    if len(kinds) != 1 or kinds[0][0] != want:
        raise FormatError(f"{key!r} is not a single {'bytes' if want == 1 else 'int64'} list")
    _, start, end = kinds[0]
    values = [(value_start, value_end) for _, value_start, value_end in _fields(read, start, end)]
    if key == LABEL_KEY and len(values) == 1 and values[0][0] != values[0][1]:
        values = _packed_varints(read, *values[0])  # Int64List.value, packed
    if len(values) != 1:
        raise FormatError(f"{key!r} holds {len(values)} values, expected 1")
    value_start, value_end = values[0]
    return value_start, value_end - value_start


def _packed_varints(read, start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    while pos < end:
        _, after = _varint_at(read, pos)
        spans.append((pos, after))
        pos = after
    return spans
