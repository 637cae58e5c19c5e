"""keras.applications backbones on the records' uint8 CHW batches, with a new head.

    net = build_application(name="EfficientNetV2B0", weights="imagenet", num_classes=176,
                            image_shape=(3, 224, 224))

The model is: DevicePreprocess (cast, optional augmentation, NHWC; no normalisation: the
backbone wants its own), BackboneInput (the application's own `preprocess_input`, e.g. caffe
BGR mean subtraction for ResNet50, nothing for EfficientNetV2 which normalises inside), the
application without its top, global average pooling, and a float32 Dense head for the
manifest's classes. `weights`: None (random), "imagenet" (Keras downloads the ImageNet weights
once into ~/.keras/models on a machine with network access) or a path to a `.weights.h5` file
of the same application without its top (`base.save_weights(path)`), or to that download
(`*_notop.h5`); `check_weights` tries them before a run builds anything
(pipeline.training.weights).

Fine-tuning: `backbone_of(net).trainable = False` freezes it (its BatchNorm layers then run in
inference mode, as Keras's transfer-learning guide recommends); the trainer does this for
`freeze_epochs` epochs.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Sequence

import keras
import tensorflow as tf

from pipeline import augment as augment_lib
from pipeline import errors
from pipeline.core import schema
from pipeline.training import model as model_lib
from pipeline.training import tabular
from pipeline.training import weights as weights_lib
from pipeline.training.settings import ModelSettings, TrainingError

BACKBONE_NAME = "backbone"  # the application's layer name inside our model
OURS = "resnet"  # train_and_evaluate(backbone=...) for pipeline.training.model's ResNets


def application(name: str):
    """keras.applications.<name> (a function that builds the model), or ConfigError."""
    builder = getattr(keras.applications, name, None)
    if not callable(builder) or name.startswith("_") or not name[:1].isupper():
        choices = sorted(n for n in dir(keras.applications)
                         if n[:1].isupper() and callable(getattr(keras.applications, n)))
        raise errors.ConfigError(
            f"backbone={name!r}: use {OURS!r} (our ResNets, depth=10/18/34/50) or a "
            f"keras.applications model, one of {', '.join(choices)}")
    return builder


@keras.saving.register_keras_serializable(package="pipeline")
class BackboneInput(keras.layers.Layer):
    """The application's own `preprocess_input` as a layer that saves by name: float NHWC
    pixels on the 0-255 scale in, what the backbone was trained on out."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        module = importlib.import_module(application(backbone).__module__)
        self._preprocess = module.preprocess_input

    def call(self, pixels):
        return self._preprocess(pixels)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="pipeline")
class GradientScale(keras.layers.Layer):
    """The identity forward; backward, the gradient times `factor`. After a backbone, every
    backbone weight learns at `factor` times the learning rate: exactly so for SGD with
    momentum (linear in the gradient), under any strategy or loss scaling, in one layer."""

    def __init__(self, factor: float, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        factor = self.factor

        @tf.custom_gradient
        def scaled(inputs):
            def gradient(upstream):
                return upstream * tf.cast(factor, upstream.dtype)
            return tf.identity(inputs), gradient

        return scaled(x)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def build_application(*, name: str, num_classes: int, image_shape: Sequence[int],
                      weights: str | None = None, augment=None, seed: int | None = None,
                      dropout: float = 0.0, eval_resize: tuple[int, float] | None = None,
                      backbone_lr_factor: float = 1.0, input_name: str = "images"
                      ) -> keras.Model:
    """uint8 [B, 3, H, W] in, float32 logits out, through keras.applications.<name>."""
    channels, height, width = image_shape
    if channels != 3:
        raise errors.ConfigError(f"backbone={name!r} needs 3-channel images; these have "
                                 f"{channels}: write them with RGB conversion")
    builder = application(name)
    base = builder(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                   input_shape=(height, width, 3), pooling="avg")
    base.name = BACKBONE_NAME
    if weights not in (None, "imagenet"):
        weights_lib.load_weights_file(base, name, weights)
    images, x = model_lib.model_input(image_shape, eval_resize, input_name)
    x = augment_lib.DevicePreprocess([0.0] * 3, [1.0] * 3, data_format="channels_last",
                                     augment=augment, seed=seed, name="preprocess")(x)
    x = BackboneInput(name, name="backbone_input")(x)
    x = base(x)
    if backbone_lr_factor != 1.0:
        x = GradientScale(backbone_lr_factor, name="backbone_lr")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed)(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name=f"{name}_classifier")


def backbone_of(net: keras.Model) -> keras.Model | None:
    """The application inside a model of build_application, or None for our ResNets."""
    try:
        return net.get_layer(BACKBONE_NAME)
    except ValueError:
        return None


def build_network(network: ModelSettings, manifest: schema.Manifest) -> keras.Model:
    """Our ResNet, or a keras.applications backbone with a new head; with the dataset's
    --feature_columns, joined with them before the head (tabular.with_features)."""
    net = _image_network(network, manifest)
    return tabular.with_features(net, manifest) if manifest.feature_size else net


def check_weights(network: ModelSettings, manifest: schema.Manifest) -> bool:
    """A keras.applications backbone's starting weights had (downloaded) or loadable, before
    anything else is built (pipeline.training.weights); nothing for our ResNets. True when
    it built a model to check them (which drew initial values: seed again after it)."""
    image_shape = _image_shape(network, manifest)
    if network.backbone == OURS or network.weights is None or image_shape[0] != 3:
        return False
    application(network.backbone)  # a name that is none: the ConfigError that says so
    weights_lib.check_starting_weights(network.backbone, network.weights, image_shape)
    return True


def _image_shape(network: ModelSettings, manifest: schema.Manifest) -> tuple:
    return ((manifest.image_shape[0], None, None) if network.any_size
            else tuple(manifest.image_shape))


def _image_network(network: ModelSettings, manifest: schema.Manifest) -> keras.Model:
    if not network.backbone_lr_factor > 0:
        raise TrainingError(f"backbone_lr_factor={network.backbone_lr_factor!r}: the backbone's "
                            "share of the learning rate, > 0 (freeze_epochs freezes it)")
    image_shape = _image_shape(network, manifest)
    # With features the inputs are a dict, its keys the Input names (the reader's).
    input_name = schema.IMAGE_KEY if manifest.feature_size else "images"
    if network.backbone == OURS:
        settings = {name: value for name, value in dataclasses.asdict(network).items()
                    if name not in ("backbone", "weights", "any_size", "backbone_lr_factor")}
        if network.weights is not None or network.backbone_lr_factor != 1.0:
            raise TrainingError(f"weights={network.weights!r}, backbone_lr_factor="
                                f"{network.backbone_lr_factor!r} are for a keras.applications "
                                "backbone; our ResNets start from scratch (backbone='ResNet50' "
                                "is Keras's, which can load weights)")
        return model_lib.build_resnet(num_classes=manifest.outputs,
                                      image_shape=image_shape, mean=manifest.mean,
                                      std=manifest.std, input_name=input_name, **settings)
    return build_application(
        name=network.backbone, num_classes=manifest.outputs, image_shape=image_shape,
        weights=network.weights, augment=network.augment, seed=network.seed,
        eval_resize=network.eval_resize, backbone_lr_factor=network.backbone_lr_factor,
        input_name=input_name)
