"""Photometric ops: computed in float32, clipped to [0, 255], cast back (brightness,
contrast, saturation, hue). saturation and hue need RGB images, [B, 3, H, W]."""

from __future__ import annotations

import math

import tensorflow as tf

from pipeline import errors
from pipeline.augment.common import PIXEL_MAX, check_pair, check_range, restore_pixels, uniform
from pipeline.augment.registry import Op, register


# ITU-R BT.601 luma weights of R, G, B: what PIL's convert("L"), torchvision's
# rgb_to_grayscale and tf.image.rgb_to_grayscale use, so saturation matches their ColorJitter.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


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


@register("saturation")
def get_saturation(lower: float = 0.8, upper: float = 1.2) -> Op:
    """Blends each image with its own grayscale by a random factor in [lower, upper]: 0 gives
    gray, 1 the image unchanged, above 1 more vivid colours (torchvision's ColorJitter
    saturation, with the BT.601 luma of LUMA_WEIGHTS). lower=upper=1 is the identity.

    Needs 3 channels (RGB), since a luma of anything else is meaningless: other images raise
    ConfigError when the op is traced (or a shape error when run, if the channel count is
    not known when traced), rather than passing through unchanged unnoticed.
    """
    lower, upper = check_pair("saturation", "(lower, upper)", (lower, upper), 0.0, math.inf)

    def _saturation(images, labels, seed):
        images = _rgb(images, "saturation")
        factor = uniform([tf.shape(images)[0], 1, 1, 1], seed, lower, upper)
        pixels = tf.cast(images, tf.float32)
        weights = tf.constant(LUMA_WEIGHTS, tf.float32, shape=[1, 3, 1, 1])
        gray = tf.reduce_sum(pixels * weights, axis=1, keepdims=True)  # [B, 1, H, W]
        # x * f + gray * (1 - f): exactly x when f == 1, exactly gray when f == 0.
        return restore_pixels(pixels * factor + gray * (1.0 - factor), images.dtype), labels

    return _saturation


@register("hue")
def get_hue(max_delta: float = 0.05) -> Op:
    """Turns each image's hue by a random delta in [-max_delta, max_delta] of the colour wheel
    (0.5 = half way round: red to cyan), keeping saturation and value (torchvision's ColorJitter
    hue, through HSV as it does). Gray pixels stay the same gray.

    max_delta=0 is the identity, exactly (the op returns its input). A drawn delta of 0 is not
    bit-exact: the float RGB -> HSV -> RGB round trip is off by up to about 1e-4 of a level,
    which rounding removes for uint8. Needs 3 channels, as saturation.
    """
    check_range("hue", "max_delta", max_delta, 0.0, 0.5)

    def _hue(images, labels, seed):
        images = _rgb(images, "hue")
        if max_delta == 0:
            return images, labels
        delta = uniform([tf.shape(images)[0], 1, 1], seed, -max_delta, max_delta)
        return shift_hue(images, delta), labels

    return _hue


def shift_hue(images, delta) -> tf.Tensor:
    """RGB images [B, 3, H, W] with their hue turned by `delta` (float32, broadcast against
    [B, H, W]; 1 = once round the wheel). tf.image's HSV conversions compile with XLA and want
    NHWC in [0, 1]: two transposes, cheap next to the conversion itself. A channels-first
    rewrite of the conversion without them ran 3x slower under XLA (uint8 64 x 3 x 224 x 224,
    2 cores: ~4,500 img/s as written, ~700 without XLA)."""
    pixels = tf.transpose(tf.cast(images, tf.float32), [0, 2, 3, 1]) / PIXEL_MAX
    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(pixels), axis=-1)
    hue = tf.math.floormod(hue + delta, 1.0)
    pixels = tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1)) * PIXEL_MAX
    out = restore_pixels(tf.transpose(pixels, [0, 3, 1, 2]), images.dtype)
    out.set_shape(images.shape)
    return out


def _rgb(images, op: str) -> tf.Tensor:
    """The images, which must have 3 channels: ConfigError if their static shape says other,
    and a run-time shape check where the channel count is unknown."""
    images = tf.convert_to_tensor(images)
    channels = images.shape[1] if images.shape.rank == 4 else None
    if images.shape.rank not in (None, 4) or channels not in (None, 3):
        raise errors.ConfigError(
            f"{op} needs RGB images [B, 3, H, W], got shape {images.shape}; leave {op} out of "
            f"the augment spec for other images")
    if channels is None:
        images = tf.ensure_shape(images, [None, 3, None, None])
    return images
