"""Which augmentation ops the random-access reader does itself, on the way into the batch.

A spec's leading `random_crop` or `random_resized_crop`, and a `flip_lr` after it (the default
spec is "random_crop(pad=16)|flip_lr"), are done per image as each record is read:

  random_crop (+ flip_lr): one offset copy per image (kernels._place), where TensorFlow's ops
      take two more passes over the batch after it: the same bytes as the ops give.
  random_resized_crop (+ flip_lr): cv2.resize (INTER_LINEAR, uint8, it releases the GIL) of
      each channel's box straight into the batch, ~9k img/s per core, where TensorFlow's
      batched resampling manages ~0.9-1.5k: the same boxes as the op (augment/boxes.py), the
      pixels within one grey level of it.

The in-memory table does the same as its threads gather the rows. The reader draws their
numbers as the ops do (pipeline.augment.counter, with the seed spec.build gives op i), so the
result does not depend on which ran them, nor on the reading threads; the ops after them run
in tf.data with their own seeds unchanged. Streaming and the tf.data service run every op in
tf.data.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import cv2
import numpy as np
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline.augment import boxes, geometric
from pipeline.augment.common import as_seed, fold_seed
from pipeline.augment.resizing import op_text
from pipeline.dataset import kernels
from pipeline.dataset.random_access import RecordReader


@dataclasses.dataclass(frozen=True)
class HostOps:
    """The spec's first `count` ops, done by the reader: random_crop(pad) as op `crop`,
    random_resized_crop(scale, ratio, size) as op `resized`, flip_lr as op `flip` (their
    indices in the spec; None when absent)."""

    count: int = 0
    crop: int | None = None
    pad: int = 0
    flip: int | None = None
    resized: int | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    size: int | None = None

    def output_shape(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of the images the reader hands out."""
        if self.resized is None or self.size is None:
            return tuple(image_shape)
        return (image_shape[0], self.size, self.size)


def describe(spec: Any, host: HostOps = HostOps(), why: str = "") -> str:
    """The end of a split's log line: which augmentation ops run where ("" without any)."""
    text = [op_text(name, kwargs) for name, kwargs in augment_lib.parse_spec(spec)]
    if not text:
        return ""
    here, there = "|".join(text[:host.count]), "|".join(text[host.count:])
    if not host.count:
        return f"; augmentation {there} in tf.data{why}"
    return f"; augmentation {here} in the reader" + (f", {there} in tf.data" if there else "")


def host_ops(spec: str | Sequence[str] | None) -> HostOps:
    """The leading ops of `spec` the reader can do (see the module docstring)."""
    ops = augment_lib.parse_spec(spec)
    fields, at = {}, 0
    if ops and ops[0][0] == "random_crop":
        fields.update(crop=0, pad=int(ops[0][1].get("pad", 16)))
        at = 1
    elif ops and ops[0][0] == "random_resized_crop":
        kwargs = ops[0][1]
        geometric.get_random_resized_crop(**kwargs)  # its checks: one line for a bad value
        fields.update(resized=0, size=kwargs.get("size"),
                      scale=tuple(float(v) for v in kwargs.get("scale", (0.08, 1.0))),
                      ratio=tuple(float(v) for v in kwargs.get("ratio", (3 / 4, 4 / 3))))
        at = 1
    if at < len(ops) and ops[at][0] == "flip_lr":
        fields.update(flip=at)
        at += 1
    return HostOps(count=at, **fields)


def op_seeds(host: HostOps, seed: int, batch: tf.Tensor) -> tf.Tensor:
    """int64 [count, 2]: the seeds spec.build hands ops 0..count-1 of batch `batch`."""
    base = as_seed(tf.stack([tf.constant(seed, tf.int64), batch]))
    return tf.stack([fold_seed(base, i) for i in range(max(host.count, 1))])


def placement(host: HostOps, seeds: np.ndarray, count: int,
              image_shape: Sequence[int]) -> "Placement | Resampling | None":
    """The crops and flips of a batch of `count` images, as the ops would draw them."""
    if not host.count:
        return None
    flips = (geometric.flips_np(seeds[host.flip], count) if host.flip is not None
             else np.zeros(count, bool))
    if host.resized is not None:
        _, height, width = image_shape
        return Resampling(boxes.boxes_np(seeds[host.resized], count, height, width,
                                         host.scale, host.ratio), flips)
    tops = lefts = np.zeros(count, np.int64)
    if host.crop is not None:
        tops, lefts = geometric.crop_offsets_np(seeds[host.crop], count, host.pad)
    return Placement(np.ascontiguousarray(tops, np.int64), np.ascontiguousarray(lefts, np.int64),
                     host.pad, flips.astype(np.int64))


@dataclasses.dataclass(frozen=True)
class Placement:
    """random_crop and flip_lr done by the reader: per slot of the batch, the row and column
    offsets into the image zero-padded by `pad`, and whether it is mirrored (kernels._place)."""

    tops: np.ndarray  # int64 [B], in [0, 2 * pad]
    lefts: np.ndarray  # int64 [B]
    pad: int
    flips: np.ndarray  # int64 [B], 0 or 1

    def read(self, reader: RecordReader, positions, start: int, stop: int, images, labels,
             status, detail) -> None:
        kernels.read_batch_placed(
            *reader.kernel_args(positions, start, stop), images, labels, status, detail,
            reader.scratch(), reader.checks, np.empty(reader.image_shape, np.uint8),
            self.tops, self.lefts, self.pad, self.flips)

    def gather(self, table: np.ndarray, rows: np.ndarray, start: int, stop: int,
               images: np.ndarray) -> None:
        """The same, from the in-memory table's `rows`."""
        kernels.gather_placed(table, rows, start, stop, images, self.tops, self.lefts,
                              self.pad, self.flips)


@dataclasses.dataclass(frozen=True)
class Resampling:
    """random_resized_crop (+ flip_lr) done by the reader: per slot its box (top, left,
    height, width) and whether it is mirrored; each channel's box resized by OpenCV straight
    into the batch, which has the output size."""

    boxes: np.ndarray  # int64 [B, 4]
    flips: np.ndarray  # bool [B]

    def read(self, reader: RecordReader, positions, start: int, stop: int, images, labels,
             status, detail) -> None:
        source = np.empty(reader.image_shape, np.uint8)
        flat, scratch = source.reshape(-1), reader.scratch()
        for slot in range(start, stop):
            status[slot], detail[slot], labels[slot] = reader.read_one(positions[slot], flat,
                                                                       scratch)
            if status[slot] == kernels.OK:
                self._resize(source, images[slot], slot)

    def gather(self, table: np.ndarray, rows: np.ndarray, start: int, stop: int,
               images: np.ndarray) -> None:
        """The same, from the in-memory table's `rows`."""
        for slot in range(start, stop):
            self._resize(table[rows[slot]], images[slot], slot)

    def _resize(self, source: np.ndarray, out: np.ndarray, slot: int) -> None:
        """source's box of `slot` resized into `out` (its size), mirrored if drawn so."""
        top, left, height, width = self.boxes[slot].tolist()
        size = (out.shape[2], out.shape[1])  # OpenCV's (width, height)
        for channel, plane in zip(source, out):
            cv2.resize(channel[top:top + height, left:left + width], size, dst=plane,
                       interpolation=cv2.INTER_LINEAR)
            if self.flips[slot]:
                cv2.flip(plane, 1, dst=plane)
