"""Geometric ops: uint8 stays uint8, the pixels only move (flip_lr, flip_ud, random_crop,
random_resized_crop, rotate)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from pipeline import errors
from pipeline.augment import boxes, counter
from pipeline.augment.common import (batch_height_width, check_pair, check_range,
                                     restore_pixels, uniform)
from pipeline.augment.registry import Op, register
from pipeline.augment.resizing import check_size


def flips(seed, count) -> tf.Tensor:
    """bool [count]: which images flip_lr mirrors. Drawn from pipeline.augment.counter, as the
    reader's fused flip draws them (flips_np)."""
    return counter.randint_tf(seed, count, 0, 2) > 0


def flips_np(seed, count: int) -> np.ndarray:
    return counter.randint_np(seed, count, 0, 2) > 0


def crop_offsets(seed, count, pad: int) -> tf.Tensor:
    """int32 [2, count]: random_crop's (row, column) offsets into the padded images, each in
    [0, 2 * pad], from pipeline.augment.counter (as crop_offsets_np, the reader's)."""
    return tf.stack([counter.randint_tf(seed, count, draw, 2 * pad + 1) for draw in (0, 1)])


def crop_offsets_np(seed, count: int, pad: int) -> np.ndarray:
    return np.stack([counter.randint_np(seed, count, draw, 2 * pad + 1) for draw in (0, 1)])


@register("flip_lr")
def get_flip_lr() -> Op:
    """Mirrors each image left-right (along W) with probability 1/2."""

    def _flip_lr(images, labels, seed):
        images = tf.convert_to_tensor(images)
        flip = flips(seed, tf.shape(images)[0])
        # One reverse of the whole batch and one select on a [B, 1, 1, 1] mask: two passes over
        # uint8 memory, instead of a cond (or a Python loop) per image.
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[3]), images)
        return images, labels

    return _flip_lr


@register("flip_ud")
def get_flip_ud() -> Op:
    """Flips each image top-bottom (along H) with probability 1/2.

    For data without an "up" (aerial, microscopy, textures); on photographs of objects it
    teaches upside-down views the test set never shows, so the defaults leave it out.
    """

    def _flip_ud(images, labels, seed):
        images = tf.convert_to_tensor(images)
        flip = uniform([tf.shape(images)[0]], seed) < 0.5
        # As flip_lr: one reverse of the batch and one select on a [B, 1, 1, 1] mask.
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        return images, labels

    return _flip_ud


@register("random_crop")
def get_random_crop(pad: int = 16) -> Op:
    """Zero-pads H and W by `pad` pixels on each side, then crops each image back to H x W at
    its own random offset in [0, 2 * pad] (a random translation by up to `pad` pixels)."""
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise errors.ConfigError(f"random_crop: pad={pad!r} must be an integer >= 0 (pixels)")

    def _random_crop(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if pad == 0:
            return images, labels
        batch, height, width = batch_height_width(images)
        padded = tf.pad(images, [[0, 0], [0, 0], [pad, pad], [pad, pad]])
        offset_y, offset_x = tf.unstack(crop_offsets(seed, batch, pad))
        # Every image has its own offset, so a single tf.slice cannot crop them all. Rows: one
        # gather with a per-image [B, H] index grid (batch_dims=1) moves whole rows at once.
        rows = offset_y[:, None] + tf.range(height)[None, :]
        out = tf.gather(padded, rows, axis=2, batch_dims=1)  # [B, C, H, W + 2 pad]
        if images.dtype.is_integer:
            out = _crop_columns_by_offset(out, offset_x, width, pad)
        else:
            cols = offset_x[:, None] + tf.range(width)[None, :]
            out = tf.gather(out, cols, axis=3, batch_dims=1)  # [B, C, H, W]
        out.set_shape(images.shape)  # the index grids hide H and W from shape inference
        return out, labels

    def _random_crop_xla(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if pad == 0:
            return images, labels
        batch, channels, height, width = images.shape
        offsets = crop_offsets(seed, tf.shape(images)[0], pad)
        padded = tf.pad(images, [[0, 0], [0, 0], [pad, pad], [pad, pad]])
        out = _batched_window(padded, offsets[0], offsets[1], [channels, height, width])
        return out, labels

    _random_crop.xla_kernel = _random_crop_xla
    return _random_crop


def _batched_window(images, top, left, window) -> tf.Tensor:
    """images[b, :, top[b] : top[b] + h, left[b] : left[b] + w] for every b, inside XLA.

    One XLA gather whose slices are whole [C, h, w] windows: it copies whole rows, where
    tf.gather with per-image index grids (batch_dims=1) gathers single bytes and then has XLA
    transpose the result back to row-major (a quarter of the time in the crop). Measured on 2
    cores, uint8 256 x 3 x 224 x 224, in tf.data from the in-memory table with a flip after:
    ~24,000 img/s, against ~7,300 with the index grids.
    """
    from tensorflow.compiler.tf2xla.python import xla as tf_xla  # XLA-only ops
    from tensorflow.compiler.xla import xla_data_pb2

    batch = tf.range(tf.shape(images)[0])
    starts = tf.stack([batch, tf.zeros_like(batch), top, left], axis=1)  # [B, 4]
    dims = xla_data_pb2.GatherDimensionNumbers(
        offset_dims=[1, 2, 3], collapsed_slice_dims=[0], start_index_map=[0, 1, 2, 3],
        index_vector_dim=1,
    )
    return tf_xla.gather(images, starts, dims, [1, *window], indices_are_sorted=True)


def _crop_columns_by_offset(images, offsets, width, pad: int) -> tf.Tensor:
    """images[b, :, :, offsets[b] : offsets[b] + width] for the whole batch, offsets in
    [0, 2 * pad]: the uint8 (tf.data, CPU) path of random_crop.

    A column gather with a [B, W] index grid copies one byte at a time: 240 ms for a batch of
    256 x 3 x 224 x 224 on one core, 13x the row gather. Grouping the images by offset (one
    dynamic_partition), cropping each group with a plain slice (whole runs of W bytes) and
    stitching them back in batch order takes 25 ms and gives the same bytes. The Python loop
    runs over the 2 * pad + 1 possible offsets when the graph is built, not over images.
    Float (device) images keep the column gather: XLA has no kernel for dynamic_partition,
    and accelerators gather fast.
    """
    num_offsets = 2 * pad + 1
    groups = tf.dynamic_partition(images, offsets, num_offsets)
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), offsets, num_offsets)
    cropped = [group[..., offset : offset + width] for offset, group in enumerate(groups)]
    return tf.dynamic_stitch(positions, cropped)


