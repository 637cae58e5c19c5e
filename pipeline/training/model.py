"""Keras ResNets that take the records' uint8 CHW batches directly.

    model = build_resnet(depth=50, num_classes=manifest.num_classes,
                         image_shape=manifest.image_shape, mean=manifest.mean, std=manifest.std)

The first layer is `augment.DevicePreprocess`: cast, normalise with the manifest's mean/std,
optional augmentation, and the layout the convolutions want, all on the accelerator. The
network is ResNet v1.5 (He et al. 2016, stride 2 in the 3x3 convolution of bottleneck blocks,
as in torchvision and tf-models), with the last BatchNorm of every residual branch starting at
zero (Goyal et al. 2017), so each block starts as the identity and large batches train stably.

Logits come out float32 even under a mixed-precision policy: the softmax and the loss need the
range.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline import errors

# depth -> (block kind, blocks per stage). 10 is not in the paper: the smallest net with every
# stage, for smoke runs.
ARCHITECTURES = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
STEMS = ("imagenet", "small")  # 7x7/2 conv + 3x3/2 max pool | one 3x3/1 conv (CIFAR-style)
BOTTLENECK_EXPANSION = 4
BN_MOMENTUM = 0.9  # Keras's default 0.99 lags too far behind in short runs
BN_EPSILON = 1e-5


def resolve_data_format(data_format: str = "auto") -> str:
    """"auto": channels_first on a GPU (cuDNN's native layout: the records' CHW needs no
    transpose), channels_last on a CPU (TensorFlow's CPU convolutions only support NHWC)."""
    if data_format == "auto":
        return "channels_first" if tf.config.list_physical_devices("GPU") else "channels_last"
    if data_format not in ("channels_first", "channels_last"):
        raise errors.ConfigError(f"data_format={data_format!r}: use 'auto', 'channels_first' "
                                 "or 'channels_last'")
    return data_format


def build_resnet(
    *,
    depth: int,
    num_classes: int,
    image_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    width: int = 64,
    stem: str = "imagenet",
    input_pool: int = 1,
    data_format: str = "auto",
    weight_decay: float = 0.0,
    augment: str | Sequence[str] | None = None,
    seed: int | None = None,
    eval_resize: tuple[int, float] | None = None,
    name: str | None = None,
    input_name: str = "images",
) -> keras.Model:
    """A ResNet-`depth` classifier of uint8 `[B, *image_shape]` (C, H, W) images.

    Args:
      depth: 10, 18, 34 or 50 (see ARCHITECTURES).
      num_classes, image_shape, mean, std: from the dataset manifest.
      width: channels of the first stage (64 in the paper); later stages double it.
      stem: "imagenet" (7x7 stride-2 conv and max pool: 224^2 -> 56^2) or "small" (one 3x3
        conv, for images of 32-64 px).
      input_pool: average-pool the normalised images by this factor first (1: off). For data
        stored larger than its detail needs, e.g. the 8x8 digits sample stored at 224^2.
      data_format: "auto", "channels_first" or "channels_last" (see resolve_data_format).
      weight_decay: L2 on every convolution and dense kernel, as the ResNet papers define it:
        it adds weight_decay * w to the gradient (BatchNorm and biases are not decayed).
      augment: an augmentation spec run on the device in training (DevicePreprocess), or None.
      seed: seeds the device-side augmentation.
    """
    _check_resnet_args(depth, stem, image_shape, input_pool)
    data_format = resolve_data_format(data_format)
    # Keras's L2(l) adds l * sum(w^2) to the loss, whose gradient is 2 * l * w.
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    layers = _Layers(data_format, 1 if data_format == "channels_first" else -1, regularizer)

    images, x = model_input(image_shape, eval_resize, input_name)
    x = augment_lib.DevicePreprocess(mean, std, data_format=data_format, augment=augment,
                                     seed=seed, name="preprocess")(x)
    if input_pool > 1:
        x = keras.layers.AveragePooling2D(input_pool, data_format=data_format,
                                          name="input_pool")(x)
    x = layers.stem(x, width, stem)
    x = layers.stages(x, width, *ARCHITECTURES[depth])
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="pool")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", kernel_regularizer=regularizer,
                                name="logits")(x)
    return keras.Model(images, logits, name=name or f"resnet{depth}")


