"""pipeline.augment.device: DevicePreprocess normalises, augments in training, fits, saves."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from op_testing import K, make_images, make_labels
from pipeline import augment


# ---------------------------------------------------------------------------------------------
# DevicePreprocess
# ---------------------------------------------------------------------------------------------

MEAN = (120.0, 110.5, 100.25)
STD = (60.0, 55.5, 50.0)


def normalised(images):
    mean = np.array(MEAN, np.float32)[None, :, None, None]
    std = np.array(STD, np.float32)[None, :, None, None]
    return (images.astype(np.float32) - mean) / std


def test_device_preprocess_normalises_and_transposes():
    images = make_images(4, height=8, width=6)
    last = augment.DevicePreprocess(MEAN, STD)(images)
    first = augment.DevicePreprocess(MEAN, STD, data_format="channels_first")(images)
    assert last.shape == (4, 8, 6, 3) and first.shape == (4, 3, 8, 6)
    assert last.dtype == "float32"
    np.testing.assert_allclose(np.asarray(first), normalised(images), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(np.asarray(last), np.transpose(np.asarray(first), (0, 2, 3, 1)))
    layer = augment.DevicePreprocess(MEAN, STD)
    assert layer.compute_output_shape((None, 3, 8, 6)) == (None, 8, 6, 3)


def test_device_preprocess_augments_only_in_training():
    images = make_images(16, height=8, width=8, low=1)
    layer = augment.DevicePreprocess(
        MEAN, STD, data_format="channels_first", augment="random_crop(2)|flip_lr", seed=0
    )
    for training in (None, False):
        np.testing.assert_allclose(np.asarray(layer(images, training=training)), normalised(images),
                                   rtol=1e-6)
    trained = np.asarray(layer(images, training=True))
    changed = [not np.allclose(t, n) for t, n in zip(trained, normalised(images))]
    assert sum(changed) > 8


@pytest.mark.parametrize("spec", ["mixup", "flip_lr|cutmix(num_classes=3)"])
def test_device_preprocess_refuses_label_ops(spec):
    with pytest.raises(ValueError, match="tf.data pipeline instead"):
        augment.DevicePreprocess(MEAN, STD, augment=spec)


def test_device_preprocess_rejects_bad_arguments():
    with pytest.raises(ValueError, match="data_format"):
        augment.DevicePreprocess(MEAN, STD, data_format="NHWC")
    with pytest.raises(ValueError, match="std > 0"):
        augment.DevicePreprocess(MEAN, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="unknown augment op"):
        augment.DevicePreprocess(MEAN, STD, augment="flip")
    with pytest.raises(ValueError, match=r"expects \[B, 3, H, W\] channels-first"):
        augment.DevicePreprocess(MEAN, STD)(np.zeros((2, 8, 8, 3), np.uint8))  # NHWC by mistake


def test_device_preprocess_opts_out_of_xla_only_for_ops_without_kernels():
    assert augment.DevicePreprocess(MEAN, STD, augment=augment.DEFAULT_TRAIN_AUGMENT).supports_jit
    assert not augment.DevicePreprocess(MEAN, STD, augment="random_resized_crop").supports_jit


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def small_model(augment_spec=augment.DEFAULT_TRAIN_AUGMENT, seed=0):
    inputs = keras.Input((3, 8, 8), dtype="uint8")
    x = augment.DevicePreprocess(MEAN, STD, augment=augment_spec, seed=seed, name="pre")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(K)(x))


def test_device_preprocess_in_model_fit_draws_new_seeds_each_step(tmp_path):
    model = small_model()
    model.compile(optimizer="adam", loss=LOSS)
    layer = model.get_layer("pre")
    state = np.asarray(layer._seed_generator.state.value).copy()
    history = model.fit(make_images(16), make_labels(16), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(np.asarray(layer._seed_generator.state.value), state)

    # Two training calls inside one graph function augment differently.
    train_call = tf.function(lambda x: layer(x, training=True))
    images = make_images(8)
    assert not np.array_equal(np.asarray(train_call(images)), np.asarray(train_call(images)))

    # Save / reload: same layer config, same inference output.
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("pre").get_config() == layer.get_config()
    np.testing.assert_array_equal(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )


def test_device_preprocess_fits_under_xla():
    # On a GPU, Keras compiles fit with XLA by default ("auto"): the allowed ops must compile.
    model = small_model()
    model.compile(optimizer="sgd", loss=LOSS, jit_compile=True)
    assert model.jit_compile
    model.fit(make_images(8), make_labels(8), batch_size=8, epochs=1, verbose=0)


def test_device_preprocess_config_round_trip():
    layer = augment.DevicePreprocess(MEAN, STD, data_format="channels_first",
                                     augment=["random_crop(2)", "flip_lr"], seed=3, num_classes=K)
    clone = augment.DevicePreprocess.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    images = make_images(4)
    np.testing.assert_array_equal(np.asarray(clone(images)), np.asarray(layer(images)))