@register("random_resized_crop", xla=False)
def get_random_resized_crop(
    scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
    size: int | None = None,
) -> Op:
    """Inception-style crop, torchvision's RandomResizedCrop: per image a box covering `scale`
    of the image's area (uniform) with width/height aspect `ratio` (log-uniform), up to 10
    tries for one that fits, else the centre crop (pipeline.augment.boxes), resized back to
    H x W (or to size x size: training at another resolution), bilinear with half-pixel
    centres. The random-access reader does the same crop itself, with OpenCV, on the way into
    the batch (pipeline.dataset.fused). scale=(1, 1), ratio=(1, 1) on a square image is the
    identity.
    """
    area_lo, area_hi = check_pair("random_resized_crop", "scale", scale, 0.0, 1.0)
    ratio_lo, ratio_hi = check_pair("random_resized_crop", "ratio", ratio, 0.0, math.inf)
    if area_hi <= 0 or ratio_lo <= 0:
        raise errors.ConfigError(
            f"random_resized_crop: scale={scale!r} and ratio={ratio!r} must be positive"
        )
    if size is not None:
        check_size("random_resized_crop", size)

    def _random_resized_crop(images, labels, seed):
        images = tf.convert_to_tensor(images)
        height, width = images.shape[2], images.shape[3]
        if height is None or width is None:
            raise errors.ConfigError("random_resized_crop needs images of a known height and "
                                     f"width, got shape {images.shape}")
        crop = boxes.boxes_tf(seed, tf.shape(images)[0], height, width,
                              (area_lo, area_hi), (ratio_lo, ratio_hi))
        out = boxes.resample(images, crop, size or height, size or width)
        out.set_shape([images.shape[0], images.shape[1], size or height, size or width])
        return out, labels

    return _random_resized_crop


# rotate's resampling. "bilinear" blends the 4 source pixels around each position, so the
# usual small angles (5-30 degrees) give smooth edges instead of nearest's staircase, at 4
# gathers instead of 1 and a float round trip; "nearest" copies one source pixel, so uint8
# images are never converted and no new pixel values appear. uint8 64 x 3 x 224 x 224 on 2
# (shared) cores: bilinear ~3,700 img/s with XLA, ~300 without; nearest ~5,400 and ~1,500.
ROTATE_INTERPOLATIONS = ("bilinear", "nearest")


