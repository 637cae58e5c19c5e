r"""Batched augmentation ops in a registry, composed from a spec string.

    op = augment.build("random_crop(pad=16)|flip_lr", num_classes=manifest.num_classes)
    images, labels = op(images, labels, seed)

Every op works on a whole batch, as the reader produces it after `batch -> parse`:

    images: [B, C, H, W] channels first, uint8 inside tf.data, or float32 on the device; float
            images are on the same 0-255 scale (DevicePreprocess augments before normalising)
    labels: int64 [B] class indices, or float32 [B, K] soft / one-hot rows
    seed:   int32 or int64 [2], the seed of the stateless random ops

and returns `(images, labels)` with the images' dtype and shape unchanged. Only mixup and
cutmix touch the labels: they return float32 [B, K] rows.

Why batched: the reader parses whole batches, and one op on a [256, 3, 224, 224] tensor costs a
few kernel launches where a per-image `map` would cost 256 times as many, plus the Python-free
graph is the same on 2 CPU cores and on an accelerator. No op loops over images in Python or
uses `tf.map_fn`: per-image randomness comes from [B]-shaped random draws turned into masks,
gather indices, partitions or boxes.

Why stateless: every random number is a pure function of the seed the caller passes (the reader
passes `[base_seed, batch_index]`). The same batch gets the same augmentation whatever
`num_parallel_calls`, thread scheduling or run, so training is reproducible and a test can
compare an op run eagerly with the same op inside `tf.data.map`. Stateful ops
(`tf.random.uniform`, `tf.image.random_flip_left_right`) would hand out numbers in whatever
order the parallel map calls happen to run.

Each op is a tiny registered factory (big_vision's `pp/ops_image.py` pattern): `get_flip_lr()`
returns the op closure, and adding an op never touches the reader or the trainer.
"""

from __future__ import annotations

import ast
import inspect
import math
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

# Images are on the 0-255 scale whether uint8 (tf.data) or float (device, before normalising):
# ops that compute in float clip to [0, PIXEL_MAX] before casting back.
PIXEL_MAX = 255.0

# The default training augmentation: a random translation by up to 16 px (zero-padded crop)
# and a random horizontal mirror, the classic CIFAR/ResNet recipe. Cheap enough for a 2-core
# host to keep ahead of an accelerator: all uint8, no float conversion, and under XLA the two
# ops fuse into one gather pass over the batch. In tf.data on 2 cores, batches of
# 256 x 3 x 224 x 224: about 11,000-16,000 img/s (5,500-7,000 without XLA).
# random_resized_crop is the stronger ImageNet recipe, but it resamples in float and XLA cannot
# compile it: about 1,300 img/s alone.
DEFAULT_TRAIN_AUGMENT = "random_crop(pad=16)|flip_lr"

# Upper bound (exclusive) of the seeds DevicePreprocess draws each call: fits int32 so the seed
# is valid for every stateless kernel and every backend dtype.
DEVICE_SEED_MAX = 2**31 - 1

# The stateless RNG algorithm, named rather than "auto_select": auto picks a different
# algorithm under XLA than on CPU/GPU, so the same seed would augment differently on the
# device than in a CPU test. With Philox the random *integers* are the same everywhere (XLA
# still turns bits into floats its own way, hence _uniform).
RNG_ALG = "philox"
# _uniform's resolution: floats are k / 2**24, exactly representable in float32.
UNIFORM_BITS = 24

Op = Callable[[tf.Tensor, Any, tf.Tensor], "tuple[tf.Tensor, Any]"]

# name -> factory; filled by @register.
OPS: dict[str, Callable[..., Op]] = {}
# Ops that change labels (mixup, cutmix). They must run in the tf.data pipeline, where the
# labels are: a Keras layer only sees the images, so DevicePreprocess refuses them.
LABEL_OPS: set[str] = set()
# Ops using a kernel XLA cannot compile (crop_and_resize, stateless_gamma): build() runs them
# without XLA, and DevicePreprocess with one of them sets supports_jit=False, so Keras compiles
# the model without XLA instead of failing on GPU.
NO_XLA_OPS: set[str] = set()


