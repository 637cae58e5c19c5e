"""What the augmentation tests share: small batches, and running an op eagerly and in tf.data.

big_vision's rule: run each op both eagerly and in tf.data ("You'd be surprised how much these
two differ!"); `both()` does that and requires the two results to be identical.
"""

import numpy as np
import tensorflow as tf

SEED = (3, 7)
K = 5  # classes in the label-mixing tests


def make_images(batch=8, height=8, width=8, dtype=np.uint8, seed=0, low=0, high=256):
    """Random uint8-valued pixels [B, 3, H, W]: no two windows or mirror images coincide."""
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, (batch, 3, height, width)).astype(dtype)


def make_labels(batch=8, num_classes=K):
    return np.arange(batch, dtype=np.int64) % num_classes


def eager(op, images, labels, seed=SEED):
    out_images, out_labels = op(tf.constant(images), tf.constant(labels), tf.constant(seed))
    return np.asarray(out_images), np.asarray(out_labels)


def in_tf_data(op, images, labels, seed=SEED):
    """The op inside tf.data.map, with the batch size unknown (None) as in the reader."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(images))
    ds = ds.map(lambda x, y: op(x, y, tf.constant(seed, tf.int64)))
    assert ds.element_spec[0].shape[0] is None
    (out_images, out_labels), = ds.as_numpy_iterator()
    return out_images, out_labels


def both(op, images, labels, seed=SEED):
    """Runs `op` eagerly and inside tf.data; they must agree exactly. Returns the results."""
    out_images, out_labels = eager(op, images, labels, seed)
    data_images, data_labels = in_tf_data(op, images, labels, seed)
    np.testing.assert_array_equal(data_images, out_images)
    np.testing.assert_array_equal(data_labels, out_labels)
    assert out_images.dtype == images.dtype
    assert out_images.shape == images.shape
    return out_images, out_labels