def model_input(image_shape: Sequence[int | None], eval_resize: tuple[int, float] | None,
                input_name: str = "images"):
    """(the uint8 [B, C, H, W] input, what the network reads): with `eval_resize` (size,
    crop), evaluation's centre crop first (augment.EvalResize)."""
    images = keras.Input(shape=tuple(image_shape), dtype="uint8", name=input_name)
    if eval_resize is None:
        return images, images
    size, crop = eval_resize
    return images, augment_lib.EvalResize(size, crop, name="eval_resize")(images)


def _check_resnet_args(depth: int, stem: str, image_shape: Sequence[int],
                       input_pool: int) -> None:
    if depth not in ARCHITECTURES:
        raise errors.ConfigError(f"depth={depth}: choose one of {sorted(ARCHITECTURES)}")
    if stem not in STEMS:
        raise errors.ConfigError(f"stem={stem!r}: choose one of {STEMS}")
    if len(image_shape) != 3:
        raise errors.ConfigError(f"image_shape={tuple(image_shape)} must be (C, H, W), as in "
                                 "the manifest")
    if input_pool < 1 or any(side % input_pool for side in image_shape[1:] if side):
        raise errors.ConfigError(f"input_pool={input_pool} must be >= 1 and divide the image "
                                 f"size {tuple(image_shape[1:])}")


class _Layers:
    """The blocks, sharing one layout and one kernel regularizer."""

    def __init__(self, data_format: str, axis: int, regularizer):
        self.data_format, self.axis, self.regularizer = data_format, axis, regularizer

    def conv_bn(self, x, filters, kernel, stride, name, *, relu=True, zero_gamma=False):
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                                data_format=self.data_format, kernel_initializer="he_normal",
                                kernel_regularizer=self.regularizer, name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(
            axis=self.axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
            gamma_initializer="zeros" if zero_gamma else "ones", name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x

    def stem(self, x, width: int, kind: str):
        if kind == "imagenet":
            x = self.conv_bn(x, width, 7, 2, "stem")
            return keras.layers.MaxPooling2D(3, 2, padding="same", data_format=self.data_format,
                                             name="stem_pool")(x)
        return self.conv_bn(x, width, 3, 1, "stem")

    def stages(self, x, width: int, kind: str, blocks_per_stage: Sequence[int]):
        """The residual stages: `width` channels doubling per stage, stride 2 from stage 2."""
        block_fn = self.basic_block if kind == "basic" else self.bottleneck_block
        for stage, blocks in enumerate(blocks_per_stage):
            filters = width * 2**stage
            for block in range(blocks):
                stride = 2 if block == 0 and stage > 0 else 1
                x = block_fn(x, filters, stride, f"stage{stage + 1}_block{block + 1}")
        return x

    def shortcut(self, x, filters, stride, name):
        """Identity, or a 1x1 projection where the shape changes."""
        if stride == 1 and x.shape[self.axis] == filters:
            return x
        return self.conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)

    def basic_block(self, x, filters, stride, name):
        shortcut = self.shortcut(x, filters, stride, name)
        y = self.conv_bn(x, filters, 3, stride, f"{name}_a")
        y = self.conv_bn(y, filters, 3, 1, f"{name}_b", relu=False, zero_gamma=True)
        return self.merge(shortcut, y, name)

    def bottleneck_block(self, x, filters, stride, name):
        out_filters = filters * BOTTLENECK_EXPANSION
        shortcut = self.shortcut(x, out_filters, stride, name)
        y = self.conv_bn(x, filters, 1, 1, f"{name}_a")
        y = self.conv_bn(y, filters, 3, stride, f"{name}_b")  # v1.5: the stride is here
        y = self.conv_bn(y, out_filters, 1, 1, f"{name}_c", relu=False, zero_gamma=True)
        return self.merge(shortcut, y, name)

    @staticmethod
    def merge(shortcut, residual, name):
        added = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
        return keras.layers.ReLU(name=f"{name}_out")(added)
