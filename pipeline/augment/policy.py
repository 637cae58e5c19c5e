"""trivial_augment: per image one op, chosen uniformly from a list (Mueller & Hutter 2021).

TrivialAugment picks, for each image, one augmentation and a strength uniformly at random, and
has no other parameter to search. Here every candidate runs on the whole batch and each image
takes its row from the candidate it drew: one tf.where per candidate on a [B] choice, no
per-image branches (which would be a Python loop or tf.map_fn, see pipeline.augment).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from pipeline import errors
from pipeline.augment.common import RNG_ALG, fold_seed
from pipeline.augment.registry import LABEL_OPS, NO_XLA_OPS, OPS, Op, register
from pipeline.augment.spec import compile_op, parse_spec

# The default candidates: the colour and rotation ops of TrivialAugment's list, at the maximum
# strengths of RandAugment's space (the paper's "TA (RA)"; its wide default goes to 135 degrees
# and factors 1 +- 0.99): rotate 30 degrees, enhancement factors 1 +- 0.9 (PIL's `color`
# enhancement is saturation). hue is not in TrivialAugment's list; a small shift is a mild
# colour change in its spirit. Left out: flips (the default augmentation
# already has flip_lr, and flip_ud turns photographs upside down), random_erasing (used after
# TrivialAugment, not instead of it: append it to the spec), and ops this package does not have
# (shear, translate, posterize, solarize, equalize, autocontrast, sharpness).
DEFAULT_CANDIDATES = (
    "identity",
    "rotate(degrees=30)",
    "brightness(max_delta=0.9)",
    "contrast(lower=0.1, upper=1.9)",
    "saturation(lower=0.1, upper=1.9)",
    "hue(max_delta=0.1)",
)


@register("trivial_augment")
def get_trivial_augment(ops: str | Sequence[str] = DEFAULT_CANDIDATES) -> Op:
    """TrivialAugment: each image goes through one op of `ops`, drawn uniformly per image.

    `ops` is a spec (a '|'-joined string or a list, as for build) whose ops are the candidates,
    each with its own arguments; list an op twice to draw it twice as often. The strength is
    the op's own per-image draw over its range (brightness(max_delta=0.9) scales by a factor
    uniform in [0.1, 1.9]): TrivialAugment's uniform strength with a random sign, except that
    it is continuous rather than 31 levels, and ranges are written per op rather than derived
    from one shared magnitude scale.

    Cost: every candidate runs on the whole batch and all but one result per image is thrown
    away, so the op costs the sum of its candidates (the default 6: about rotate + hue + 4
    cheap ones). Candidate i runs with the seed fold_seed(seed, i), the choice is drawn from
    fold_seed(seed, len(ops)): adding a candidate changes the choices, not the others' draws.
    Candidates must keep the labels and compile with XLA (in a model that Keras compiles with
    XLA, DevicePreprocess runs trivial_augment as part of it), so mixup, cutmix,
    random_resized_crop and trivial_augment itself are refused.
    """
    candidates = [_candidate(name, kwargs) for name, kwargs in parse_spec(ops)]
    if not candidates:
        raise errors.ConfigError(
            f"trivial_augment: ops={ops!r} lists no candidate; give at least one, e.g. "
            f"{'|'.join(DEFAULT_CANDIDATES[:3])!r}")
    # What spec.build runs with jit_compile: each candidate compiled by XLA on its own (with its
    # xla_kernel, as build would), the selection outside. Compiled as one function, XLA fused
    # the selects into the candidates and ran 2-2.5x slower (6 default candidates, uint8
    # 64 x 3 x 224 x 224, 2 cores: ~500 against ~1,000 img/s; ~250 without XLA).
    compiled = [compile_op(getattr(op, "xla_kernel", op), op) for op in candidates]

    def _trivial_augment(images, labels, seed):
        return _choose(candidates, images, labels, seed)

    def _trivial_augment_xla_parts(images, labels, seed):
        return _choose(compiled, images, labels, seed)

    _trivial_augment.xla_parts = _trivial_augment_xla_parts
    return _trivial_augment


def _candidate(name: str, kwargs: dict) -> Op:
    refused = {**{op: "cannot compile with XLA" for op in NO_XLA_OPS},
               **{op: "changes labels" for op in LABEL_OPS},  # the reason for mixup, cutmix
               "trivial_augment": "would nest"}
    if name in refused:
        allowed = sorted(set(OPS) - set(refused))
        raise errors.ConfigError(
            f"trivial_augment: candidate {name!r} {refused[name]}; candidates can be "
            f"{', '.join(allowed)}")
    return OPS[name](**kwargs)


def _choose(candidates: Sequence[Op], images, labels, seed):
    """Each image from the candidate it drew: candidate i on the whole batch, seed
    fold_seed(seed, i); the [B] choice from fold_seed(seed, len(candidates))."""
    images = tf.convert_to_tensor(images)
    count = len(candidates)
    choice = tf.random.stateless_uniform(  # integers: the same draw under XLA and on CPU
        [tf.shape(images)[0]], fold_seed(seed, count), minval=0, maxval=count, dtype=tf.int32,
        alg=RNG_ALG)
    out = images
    for i, op in enumerate(candidates):  # over the candidates when traced, not over images
        candidate, _ = op(images, labels, fold_seed(seed, i))
        out = tf.where(tf.equal(choice, i)[:, None, None, None], candidate, out)
    out.set_shape(images.shape)
    return out, labels