@register("rotate")
def get_rotate(degrees: float = 15.0, interpolation: str = "bilinear") -> Op:
    """Rotates each image about its centre by its own angle, uniform in [-degrees, degrees];
    what comes from outside the image is 0 (black, as random_crop's padding).

    Positive angles turn the image counter-clockwise as displayed, as np.rot90 does. The
    corners are cut off rather than zoomed away, as torchvision's RandomRotation. Sampling is
    `interpolation`, bilinear by default (see ROTATE_INTERPOLATIONS). degrees=0 is the identity.
    """
    check_range("rotate", "degrees", degrees, 0.0, 180.0)
    if interpolation not in ROTATE_INTERPOLATIONS:
        raise errors.ConfigError(
            f"rotate: interpolation={interpolation!r} must be one of "
            f"{', '.join(map(repr, ROTATE_INTERPOLATIONS))}")
    max_angle = math.radians(degrees)

    def _rotate(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if degrees == 0:
            return images, labels
        angles = uniform([tf.shape(images)[0]], seed, -max_angle, max_angle)
        return rotate_images(images, angles, interpolation), labels

    return _rotate


def rotate_images(images, angles, interpolation: str = "bilinear") -> tf.Tensor:
    """images [B, C, H, W] each rotated by angles[b] radians (float32 [B]) about its centre.

    Inverse mapping: every output pixel reads the source position it comes from, one [B, H, W]
    grid of positions per image, and a gather over the flattened images reads them all at
    once. tf.raw_ops.ImageProjectiveTransformV3 does the same per image but has no XLA kernel.
    """
    images = tf.convert_to_tensor(images)
    _, height, width = batch_height_width(images)
    rows, cols = _rotation_sources(angles, height, width)
    if interpolation == "nearest":
        out = _read_pixels(images, tf.round(rows), tf.round(cols))
    else:
        out = restore_pixels(_bilinear(images, rows, cols), images.dtype)
    out.set_shape(images.shape)  # the reshapes around the gather hide it
    return out


def _rotation_sources(angles, height, width) -> tuple[tf.Tensor, tf.Tensor]:
    """The (row, column) each output pixel reads, float32 [B, H, W] each: the output offset
    from the centre turned back by the image's angle."""
    centre_y = (tf.cast(height, tf.float32) - 1.0) / 2.0
    centre_x = (tf.cast(width, tf.float32) - 1.0) / 2.0
    dy = (tf.range(tf.cast(height, tf.float32)) - centre_y)[None, :, None]
    dx = (tf.range(tf.cast(width, tf.float32)) - centre_x)[None, None, :]
    cos = tf.cos(angles)[:, None, None]
    sin = tf.sin(angles)[:, None, None]
    return cos * dy + sin * dx + centre_y, cos * dx - sin * dy + centre_x


def _read_pixels(images, rows, cols) -> tf.Tensor:
    """images[b, :, rows[b, i, j], cols[b, i, j]] in the images' dtype, for integer-valued
    float coordinates [B, H, W]; 0 where the coordinate is outside the image."""
    batch, height, width = batch_height_width(images)
    channels = tf.shape(images)[1]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    inside = (rows >= 0.0) & (rows <= h - 1.0) & (cols >= 0.0) & (cols <= w - 1.0)
    row = tf.cast(tf.clip_by_value(rows, 0.0, h - 1.0), tf.int32)
    col = tf.cast(tf.clip_by_value(cols, 0.0, w - 1.0), tf.int32)
    # One gather of whole [C] pixel columns per position: a batch_dims=1 gather over H * W.
    index = tf.reshape(row * width + col, [batch, height * width])
    flat = tf.reshape(images, [batch, channels, height * width])
    values = tf.gather(flat, index, axis=2, batch_dims=1)  # [B, C, H * W]
    inside = tf.reshape(inside, [batch, 1, height * width])
    values = tf.where(inside, values, tf.zeros_like(values))
    return tf.reshape(values, [batch, channels, height, width])


def _bilinear(images, rows, cols) -> tf.Tensor:
    """float32 images read at fractional positions [B, H, W]: each output pixel is the blend of
    the 4 source pixels around it, by distance; a neighbour outside the image counts as 0.

    The neighbours are read in the images' own dtype (uint8 moves a quarter of float32's bytes)
    and blended in float32. A whole-pixel position has weights (1, 0, 0, 0): exactly the pixel.
    """
    top, left = tf.floor(rows), tf.floor(cols)
    frac_y, frac_x = rows - top, cols - left
    out = 0.0
    for dy, weight_y in ((0.0, 1.0 - frac_y), (1.0, frac_y)):
        for dx, weight_x in ((0.0, 1.0 - frac_x), (1.0, frac_x)):
            pixels = tf.cast(_read_pixels(images, top + dy, left + dx), tf.float32)
            out += pixels * (weight_y * weight_x)[:, None]
    return out