def register(name: str, *, changes_labels: bool = False, xla: bool = True):
    """Decorator: `@register("flip_lr")` puts an op factory into OPS under `name`."""

    def _register(factory):
        if name in OPS:
            raise ValueError(f"augment op {name!r} is registered twice")
        OPS[name] = factory
        if changes_labels:
            LABEL_OPS.add(name)
        if not xla:
            NO_XLA_OPS.add(name)
        return factory

    return _register


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _seed(seed) -> tf.Tensor:
    """Seeds as int64 [2]: stateless_split and fold_in derive new seeds in the seed's own dtype,
    so int32 [3, 7] and int64 [3, 7] would otherwise split into different streams (the reader
    passes int64, keras.random.randint on the device int32)."""
    return tf.cast(seed, tf.int64)


def _split(seed, num: int) -> list[tf.Tensor]:
    """`num` independent [2] seeds from one, for ops that draw more than one random tensor."""
    return tf.unstack(tf.random.experimental.stateless_split(_seed(seed), num=num, alg=RNG_ALG))


def _uniform(shape, seed, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
    """float32 uniform in [minval, maxval), the same numbers on CPU, GPU and under XLA: drawn as
    integers (which agree everywhere) and scaled, since stateless_uniform's floats differ
    between XLA and the CPU kernels even with a fixed algorithm."""
    steps = tf.random.stateless_uniform(
        shape, _seed(seed), minval=0, maxval=2**UNIFORM_BITS, dtype=tf.int32, alg=RNG_ALG
    )
    unit = tf.cast(steps, tf.float32) * (1.0 / 2**UNIFORM_BITS)
    return minval + (maxval - minval) * unit


def _shape(images) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(B, H, W) as int32 tensors: B is unknown (None) inside tf.data graphs."""
    shape = tf.shape(images)
    return shape[0], shape[2], shape[3]


def _restore(pixels: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """float32 pixels -> `dtype`: clipped to [0, 255]; rounded first when `dtype` is integer
    (a plain cast truncates, which would darken every image by half a level on average)."""
    if dtype.is_integer:
        pixels = tf.round(pixels)
    return tf.cast(tf.clip_by_value(pixels, 0.0, PIXEL_MAX), dtype)


def _check_range(op: str, name: str, value, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{op}: {name}={value!r} must be a number in [{low}, {high}]")


def _check_pair(op: str, name: str, value, low: float, high: float) -> tuple[float, float]:
    """A (min, max) pair of numbers with low <= min <= max <= high."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{op}: {name}={value!r} must be a pair (min, max) of numbers") from err
    if not low <= a <= b <= high:
        raise ValueError(f"{op}: {name}={value!r} needs {low} <= min <= max <= {high}")
    return a, b


def _soft_labels(labels, num_classes: int | None, op: str) -> tf.Tensor:
    """float32 [B, K] rows: one-hot from int64 [B] class indices, or soft labels as given."""
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        return tf.cast(labels, tf.float32)
    if num_classes is None:
        raise ValueError(
            f"{op} mixes labels, so integer class labels need num_classes to become one-hot "
            f"rows: write {op}(num_classes=K) in the spec, or build(spec, "
            f"num_classes=manifest.num_classes)"
        )
    return tf.one_hot(labels, num_classes, dtype=tf.float32)


def _sample_beta(seed, alpha: float, shape) -> tf.Tensor:
    """Beta(alpha, alpha) samples as X / (X + Y) with X, Y ~ Gamma(alpha): TensorFlow has a
    stateless gamma but no stateless beta. float64 because for small alpha (0.2) both gammas
    can underflow float32; divide_no_nan maps that (vanishingly rare) 0 / 0 to 0."""
    seed_x, seed_y = _split(seed, 2)
    x = tf.random.stateless_gamma(shape, seed_x, alpha, dtype=tf.float64)
    y = tf.random.stateless_gamma(shape, seed_y, alpha, dtype=tf.float64)
    return tf.cast(tf.math.divide_no_nan(x, x + y), tf.float32)


