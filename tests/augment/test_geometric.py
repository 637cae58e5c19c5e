"""pipeline.augment.geometric: flip_lr, flip_ud, random_crop, random_resized_crop, rotate,
eagerly and in tf.data."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

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


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_flip_ud_flips_about_half_the_images_top_bottom(dtype):
    images, labels = make_images(64, dtype=dtype), make_labels(64)
    out, out_labels = both(geometric.get_flip_ud(), images, labels)
    flipped = [np.array_equal(o, x[:, ::-1, :]) for o, x in zip(out, images)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48
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


# ---------------------------------------------------------------------------------------------
# rotate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("quarter_turns", [1, -1, 2])
def test_rotate_by_quarter_turns_is_rot90(interpolation, dtype, quarter_turns):
    images = make_images(4, height=8, width=8, dtype=dtype)
    angles = tf.fill([4], quarter_turns * math.pi / 2)
    out = np.asarray(geometric.rotate_images(tf.constant(images), angles, interpolation))
    expected = np.rot90(images, quarter_turns, axes=(2, 3))  # counter-clockwise as displayed
    assert out.dtype == images.dtype
    # float32 cos(pi / 2) is 4e-8, not 0: bilinear blends in a 1e-7 of the neighbour.
    np.testing.assert_allclose(out, expected, atol=0 if dtype == np.uint8 else 1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_rotate_degrees_zero_and_angle_zero_are_identity(dtype):
    images = make_images(8, dtype=dtype)
    out, _ = both(geometric.get_rotate(degrees=0), images, make_labels())
    np.testing.assert_array_equal(out, images)
    still = geometric.rotate_images(tf.constant(images), tf.zeros([8]))  # bilinear weights 1, 0
    np.testing.assert_array_equal(np.asarray(still), images)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_rotate_gives_each_image_its_own_angle_and_black_corners(dtype):
    image = make_images(1, height=16, width=16, dtype=dtype, low=1)  # zeros come from outside
    images = np.repeat(image, 16, axis=0)
    out, _ = both(geometric.get_rotate(degrees=45), images, make_labels(16))
    assert out.min() >= 0 and out.max() <= 255
    assert len({o.tobytes() for o in out}) == 16  # 16 copies, 16 different angles
    turned = geometric.rotate_images(tf.constant(image), tf.constant([math.pi / 4]))
    assert np.all(np.asarray(turned)[0, :, [0, 0, -1, -1], [0, -1, 0, -1]] == 0)  # corners
    assert np.all(np.asarray(turned)[0, :, 6:10, 6:10] > 0)  # the middle stays


def test_rotate_nearest_only_moves_pixels():
    images = make_images(8, height=16, width=16, low=1)
    out, _ = both(geometric.get_rotate(degrees=30, interpolation="nearest"), images,
                  make_labels())
    for o, x in zip(out, images):
        sources = {tuple(p) for p in x.reshape(3, -1).T} | {(0, 0, 0)}
        assert {tuple(p) for p in o.reshape(3, -1).T} <= sources


@pytest.mark.parametrize("kwargs, message", [
    (dict(degrees=-1), "rotate: degrees=-1"),
    (dict(degrees=181), "rotate: degrees=181"),
    (dict(degrees="15"), "rotate: degrees='15'"),
    (dict(interpolation="cubic"), "rotate: interpolation='cubic' must be one of"),
])
def test_rotate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        geometric.get_rotate(**kwargs)
