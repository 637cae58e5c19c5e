"""The per-record work of random access, compiled: read, check, crop and flip without the GIL.

FFCV's way (`ffcv/pipeline/compiler.py`): the loop over a batch's records is compiled with
numba `nogil=True`, so plain Python threads each running it over their part of a batch run on
every core at once, writing into one preallocated batch. Why compiled rather than Python per
record: with the Python read (preadv + a CRC that holds the GIL) a second thread was *slower*
(45k -> 40k img/s, 224^2 records from the page cache, batch 256), while this kernel reads 27-34k
img/s on one thread and 70k on two.

Per record: one `preadv` of exactly its bytes (pipeline.core.record_index locates them): the
12-byte header and the Example's bytes before the image into a small scratch buffer, the image
into its row of the batch (or into a scratch image when it is cropped or flipped on its way),
the rest (label, path, the data CRC) into the scratch after the prefix. Then the checks, in
this order: all bytes there, the header's length CRC, the length the index gives, the data
CRC32C (the CPU's CRC instruction on x86; a table elsewhere), the image and the label behind
their own keys and framing (the `leads`: pipeline.core.record_fields.image_lead, label_lead),
the label varint and its range, and last that CRC being the one the index lists. A record that
fails gets a status code and a detail (bytes read, the length held, the label);
pipeline.dataset.random_access turns the first into its error message.

The fused crop and flip (random_crop's zero-padded translation, flip_lr's mirror) copy rows of
the checked image into the batch at the offsets pipeline.augment.counter draws, so the bytes are
the ones the TensorFlow ops give for the same seed.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

(OK, TRUNCATED, LENGTH_CRC, LENGTH, DATA_CRC, LABEL_UNREADABLE, LABEL_RANGE, READ_FAILED,
 NOT_INDEXED, IMAGE_FIELD, LABEL_FIELD) = range(11)
# Statuses that say the record index (or the shard under it) is not dataset.json's, not that
# the record is damaged: never skipped, since skipping would drop records that may be good.
INDEX_STATUSES = (NOT_INDEXED, IMAGE_FIELD, LABEL_FIELD)
HEADER_BYTES = 12  # TFRecord framing: 8-byte length, 4-byte masked CRC of it
FOOTER_BYTES = 4  # masked CRC of the data
UNLABELED = -1

# preadv(2) from libc, linked by name (no ctypes pointer: the compiled kernels stay cacheable).
_preadv = types.ExternalFunction(
    "preadv", types.intp(types.int32, types.intp, types.int32, types.int64))
_memcpy = types.ExternalFunction("memcpy", types.intp(types.intp, types.intp, types.intp))
_memset = types.ExternalFunction("memset", types.intp(types.intp, types.int32, types.intp))
HARDWARE_CRC = bool(binding.get_host_cpu_features().get("sse4.2", False))


def _crc_instruction(name: str, width: int):
    @intrinsic
    def crc(typingctx, state, data):
        state_type = types.uint64 if width == 64 else types.uint32
        sig = state_type(state_type, types.uint64 if width == 64 else types.uint8)

        def codegen(context, builder, signature, args):
            bits = 64 if width == 64 else 32
            fnty = ir.FunctionType(ir.IntType(bits), [ir.IntType(bits), ir.IntType(width)])
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            return builder.call(fn, args)

        return sig, codegen

    return crc


_crc_u64 = _crc_instruction("llvm.x86.sse42.crc32.64.64", 64)
_crc_u8 = _crc_instruction("llvm.x86.sse42.crc32.32.8", 8)


@numba.njit(nogil=True, cache=True)
def _crc_hardware(crc, buf, start, stop):
    """CRC32C of buf[start:stop] continuing `crc` (a finished CRC, as google-crc32c's extend):
    the SSE 4.2 instruction, 8 bytes at a time (~9 GiB/s on one core here)."""
    state = np.uint32(~np.uint32(crc))
    i = start
    while i < stop and (buf.ctypes.data + i) & 7:
        state = _crc_u8(state, buf[i])
        i += 1
    words = (stop - i) // 8
    wide = np.uint64(state)
    chunk = buf[i:i + words * 8].view(np.uint64)
    for k in range(words):
        wide = _crc_u64(wide, chunk[k])
    state = np.uint32(wide)
    i += words * 8
    while i < stop:
        state = _crc_u8(state, buf[i])
        i += 1
    return np.uint32(~state)


def _crc_table() -> np.ndarray:
    table = np.zeros(256, np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table[byte] = crc
    return table


_TABLE = _crc_table()


@numba.njit(nogil=True, cache=True)
def _crc_software(crc, buf, start, stop):
    """CRC32C byte by byte from a table: CPUs without the instruction (~0.5 GiB/s)."""
    state = np.uint32(~np.uint32(crc))
    for i in range(start, stop):
        state = _TABLE[(state ^ buf[i]) & 0xFF] ^ (state >> np.uint32(8))
    return np.uint32(~state)


crc32c = _crc_hardware if HARDWARE_CRC else _crc_software


@numba.njit(nogil=True, cache=True)
def _mask(crc):
    crc = np.uint32(crc)
    return np.uint32(((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8))


@numba.njit(nogil=True, cache=True)
def _le(buf, start, count):
    value = np.uint64(0)
    for k in range(count):
        value |= np.uint64(buf[start + k]) << np.uint64(8 * k)
    return value


@numba.njit(nogil=True, cache=True)
def _varint(buf, start, stop):
    """(int64 value, its length in bytes) of the varint at buf[start:stop]; length 0: none."""
    value = np.uint64(0)
    for k in range(10):
        if start + k >= stop:
            return 0, 0
        byte = buf[start + k]
        value |= np.uint64(byte & 0x7F) << np.uint64(7 * k)
        if byte < 0x80:
            return np.int64(value), k + 1
    return 0, 0


@numba.njit(nogil=True, cache=True)
def _led(buf, at, lead, floor):
    """Whether buf[at - len(lead):at] holds `lead`, all of it at or after `floor`."""
    size = lead.size
    if at - size < floor:
        return False
    for k in range(size):
        if buf[at - size + k] != lead[k]:
            return False
    return True


@numba.njit(nogil=True, cache=True)
def read_record(fd, row, image, scratch, iov, checks):
    """One record (its index row: offset, data length, image and label offsets, data CRC):
    image bytes into `image` (uint8 [image_bytes]), the rest into `scratch`. `checks`:
    (num_classes, image lead, label leads [varint bytes, lead]). Returns (status, detail,
    label)."""
    num_classes, image_lead, label_leads = checks
    offset, length, image_offset, label_offset, indexed_crc = row[0], row[1], row[2], row[3], \
        row[4]
    image_bytes = image.size
    prefix = HEADER_BYTES + image_offset
    suffix = length - image_offset - image_bytes + FOOTER_BYTES
    iov[0], iov[1] = scratch.ctypes.data, prefix
    iov[2], iov[3] = image.ctypes.data, image_bytes
    iov[4], iov[5] = scratch.ctypes.data + prefix, suffix
    expected = prefix + image_bytes + suffix
    got = _preadv(np.int32(fd), iov.ctypes.data, np.int32(3), np.int64(offset))
    if got < 0:
        return READ_FAILED, 0, 0
    if got != expected:
        return TRUNCATED, got, 0
    if _mask(crc32c(0, scratch, 0, 8)) != np.uint32(_le(scratch, 8, 4)):
        return LENGTH_CRC, 0, 0
    held = np.int64(_le(scratch, 0, 8))
    if held != length:
        return LENGTH, held, 0
    crc = crc32c(0, scratch, HEADER_BYTES, prefix)
    crc = crc32c(crc, image, 0, image_bytes)
    crc = crc32c(crc, scratch, prefix, prefix + suffix - FOOTER_BYTES)
    footer = np.uint32(_le(scratch, prefix + suffix - FOOTER_BYTES, 4))
    if _mask(crc) != footer:
        return DATA_CRC, 0, 0
    if not _led(scratch, prefix, image_lead, HEADER_BYTES):
        return IMAGE_FIELD, 0, 0
    if label_offset < image_offset:
        floor, at, stop = HEADER_BYTES, HEADER_BYTES + label_offset, prefix
    else:
        floor, at = prefix, prefix + label_offset - image_offset - image_bytes
        stop = prefix + suffix - FOOTER_BYTES
    label, size = _varint(scratch, at, stop)
    if size == 0:
        return LABEL_UNREADABLE, 0, 0
    if not _led(scratch, at, label_leads[size], floor):
        return LABEL_FIELD, 0, 0
    if label != UNLABELED and not 0 <= label < num_classes:
        return LABEL_RANGE, label, label
    # Last: a record whose own checks hold but whose CRC is not the index's is another
    # record than the one written (a damaged one, say its label, is named as damage above).
    if indexed_crc >= 0 and np.int64(footer) != indexed_crc:
        return NOT_INDEXED, 0, 0
    return OK, 0, label


@numba.njit(nogil=True, cache=True)
def _read_position(fds, table, shard_of, p, image, scratch, iov, checks):
    """read_record of the record at reader position `p` (its shard's fd, its index row)."""
    return read_record(fds[shard_of[p]], table[p], image, scratch, iov, checks)


@numba.njit(nogil=True, cache=True)
def read_batch(fds, table, shard_of, positions, start, stop, images, labels, status, detail,
               scratch, checks):
    """Records positions[start:stop] into images[start:stop] (uint8 [B, image_bytes]), their
    labels, status and detail; every record is read, whatever an earlier one gave."""
    iov = np.empty(6, np.int64)
    for slot in range(start, stop):
        status[slot], detail[slot], labels[slot] = _read_position(
            fds, table, shard_of, positions[slot], images[slot], scratch, iov, checks)


@numba.njit(nogil=True, cache=True)
def _place(source, out, top, left, pad, flip):
    """out[c] = source[c] translated by (top - pad, left - pad), zeros where it leaves the
    image, then mirrored left-right when `flip` (random_crop then flip_lr, as one copy).

    Rows move with libc's memcpy and memset, and a mirrored row with unsigned indices (no
    negative-index check, so LLVM vectorises it): 200k / 138k images/s per core for 224^2,
    where numba's slice assignment managed 22k / 10k.
    """
    channels, height, width = source.shape
    src, dst = source.reshape(source.size), out.reshape(out.size)
    src_at, dst_at = src.ctypes.data, dst.ctypes.data
    # Columns x0..x1-1 of the translated image come from the source; both within [0, width]
    # (a pad larger than the image can move it out entirely).
    x0 = min(width, max(0, pad - left))
    x1 = max(x0, min(width, width + pad - left))
    for c in range(channels):
        for y in range(height):
            row = (c * height + y) * width
            sy = y + top - pad
            if sy < 0 or sy >= height:
                _memset(dst_at + row, 0, width)
                continue
            source_row = (c * height + sy) * width + left - pad
            if flip:
                _memset(dst_at + row, 0, width - x1)
                first, last = np.uint64(row + width - x1), np.uint64(source_row + x1 - 1)
                for k in range(np.uint64(x1 - x0)):
                    dst[first + k] = src[last - k]
                _memset(dst_at + row + width - x0, 0, x0)
            else:
                _memset(dst_at + row, 0, x0)
                _memcpy(dst_at + row + x0, src_at + source_row + x0, x1 - x0)
                _memset(dst_at + row + x1, 0, width - x1)


@numba.njit(nogil=True, cache=True)
def read_batch_placed(fds, table, shard_of, positions, start, stop, images, labels, status,
                      detail, scratch, checks, source, tops, lefts, pad, flips):
    """read_batch through `source` (one scratch image [C, H, W]), each record placed into
    images[slot] ([B, C, H, W]) by _place with its own offsets and flip."""
    iov = np.empty(6, np.int64)
    flat = source.reshape(source.size)
    for slot in range(start, stop):
        status[slot], detail[slot], labels[slot] = _read_position(
            fds, table, shard_of, positions[slot], flat, scratch, iov, checks)
        if status[slot] == OK:
            _place(source, images[slot], tops[slot], lefts[slot], pad, flips[slot])


@numba.njit(nogil=True, cache=True)
def read_one(fds, table, shard_of, position, image, scratch, checks):
    """One record into `image` (uint8 [image_bytes]): (status, detail, label)."""
    return _read_position(fds, table, shard_of, position, image, scratch,
                          np.empty(6, np.int64), checks)


@numba.njit(nogil=True, cache=True)
def gather_placed(table, rows, start, stop, images, tops, lefts, pad, flips):
    """The in-memory table's rows[start:stop] placed into images[start:stop] by _place."""
    for slot in range(start, stop):
        _place(table[rows[slot]], images[slot], tops[slot], lefts[slot], pad, flips[slot])
