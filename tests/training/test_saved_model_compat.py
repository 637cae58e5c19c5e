"""A model.keras saved before the stages became packages still loads and predicts the same.

data/device_preprocess_model.keras was saved by the code of that time: uint8 [3, 8, 8] images
-> DevicePreprocess (mean/std, augment "random_crop(pad=2)|flip_lr", seed 3), then a pooled
dense head. Its config names the layer `pipeline>DevicePreprocess` from module
`pipeline.augment`; data/device_preprocess_model.json holds its logits for a fixed batch.
"""

import json
import os

import keras
import numpy as np
import pytest

from pipeline import augment
from pipeline.training import predict

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MODEL = os.path.join(DATA, "device_preprocess_model.keras")


@pytest.fixture(scope="module")
def expected():
    with open(os.path.join(DATA, "device_preprocess_model.json"), encoding="utf-8") as f:
        saved = json.load(f)
    batch = np.random.default_rng(saved["input_seed"]).integers(
        0, 256, size=saved["input_shape"], dtype=np.uint8)
    return batch, np.asarray(saved["logits"], np.float32)


def check(model, expected):
    batch, logits = expected
    layer = model.get_layer("preprocess")
    assert isinstance(layer, augment.DevicePreprocess)
    assert (layer.mean, layer.std) == ([120.0, 110.0, 100.0], [60.0, 55.0, 50.0])
    assert layer.augment == "random_crop(pad=2)|flip_lr" and layer.seed == 3
    np.testing.assert_allclose(model.predict(batch, verbose=0), logits, rtol=1e-5, atol=1e-6)
    # The augmentation the old config names builds and runs: training changes the pixels.
    augmented = np.asarray(layer(batch, training=True))
    assert augmented.shape == (2, 8, 8, 3)


def test_the_old_model_loads_by_its_registered_name(expected):
    # No custom_objects: importing pipeline.augment registers the layer under its old name.
    check(keras.saving.load_model(MODEL), expected)


def test_predict_loads_the_old_model_as_a_run_s_model(tmp_path, expected):
    os.symlink(MODEL, tmp_path / "model.keras")
    check(predict.load_model(str(tmp_path)), expected)
