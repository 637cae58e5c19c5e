"""Photometric ops: computed in float32, clipped to [0, 255], cast back (brightness,
contrast)."""

from __future__ import annotations

import math

import tensorflow as tf

from pipeline.augment.common import check_pair, check_range, restore_pixels, uniform
from pipeline.augment.registry import Op, register


@register("brightness")
def get_brightness(max_delta: float = 0.2) -> Op:
    """Scales each image's pixels by a random factor in [1 - max_delta, 1 + max_delta].

    Relative, not additive: black stays black and it matches torchvision's
    ColorJitter(brightness=max_delta), so recipes carry over. max_delta=0 is the identity.
    """
    check_range("brightness", "max_delta", max_delta, 0.0, 1.0)

    def _brightness(images, labels, seed):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        factor = uniform([batch, 1, 1, 1], seed, 1.0 - max_delta, 1.0 + max_delta)
        return restore_pixels(tf.cast(images, tf.float32) * factor, images.dtype), labels

    return _brightness


@register("contrast")
def get_contrast(lower: float = 0.8, upper: float = 1.2) -> Op:
    """Scales each image's deviation from its own mean by a random factor in [lower, upper].

    The mean is over all channels and pixels of the image (one gray level, as torchvision
    does), not per channel: a per-channel mean would also wash out the colours.
    lower=upper=1 is the identity.
    """
    lower, upper = check_pair("contrast", "(lower, upper)", (lower, upper), 0.0, math.inf)

    def _contrast(images, labels, seed):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        factor = uniform([batch, 1, 1, 1], seed, lower, upper)
        pixels = tf.cast(images, tf.float32)
        mean = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
        # x * f + m * (1 - f) rather than m + f * (x - m): exactly x when f == 1.
        return restore_pixels(pixels * factor + mean * (1.0 - factor), images.dtype), labels

    return _contrast
