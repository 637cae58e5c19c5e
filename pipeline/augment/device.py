"""DevicePreprocess: uint8 CHW in, normalised (augmented) float out, inside the model."""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from pipeline import errors
from pipeline.augment.registry import LABEL_OPS, NO_XLA_OPS, identity
from pipeline.augment.spec import build, parse_spec

# Upper bound (exclusive) of the seeds DevicePreprocess draws each call: fits int32 so the seed
# is valid for every stateless kernel and every backend dtype.
DEVICE_SEED_MAX = 2**31 - 1


@keras.saving.register_keras_serializable(package="pipeline")
class DevicePreprocess(keras.layers.Layer):
    """The model's first layer: uint8 [B, 3, H, W] -> (augmented) normalised float images.

    Casting, normalising and transposing on the accelerator keeps the host's tf.data work at
    uint8 (a quarter of float32's bytes to copy to the device) and moves the float math where
    it is nearly free. `augment` (a spec, as for `build`) runs only when training=True, on
    float32 pixels in the 0-255 scale before normalising, so zero padding is black as in tf.data.

    Only ops that leave labels alone are allowed: a layer sees the images but not the labels,
    so mixup/cutmix would mix the pixels and silently leave the labels unmixed. They belong in
    the tf.data pipeline (`build(spec, num_classes=...)` applied after batching).

    Args:
      mean, std: per-channel statistics on the 0-255 scale (the manifest's mean / std).
      data_format: "channels_last" outputs NHWC (what Keras conv layers expect by default),
        "channels_first" keeps NCHW.
      augment: a spec such as DEFAULT_TRAIN_AUGMENT, or None.
      seed: seeds the layer's keras.random.SeedGenerator; each training call draws a fresh
        [2] seed from it, so steps differ and a seeded run repeats.
      num_classes: offered to the ops (none of the allowed ones needs it today).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        data_format: str = "channels_last",
        augment: str | Sequence[str] | None = None,
        seed: int | None = None,
        num_classes: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mean is None or std is None:
            raise errors.ConfigError(
                f"DevicePreprocess: mean={mean!r}, std={std!r}; pass the per-channel statistics "
                f"on the 0-255 scale (manifest.mean / manifest.std)"
            )
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise errors.ConfigError(
                f"DevicePreprocess: mean={self.mean} and std={self.std} need one value per "
                f"channel each and std > 0 (take both from the dataset manifest)"
            )
        if data_format not in ("channels_last", "channels_first"):
            raise errors.ConfigError(
                f"DevicePreprocess: data_format={data_format!r}; use 'channels_last' or "
                f"'channels_first'"
            )
        self.data_format = data_format
        self.augment = list(augment) if isinstance(augment, (list, tuple)) else augment
        self.seed = seed
        self.num_classes = num_classes
        names = [name for name, _ in parse_spec(augment)]
        label_ops = [name for name in names if name in LABEL_OPS]
        if label_ops:
            raise errors.ConfigError(
                f"DevicePreprocess: augment={augment!r} contains {', '.join(label_ops)}, which "
                f"change labels, and a layer never sees the labels; run them in the tf.data "
                f"pipeline instead (augment.build(spec, num_classes=...) after batching)"
            )
        self._augment_op = build(augment, num_classes=num_classes)
        if any(name in NO_XLA_OPS for name in names):
            self.supports_jit = False
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        channels = len(self.mean)
        if images.shape.rank != 4 or images.shape[1] not in (None, channels):
            raise errors.ConfigError(
                f"DevicePreprocess expects [B, {channels}, H, W] channels-first images (the "
                f"records' uint8 CHW layout), got shape {images.shape}; it transposes to NHWC "
                f"itself"
            )
        pixels = tf.cast(images, tf.float32)
        if training and self._augment_op is not identity:
            # The SeedGenerator's state is a variable that advances on every draw, inside
            # tf.function / model.fit graphs too, so each step gets a new [2] seed.
            seed = keras.random.randint(
                (2,), 0, DEVICE_SEED_MAX, dtype="int32", seed=self._seed_generator
            )
            pixels, _ = self._augment_op(pixels, None, seed)
        mean = tf.constant(self.mean, tf.float32, shape=[1, channels, 1, 1])
        std = tf.constant(self.std, tf.float32, shape=[1, channels, 1, 1])
        pixels = (pixels - mean) / std
        if self.data_format == "channels_last":
            pixels = tf.transpose(pixels, [0, 2, 3, 1])
        return tf.cast(pixels, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch, channels, height, width = input_shape
        if self.data_format == "channels_last":
            return (batch, height, width, channels)
        return (batch, channels, height, width)

    def get_config(self):
        config = super().get_config()
        config.update(
            mean=self.mean,
            std=self.std,
            data_format=self.data_format,
            augment=self.augment,
            seed=self.seed,
            num_classes=self.num_classes,
        )
        return config
