"""The registry of augmentation ops: name -> factory, and where each op can run.

    @register("invert")
    def get_invert() -> Op:
        return lambda images, labels, seed: (255 - images, labels)

An op factory takes the op's arguments (as written in a spec, `random_crop(pad=8)`) and
returns the op, `op(images, labels, seed) -> (images, labels)` (the contract is in
pipeline.augment's docstring). Registering a new op in any module the program imports makes
it usable in specs, gin files and DevicePreprocess; nothing else changes. spec.build compiles
each op with XLA unless registered with xla=False; an op may carry an `xla_kernel` (a version
only XLA runs, as random_crop's) or `xla_parts` (a composite that compiles its parts apart, as
trivial_augment).
"""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from pipeline import errors

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
            raise errors.ConfigError(
                f"augment op {name!r} is registered twice: by {_where(OPS[name])} and by "
                f"{_where(factory)}; give the new op a name of its own")
        OPS[name] = factory
        if changes_labels:
            LABEL_OPS.add(name)
        if not xla:
            NO_XLA_OPS.add(name)
        return factory

    return _register


def _where(factory) -> str:
    return f"{factory.__module__}.{factory.__qualname__}"


def identity(images, labels, seed):
    """The op of an empty spec."""
    del seed
    return images, labels


@register("identity")
def get_identity() -> Op:
    """The op that changes nothing, by name: trivial_augment's "leave this image" candidate."""
    return identity