def identity(images, labels, seed):
    """The op of an empty spec."""
    del seed
    return images, labels


# ---------------------------------------------------------------------------------------------
# Geometric ops: uint8 stays uint8, the pixels only move
# ---------------------------------------------------------------------------------------------


@register("flip_lr")
def get_flip_lr() -> Op:
    """Mirrors each image left-right (along W) with probability 1/2."""

    def _flip_lr(images, labels, seed):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        flip = _uniform([batch], seed) < 0.5
        # One reverse of the whole batch and one select on a [B, 1, 1, 1] mask: two passes over
        # uint8 memory, instead of a cond (or a Python loop) per image.
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[3]), images)
        return images, labels

    return _flip_lr


@register("random_crop")
def get_random_crop(pad: int = 16) -> Op:
    """Zero-pads H and W by `pad` pixels on each side, then crops each image back to H x W at
    its own random offset in [0, 2 * pad] (a random translation by up to `pad` pixels)."""
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"random_crop: pad={pad!r} must be an integer >= 0 (pixels)")

    def _random_crop(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if pad == 0:
            return images, labels
        batch, height, width = _shape(images)
        padded = tf.pad(images, [[0, 0], [0, 0], [pad, pad], [pad, pad]])
        offset_y, offset_x = tf.unstack(
            tf.random.stateless_uniform(
                [2, batch], _seed(seed), minval=0, maxval=2 * pad + 1, dtype=tf.int32, alg=RNG_ALG
            )
        )
        # Every image has its own offset, so a single tf.slice cannot crop them all. Rows: one
        # gather with a per-image [B, H] index grid (batch_dims=1) moves whole rows at once.
        rows = offset_y[:, None] + tf.range(height)[None, :]
        out = tf.gather(padded, rows, axis=2, batch_dims=1)  # [B, C, H, W + 2 pad]
        if images.dtype.is_integer:
            out = _crop_columns_by_offset(out, offset_x, width, pad)
        else:
            cols = offset_x[:, None] + tf.range(width)[None, :]
            out = tf.gather(out, cols, axis=3, batch_dims=1)  # [B, C, H, W]
        out.set_shape(images.shape)  # the index grids hide H and W from shape inference
        return out, labels

    def _random_crop_xla(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if pad == 0:
            return images, labels
        batch, channels, height, width = images.shape
        offsets = tf.random.stateless_uniform(
            [2, tf.shape(images)[0]], _seed(seed), minval=0, maxval=2 * pad + 1, dtype=tf.int32,
            alg=RNG_ALG
        )
        padded = tf.pad(images, [[0, 0], [0, 0], [pad, pad], [pad, pad]])
        out = _batched_window(padded, offsets[0], offsets[1], [channels, height, width])
        return out, labels

    _random_crop.xla_kernel = _random_crop_xla
    return _random_crop


def _batched_window(images, top, left, window) -> tf.Tensor:
    """images[b, :, top[b] : top[b] + h, left[b] : left[b] + w] for every b, inside XLA.

    One XLA gather whose slices are whole [C, h, w] windows: it copies whole rows, where
    tf.gather with per-image index grids (batch_dims=1) gathers single bytes and then has XLA
    transpose the result back to row-major (a quarter of the time in the crop). Measured on 2
    cores, uint8 256 x 3 x 224 x 224, in tf.data from the in-memory table with a flip after:
    ~24,000 img/s, against ~7,300 with the index grids.
    """
    from tensorflow.compiler.tf2xla.python import xla as tf_xla  # XLA-only ops
    from tensorflow.compiler.xla import xla_data_pb2

    batch = tf.range(tf.shape(images)[0])
    starts = tf.stack([batch, tf.zeros_like(batch), top, left], axis=1)  # [B, 4]
    dims = xla_data_pb2.GatherDimensionNumbers(
        offset_dims=[1, 2, 3], collapsed_slice_dims=[0], start_index_map=[0, 1, 2, 3],
        index_vector_dim=1,
    )
    return tf_xla.gather(images, starts, dims, [1, *window], indices_are_sorted=True)


def _crop_columns_by_offset(images, offsets, width, pad: int) -> tf.Tensor:
    """images[b, :, :, offsets[b] : offsets[b] + width] for the whole batch, offsets in
    [0, 2 * pad]: the uint8 (tf.data, CPU) path of random_crop.

    A column gather with a [B, W] index grid copies one byte at a time: 240 ms for a batch of
    256 x 3 x 224 x 224 on one core, 13x the row gather. Grouping the images by offset (one
    dynamic_partition), cropping each group with a plain slice (whole runs of W bytes) and
    stitching them back in batch order takes 25 ms and gives the same bytes. The Python loop
    runs over the 2 * pad + 1 possible offsets when the graph is built, not over images.
    Float (device) images keep the column gather: XLA has no kernel for dynamic_partition,
    and accelerators gather fast.
    """
    num_offsets = 2 * pad + 1
    groups = tf.dynamic_partition(images, offsets, num_offsets)
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), offsets, num_offsets)
    cropped = [group[..., offset : offset + width] for offset, group in enumerate(groups)]
    return tf.dynamic_stitch(positions, cropped)


