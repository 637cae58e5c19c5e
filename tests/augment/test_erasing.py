"""pipeline.augment.erasing: random_erasing, eagerly and in tf.data."""

import numpy as np
import pytest

from op_testing import both, make_images, make_labels
from pipeline import errors
from pipeline.augment import erasing

SIDE = 16


def erased_box(out, image, value=0):
    """(h, w) of the one rectangle of `out` set to `value` where `image` was not, or None when
    `out` is `image`; fails when anything else changed."""
    changed = np.any(out != image, axis=0)  # [H, W]
    if not changed.any():
        return None
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    box = np.zeros_like(changed)
    box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    np.testing.assert_array_equal(changed, box)  # one filled axis-aligned rectangle
    assert np.all(out[:, box] == value)
    return len(rows), len(cols)


def check_box(h, w, area, ratio):
    """The box is one that torchvision's sampling gives: whole-pixel sides rounded from a
    drawn area fraction in `area` and height/width aspect in `ratio`, smaller than the image."""
    assert 1 <= h < SIDE and 1 <= w < SIDE
    pixels = SIDE * SIDE
    assert (h - 0.5) * (w - 0.5) <= area[1] * pixels and (h + 0.5) * (w + 0.5) >= area[0] * pixels
    assert (h + 0.5) / (w - 0.5) >= ratio[0] and (h - 0.5) / (w + 0.5) <= ratio[1]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_erasing_zeroes_one_rectangle_of_about_half_the_images(dtype):
    images = make_images(64, SIDE, SIDE, dtype=dtype, low=1)  # no zeros but the erased
    area, ratio = (0.02, 0.33), (0.3, 3.3)
    out, labels = both(erasing.get_random_erasing(0.5, area, ratio), images, make_labels(64))
    boxes = [erased_box(o, x) for o, x in zip(out, images)]
    for box in filter(None, boxes):
        check_box(*box, area, ratio)
    erased = sum(box is not None for box in boxes)
    assert 20 <= erased <= 44
    assert len({box for box in boxes if box}) > 5  # sizes drawn per image
    np.testing.assert_array_equal(labels, make_labels(64))


def test_random_erasing_probability_sets_the_fraction_erased():
    images = make_images(64, SIDE, SIDE, low=1)
    for probability, low, high in ((0.25, 6, 28), (1.0, 64, 64)):
        out, _ = both(erasing.get_random_erasing(probability), images, make_labels(64))
        boxes = [erased_box(o, x) for o, x in zip(out, images)]
        assert low <= sum(box is not None for box in boxes) <= high


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_erasing_probability_zero_is_identity(dtype):
    images = make_images(8, SIDE, SIDE, dtype=dtype)
    out, _ = both(erasing.get_random_erasing(probability=0.0), images, make_labels())
    np.testing.assert_array_equal(out, images)


def test_random_erasing_fills_with_value_and_same_boxes_for_any_dtype():
    images = make_images(32, SIDE, SIDE, low=1, high=100)
    op = erasing.get_random_erasing(probability=1.0, area=(0.1, 0.2), value=200)
    out, _ = both(op, images, make_labels(32))
    for o, x in zip(out, images):
        check_box(*erased_box(o, x, value=200), (0.1, 0.2), (0.3, 3.3))
    as_float, _ = both(op, images.astype(np.float32), make_labels(32))
    np.testing.assert_array_equal(as_float, out.astype(np.float32))


def test_random_erasing_leaves_images_alone_when_no_box_fits():
    # A box of 90-100% of a 4x4 image at aspect >= 2 is taller than the image every time.
    images = make_images(16, 4, 4)
    op = erasing.get_random_erasing(probability=1.0, area=(0.9, 1.0), ratio=(2.0, 3.0))
    out, _ = both(op, images, make_labels(16))
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("kwargs, message", [
    (dict(probability=1.5), r"random_erasing: probability=1.5 must be a number in \[0"),
    (dict(area=(0.5, 0.1)), "random_erasing: area=.*min <= max"),
    (dict(area=0.3), "random_erasing: area=0.3 must be a pair"),
    (dict(ratio=(0, 1)), "random_erasing: ratio=.*finite and positive"),
    (dict(value=300), "random_erasing: value=300"),
])
def test_random_erasing_rejects_bad_arguments(kwargs, message):
    with pytest.raises(errors.ConfigError, match=message):
        erasing.get_random_erasing(**kwargs)
