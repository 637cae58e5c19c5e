"""pipeline.augment.photometric: brightness and contrast, eagerly and in tf.data."""

import numpy as np
import pytest

from op_testing import both, make_images, make_labels
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