@register("random_resized_crop", xla=False)
def get_random_resized_crop(
    scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)
) -> Op:
    """Inception-style crop: per image a box covering `scale` of the image's area (uniform)
    with width/height aspect `ratio` (log-uniform), clipped into the image, resized back to
    H x W with bilinear sampling.

    A box that would not fit is clipped (torchvision retries up to 10 times instead), so very
    elongated boxes cover somewhat less area than drawn. scale=(1, 1), ratio=(1, 1) on a square
    image is the identity.
    """
    area_lo, area_hi = _check_pair("random_resized_crop", "scale", scale, 0.0, 1.0)
    ratio_lo, ratio_hi = _check_pair("random_resized_crop", "ratio", ratio, 0.0, math.inf)
    if area_hi <= 0 or ratio_lo <= 0:
        raise ValueError(
            f"random_resized_crop: scale={scale!r} and ratio={ratio!r} must be positive"
        )
    log_ratio_lo, log_ratio_hi = math.log(ratio_lo), math.log(ratio_hi)

    def _random_resized_crop(images, labels, seed):
        images = tf.convert_to_tensor(images)
        batch, height, width = _shape(images)
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        u_area, u_ratio, u_y, u_x = tf.unstack(_uniform([4, batch], seed))
        area = (area_lo + (area_hi - area_lo) * u_area) * h * w  # pixels^2
        aspect = tf.exp(log_ratio_lo + (log_ratio_hi - log_ratio_lo) * u_ratio)  # width/height
        # Box size as a fraction of the image side, clipped into the image.
        box_h = tf.minimum(tf.sqrt(area / aspect) / h, 1.0)
        box_w = tf.minimum(tf.sqrt(area * aspect) / w, 1.0)
        top = u_y * (1.0 - box_h)
        left = u_x * (1.0 - box_w)
        boxes = tf.stack([top, left, top + box_h, left + box_w], axis=1)
        # crop_and_resize wants NHWC and reads uint8 directly (transposing uint8 moves a quarter
        # of the bytes float32 would); other float dtypes (bfloat16) go through float32.
        source = images if images.dtype in (tf.uint8, tf.float32) else tf.cast(images, tf.float32)
        out = tf.image.crop_and_resize(
            tf.transpose(source, [0, 2, 3, 1]),
            boxes,
            tf.range(batch),
            tf.stack([height, width]),
            method="bilinear",
        )
        out = _restore(tf.transpose(out, [0, 3, 1, 2]), images.dtype)
        out.set_shape(images.shape)
        return out, labels

    return _random_resized_crop


