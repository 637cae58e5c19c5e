"""Registering an op from outside the package (tests/augment/custom_ops.py) makes it usable in
specs, build (with XLA), tf.data and DevicePreprocess; a second op of the same name is refused."""

import importlib
import sys

import gin
import keras
import numpy as np
import pytest

from op_testing import K, both, make_images, make_labels
from pipeline import augment, errors

MEAN, STD = (120.0, 110.0, 100.0), (60.0, 55.0, 50.0)


def _forget_custom_ops():
    augment.OPS.pop("invert", None)
    sys.modules.pop("custom_ops", None)


@pytest.fixture
def custom_ops():
    """custom_ops imported afresh, and unregistered afterwards: other tests iterate over OPS."""
    _forget_custom_ops()
    yield importlib.import_module("custom_ops")
    _forget_custom_ops()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_registered_op_runs_from_a_spec_with_xla_and_in_tf_data(custom_ops, dtype):
    images, labels = make_images(32, dtype=dtype), make_labels(32)
    out, _ = both(augment.build("invert(probability=1.0)"), images, labels)
    np.testing.assert_array_equal(out, 255 - images)
    out, _ = both(augment.build("random_crop(pad=0)|invert"), images, labels)
    inverted = [np.array_equal(o, 255 - x) for o, x in zip(out, images)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images)]
    assert all(i != k for i, k in zip(inverted, kept)) and 0 < sum(inverted) < 32


def test_a_registered_op_runs_in_device_preprocess(custom_ops):
    inputs = keras.Input((3, 8, 8), dtype="uint8")
    layer = augment.DevicePreprocess(MEAN, STD, data_format="channels_first",
                                     augment="invert(probability=1.0)", seed=0)
    x = keras.layers.Flatten()(layer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(K)(x))
    images = make_images(8)
    mean, std = np.array(MEAN)[:, None, None], np.array(STD)[:, None, None]
    np.testing.assert_allclose(np.asarray(layer(images, training=True)),
                               (255.0 - images - mean) / std, rtol=1e-5, atol=1e-5)
    model.compile(optimizer="sgd", jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, make_labels(8), batch_size=8, epochs=1, verbose=0)


def test_a_gin_import_registers_the_op():
    _forget_custom_ops()
    try:
        gin.parse_config("import custom_ops")  # what `import my_ops` in a gin file does
        assert "invert" in augment.OPS
        assert augment.parse_spec("invert(0.25)") == [("invert", {"probability": 0.25})]
    finally:
        gin.clear_config()
        _forget_custom_ops()


def test_its_arguments_are_checked_when_built(custom_ops):
    with pytest.raises(errors.ConfigError, match=r"invert: probability=2 must be a number"):
        augment.build("invert(probability=2)")


def test_a_second_op_of_the_same_name_is_refused(custom_ops):
    with pytest.raises(errors.ConfigError,
                       match=r"augment op 'invert' is registered twice: by custom_ops.get_invert "
                             r"and by custom_ops.get_invert; give the new op a name of its own"):
        importlib.reload(custom_ops)
    with pytest.raises(errors.ConfigError,
                       match=r"'flip_lr' is registered twice: by pipeline.augment.geometric"
                             r".get_flip_lr and by .*my_flip"):
        @augment.register("flip_lr")
        def my_flip():
            return augment.identity
    assert augment.OPS["flip_lr"].__name__ == "get_flip_lr"
