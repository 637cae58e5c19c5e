"""Which records make batch g of a run: a pure function of (seed, g), computed in O(batch).

    order = Order.global_shuffle(shard_counts=[1617], batch_size=64, seed=0)
    order.indices(g)   # the record positions of the run's batch g (epoch g // 25)

A reader's whole state is then one integer, the next batch number: resuming at batch N costs
nothing and repeats nothing (Grain's IndexSampler; FFCV's RANDOM and QUASI_RANDOM orders).

    global     every epoch a permutation of the whole split, keyed by (seed, epoch): records
               of every shard mix in every batch. For splits the page cache (or RAM) holds.
    windows    quasi-random, for splits larger than the page cache: every epoch the shards
               in a new order, cut into windows of `window_shards` shards; the records of one
               window in a permutation of their own, window after window. Reads stay in a
               window's worth of files, which the page cache keeps, instead of the whole split.
    sequential evaluation: the records in order, the last batch partial.

choose_order picks one for a split: the table and a split the page cache can hold (at most
PAGE_CACHE_FRACTION of the available memory) are shuffled globally; a larger one is read in
windows of shards that fit, so that the disk is read mostly once per epoch instead of at random.

Training drops the last partial batch of every epoch (static batch shapes); every record is
at most once in an epoch, and all but `records % batch_size` of them exactly once.

The permutations are a 4-round Feistel network over the smallest even power of two that
holds the records, walked until it lands inside (cycle walking), with round keys from
SHA-256 of the key: a bijection for every size and key, vectorised with numpy, the same on
every machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import numpy as np

from pipeline.core.units import format_bytes
from pipeline.dataset.options import DatasetError

FEISTEL_ROUNDS = 4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
GLOBAL, WINDOWS, SEQUENTIAL = "global", "windows", "sequential"
# A split of at most this share of the available memory is shuffled globally (the page cache
# keeps it after the first epoch); a larger one in windows of this many bytes.
PAGE_CACHE_FRACTION = 0.5


def permute(positions: np.ndarray, size: int, key: tuple[int, ...]) -> np.ndarray:
    """The images of `positions` (each in [0, size)) under the permutation of [0, size) that
    `key` names."""
    positions = np.asarray(positions, dtype=np.uint64)
    if size <= 1:
        return positions.astype(np.int64)
    half = max(1, ((size - 1).bit_length() + 1) // 2)
    round_keys = _round_keys(key, size)
    out = positions.copy()
    outside = np.ones(out.shape, dtype=bool)
    while outside.any():
        out[outside] = _feistel(out[outside], half, round_keys)
        outside = out >= np.uint64(size)
    return out.astype(np.int64)


def _round_keys(key: tuple[int, ...], size: int) -> list[np.uint64]:
    digest = hashlib.sha256(struct.pack(f"<{len(key) + 1}q", size, *key)).digest()
    return [np.uint64(int.from_bytes(digest[8 * i:8 * i + 8], "little"))
            for i in range(FEISTEL_ROUNDS)]


def _feistel(values: np.ndarray, half: int, round_keys) -> np.ndarray:
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    left, right = values >> shift, values & mask
    for round_key in round_keys:
        left, right = right, left ^ (_mix(right ^ round_key) & mask)
    return (left << shift) | right


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def batches_per_epoch(records: int, batch_size: int, training: bool) -> int:
    """Batches make_dataset yields per epoch for `records` records: the last partial batch is
    dropped in training and kept otherwise."""
    return records // batch_size if training else -(-records // batch_size)


def require_batches(records: int, batch_size: int, training: bool, split: str) -> int:
    """batches_per_epoch, or DatasetError when that is none."""
    if batch_size < 1:
        raise DatasetError(f"batch_size={batch_size} must be at least 1")
    num_batches = batches_per_epoch(records, batch_size, training)
    if num_batches == 0:
        raise DatasetError(
            f"split {split!r} has {records} records for this pipeline, fewer than batch_size="
            f"{batch_size} with the remainder dropped in training; use batch_size<={records}")
    return num_batches


@dataclasses.dataclass(frozen=True)
class Order:
    """The batches of a run over `shard_counts` records (positions 0.. in shard order)."""

    kind: str
    shard_counts: tuple[int, ...]  # records of each shard of the pipeline, in order
    batch_size: int
    seed: int = 0
    window_shards: int = 0  # windows: shards per window

    @classmethod
    def global_shuffle(cls, shard_counts, batch_size: int, seed: int) -> "Order":
        return cls(GLOBAL, tuple(shard_counts), batch_size, seed)

    @classmethod
    def windows(cls, shard_counts, batch_size: int, seed: int, window_shards: int) -> "Order":
        return cls(WINDOWS, tuple(shard_counts), batch_size, seed, max(1, window_shards))

    @classmethod
    def sequential(cls, shard_counts, batch_size: int) -> "Order":
        return cls(SEQUENTIAL, tuple(shard_counts), batch_size)

    @property
    def records(self) -> int:
        return sum(self.shard_counts)

    @property
    def training(self) -> bool:
        return self.kind != SEQUENTIAL

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(self.records, self.batch_size, self.training)

    def indices(self, batch: int) -> np.ndarray:
        """The record positions (int64) of the run's batch `batch`."""
        if not self.training:
            start = batch * self.batch_size
            return np.arange(start, min(start + self.batch_size, self.records), dtype=np.int64)
        epoch, position = divmod(batch, self.batches_per_epoch)
        in_epoch = np.arange(position * self.batch_size, (position + 1) * self.batch_size,
                             dtype=np.int64)
        if self.kind == GLOBAL:
            return permute(in_epoch, self.records, (self.seed, epoch))
        return self._windowed(in_epoch, epoch)

    def _windowed(self, in_epoch: np.ndarray, epoch: int) -> np.ndarray:
        counts = np.asarray(self.shard_counts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        shards = permute(np.arange(len(counts)), len(counts), (self.seed, epoch, -1))
        windows = [shards[i:i + self.window_shards]
                   for i in range(0, len(shards), self.window_shards)]
        sizes = np.array([counts[w].sum() for w in windows], dtype=np.int64)
        window_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        which = np.searchsorted(window_starts, in_epoch, side="right") - 1
        out = np.empty_like(in_epoch)
        for w in np.unique(which):
            members = which == w
            local = permute(in_epoch[members] - window_starts[w], int(sizes[w]),
                            (self.seed, epoch, int(w)))
            # The window's records, shard after shard, hold positions 0..size-1.
            shard_ends = np.cumsum(counts[windows[w]])
            slot = np.searchsorted(shard_ends, local, side="right")
            before = np.concatenate([[0], shard_ends[:-1]])[slot]
            out[members] = starts[windows[w]][slot] + (local - before)
        return out


def choose_order(shard_counts, image_bytes: int, batch_size: int, *, training: bool,
                 seed: int | None, available: int, table: bool = False) -> tuple[Order, str]:
    """The order of a split's records, and its description for the log line."""
    if not training:
        return Order.sequential(shard_counts, batch_size), "in order"
    split_bytes = sum(shard_counts) * image_bytes
    budget = PAGE_CACHE_FRACTION * available
    if table or split_bytes <= budget or len(shard_counts) <= 1:
        where = "RAM" if table else "the page cache"
        return (Order.global_shuffle(shard_counts, batch_size, seed),
                f"a global shuffle every epoch ({format_bytes(split_bytes)} fit in {where})")
    per_shard = split_bytes / len(shard_counts)
    window = max(1, int(budget // per_shard))
    return (Order.windows(shard_counts, batch_size, seed, window),
            f"quasi-random: {window} of {len(shard_counts)} shards at a time, shuffled "
            f"({format_bytes(split_bytes)} exceed {format_bytes(budget)}, "
            f"{PAGE_CACHE_FRACTION:.0%} of the available memory)")
