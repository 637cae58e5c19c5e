"""The op contract (pipeline.augment's docstring) for the colour, rotation, erasing and policy
ops: built by spec (XLA), eager equals tf.data, a pure function of the seed, static shapes in
tf.data and in DevicePreprocess, one-line ConfigErrors naming the op."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from op_testing import K, both, eager, make_images, make_labels
from pipeline import augment, errors

# Strong enough that every image of a batch of 16 almost surely changes (flips: half of them).
SPECS = ["flip_ud", "rotate", "rotate(interpolation='nearest')", "saturation(0.5, 1.5)",
         "hue(0.2)", "random_erasing(probability=1)", "trivial_augment"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.slow
def test_built_op_is_a_pure_function_of_the_seed(spec, dtype):
    op = augment.build(spec)
    images, labels = make_images(16, dtype=dtype), make_labels(16)
    first, out_labels = both(op, images, labels, seed=(1, 2))  # eager == tf.data, shape, dtype
    again, _ = eager(op, images, labels, seed=(1, 2))
    other, _ = eager(op, images, labels, seed=(1, 3))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, images)
    np.testing.assert_array_equal(out_labels, labels)  # none of them touch labels


def test_the_new_ops_compile_with_xla_and_keep_labels():
    names = {name for spec in SPECS for name, _ in augment.parse_spec(spec)}
    assert not names & (augment.NO_XLA_OPS | augment.LABEL_OPS)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.slow
def test_static_shapes_through_build_in_tf_data(spec):
    op = augment.build(spec)
    images, labels = make_images(12), make_labels(12)
    for drop_remainder, batch in ((False, None), (True, 4)):
        ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4, drop_remainder)
        ds = ds.map(lambda x, y, op=op: op(x, y, tf.constant([5, 6], tf.int64)))
        assert ds.element_spec[0].shape.as_list() == [batch, 3, 8, 8]
        assert ds.element_spec[1].shape.as_list() == [batch]
        x, _ = next(iter(ds))
        assert x.shape == (4, 3, 8, 8) and x.dtype == tf.uint8


MEAN, STD = (120.0, 110.0, 100.0), (60.0, 55.0, 50.0)


@pytest.mark.parametrize("spec", SPECS)
def test_static_shapes_through_device_preprocess(spec):
    layer = augment.DevicePreprocess(MEAN, STD, augment=spec, seed=0)
    assert layer.supports_jit
    train = tf.function(lambda x: layer(x, training=True))
    for batch in (4, None):
        graph = train.get_concrete_function(tf.TensorSpec([batch, 3, 8, 8], tf.uint8))
        assert graph.outputs[0].shape.as_list() == [batch, 8, 8, 3]
    images = make_images(4)
    assert not np.array_equal(np.asarray(train(images)), np.asarray(layer(images)))


@pytest.mark.slow
def test_device_preprocess_with_every_new_op_fits_under_xla():
    inputs = keras.Input((3, 8, 8), dtype="uint8")
    x = augment.DevicePreprocess(MEAN, STD, augment="|".join(SPECS), seed=0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.Dense(K)(x))
    model.compile(optimizer="sgd", jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(make_images(8), make_labels(8), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("spec, message", [
    ("flip_ud(probability=0.3)", "'flip_ud'.*unexpected keyword argument 'probability'"),
    ("rotate(degrees=200)", r"rotate: degrees=200 must be a number in \[0.0, 180.0\]"),
    ("rotate(interpolation='bicubic')", "rotate: interpolation='bicubic' must be one of"),
    ("saturation(lower=2, upper=1)", "saturation: .*min <= max"),
    ("hue(max_delta=-0.1)", r"hue: max_delta=-0.1 must be a number in \[0.0, 0.5\]"),
    ("random_erasing(probability=2)", r"random_erasing: probability=2 must be a number"),
    ("random_erasing(ratio=(3, 1))", "random_erasing: ratio=.*min <= max"),
    ("trivial_augment(ops='cutmix')", "trivial_augment: candidate 'cutmix' changes labels"),
    ("identity(3)", "'identity'.*too many positional"),
])
def test_bad_arguments_raise_one_line_config_errors_naming_the_op(spec, message):
    with pytest.raises(errors.ConfigError, match=message) as err:
        augment.build(spec)
    assert "\n" not in str(err.value)