# ---------------------------------------------------------------------------------------------
# Photometric ops: computed in float32, clipped to [0, 255], cast back
# ---------------------------------------------------------------------------------------------


@register("brightness")
def get_brightness(max_delta: float = 0.2) -> Op:
    """Scales each image's pixels by a random factor in [1 - max_delta, 1 + max_delta].

    Relative, not additive: black stays black and it matches torchvision's
    ColorJitter(brightness=max_delta), so recipes carry over. max_delta=0 is the identity.
    """
    _check_range("brightness", "max_delta", max_delta, 0.0, 1.0)

    def _brightness(images, labels, seed):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        factor = _uniform([batch, 1, 1, 1], seed, 1.0 - max_delta, 1.0 + max_delta)
        return _restore(tf.cast(images, tf.float32) * factor, images.dtype), labels

    return _brightness


@register("contrast")
def get_contrast(lower: float = 0.8, upper: float = 1.2) -> Op:
    """Scales each image's deviation from its own mean by a random factor in [lower, upper].

    The mean is over all channels and pixels of the image (one gray level, as torchvision
    does), not per channel: a per-channel mean would also wash out the colours.
    lower=upper=1 is the identity.
    """
    lower, upper = _check_pair("contrast", "(lower, upper)", (lower, upper), 0.0, math.inf)

    def _contrast(images, labels, seed):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        factor = _uniform([batch, 1, 1, 1], seed, lower, upper)
        pixels = tf.cast(images, tf.float32)
        mean = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
        # x * f + m * (1 - f) rather than m + f * (x - m): exactly x when f == 1.
        return _restore(pixels * factor + mean * (1.0 - factor), images.dtype), labels

    return _contrast


# ---------------------------------------------------------------------------------------------
# Label-mixing ops: tf.data only (see LABEL_OPS)
# ---------------------------------------------------------------------------------------------
# Each image is mixed with its partner in the batch reversed (image i with image B-1-i): a
# permutation for free, no second random draw, and the batch is already shuffled by the reader.
# Labels come out as float32 [B, K] rows that sum to 1.


@register("mixup", changes_labels=True, xla=False)
def get_mixup(alpha: float = 0.2, num_classes: int | None = None) -> Op:
    """mixup (Zhang et al. 2018): x = lam x + (1 - lam) x', y = lam y + (1 - lam) y' with one
    lam ~ Beta(alpha, alpha) per batch. uint8 images stay uint8 (the mix is rounded)."""
    _check_range("mixup", "alpha", alpha, 1e-6, math.inf)

    def _mixup(images, labels, seed):
        images = tf.convert_to_tensor(images)
        soft = _soft_labels(labels, num_classes, "mixup")
        lam = _sample_beta(seed, alpha, [])
        pixels = tf.cast(images, tf.float32)
        pixels = lam * pixels + (1.0 - lam) * tf.reverse(pixels, axis=[0])
        soft = lam * soft + (1.0 - lam) * tf.reverse(soft, axis=[0])
        return _restore(pixels, images.dtype), soft

    return _mixup


