"""random_erasing: a random rectangle of some images set to one value (Zhong et al. 2017).

An occlusion augmentation: the network cannot rely on any one part of an object. It runs on the
batch as one select on a [B, 1, H, W] mask built from per-image box bounds, so its cost is that
of one pass over the images whatever the boxes are.
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from pipeline import errors
from pipeline.augment.common import (PIXEL_MAX, batch_height_width, check_pair, check_range,
                                     restore_pixels, split_seed, uniform)
from pipeline.augment.registry import Op, register

# Boxes drawn per image before giving up, as torchvision's RandomErasing: a box as tall or as
# wide as the image is redrawn, and an image whose draws all fail is left unchanged. Drawn all
# at once ([ATTEMPTS, B]) and the first that fits taken, so the retries cost no loop.
ERASING_ATTEMPTS = 10


@register("random_erasing")
def get_random_erasing(probability: float = 0.25, area: Sequence[float] = (0.02, 0.33),
                       ratio: Sequence[float] = (0.3, 3.3), value: float = 0) -> Op:
    """With `probability` per image, sets one rectangle of it to `value` (0-255 scale, all
    channels): area fraction uniform in `area`, height/width aspect log-uniform in `ratio`,
    position uniform where it fits; torchvision's RandomErasing defaults and sampling.

    Box sides are whole pixels (rounded, as torchvision does), so the erased fraction is the
    drawn one up to rounding. Unlike torchvision, a box that rounds to no pixel at all is redrawn
    like one that does not fit. probability=0 is the identity.
    """
    check_range("random_erasing", "probability", probability, 0.0, 1.0)
    area_lo, area_hi = check_pair("random_erasing", "area", area, 0.0, 1.0)
    ratio_lo, ratio_hi = check_pair("random_erasing", "ratio", ratio, 0.0, math.inf)
    if ratio_lo <= 0 or math.isinf(ratio_hi):
        raise errors.ConfigError(
            f"random_erasing: ratio={ratio!r} must be finite and positive, e.g. (0.3, 3.3)")
    check_range("random_erasing", "value", value, 0.0, PIXEL_MAX)
    log_ratio = (math.log(ratio_lo), math.log(ratio_hi))

    def _random_erasing(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if probability == 0:
            return images, labels
        batch, height, width = batch_height_width(images)
        seed_apply, seed_box = split_seed(seed, 2)
        erase = uniform([batch], seed_apply) < probability
        top, left, box_h, box_w, found = erasing_boxes(
            seed_box, batch, height, width, (area_lo, area_hi), log_ratio)
        rows = tf.range(height)[None, :]
        cols = tf.range(width)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # [B, H]
        in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # [B, W]
        inside = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # [B, 1, H, W]
        inside &= (erase & found)[:, None, None, None]
        fill = restore_pixels(tf.constant(value, tf.float32), images.dtype)  # rounded for uint8
        return tf.where(inside, fill, images), labels

    return _random_erasing


def erasing_boxes(seed, batch, height, width, area, log_ratio):
    """Per image the box to erase: int32 [B] top, left, height, width, and bool [B] `found`
    (false where none of the ERASING_ATTEMPTS draws fitted)."""
    u_area, u_ratio, u_top, u_left = tf.unstack(uniform([4, ERASING_ATTEMPTS, batch], seed))
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    pixels = (area[0] + (area[1] - area[0]) * u_area) * h * w
    aspect = tf.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_ratio)  # height / width
    box_h = tf.cast(tf.round(tf.sqrt(pixels * aspect)), tf.int32)
    box_w = tf.cast(tf.round(tf.sqrt(pixels / aspect)), tf.int32)
    # torchvision's test (strictly smaller than the image), plus at least one pixel.
    fits = (box_h >= 1) & (box_w >= 1) & (box_h < height) & (box_w < width)  # [ATTEMPTS, B]
    # The first attempt that fits, as a one-hot [ATTEMPTS, B] (argmax does not promise the
    # first of several maxima); all zeros where none does.
    attempt = tf.range(ERASING_ATTEMPTS)[:, None]
    first = tf.reduce_min(tf.where(fits, attempt, ERASING_ATTEMPTS), axis=0)  # [B]
    chosen = tf.equal(attempt, first[None, :])

    def pick(values):  # [ATTEMPTS, B] -> [B]: the chosen attempt's value, 0 if none
        return tf.reduce_sum(values * tf.cast(chosen, values.dtype), axis=0)

    box_h, box_w, u_top, u_left = pick(box_h), pick(box_w), pick(u_top), pick(u_left)
    # Uniform over the H - box_h + 1 rows (and columns) where the box fits.
    top = tf.cast(tf.floor(u_top * tf.cast(height - box_h + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(u_left * tf.cast(width - box_w + 1, tf.float32)), tf.int32)
    return top, left, box_h, box_w, first < ERASING_ATTEMPTS
