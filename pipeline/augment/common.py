"""What the ops share: stateless seeds and random numbers, pixel scale, argument checks.

Every random number is a pure function of the seed an op is given (see pipeline.augment's
docstring for why), drawn with one named algorithm so that the CPU, a GPU and XLA agree.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline import errors

# Images are on the 0-255 scale whether uint8 (tf.data) or float (device, before normalising):
# ops that compute in float clip to [0, PIXEL_MAX] before casting back.
PIXEL_MAX = 255.0

# The stateless RNG algorithm, named rather than "auto_select": auto picks a different
# algorithm under XLA than on CPU/GPU, so the same seed would augment differently on the
# device than in a CPU test. With Philox the random *integers* are the same everywhere (XLA
# still turns bits into floats its own way, hence uniform).
RNG_ALG = "philox"
# uniform's resolution: floats are k / 2**24, exactly representable in float32.
UNIFORM_BITS = 24


def as_seed(seed) -> tf.Tensor:
    """Seeds as int64 [2]: stateless_split and fold_in derive new seeds in the seed's own dtype,
    so int32 [3, 7] and int64 [3, 7] would otherwise split into different streams (the reader
    passes int64, keras.random.randint on the device int32)."""
    return tf.cast(seed, tf.int64)


def split_seed(seed, num: int) -> list[tf.Tensor]:
    """`num` independent [2] seeds from one, for ops that draw more than one random tensor."""
    return tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), num=num, alg=RNG_ALG))


def fold_seed(seed, index: int) -> tf.Tensor:
    """The seed of part `index` of a composition: op i of a spec (spec.build), candidate i of
    trivial_augment. Folding the index in, rather than splitting into as many seeds as there
    are parts, keeps part i's numbers the same when parts are added after it."""
    return tf.random.experimental.stateless_fold_in(
        as_seed(seed), tf.constant(index, tf.int64), alg=RNG_ALG)


def uniform(shape, seed, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
    """float32 uniform in [minval, maxval), the same numbers on CPU, GPU and under XLA: drawn as
    integers (which agree everywhere) and scaled, since stateless_uniform's floats differ
    between XLA and the CPU kernels even with a fixed algorithm."""
    steps = tf.random.stateless_uniform(
        shape, as_seed(seed), minval=0, maxval=2**UNIFORM_BITS, dtype=tf.int32, alg=RNG_ALG
    )
    unit = tf.cast(steps, tf.float32) * (1.0 / 2**UNIFORM_BITS)
    return minval + (maxval - minval) * unit


def batch_height_width(images) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(B, H, W) as int32 tensors: B is unknown (None) inside tf.data graphs."""
    shape = tf.shape(images)
    return shape[0], shape[2], shape[3]


def restore_pixels(pixels: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """float32 pixels -> `dtype`: clipped to [0, 255]; rounded first when `dtype` is integer
    (a plain cast truncates, which would darken every image by half a level on average)."""
    if dtype.is_integer:
        pixels = tf.round(pixels)
    return tf.cast(tf.clip_by_value(pixels, 0.0, PIXEL_MAX), dtype)


def check_range(op: str, name: str, value, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise errors.ConfigError(f"{op}: {name}={value!r} must be a number in [{low}, {high}]")


def check_pair(op: str, name: str, value, low: float, high: float) -> tuple[float, float]:
    """A (min, max) pair of numbers with low <= min <= max <= high."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise errors.ConfigError(
            f"{op}: {name}={value!r} must be a pair (min, max) of numbers") from err
    if not low <= a <= b <= high:
        raise errors.ConfigError(f"{op}: {name}={value!r} needs {low} <= min <= max <= {high}")
    return a, b


def soft_labels(labels, num_classes: int | None, op: str) -> tf.Tensor:
    """float32 [B, K] rows: one-hot from int64 [B] class indices, or soft labels as given."""
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        return tf.cast(labels, tf.float32)
    if num_classes is None:
        raise errors.ConfigError(
            f"{op} mixes labels, so integer class labels need num_classes to become one-hot "
            f"rows: write {op}(num_classes=K) in the spec, or build(spec, "
            f"num_classes=manifest.num_classes)"
        )
    return tf.one_hot(labels, num_classes, dtype=tf.float32)


def sample_beta(seed, alpha: float, shape) -> tf.Tensor:
    """Beta(alpha, alpha) samples as X / (X + Y) with X, Y ~ Gamma(alpha): TensorFlow has a
    stateless gamma but no stateless beta. float64 because for small alpha (0.2) both gammas
    can underflow float32; divide_no_nan maps that (vanishingly rare) 0 / 0 to 0."""
    seed_x, seed_y = split_seed(seed, 2)
    x = tf.random.stateless_gamma(shape, seed_x, alpha, dtype=tf.float64)
    y = tf.random.stateless_gamma(shape, seed_y, alpha, dtype=tf.float64)
    return tf.cast(tf.math.divide_no_nan(x, x + y), tf.float32)
