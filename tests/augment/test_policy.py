"""pipeline.augment.policy: trivial_augment picks one candidate op per image."""

import numpy as np
import pytest
import tensorflow as tf

from op_testing import SEED, both, eager, make_images, make_labels
from pipeline import augment, errors
from pipeline.augment import policy
from pipeline.augment.common import RNG_ALG, fold_seed


def candidate_outputs(ops, images, labels, seed=SEED):
    """Each candidate of `ops` on the whole batch with its seed, fold_seed(seed, i): [n, B, ...]."""
    return np.stack([eager(augment.OPS[name](**kwargs), images, labels, fold_seed(seed, i))[0]
                     for i, (name, kwargs) in enumerate(augment.parse_spec(ops))])


def choices(count, batch, seed=SEED):
    return np.asarray(tf.random.stateless_uniform(
        [batch], fold_seed(seed, count), minval=0, maxval=count, dtype=tf.int32, alg=RNG_ALG))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_each_image_is_its_drawn_candidates_output(dtype):
    images, labels = make_images(64, 16, 16, dtype=dtype), make_labels(64)
    out, out_labels = both(policy.get_trivial_augment(), images, labels)
    candidates = candidate_outputs(policy.DEFAULT_CANDIDATES, images, labels)
    drawn = choices(len(candidates), 64)
    for i, (o, choice) in enumerate(zip(out, drawn)):
        np.testing.assert_array_equal(o, candidates[choice, i])
        assert any(np.array_equal(o, c) for c in candidates[:, i])
    assert len(set(drawn)) == len(candidates)  # 64 images: every candidate is picked
    assert np.bincount(drawn).max() < 64 // 2
    np.testing.assert_array_equal(out_labels, labels)


def test_candidates_from_a_spec_string_with_their_own_arguments():
    ops = "flip_lr|flip_ud|random_crop(pad=2)"
    images, labels = make_images(32), make_labels(32)
    out, _ = both(augment.build(f"trivial_augment(ops={ops!r})"), images, labels)
    # build runs op 0 with fold_seed(seed, 0); trivial_augment folds each candidate from that.
    seed = fold_seed(SEED, 0)
    candidates = candidate_outputs(ops, images, labels, seed)
    drawn = choices(3, 32, seed)
    np.testing.assert_array_equal(out, candidates[drawn, np.arange(32)])
    assert len(set(drawn)) == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.slow
def test_candidates_compiled_apart_give_what_plain_kernels_give(dtype):
    # With jit_compile, build runs trivial_augment's xla_parts: each candidate its own XLA
    # function, random_crop with its window gather.
    spec = "trivial_augment(ops='identity|random_crop(2)|flip_ud|saturation|rotate')"
    images, labels = make_images(16, dtype=dtype), make_labels(16)
    plain, _ = eager(augment.build(spec, jit_compile=False), images, labels)
    compiled, _ = both(augment.build(spec), images, labels)
    np.testing.assert_allclose(compiled, plain, atol=0 if dtype == np.uint8 else 1e-3)
    whole = tf.function(augment.OPS["trivial_augment"](
        ops="identity|flip_ud|saturation|rotate"), jit_compile=True)  # as Keras compiles it
    assert whole(tf.constant(images), tf.constant(labels), tf.constant(SEED))[0].shape == (
        16, 3, 8, 8)


@pytest.mark.parametrize("ops, message", [
    ("mixup", "candidate 'mixup' changes labels; candidates can be .*rotate"),
    ("flip_lr|random_resized_crop", "candidate 'random_resized_crop' cannot compile with XLA"),
    ("trivial_augment", "candidate 'trivial_augment' would nest"),
    ("", "lists no candidate"),
    ("spin", "unknown augment op 'spin'"),
    ("rotate(degrees=360)", "rotate: degrees=360"),
])
def test_trivial_augment_refuses_bad_candidates(ops, message):
    with pytest.raises(errors.ConfigError, match=message):
        augment.build(f"trivial_augment(ops={ops!r})")
