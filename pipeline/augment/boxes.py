"""random_resized_crop's boxes, drawn alike in TensorFlow and numpy, and their resampling.

The box sampler is torchvision's RandomResizedCrop.get_params, per image: up to 10 tries of an
area uniform in `scale` of the image's and an aspect (width / height) log-uniform in `ratio`,
w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect)); the first try that fits is
placed uniformly at random; when none fits, the centre crop of the image with its aspect
clamped into `ratio`. Every number comes from pipeline.augment.counter keyed by (the op's seed,
the image's position in the batch, the draw), so `boxes_np` (the reader's fused crop) and
`boxes_tf` (the op) give the same integer boxes for the same seed: both compute in float64
with the same operations in the same order (IEEE multiply, divide, sqrt and round to even agree
bit for bit), and the one transcendental, the aspect's exp, is a table both read
(RATIO_STEPS log-spaced aspects).

Resampling is bilinear with half-pixel centres inside the box, the box's edge pixels repeated
beyond it: what OpenCV's cv2.resize(INTER_LINEAR) does to the cropped image (the reader) and
what `resample` does here in TensorFlow. OpenCV blends in 11-bit fixed point, so the two differ
by at most one grey level on a few pixels (tests/augment/test_boxes.py measures it).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from pipeline.augment import counter
from pipeline.augment.common import restore_pixels

TRIES = 10  # torchvision's
# Aspects the sampler can draw: log-uniform in `ratio` at this resolution (a 1/4096 step of
# the log range: 0.007% of the aspect for the default (3/4, 4/3)).
RATIO_STEPS = 4096
# Draw numbers (counter.py) of each part of an image's box.
_AREA_DRAW, _RATIO_DRAW, _TOP_DRAW, _LEFT_DRAW = 0, TRIES, 2 * TRIES, 2 * TRIES + 1


def ratio_table(ratio) -> np.ndarray:
    """float64 [RATIO_STEPS]: the aspects, the midpoints of equal steps of log(ratio)."""
    low, high = math.log(ratio[0]), math.log(ratio[1])
    steps = (np.arange(RATIO_STEPS, dtype=np.float64) + 0.5) / RATIO_STEPS
    return np.exp(low + (high - low) * steps)


def _unit_np(seed, count, draw) -> np.ndarray:
    return (counter.bits_np(seed, count, draw) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def boxes_np(seed, count: int, height: int, width: int, scale, ratio) -> np.ndarray:
    """int64 [count, 4]: (top, left, box height, box width) of each image (module docstring)."""
    box_h, box_w, found = first_fits_np(seed, count, height, width, scale, ratio)
    centre_h, centre_w = centre_box(height, width, ratio)
    box_h = np.where(found, box_h, centre_h).astype(np.int64)
    box_w = np.where(found, box_w, centre_w).astype(np.int64)
    top = _randint_np(seed, count, _TOP_DRAW, height - box_h + 1)
    left = _randint_np(seed, count, _LEFT_DRAW, width - box_w + 1)
    top = np.where(found, top, (height - box_h) // 2)
    left = np.where(found, left, (width - box_w) // 2)
    return np.stack([top, left, box_h, box_w], axis=1)


def first_fits_np(seed, count: int, height: int, width: int, scale, ratio):
    """(box heights, box widths, found) of the first try that fits each image; `found` False
    where none of the TRIES fits (then the centre crop is taken)."""
    table = ratio_table(ratio)
    area = float(height * width)
    tries = np.stack([
        _try_np(seed, count, t, area, scale, table) for t in range(TRIES)])  # [T, 2, count]
    box_h, box_w = tries[:, 0], tries[:, 1]
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = np.argmax(fits, axis=0)
    columns = np.arange(count)
    return box_h[first, columns], box_w[first, columns], fits.any(axis=0)


def _try_np(seed, count, t, area, scale, table) -> np.ndarray:
    target = area * (scale[0] + (scale[1] - scale[0]) * _unit_np(seed, count, _AREA_DRAW + t))
    aspect = table[counter.randint_np(seed, count, _RATIO_DRAW + t, RATIO_STEPS)]
    return np.stack([np.round(np.sqrt(target / aspect)), np.round(np.sqrt(target * aspect))])


def _randint_np(seed, count, draw, n: np.ndarray) -> np.ndarray:
    """int64 [count] in [0, n[i]) (n per image)."""
    top = counter.bits_np(seed, count, draw) >> np.uint64(32)
    return ((top * n.astype(np.uint64)) >> np.uint64(32)).astype(np.int64)


def centre_box(height: int, width: int, ratio) -> tuple[int, int]:
    """torchvision's fallback: the whole image with its aspect clamped into `ratio`."""
    aspect = width / height
    if aspect < min(ratio):
        return int(round(width / min(ratio))), width
    if aspect > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def boxes_tf(seed, count, height, width, scale, ratio) -> tf.Tensor:
    """boxes_np in TensorFlow: int32 [count, 4], height and width static Python ints."""
    table = tf.constant(ratio_table(ratio), tf.float64)
    area = float(height * width)
    heights, widths = [], []
    for t in range(TRIES):
        unit = tf.cast(tf.bitwise.right_shift(counter.bits_tf(seed, count, _AREA_DRAW + t),
                                              tf.constant(11, tf.uint64)), tf.float64) * 2.0**-53
        target = area * (scale[0] + (scale[1] - scale[0]) * unit)
        aspect = tf.gather(table, counter.randint_tf(seed, count, _RATIO_DRAW + t, RATIO_STEPS))
        heights.append(tf.round(tf.sqrt(target / aspect)))
        widths.append(tf.round(tf.sqrt(target * aspect)))
    box_h, box_w = tf.stack(heights), tf.stack(widths)  # [T, count]
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=0, output_type=tf.int32)
    found = tf.reduce_any(fits, axis=0)
    centre_h, centre_w = centre_box(height, width, ratio)
    pick = tf.stack([first, tf.range(count)], axis=1)
    box_h = tf.cast(tf.where(found, tf.gather_nd(box_h, pick), float(centre_h)), tf.int64)
    box_w = tf.cast(tf.where(found, tf.gather_nd(box_w, pick), float(centre_w)), tf.int64)
    top = tf.where(found, _randint_tf(seed, count, _TOP_DRAW, height - box_h + 1),
                   (height - box_h) // 2)
    left = tf.where(found, _randint_tf(seed, count, _LEFT_DRAW, width - box_w + 1),
                    (width - box_w) // 2)
    return tf.cast(tf.stack([top, left, box_h, box_w], axis=1), tf.int32)


def _randint_tf(seed, count, draw, n) -> tf.Tensor:
    top = tf.bitwise.right_shift(counter.bits_tf(seed, count, draw), tf.constant(32, tf.uint64))
    product = top * tf.cast(n, tf.uint64)
    return tf.cast(tf.bitwise.right_shift(product, tf.constant(32, tf.uint64)), tf.int64)


def resample(images, boxes, out_height: int, out_width: int) -> tf.Tensor:
    """images [B, C, H, W], each image's box (int32 [B, 4]: top, left, height, width)
    resampled to out_height x out_width: bilinear, half-pixel centres, the box's edge pixels
    repeated beyond it (cv2.resize INTER_LINEAR of the cropped image); the dtype kept.

    Rows, then columns, each a gather of whole rows (the columns by transposing first: a
    gather of single bytes along the last axis is 13x slower on the CPU) and a blend.
    """
    images = tf.convert_to_tensor(images)
    top, left, box_h, box_w = tf.unstack(boxes, axis=1)
    rows = _blend_rows(images, top, box_h, out_height)  # [B, C, out_h, W] float32
    cols = _blend_rows(tf.transpose(rows, [0, 1, 3, 2]), left, box_w, out_width)
    return restore_pixels(tf.transpose(cols, [0, 1, 3, 2]), images.dtype)


def _blend_rows(images, start, length, size: int) -> tf.Tensor:
    """float32 [B, C, size, X]: rows start..start+length-1 of each image resampled to `size`."""
    length_f = tf.cast(length, tf.float32)[:, None]
    at = (tf.range(size, dtype=tf.float32)[None, :] + 0.5) * (length_f / size) - 0.5
    at = tf.clip_by_value(at, 0.0, length_f - 1.0)
    low = tf.floor(at)
    weight = (at - low)[:, None, :, None]
    low_i = tf.cast(low, tf.int32)
    high_i = tf.minimum(low_i + 1, tf.cast(length, tf.int32)[:, None] - 1)
    start = tf.cast(start, tf.int32)[:, None]
    first = tf.cast(tf.gather(images, start + low_i, axis=2, batch_dims=1), tf.float32)
    second = tf.cast(tf.gather(images, start + high_i, axis=2, batch_dims=1), tf.float32)
    return first + (second - first) * weight
