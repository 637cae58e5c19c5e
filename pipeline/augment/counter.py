"""Counter-based random numbers, the same in TensorFlow and in numpy: the ops the reader can run
itself (random_crop, flip_lr) draw their numbers here, so that a batch cropped and flipped in
the reader has exactly the bytes the TensorFlow ops give it.

Every number is a hash of (the op's seed, the image's position in its batch, which draw):
splitmix64's finalizer, in uint64 arithmetic that wraps alike in numpy, TensorFlow's CPU
kernels and XLA. Integers in [0, n) take the hash's top 32 bits times n, shifted down 32
(Lemire's multiply-shift): exact integer arithmetic everywhere, no float in between.

The op's seed is what spec.build hands op i: fold_seed([base seed, batch g], i), an int64 [2];
the reader computes the same in its graph and passes it in.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipeline.augment.common import as_seed

_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
# Draws per image an op may take (the position and the draw number share one counter).
DRAWS_PER_IMAGE = 64


def _mix_np(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX_1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX_2)
    return x ^ (x >> np.uint64(31))


def bits_np(seed, count: int, draw: int) -> np.ndarray:
    """uint64 [count]: the hash of (seed, position 0..count-1, draw)."""
    seed = np.asarray(seed, np.int64).reshape(2).view(np.uint64)
    key = _mix_np(seed[:1] ^ _mix_np(seed[1:] + np.uint64(_GOLDEN)))
    counter = np.arange(count, dtype=np.uint64) * np.uint64(DRAWS_PER_IMAGE) + np.uint64(draw)
    return _mix_np(key ^ _mix_np(counter))


def randint_np(seed, count: int, draw: int, n: int) -> np.ndarray:
    """int64 [count] in [0, n)."""
    return ((bits_np(seed, count, draw) >> np.uint64(32)) * np.uint64(n) >> np.uint64(32)
            ).astype(np.int64)


def _u64(value: int) -> tf.Tensor:
    return tf.constant(value, tf.uint64)


def _mix_tf(x: tf.Tensor) -> tf.Tensor:
    shift = tf.bitwise.right_shift
    x = tf.bitwise.bitwise_xor(x, shift(x, _u64(30))) * _u64(_MIX_1)
    x = tf.bitwise.bitwise_xor(x, shift(x, _u64(27))) * _u64(_MIX_2)
    return tf.bitwise.bitwise_xor(x, shift(x, _u64(31)))


def bits_tf(seed, count, draw: int) -> tf.Tensor:
    """bits_np in TensorFlow: uint64 [count], count a (possibly unknown) int32 scalar."""
    seed = tf.bitcast(as_seed(seed), tf.uint64)
    key = _mix_tf(tf.bitwise.bitwise_xor(seed[0], _mix_tf(seed[1] + _u64(_GOLDEN))))
    counter = (tf.cast(tf.range(count), tf.uint64) * _u64(DRAWS_PER_IMAGE) + _u64(draw))
    return _mix_tf(tf.bitwise.bitwise_xor(key, _mix_tf(counter)))


def randint_tf(seed, count, draw: int, n: int) -> tf.Tensor:
    """randint_np in TensorFlow: int32 [count] in [0, n)."""
    top = tf.bitwise.right_shift(bits_tf(seed, count, draw), _u64(32))
    return tf.cast(tf.bitwise.right_shift(top * _u64(n), _u64(32)), tf.int32)
