"""Label-mixing ops: mixup and cutmix, tf.data only (see registry.LABEL_OPS).

Each image is mixed with its partner in the batch reversed (image i with image B-1-i): a
permutation for free, no second random draw, and the batch is already shuffled by the reader.
Labels come out as float32 [B, K] rows that sum to 1.
"""

from __future__ import annotations

import math

import tensorflow as tf

from pipeline.augment.common import (batch_height_width, check_range, restore_pixels,
                                     sample_beta, soft_labels, split_seed, uniform)
from pipeline.augment.registry import Op, register


# Each image is mixed with its partner in the batch reversed (image i with image B-1-i): a
# permutation for free, no second random draw, and the batch is already shuffled by the reader.
# Labels come out as float32 [B, K] rows that sum to 1.


@register("mixup", changes_labels=True, xla=False)
def get_mixup(alpha: float = 0.2, num_classes: int | None = None) -> Op:
    """mixup (Zhang et al. 2018): x = lam x + (1 - lam) x', y = lam y + (1 - lam) y' with one
    lam ~ Beta(alpha, alpha) per batch. uint8 images stay uint8 (the mix is rounded)."""
    check_range("mixup", "alpha", alpha, 1e-6, math.inf)

    def _mixup(images, labels, seed):
        images = tf.convert_to_tensor(images)
        soft = soft_labels(labels, num_classes, "mixup")
        lam = sample_beta(seed, alpha, [])
        pixels = tf.cast(images, tf.float32)
        pixels = lam * pixels + (1.0 - lam) * tf.reverse(pixels, axis=[0])
        soft = lam * soft + (1.0 - lam) * tf.reverse(soft, axis=[0])
        return restore_pixels(pixels, images.dtype), soft

    return _mixup


@register("cutmix", changes_labels=True, xla=False)
def get_cutmix(alpha: float = 1.0, num_classes: int | None = None) -> Op:
    """CutMix (Yun et al. 2019): pastes a box from the partner image into each image, the box
    area fraction drawn as 1 - lam, lam ~ Beta(alpha, alpha), the centre uniform, the box
    clipped at the borders. Labels mix by the box's actual (clipped) area fraction.

    One box per image, not per batch: with a [B, 1, H, W] mask a per-image box costs the same
    select as a shared one and gives more varied batches.
    """
    check_range("cutmix", "alpha", alpha, 1e-6, math.inf)

    def _cutmix(images, labels, seed):
        images = tf.convert_to_tensor(images)
        soft = soft_labels(labels, num_classes, "cutmix")
        batch, height, width = batch_height_width(images)
        seed_lam, seed_box = split_seed(seed, 2)
        lam = sample_beta(seed_lam, alpha, [batch])
        u_y, u_x = tf.unstack(uniform([2, batch], seed_box))
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        side = tf.sqrt(1.0 - lam)  # box side / image side, so box area / image area = 1 - lam
        box_h = tf.cast(tf.round(side * h), tf.int32)
        box_w = tf.cast(tf.round(side * w), tf.int32)
        centre_y = tf.cast(tf.floor(u_y * h), tf.int32)
        centre_x = tf.cast(tf.floor(u_x * w), tf.int32)
        top = tf.clip_by_value(centre_y - box_h // 2, 0, height)
        bottom = tf.clip_by_value(centre_y - box_h // 2 + box_h, 0, height)
        left = tf.clip_by_value(centre_x - box_w // 2, 0, width)
        right = tf.clip_by_value(centre_x - box_w // 2 + box_w, 0, width)
        rows = tf.range(height)[None, :]
        cols = tf.range(width)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # [B, H]
        in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # [B, W]
        inside = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # [B, 1, H, W]
        out = tf.where(inside, tf.reverse(images, axis=[0]), images)
        pasted = tf.cast((bottom - top) * (right - left), tf.float32) / (h * w)  # [B]
        soft = (1.0 - pasted[:, None]) * soft + pasted[:, None] * tf.reverse(soft, axis=[0])
        return out, soft

    return _cutmix
