"""pipeline.augment.geometric: flip_lr, random_crop, random_resized_crop, eagerly and in tf.data."""

import itertools

import numpy as np
import pytest

from op_testing import both, eager, make_images, make_labels
from pipeline.augment import geometric


# ---------------------------------------------------------------------------------------------
# flip_lr
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_flip_lr_mirrors_about_half_the_images(dtype):
    images, labels = make_images(64, dtype=dtype), make_labels(64)
    out, out_labels = both(geometric.get_flip_lr(), images, labels)
    flipped = [np.array_equal(o, x[..., ::-1]) for o, x in zip(out, images)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))  # every image is one or the other
    assert 0 < sum(flipped) < 64
    np.testing.assert_array_equal(out_labels, labels)


def test_flip_lr_same_images_flip_whatever_the_dtype():
    images = make_images(32)
    as_uint8, _ = eager(geometric.get_flip_lr(), images, make_labels(32))
    as_float, _ = eager(geometric.get_flip_lr(), images.astype(np.float32), make_labels(32))
    np.testing.assert_array_equal(as_float, as_uint8.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# random_crop
# ---------------------------------------------------------------------------------------------


def window_offsets(out, image, pad):
    """The (dy, dx) whose window of the zero-padded `image` equals `out`, by brute force."""
    padded = np.pad(image, [(0, 0), (pad, pad), (pad, pad)])
    _, height, width = image.shape
    return [
        (dy, dx)
        for dy, dx in itertools.product(range(2 * pad + 1), repeat=2)
        if np.array_equal(padded[:, dy : dy + height, dx : dx + width], out)
    ]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_crop_is_a_window_of_the_zero_padded_image(dtype):
    pad = 2
    images = make_images(32, height=8, width=6, dtype=dtype, low=1)  # no zeros but the padding
    out, _ = both(geometric.get_random_crop(pad), images, make_labels(32))
    offsets = []
    for o, x in zip(out, images):
        found = window_offsets(o, x, pad)
        assert len(found) == 1, found
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # per-image offsets, not one per batch
    assert {dy for dy, _ in offsets} | {dx for _, dx in offsets} >= {0, 2 * pad}  # extremes occur


def test_random_crop_uint8_and_float_paths_agree():
    # uint8 crops columns by grouping images by offset, float by a gather: same pixels.
    images = make_images(64, height=8, width=8)
    as_uint8, _ = eager(geometric.get_random_crop(3), images, make_labels(64))
    as_float, _ = eager(geometric.get_random_crop(3), images.astype(np.float32), make_labels(64))
    np.testing.assert_array_equal(as_float, as_uint8.astype(np.float32))


def test_random_crop_pad_zero_is_identity():
    images = make_images()
    out, _ = both(geometric.get_random_crop(pad=0), images, make_labels())
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("pad", [-1, 1.5, "8"])
def test_random_crop_rejects_bad_pad(pad):
    with pytest.raises(ValueError, match="random_crop: pad"):
        geometric.get_random_crop(pad)


# ---------------------------------------------------------------------------------------------
# random_resized_crop
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_resized_crop_shape_dtype_and_change(dtype):
    images = make_images(16, height=16, width=12, dtype=dtype)
    out, _ = both(geometric.get_random_resized_crop(), images, make_labels(16))
    assert out.min() >= 0 and out.max() <= 255
    changed = [not np.array_equal(o, x) for o, x in zip(out, images)]
    assert sum(changed) == 16


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_resized_crop_full_square_box_is_identity(dtype):
    images = make_images(8, height=16, width=16, dtype=dtype)
    op = geometric.get_random_resized_crop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out, _ = both(op, images, make_labels())
    np.testing.assert_allclose(out, images, atol=1e-3)


def test_random_resized_crop_small_scale_zooms_in():
    # A box of 1/16 the area, resized back, varies less than the whole image.
    images = make_images(16, height=16, width=16, dtype=np.float32)
    op = geometric.get_random_resized_crop(scale=(1 / 16, 1 / 16), ratio=(1.0, 1.0))
    out, _ = both(op, images, make_labels(16))
    assert np.abs(np.diff(out, axis=3)).mean() < 0.5 * np.abs(np.diff(images, axis=3)).mean()


def test_random_resized_crop_rejects_bad_ranges():
    with pytest.raises(ValueError, match="random_resized_crop: scale"):
        geometric.get_random_resized_crop(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="random_resized_crop: ratio"):
        geometric.get_random_resized_crop(ratio=(2.0, 1.0))
