"""pipeline.augment.mixing: mixup and cutmix, images and labels, eagerly and in tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from op_testing import K, SEED, both, make_images, make_labels
from pipeline import augment
from pipeline.augment import mixing


# ---------------------------------------------------------------------------------------------
# mixup / cutmix
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_mixup_mixes_images_and_labels_with_one_lambda(dtype):
    images, labels = make_images(8, dtype=dtype), make_labels(8, num_classes=8)
    out, soft = both(mixing.get_mixup(alpha=1.0, num_classes=8), images, labels)
    assert soft.dtype == np.float32 and soft.shape == (8, 8)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)
    partner = images[::-1]
    slack = 0 if dtype == np.uint8 else 1e-3  # float rounding; uint8 rounds to an integer between
    assert np.all(out >= np.minimum(images, partner) - slack)
    assert np.all(out <= np.maximum(images, partner) + slack)
    lam = soft[0, labels[0]]
    assert 0.0 < lam < 1.0
    np.testing.assert_allclose(soft[np.arange(8), labels], lam, atol=1e-6)  # one lam per batch
    expected = lam * images.astype(np.float32) + (1 - lam) * partner
    np.testing.assert_allclose(out, expected, atol=0.5 if dtype == np.uint8 else 1e-3)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_label_mixing_needs_num_classes_for_int_labels(name):
    op = augment.OPS[name]()
    with pytest.raises(ValueError, match=rf"num_classes.*{name}\(num_classes=K\)"):
        op(tf.constant(make_images()), tf.constant(make_labels()), tf.constant(SEED))


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_label_mixing_accepts_soft_labels_without_num_classes(name):
    soft_in = np.eye(K, dtype=np.float32)[make_labels()]
    _, soft = both(augment.OPS[name](), make_images(), soft_in)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)


def test_cutmix_pastes_a_box_from_the_partner_weighted_by_its_area():
    batch, height, width = 16, 8, 8
    images, labels = make_images(batch, height, width), make_labels(batch, num_classes=batch)
    out, soft = both(mixing.get_cutmix(alpha=1.0, num_classes=batch), images, labels)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)
    partner = images[::-1]
    from_partner = np.all(out == partner, axis=1) & ~np.all(out == images, axis=1)  # [B, H, W]
    from_self = np.all(out == images, axis=1)
    assert np.all(from_partner | from_self)  # every pixel comes from one of the two
    pasted = 0
    for i in range(batch):
        mask = from_partner[i]
        rows, cols = mask.any(1), mask.any(0)
        np.testing.assert_array_equal(mask, np.outer(rows, cols))  # a rectangle
        area = mask.mean()
        np.testing.assert_allclose(soft[i, labels[batch - 1 - i]], area, atol=1e-6)
        np.testing.assert_allclose(soft[i, labels[i]], 1 - area, atol=1e-6)
        pasted += area > 0
    assert pasted > batch // 2
