"""Ops that change the image size (resize, center_crop), the box resampling random_resized_crop
shares with them, and what training at another resolution needs: `sized_spec` (a training
spec that ends at size S) and `EvalResize` (the model's evaluation-time centre crop).

A model trained at S on images stored at H (FFCV's recipe: train at 160-192, test at 224+;
timm's --img-size and crop_pct) sees S x S batches in training, sized by the input pipeline,
and in evaluation the central `crop` of each stored image resized to the evaluation size,
inside the model, so evaluate, predict and the exported SavedModel all see the same.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from pipeline import errors
from pipeline.augment.common import check_range, restore_pixels
from pipeline.augment.registry import Op, register
from pipeline.augment.spec import parse_spec


def resample_boxes(images, boxes, height, width):
    """Each image's box [top, left, bottom, right] (fractions of its side) resampled to
    height x width, bilinear; the images' dtype and NCHW layout kept."""
    images = tf.convert_to_tensor(images)
    # crop_and_resize wants NHWC and reads uint8 directly (transposing uint8 moves a quarter
    # of the bytes float32 would); other float dtypes (bfloat16) go through float32.
    source = images if images.dtype in (tf.uint8, tf.float32) else tf.cast(images, tf.float32)
    out = tf.image.crop_and_resize(tf.transpose(source, [0, 2, 3, 1]), boxes,
                                   tf.range(tf.shape(images)[0]), tf.stack([height, width]),
                                   method="bilinear")
    return restore_pixels(tf.transpose(out, [0, 3, 1, 2]), images.dtype)


def central_crop_to(images, size: int, crop: float = 1.0):
    """The central `crop` of each side of every image, resized to size x size."""
    images = tf.convert_to_tensor(images)
    margin = (1.0 - crop) / 2
    box = tf.constant([[margin, margin, 1.0 - margin, 1.0 - margin]], tf.float32)
    boxes = tf.tile(box, [tf.shape(images)[0], 1])
    out = resample_boxes(images, boxes, size, size)
    out.set_shape([images.shape[0], images.shape[1], size, size])
    return out


def check_size(op: str, size) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise errors.ConfigError(f"{op}: size={size!r} must be a whole number of pixels >= 1")


@register("resize", xla=False)
def get_resize(size: int) -> Op:
    """Resizes every image to size x size (bilinear): training at another resolution than the
    stored one (sized_spec appends it)."""
    check_size("resize", size)

    def _resize(images, labels, seed):
        return central_crop_to(images, size), labels

    return _resize


@register("center_crop", xla=False)
def get_center_crop(size: int, crop: float = 0.875) -> Op:
    """The central `crop` of each side, resized to size x size: the evaluation view of timm's
    crop_pct (0.875: a 224 crop of a 256 image). Deterministic."""
    check_size("center_crop", size)
    check_range("center_crop", "crop", crop, 1e-3, 1.0)

    def _center_crop(images, labels, seed):
        return central_crop_to(images, size, crop), labels

    return _center_crop


def op_text(name: str, kwargs: dict[str, Any]) -> str:
    """(name, kwargs) back to spec text: `name(a=1, b=(2, 3))`."""
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in kwargs.items())})"


def sized_spec(spec: str | Sequence[str] | None, size: int) -> str:
    """`spec` ending at size x size: its random_resized_crop outputs that size (one resampling,
    and the ops after it run at the new size), or, without one, a resize ends it. The ops'
    seeds stay as they were (the resize is last)."""
    ops = parse_spec(spec)
    sized = []
    for name, kwargs in ops:
        if name == "random_resized_crop":
            if kwargs.get("size") not in (None, size):
                raise errors.ConfigError(
                    f"augment={spec!r} crops to size={kwargs['size']}, and training is at "
                    f"{size}: leave size out of random_resized_crop (the trainer sets it)")
            kwargs = {**kwargs, "size": size}
        sized.append(op_text(name, kwargs))
    if not any(name == "random_resized_crop" for name, _ in ops):
        sized.append(op_text("resize", {"size": size}))
    return "|".join(sized)


@keras.saving.register_keras_serializable(package="pipeline")
class EvalResize(keras.layers.Layer):
    """uint8 [B, 3, H, W] of any size -> in evaluation and prediction, the central `crop` of
    each side resized to size x size; training batches pass as they are (the input pipeline
    sized them, sized_spec)."""

    def __init__(self, size: int, crop: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        check_size("EvalResize", size)
        check_range("EvalResize", "crop", crop, 1e-3, 1.0)
        self.size, self.crop = size, float(crop)

    def call(self, images, training=None):
        if training:
            return images
        return central_crop_to(images, self.size, self.crop)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], None, None)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "crop": self.crop}
