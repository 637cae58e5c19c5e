"""Tabular features beside the image (--feature_columns): the network's image embedding joined
with a small MLP of the standardised features before the head.

PetFinder's winners fed the 12 binary metadata columns this way (the image model's pooled
embedding, concatenated with the metadata after a dense layer or two); on their own the
columns predicted almost nothing, but beside the image they help a little and cost nothing.
The features are standardised with the train split's mean and std (dataset.json's
feature_stats) inside the model, so a SavedModel takes them as the CSV holds them.
"""

from __future__ import annotations

import keras
import numpy as np

from pipeline.core import schema

# Units of each of the MLP's two hidden layers.
HIDDEN_UNITS = 64


def with_features(net: keras.Model, manifest: schema.Manifest) -> keras.Model:
    """`net` (uint8 images -> logits, its head the layer named "logits") taking
    {"image": images, "features": float32 [B, F]} instead: its embedding (the head's input)
    concatenated with an MLP of the standardised features, then a new head of the same
    outputs."""
    head = net.get_layer("logits")
    features = keras.Input(shape=(manifest.feature_size,), dtype="float32",
                           name=schema.FEATURES_KEY)
    stats = [manifest.feature_stats[name] for name in manifest.features]
    mean = np.array([s["mean"] for s in stats], np.float32)
    std = np.array([s["std"] for s in stats], np.float32)
    x = keras.layers.Normalization(mean=mean, variance=std * std, name="features_scale")(
        features)
    decay = head.kernel_regularizer  # the run's weight decay, as the image head had it
    for number in range(2):
        x = keras.layers.Dense(HIDDEN_UNITS, activation="relu", kernel_regularizer=decay,
                               name=f"features_dense{number}")(x)
    joined = keras.layers.Concatenate(name="joined")([head.input, x])
    logits = keras.layers.Dense(head.units, dtype="float32", kernel_regularizer=decay,
                                name="logits")(joined)
    return keras.Model({schema.IMAGE_KEY: net.input, schema.FEATURES_KEY: features}, logits,
                       name=f"{net.name}_with_features")
