"""Where a record's fields lie inside its bytes: the protobuf walk of a `tf.train.Example`.

Random access (pipeline.core.record_index, pipeline.dataset.kernels) reads a record's image
straight into a batch, so it must know where the image, the label and (multi-label) the target
lie in the record's data without parsing it; this module finds them, and knows the bytes that
must lead up to each (a check that an index row points at a field, not at any bytes).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from pipeline.core.records import length_delimited, varint
from pipeline.core.schema import (FEATURES_KEY, IMAGE_KEY, LABEL_KEY, PATH_KEY, TARGET_KEY,
                                  FormatError)

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
    target_offset: int = -1  # where the packed float32 `target` values start; -1: none
    target_length: int = 0  # their bytes (4 per value)
    features_offset: int = -1  # the same of the `features` values
    features_length: int = 0


def example_layout(read: Callable[[int, int], bytes], length: int) -> ExampleLayout:
    """Find the image and label of a serialised tf.train.Example of `length` bytes, reading it
    through `read(offset, n)` without reading the image itself (the walk skips its bytes).

    Example{features (1): Features{feature (1): map entry {key (1), value (2): Feature}}}, with
    the image a Feature{bytes_list (1): BytesList{value (1)}} and the label a
    Feature{int64_list (3): Int64List{value (1)}}, packed or not. Any field order is accepted.
    """
    found = _feature_values(read, length, (IMAGE_KEY, LABEL_KEY, TARGET_KEY, FEATURES_KEY))
    if IMAGE_KEY not in found or LABEL_KEY not in found:
        raise FormatError(f"no {IMAGE_KEY!r} or no {LABEL_KEY!r} feature")
    image_offset, image_length = found[IMAGE_KEY]
    return ExampleLayout(image_offset, image_length, found[LABEL_KEY][0],
                         *found.get(TARGET_KEY, (-1, 0)), *found.get(FEATURES_KEY, (-1, 0)))


def target_values(read, layout: ExampleLayout, size: int) -> np.ndarray:
    """The record's `size` target floats (float32), read through `read(offset, n)`;
    FormatError when it holds another number of them (or none)."""
    return _floats(read, TARGET_KEY, layout.target_offset, layout.target_length, size)


def feature_values(read, layout: ExampleLayout, size: int) -> np.ndarray:
    """The record's `size` --feature_columns floats (float32), as target_values."""
    return _floats(read, FEATURES_KEY, layout.features_offset, layout.features_length, size)


def _floats(read, key: str, offset: int, length: int, size: int) -> np.ndarray:
    if length != 4 * size:
        raise FormatError(f"{key!r} holds {length // 4} values, the dataset's {size}")
    return np.frombuffer(bytes(read(offset, length)), "<f4")


def image_lead(image_bytes: int) -> bytes:
    """The bytes right before the image in a record holding `image_bytes` of it: its map
    entry's key and the Feature, BytesList and value framing (tags and lengths). A record index
    row whose image offset is not preceded by these does not point at an image."""
    value = varint(1 << 3 | 2) + varint(image_bytes)  # BytesList.value
    byte_list = varint(1 << 3 | 2) + varint(len(value) + image_bytes)  # Feature.bytes_list
    feature = varint(2 << 3 | 2) + varint(len(byte_list) + len(value) + image_bytes)
    return length_delimited(1, IMAGE_KEY.encode()) + feature + byte_list + value


# A label's varint is 1..10 bytes long (-1 takes 10).
LABEL_VARINT_BYTES = range(1, _MAX_VARINT_BYTES + 1)


def label_lead(varint_bytes: int) -> bytes:
    """The bytes right before a label varint of `varint_bytes` bytes: its map entry's key and
    the Feature and packed Int64List framing (label_lead(1): b"\n\x05label\x12\x05\x1a\x03
    \n\x01"), the same length for every varint length."""
    packed = varint(1 << 3 | 2) + varint(varint_bytes)  # Int64List.value, packed
    int64_list = varint(3 << 3 | 2) + varint(len(packed) + varint_bytes)
    feature = varint(2 << 3 | 2) + varint(len(int64_list) + len(packed) + varint_bytes)
    return length_delimited(1, LABEL_KEY.encode()) + feature + int64_list + packed


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


# Feature's field of each key's list: bytes_list (1), float_list (2), int64_list (3).
_LIST_FIELD = {LABEL_KEY: (3, "int64"), TARGET_KEY: (2, "float"), FEATURES_KEY: (2, "float")}


def _only_value(read, feature: tuple[int, int], key: str) -> tuple[int, int]:
    """(offset, length) of the single value of an image, path or label Feature; of a target
    Feature, of its packed floats."""
    want, kind = _LIST_FIELD.get(key, (1, "bytes"))
    kinds = list(_fields(read, *feature))
    if len(kinds) != 1 or kinds[0][0] != want:
        raise FormatError(f"{key!r} is not a single {kind} list")
    _, start, end = kinds[0]
    values = [(value_start, value_end) for _, value_start, value_end in _fields(read, start, end)]
    if want == 2:  # FloatList.value, packed: one length-delimited field
        if len(values) != 1 or (values[0][1] - values[0][0]) % 4:
            raise FormatError(f"{key!r} is not one packed list of float32")
        return values[0][0], values[0][1] - values[0][0]
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