@register("cutmix", changes_labels=True, xla=False)
def get_cutmix(alpha: float = 1.0, num_classes: int | None = None) -> Op:
    """CutMix (Yun et al. 2019): pastes a box from the partner image into each image, the box
    area fraction drawn as 1 - lam, lam ~ Beta(alpha, alpha), the centre uniform, the box
    clipped at the borders. Labels mix by the box's actual (clipped) area fraction.

    One box per image, not per batch: with a [B, 1, H, W] mask a per-image box costs the same
    select as a shared one and gives more varied batches.
    """
    _check_range("cutmix", "alpha", alpha, 1e-6, math.inf)

    def _cutmix(images, labels, seed):
        images = tf.convert_to_tensor(images)
        soft = _soft_labels(labels, num_classes, "cutmix")
        batch, height, width = _shape(images)
        seed_lam, seed_box = _split(seed, 2)
        lam = _sample_beta(seed_lam, alpha, [batch])
        u_y, u_x = tf.unstack(_uniform([2, batch], seed_box))
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        side = tf.sqrt(1.0 - lam)  # box side / image side, so box area / image area = 1 - lam
        box_h = tf.cast(tf.round(side * h), tf.int32)
        box_w = tf.cast(tf.round(side * w), tf.int32)
        centre_y = tf.cast(tf.floor(u_y * h), tf.int32)
        centre_x = tf.cast(tf.floor(u_x * w), tf.int32)
        top = tf.clip_by_value(centre_y - box_h // 2, 0, height)
        bottom = tf.clip_by_value(centre_y - box_h // 2 + box_h, 0, height)
        left = tf.clip_by_value(centre_x - box_w // 2, 0, width)
        right = tf.clip_by_value(centre_x - box_w // 2 + box_w, 0, width)
        rows = tf.range(height)[None, :]
        cols = tf.range(width)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # [B, H]
        in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # [B, W]
        inside = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # [B, 1, H, W]
        out = tf.where(inside, tf.reverse(images, axis=[0]), images)
        pasted = tf.cast((bottom - top) * (right - left), tf.float32) / (h * w)  # [B]
        soft = (1.0 - pasted[:, None]) * soft + pasted[:, None] * tf.reverse(soft, axis=[0])
        return out, soft

    return _cutmix


# ---------------------------------------------------------------------------------------------
# Specs: "random_crop(pad=8)|flip_lr" -> [(name, kwargs)] -> one op
# ---------------------------------------------------------------------------------------------


def _pipe_items(node: ast.expr) -> list[ast.expr]:
    """`a | b | c` parses as ((a | b) | c): flatten it back to [a, b, c]."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _pipe_items(node.left) + _pipe_items(node.right)
    return [node]


def _literal(node: ast.expr, op: str, spec: str):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError) as err:
        raise ValueError(
            f"augment op {op!r} in {spec!r}: argument {ast.unparse(node)!r} is not a literal; "
            f"use numbers, strings, tuples, lists, True/False/None (e.g. 0.75, not 3/4)"
        ) from err


def _parse_op(node: ast.expr, spec: str) -> tuple[str, dict[str, Any]]:
    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, [], {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(
            kw.arg is None for kw in node.keywords
        ):
            raise ValueError(f"augment op {name!r} in {spec!r}: no *args or **kwargs in specs")
        args = [_literal(arg, name, spec) for arg in node.args]
        kwargs = {kw.arg: _literal(kw.value, name, spec) for kw in node.keywords}
    else:
        raise ValueError(
            f"cannot parse {ast.unparse(node)!r} in augment spec {spec!r}: write each op as "
            f"name or name(arg=value), joined by '|', e.g. {DEFAULT_TRAIN_AUGMENT!r}"
        )
    if name not in OPS:
        raise ValueError(
            f"unknown augment op {name!r} in {spec!r}; known ops: {', '.join(sorted(OPS))}"
        )
    signature = inspect.signature(OPS[name])
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise ValueError(
            f"augment op {name!r} in {spec!r}: {err}; its arguments are {name}{signature}"
        ) from err
    return name, dict(bound.arguments)


def parse_spec(spec: str | Sequence[str] | None) -> list[tuple[str, dict[str, Any]]]:
    """`"random_crop(8)|flip_lr"` -> `[("random_crop", {"pad": 8}), ("flip_lr", {})]`.

    `spec` is a string of ops joined by '|', a list of such strings (a gin list), or
    None / "" / [] for no augmentation. Positional arguments are resolved to their names.
    Values are parsed with `ast.literal_eval`, never `eval`. Raises ValueError for an unknown
    op (listing the known ones), a non-literal value, or arguments the op does not take.
    """
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"augment spec must be a string or a list of strings, got {spec!r}")
    parsed = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"augment spec items must be strings, got {item!r} in {spec!r}")
        if not item.strip():
            continue
        try:
            tree = ast.parse(item.strip(), mode="eval")
        except SyntaxError as err:
            raise ValueError(
                f"cannot parse augment spec {item!r} ({err.msg}): write each op as name or "
                f"name(arg=value), joined by '|', e.g. {DEFAULT_TRAIN_AUGMENT!r}"
            ) from err
        parsed.extend(_parse_op(node, item) for node in _pipe_items(tree.body))
    return parsed


def build(spec: str | Sequence[str] | None, *, jit_compile: bool = True, **common) -> Op:
    """Composes the ops of `spec` into one `op(images, labels, seed) -> (images, labels)`.

    `common` holds arguments offered to every op whose factory takes them (e.g.
    `num_classes=manifest.num_classes` reaches mixup and cutmix, not flip_lr); an argument
    written in the spec wins. Op i runs with the seed `stateless_fold_in(seed, i)`, so ops
    never share random numbers and adding an op at the end leaves the earlier ones unchanged.
    An empty spec gives `identity`.

    With `jit_compile`, each op that XLA can compile (all but NO_XLA_OPS) is compiled on its
    own, with its `xla_kernel` when it has one (a formulation only XLA can run, such as
    random_crop's window gather). One function per op, not one for the whole spec: fusing ops
    across XLA's choices was up to 20x slower in some orders (flip_lr before random_crop), and
    separately they were within 30% of the best fused order. The results are the same as
    without XLA: the same bytes for uint8 and for moved pixels (the ops draw integers, see
    _uniform); float arithmetic (brightness, contrast on float images) may differ in the last
    bit, as XLA fuses it differently.
    """
    ops, names = [], []
    for name, kwargs in parse_spec(spec):
        names.append(name)
        factory = OPS[name]
        accepted = inspect.signature(factory).parameters
        offered = {k: v for k, v in common.items() if k in accepted and k not in kwargs}
        ops.append(factory(**offered, **kwargs))
    if not ops:
        return identity
    if jit_compile:
        ops = [op if name in NO_XLA_OPS else _compiled(getattr(op, "xla_kernel", op), op)
               for name, op in zip(names, ops)]

    def _augment(images, labels, seed):
        seed = _seed(seed)
        for i, op in enumerate(ops):
            op_seed = tf.random.experimental.stateless_fold_in(
                seed, tf.constant(i, tf.int64), alg=RNG_ALG
            )
            images, labels = op(images, labels, op_seed)
        return images, labels

    return _augment


def _compiled(kernel: Op, plain: Op) -> Op:
    """`kernel` compiled by XLA; `plain` (the op's TensorFlow formulation) for empty batches,
    which XLA kernels such as a window gather cannot express (there is no image to slice).

    On 2 CPU cores, random_crop(pad=16)|flip_lr on uint8 256 x 3 x 224 x 224 in tf.data went
    from ~5,500-7,000 img/s (TensorFlow kernels) to ~24,000 (from the in-memory table), and
    streaming from shards with it from ~2,600 to ~7,000-8,500.
    """
    compiled = tf.function(kernel, jit_compile=True, autograph=False)

    def _run(images, labels, seed):
        images = tf.convert_to_tensor(images)
        if images.shape[0] == 0:
            return plain(images, labels, seed)
        # DevicePreprocess has no labels, and XLA functions take tensors only: an empty
        # stand-in goes through (ops XLA compiles never change labels) and None comes back.
        given = tf.zeros([0]) if labels is None else labels

        def xla():
            return compiled(images, given, seed)

        def fallback():
            return plain(images, given, seed)

        if images.shape[0] is None:  # unknown until run time (inside tf.data): decide then
            out_images, out_labels = tf.cond(tf.shape(images)[0] > 0, xla, fallback)
        else:
            out_images, out_labels = xla()
        return out_images, (None if labels is None else out_labels)

    return _run


# ---------------------------------------------------------------------------------------------
# Device side: uint8 CHW in, normalised float out, inside the model
# ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="pipeline")
class DevicePreprocess(keras.layers.Layer):
    """The model's first layer: uint8 [B, 3, H, W] -> (augmented) normalised float images.

    Casting, normalising and transposing on the accelerator keeps the host's tf.data work at
    uint8 (a quarter of float32's bytes to copy to the device) and moves the float math where
    it is nearly free. `augment` (a spec, as for `build`) runs only when training=True, on
    float32 pixels in the 0-255 scale before normalising, so zero padding is black as in tf.data.

    Only ops that leave labels alone are allowed: a layer sees the images but not the labels,
    so mixup/cutmix would mix the pixels and silently leave the labels unmixed. They belong in
    the tf.data pipeline (`build(spec, num_classes=...)` applied after batching).

    Args:
      mean, std: per-channel statistics on the 0-255 scale (the manifest's mean / std).
      data_format: "channels_last" outputs NHWC (what Keras conv layers expect by default),
        "channels_first" keeps NCHW.
      augment: a spec such as DEFAULT_TRAIN_AUGMENT, or None.
      seed: seeds the layer's keras.random.SeedGenerator; each training call draws a fresh
        [2] seed from it, so steps differ and a seeded run repeats.
      num_classes: offered to the ops (none of the allowed ones needs it today).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        data_format: str = "channels_last",
        augment: str | Sequence[str] | None = None,
        seed: int | None = None,
        num_classes: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mean is None or std is None:
            raise ValueError(
                f"DevicePreprocess: mean={mean!r}, std={std!r}; pass the per-channel statistics "
                f"on the 0-255 scale (manifest.mean / manifest.std)"
            )
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise ValueError(
                f"DevicePreprocess: mean={self.mean} and std={self.std} need one value per "
                f"channel each and std > 0 (take both from the dataset manifest)"
            )
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"DevicePreprocess: data_format={data_format!r}; use 'channels_last' or "
                f"'channels_first'"
            )
        self.data_format = data_format
        self.augment = list(augment) if isinstance(augment, (list, tuple)) else augment
        self.seed = seed
        self.num_classes = num_classes
        names = [name for name, _ in parse_spec(augment)]
        label_ops = [name for name in names if name in LABEL_OPS]
        if label_ops:
            raise ValueError(
                f"DevicePreprocess: augment={augment!r} contains {', '.join(label_ops)}, which "
                f"change labels, and a layer never sees the labels; run them in the tf.data "
                f"pipeline instead (augment.build(spec, num_classes=...) after batching)"
            )
        self._augment_op = build(augment, num_classes=num_classes)
        if any(name in NO_XLA_OPS for name in names):
            self.supports_jit = False
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        channels = len(self.mean)
        if images.shape.rank != 4 or images.shape[1] not in (None, channels):
            raise ValueError(
                f"DevicePreprocess expects [B, {channels}, H, W] channels-first images (the "
                f"records' uint8 CHW layout), got shape {images.shape}; it transposes to NHWC "
                f"itself"
            )
        pixels = tf.cast(images, tf.float32)
        if training and self._augment_op is not identity:
            # The SeedGenerator's state is a variable that advances on every draw, inside
            # tf.function / model.fit graphs too, so each step gets a new [2] seed.
            seed = keras.random.randint(
                (2,), 0, DEVICE_SEED_MAX, dtype="int32", seed=self._seed_generator
            )
            pixels, _ = self._augment_op(pixels, None, seed)
        mean = tf.constant(self.mean, tf.float32, shape=[1, channels, 1, 1])
        std = tf.constant(self.std, tf.float32, shape=[1, channels, 1, 1])
        pixels = (pixels - mean) / std
        if self.data_format == "channels_last":
            pixels = tf.transpose(pixels, [0, 2, 3, 1])
        return tf.cast(pixels, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch, channels, height, width = input_shape
        if self.data_format == "channels_last":
            return (batch, height, width, channels)
        return (batch, channels, height, width)

    def get_config(self):
        config = super().get_config()
        config.update(
            mean=self.mean,
            std=self.std,
            data_format=self.data_format,
            augment=self.augment,
            seed=self.seed,
            num_classes=self.num_classes,
        )
        return config
