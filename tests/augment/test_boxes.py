"""pipeline.augment.counter and .boxes: the random numbers and crop boxes the reader and the
TensorFlow ops share, the box distribution against torchvision's definition, and the
resampling against OpenCV's."""

import math

import cv2
import numpy as np
import pytest
import tensorflow as tf

from pipeline.augment import boxes, counter, geometric

SEEDS = ([1, 2], [-3, 99], [7, 2**40], [0, 0])
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


@pytest.mark.parametrize("n", [1, 2, 33, 225])
def test_counter_integers_agree_in_numpy_tensorflow_and_xla(n):
    compiled = tf.function(lambda s: counter.randint_tf(s, 300, 5, n), jit_compile=True,
                           autograph=False)
    for seed in SEEDS:
        expected = counter.randint_np(seed, 300, 5, n)
        tensor_seed = tf.constant(seed, tf.int64)
        np.testing.assert_array_equal(counter.randint_tf(tensor_seed, 300, 5, n), expected)
        np.testing.assert_array_equal(compiled(tensor_seed), expected)
        assert expected.min() >= 0 and expected.max() < n


def test_counter_integers_are_uniform_and_independent_of_position_and_draw():
    draws = counter.randint_np([4, 5], 200_000, 0, 10)
    counts = np.bincount(draws, minlength=10)
    assert counts.min() > 19_000 and counts.max() < 21_000  # 20,000 +- 7 sigma
    other = counter.randint_np([4, 5], 200_000, 1, 10)
    assert abs(np.corrcoef(draws, other)[0, 1]) < 0.01
    assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.01


@pytest.mark.parametrize("shape", [(224, 224), (256, 256), (40, 100), (100, 40), (3, 3)])
def test_boxes_are_the_same_integers_in_numpy_and_tensorflow(shape):
    height, width = shape
    for seed in SEEDS:
        expected = boxes.boxes_np(seed, 400, height, width, SCALE, RATIO)
        got = boxes.boxes_tf(tf.constant(seed, tf.int64), 400, height, width, SCALE, RATIO)
        np.testing.assert_array_equal(got.numpy(), expected)
        top, left, box_h, box_w = expected.T
        assert (top >= 0).all() and (left >= 0).all() and (box_h >= 1).all()
        assert (top + box_h <= height).all() and (left + box_w <= width).all()


def torchvision_boxes(rng, count, height, width, scale=SCALE, ratio=RATIO):
    """torchvision.transforms.RandomResizedCrop.get_params, transcribed, with numpy's RNG."""
    out, fallbacks = [], 0
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(count):
        for _ in range(10):
            target = height * width * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                out.append((rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w))
                break
        else:
            fallbacks += 1
            h, w = boxes.centre_box(height, width, ratio)
            out.append(((height - h) // 2, (width - w) // 2, h, w))
    return np.array(out), fallbacks / count


def _quantiles(values):
    return np.quantile(values, np.linspace(0.05, 0.95, 19))


def test_box_area_and_aspect_follow_torchvisions_definition():
    ours = np.concatenate([boxes.boxes_np([s, 1], 2000, 224, 224, SCALE, RATIO)
                           for s in range(10)])
    reference, _ = torchvision_boxes(np.random.default_rng(0), 20_000, 224, 224)
    for column in (lambda b: b[:, 2] * b[:, 3] / 224**2,  # area share
                   lambda b: np.log(b[:, 3] / b[:, 2]),  # log aspect
                   lambda b: b[:, 0] + b[:, 2] / 2):  # centre row
        np.testing.assert_allclose(_quantiles(column(ours)), _quantiles(column(reference)),
                                   atol=0.02 * np.ptp(column(reference)))
    # The drawn aspect is log-uniform: equal shares in equal steps of log(ratio).
    counts, _ = np.histogram(np.log(boxes.ratio_table(RATIO)), bins=8)
    assert counts.min() == counts.max()


def test_small_and_elongated_images_fall_back_to_the_centre_crop_as_often_as_torchvision():
    # A tiny wide image (3x24): boxes round to whole pixels and a third of the images fit no
    # try of the ten.
    found = np.concatenate([boxes.first_fits_np([s, 9], 5000, 3, 24, SCALE, RATIO)[2]
                            for s in range(4)])
    ours = np.concatenate([boxes.boxes_np([s, 9], 5000, 3, 24, SCALE, RATIO) for s in range(4)])
    reference, reference_rate = torchvision_boxes(np.random.default_rng(1), 20_000, 3, 24)
    assert 0.2 < reference_rate < 0.5
    assert abs((~found).mean() - reference_rate) < 0.02, ((~found).mean(), reference_rate)
    for h in range(1, 4):
        for w in range(1, 5):
            share = np.mean((ours[:, 2] == h) & (ours[:, 3] == w))
            expected = np.mean((reference[:, 2] == h) & (reference[:, 3] == w))
            assert abs(share - expected) < 0.02, (h, w, share, expected)
    # Elongated: with scale=(1, 1) no try fits, so every box is the centre crop with its aspect
    # clamped into the ratio range, as torchvision's.
    wide = boxes.boxes_np([3, 3], 50, 10, 100, (1.0, 1.0), RATIO)
    assert (wide == [0, 43, 10, 13]).all()
    assert boxes.centre_box(10, 100, RATIO) == (10, 13)


def _smooth_images(count, height, width, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (count, 3, height, width)).astype(np.uint8)
    return np.stack([[cv2.GaussianBlur(plane, (0, 0), 2) for plane in image] for image in noise])


@pytest.mark.parametrize("images", [_smooth_images(32, 64, 48),
                                    np.random.default_rng(3).integers(
                                        0, 256, (32, 3, 40, 40)).astype(np.uint8)],
                         ids=["smooth", "noise"])
@pytest.mark.parametrize("size", [24, 56])
def test_resampling_agrees_with_opencv_within_one_grey_level(images, size):
    _, _, height, width = images.shape
    crops = boxes.boxes_np([5, 6], len(images), height, width, SCALE, RATIO)
    ours = boxes.resample(images, tf.constant(crops, tf.int32), size, size).numpy()
    theirs = np.empty_like(ours)
    for image, out, (top, left, box_h, box_w) in zip(images, theirs, crops):
        for plane, target in zip(image, out):
            cv2.resize(plane[top:top + box_h, left:left + box_w], (size, size), dst=target,
                       interpolation=cv2.INTER_LINEAR)
    diff = np.abs(ours.astype(int) - theirs)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.8


def test_resampling_a_whole_image_to_its_own_size_is_the_identity():
    images = _smooth_images(4, 16, 12)
    whole = tf.constant([[0, 0, 16, 12]] * 4, tf.int32)
    np.testing.assert_array_equal(boxes.resample(images, whole, 16, 12), images)


def test_random_resized_crop_uses_the_shared_boxes():
    images = _smooth_images(16, 32, 32)
    seed = tf.constant([8, 9], tf.int64)
    out, _ = geometric.get_random_resized_crop(size=16)(images, None, seed)
    crops = boxes.boxes_np([8, 9], 16, 32, 32, SCALE, RATIO)
    expected = boxes.resample(images, tf.constant(crops, tf.int32), 16, 16)
    np.testing.assert_array_equal(out, expected)
