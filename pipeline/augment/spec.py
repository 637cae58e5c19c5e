"""Specs: `"random_crop(pad=8)|flip_lr"` -> [(name, kwargs)] -> one op, XLA-compiled per op."""

from __future__ import annotations

import ast
import inspect
from typing import Any, Sequence

import tensorflow as tf

from pipeline import errors
from pipeline.augment.common import as_seed, fold_seed
from pipeline.augment.registry import NO_XLA_OPS, OPS, Op, identity

# The default training augmentation: a random translation by up to 16 px (zero-padded crop)
# and a random horizontal mirror, the classic CIFAR/ResNet recipe. Cheap enough for a 2-core
# host to keep ahead of an accelerator: all uint8, no float conversion, and under XLA the two
# ops fuse into one gather pass over the batch. In tf.data on 2 cores, batches of
# 256 x 3 x 224 x 224: about 11,000-16,000 img/s (5,500-7,000 without XLA); the random-access
# reader does both itself as it copies each record (pipeline.dataset.fused): ~25,000 img/s.
# random_resized_crop is the stronger ImageNet recipe; in tf.data it resamples in float
# (~900 img/s), in the random-access reader with OpenCV (~7,000-9,000 img/s on 2 cores).
DEFAULT_TRAIN_AUGMENT = "random_crop(pad=16)|flip_lr"


def _pipe_items(node: ast.expr) -> list[ast.expr]:
    """`a | b | c` parses as ((a | b) | c): flatten it back to [a, b, c]."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _pipe_items(node.left) + _pipe_items(node.right)
    return [node]


def _literal(node: ast.expr, op: str, spec: str):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError) as err:
        raise errors.ConfigError(
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
            raise errors.ConfigError(
                f"augment op {name!r} in {spec!r}: no *args or **kwargs in specs")
        args = [_literal(arg, name, spec) for arg in node.args]
        kwargs = {kw.arg: _literal(kw.value, name, spec) for kw in node.keywords}
    else:
        raise errors.ConfigError(
            f"cannot parse {ast.unparse(node)!r} in augment spec {spec!r}: write each op as "
            f"name or name(arg=value), joined by '|', e.g. {DEFAULT_TRAIN_AUGMENT!r}"
        )
    if name not in OPS:
        raise errors.ConfigError(
            f"unknown augment op {name!r} in {spec!r}; known ops: {', '.join(sorted(OPS))}"
        )
    signature = inspect.signature(OPS[name])
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise errors.ConfigError(
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
        raise errors.ConfigError(
            f"augment spec must be a string or a list of strings, got {spec!r}")
    parsed = []
    for item in items:
        if not isinstance(item, str):
            raise errors.ConfigError(
                f"augment spec items must be strings, got {item!r} in {spec!r}")
        if not item.strip():
            continue
        try:
            tree = ast.parse(item.strip(), mode="eval")
        except SyntaxError as err:
            raise errors.ConfigError(
                f"cannot parse augment spec {item!r} ({err.msg}): write each op as name or "
                f"name(arg=value), joined by '|', e.g. {DEFAULT_TRAIN_AUGMENT!r}"
            ) from err
        parsed.extend(_parse_op(node, item) for node in _pipe_items(tree.body))
    return parsed


def build(spec: str | Sequence[str] | None, *, jit_compile: bool = True, skip: int = 0,
          **common) -> Op:
    """Composes the ops of `spec` into one `op(images, labels, seed) -> (images, labels)`.

    `common` holds arguments offered to every op whose factory takes them (e.g.
    `num_classes=manifest.num_classes` reaches mixup and cutmix, not flip_lr); an argument
    written in the spec wins. Op i runs with the seed `fold_seed(seed, i)` (a fold_in), so ops
    never share random numbers and adding an op at the end leaves the earlier ones unchanged.
    An empty spec gives `identity`. `skip` leaves out the first ops (done elsewhere: the
    random-access reader crops and flips as it reads); the rest keep their seeds.

    With `jit_compile`, each op that XLA can compile (all but NO_XLA_OPS) is compiled on its
    own, with its `xla_kernel` when it has one (a formulation only XLA can run, such as
    random_crop's window gather). One function per op, not one for the whole spec: fusing ops
    across XLA's choices was up to 20x slower in some orders (flip_lr before random_crop), and
    separately they were within 30% of the best fused order. The results are the same as
    without XLA: the same bytes for uint8 and for moved pixels (the ops draw integers, see
    common.uniform); float arithmetic (brightness, contrast on float images) may differ in the last
    bit, as XLA fuses it differently.
    """
    ops, names = [], []
    for name, kwargs in parse_spec(spec):
        names.append(name)
        factory = OPS[name]
        accepted = inspect.signature(factory).parameters
        offered = {k: v for k, v in common.items() if k in accepted and k not in kwargs}
        ops.append(factory(**offered, **kwargs))
    if len(ops) <= skip:
        return identity
    if jit_compile:
        ops = [_with_xla(name, op) for name, op in zip(names, ops)]

    def _augment(images, labels, seed):
        seed = as_seed(seed)
        images = tf.convert_to_tensor(images)
        shape = images.shape
        for i, op in enumerate(ops[skip:], skip):
            images, labels = op(images, labels, fold_seed(seed, i))
            # Ops keep the images' shape (but the sizing ones, which set their own), and XLA
            # calls and conds hide it from shape inference; a model (a keras.applications
            # one, say) needs it known.
            if images.shape.is_compatible_with(shape):
                images.set_shape(shape)
            shape = images.shape
        return images, _with_batch(labels, shape[0])

    return _augment


def _with_batch(labels, batch):
    """Labels with the images' batch size in their static shape, when it is known."""
    if labels is None or batch is None:
        return labels
    labels = tf.convert_to_tensor(labels)
    labels.set_shape([batch, *labels.shape[1:]])
    return labels


def _with_xla(name: str, op: Op) -> Op:
    """The op as build runs it with jit_compile: as is for NO_XLA_OPS; an op made of other ops
    (trivial_augment) gives its `xla_parts`, the version that compiles each part on its own
    (for the reason build compiles each op of a spec apart); any other op is compiled whole."""
    if name in NO_XLA_OPS:
        return op
    parts = getattr(op, "xla_parts", None)
    if parts is not None:
        return parts
    return compile_op(getattr(op, "xla_kernel", op), op)


def compile_op(kernel: Op, plain: Op) -> Op:
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
