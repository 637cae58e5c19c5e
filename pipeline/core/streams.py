"""File streams for checking shards in one pass: hash every byte read, inflate in bounded pieces.

pipeline.core.integrity reads each shard once through these: the file's bytes are hashed as
they are read, and a GZIP or ZLIB stream is inflated from the same pass, never more than
READ_CHUNK_BYTES at a time, so a corrupt record length cannot make one read allocate its
(possibly enormous) value up front.
"""

from __future__ import annotations

import hashlib
import zlib

# Largest single read from disk or from the inflater, in bytes (1 MiB): what a reader holds
# beyond the record being checked.
READ_CHUNK_BYTES = 1 << 20
# zlib window bits: a gzip member (header and CRC-32 trailer checked), or a zlib stream.
INFLATE_WBITS = {"GZIP": 16 + zlib.MAX_WBITS, "ZLIB": zlib.MAX_WBITS}


class HashingReader:
    """Reads a binary file in pieces of at most READ_CHUNK_BYTES, hashing every byte read."""

    def __init__(self, raw):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int) -> bytes:
        pieces = []
        wanted = size
        while wanted > 0:
            piece = self._raw.read(min(wanted, READ_CHUNK_BYTES))
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
        data = b"".join(pieces)  # one piece (the usual case) is returned without a copy
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> int:
        """Read (and hash) the rest of the file; returns how many bytes that was."""
        drained = 0
        while piece := self.read(READ_CHUNK_BYTES):
            drained += len(piece)
        return drained


class InflatingReader:
    """A GZIP or ZLIB stream as a file of its inflated bytes; `read(n)` inflates at most n.

    zlib rather than gzip.GzipFile: GzipFile.read(n) allocates n bytes up front, so a corrupt
    record length would be allocated before it could be found short. Raises zlib.error on a
    corrupt stream (including a gzip CRC-32 or length trailer that does not match).
    """

    def __init__(self, source: HashingReader, compression: str):
        self._source = source
        self._inflate = zlib.decompressobj(INFLATE_WBITS[compression])
        self._pending = b""  # compressed bytes read but not yet inflated
        self._source_ended = False

    def read(self, size: int) -> bytes:
        pieces = []
        wanted = size
        while wanted > 0 and not self._inflate.eof:
            if not self._pending and not self._source_ended:
                self._pending = self._source.read(READ_CHUNK_BYTES)
                self._source_ended = not self._pending
            piece = self._inflate.decompress(self._pending, wanted)
            self._pending = self._inflate.unconsumed_tail
            if piece:
                pieces.append(piece)
                wanted -= len(piece)
            elif self._source_ended and not self._pending:
                break  # the file ended before the stream did
        return b"".join(pieces)

    @property
    def complete(self) -> bool:
        """Whether the stream's end marker (and, for GZIP, its trailer) has been read."""
        return self._inflate.eof

    def trailing_bytes(self) -> int:
        """Bytes in the file after the end of the stream (reads the rest of the file)."""
        # Once the stream has ended, zlib holds all input it was given past the end in
        # unused_data (unconsumed_tail may repeat it, so it is not counted).
        return len(self._inflate.unused_data) + self._source.drain()
