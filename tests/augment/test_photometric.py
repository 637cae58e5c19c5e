"""pipeline.augment.photometric: brightness, contrast, saturation, hue, eagerly and in tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from op_testing import both, eager, make_images, make_labels
from pipeline import errors
from pipeline.augment import photometric


# ---------------------------------------------------------------------------------------------
# brightness / contrast
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_brightness_scales_each_image_by_one_factor(dtype):
    images = make_images(16, dtype=dtype, low=40, high=200)  # x * 1.2 < 255: nothing clips
    out, _ = both(photometric.get_brightness(max_delta=0.2), images, make_labels(16))
    factors = out.astype(np.float64) / images
    per_image = factors.reshape(16, -1)
    assert np.all(per_image.min(1) >= 0.8 - 0.5 / 40) and np.all(per_image.max(1) <= 1.2 + 0.5 / 40)
    # One factor per image (up to rounding to uint8), different between images.
    spread = per_image.max(1) - per_image.min(1)
    assert np.all(spread <= (1.0 / 40 if dtype == np.uint8 else 1e-5))
    assert np.ptp(np.median(per_image, axis=1)) > 0.05


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_brightness_and_contrast_stay_in_range(dtype):
    images = make_images(16, dtype=dtype)
    for op in (photometric.get_brightness(max_delta=1.0), photometric.get_contrast(0.0, 3.0)):
        out, _ = both(op, images, make_labels(16))
        assert out.min() >= 0 and out.max() <= 255
        assert np.any(out == 255) and np.any(out == 0)  # clipped, not wrapped around


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_zero_strength_brightness_and_contrast_are_identity(dtype):
    images = make_images(16, dtype=dtype)
    for op in (photometric.get_brightness(max_delta=0.0), photometric.get_contrast(1.0, 1.0)):
        out, _ = both(op, images, make_labels(16))
        np.testing.assert_array_equal(out, images)


def test_contrast_scales_deviation_around_each_image_mean():
    images = make_images(16, dtype=np.float32, low=64, high=192)  # no clipping at 1.2x
    out, _ = both(photometric.get_contrast(0.8, 1.2), images, make_labels(16))
    mean_in = images.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), mean_in, atol=1e-3)
    factor = out.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    assert np.all((factor > 0.8 - 1e-4) & (factor < 1.2 + 1e-4))
    assert np.ptp(factor) > 0.05


# ---------------------------------------------------------------------------------------------
# saturation / hue
# ---------------------------------------------------------------------------------------------


def luma(images):
    return np.tensordot(np.array(photometric.LUMA_WEIGHTS), images.astype(np.float64), ([0], [1]))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_saturation_factor_one_is_identity_and_zero_is_gray(dtype):
    images = make_images(16, dtype=dtype)
    same, _ = both(photometric.get_saturation(1.0, 1.0), images, make_labels(16))
    np.testing.assert_array_equal(same, images)
    gray, _ = both(photometric.get_saturation(0.0, 0.0), images, make_labels(16))
    np.testing.assert_array_equal(gray[:, 0], gray[:, 1])  # all channels equal
    np.testing.assert_array_equal(gray[:, 0], gray[:, 2])
    np.testing.assert_allclose(gray[:, 0], luma(images), atol=0.5 if dtype == np.uint8 else 1e-3)


def test_saturation_blends_with_the_gray_by_one_factor_per_image():
    images = make_images(16, dtype=np.float32, low=64, high=192)  # no clipping at 1.2x
    out, _ = both(photometric.get_saturation(0.8, 1.2), images, make_labels(16))
    gray = luma(images)[:, None]
    away = np.abs(images - gray) > 8  # pixels far enough from gray to measure the factor
    factors = [np.median((o - g)[a] / (x - g)[a]) for o, x, g, a in zip(out, images, gray, away)]
    for o, x, g, f in zip(out, images, gray, factors):
        np.testing.assert_allclose(o, x * f + g * (1 - f), atol=1e-3)
    assert min(factors) >= 0.8 - 1e-4 and max(factors) <= 1.2 + 1e-4
    assert np.ptp(factors) > 0.1


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_hue_zero_delta_is_identity(dtype):
    images = make_images(16, dtype=dtype)
    out, _ = both(photometric.get_hue(max_delta=0.0), images, make_labels(16))
    np.testing.assert_array_equal(out, images)  # max_delta=0 returns the input
    # A drawn delta of 0 goes through RGB -> HSV -> RGB: exact for uint8, 1e-4 off for float.
    round_trip = np.asarray(photometric.shift_hue(tf.constant(images), tf.zeros([16, 1, 1])))
    np.testing.assert_allclose(round_trip, images, atol=0 if dtype == np.uint8 else 1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_hue_leaves_gray_images_alone(dtype):
    gray = np.repeat(make_images(16, dtype=dtype)[:, :1], 3, axis=1)
    out, _ = both(photometric.get_hue(max_delta=0.5), gray, make_labels(16))
    np.testing.assert_allclose(out, gray, atol=0 if dtype == np.uint8 else 1e-3)


def test_hue_matches_tf_image_adjust_hue_and_keeps_value_and_chroma():
    images = make_images(8, height=8, width=8)
    for delta in (0.1, -0.3, 0.5):
        out = np.asarray(photometric.shift_hue(tf.constant(images), tf.fill([8, 1, 1], delta)))
        nhwc = tf.image.adjust_hue(np.transpose(images, (0, 2, 3, 1)), delta)
        expected = np.transpose(np.asarray(nhwc), (0, 3, 1, 2)).astype(int)
        assert np.abs(out.astype(int) - expected).max() <= 1  # the same up to rounding
        for reduce in (np.max, np.min):  # HSV value and chroma stay: max and min channel
            assert np.abs(reduce(out, 1).astype(int) - reduce(images, 1)).max() <= 1


def test_hue_draws_a_delta_per_image():
    images = np.repeat(make_images(1), 16, axis=0)
    out, _ = both(photometric.get_hue(max_delta=0.5), images, make_labels(16))
    assert len({o.tobytes() for o in out}) == 16


@pytest.mark.parametrize("name", ["saturation", "hue"])
def test_colour_ops_need_three_channels(name):
    op = getattr(photometric, f"get_{name}")()
    one_channel = make_images(4)[:, :1]
    with pytest.raises(errors.ConfigError, match=rf"{name} needs RGB images \[B, 3, H, W\]"):
        eager(op, one_channel, make_labels(4))
    # Channels unknown when traced: a shape check when run.
    graph = tf.function(lambda x: op(x, None, tf.constant([1, 2]))[0],
                        input_signature=[tf.TensorSpec([None, None, 8, 8], tf.uint8)])
    with pytest.raises(tf.errors.InvalidArgumentError):
        graph(one_channel)
    assert graph(make_images(4)).shape == (4, 3, 8, 8)


@pytest.mark.parametrize("make, message", [
    (lambda: photometric.get_saturation(1.2, 0.8), "saturation: .*min <= max"),
    (lambda: photometric.get_saturation(-0.5, 1.0), "saturation: "),
    (lambda: photometric.get_hue(max_delta=0.6), r"hue: max_delta=0.6 must be a number in \[0"),
    (lambda: photometric.get_hue(max_delta=None), "hue: max_delta=None"),
])
def test_colour_ops_reject_bad_arguments(make, message):
    with pytest.raises(errors.ConfigError, match=message):
        make()
