r"""Batched augmentation ops in a registry, composed from a spec string.

    op = augment.build("random_crop(pad=16)|flip_lr", num_classes=manifest.num_classes)
    images, labels = op(images, labels, seed)

Every op works on a whole batch, as the reader produces it after `batch -> parse`:

    images: [B, C, H, W] channels first, uint8 inside tf.data, or float32 on the device; float
            images are on the same 0-255 scale (DevicePreprocess augments before normalising)
    labels: int64 [B] class indices, or float32 [B, K] soft / one-hot rows
    seed:   int32 or int64 [2], the seed of the stateless random ops

and returns `(images, labels)` with the images' dtype and shape unchanged (but for the ops
that size them: resize, center_crop, random_resized_crop(size=S)). Only mixup and cutmix
touch the labels: they return float32 [B, K] rows.

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

    registry.py     register, OPS (name -> factory), which ops change labels or skip XLA;
                    identity
    common.py       seeds, stateless random numbers, the pixel scale, argument checks
    counter.py      counter-based random numbers, alike in TensorFlow and numpy: the draws of
                    the ops the random-access reader also does itself (random_crop, flip_lr)
    boxes.py        random_resized_crop's boxes (torchvision's sampler, TensorFlow and numpy)
                    and its bilinear resampling
    geometric.py    flip_lr, flip_ud, random_crop, random_resized_crop, rotate
    photometric.py  brightness, contrast, saturation, hue
    erasing.py      random_erasing
    policy.py       trivial_augment (one op per image, drawn from a list of candidates)
    mixing.py       mixup, cutmix (they change labels: tf.data only)
    resizing.py     resize, center_crop, sized_spec (training at another resolution) and
                    EvalResize (the model's evaluation-time centre crop)
    spec.py         parse_spec and build: a spec string -> one op, each op XLA-compiled
    device.py       DevicePreprocess, the model's first layer (cast, normalise, augment)

This package imports TensorFlow and Keras, and nothing of ours but pipeline.errors.
"""

# Importing the op modules registers their ops.
from pipeline.augment import erasing, geometric, mixing, photometric, policy  # noqa: F401
from pipeline.augment import resizing  # noqa: F401
from pipeline.augment.common import RNG_ALG
from pipeline.augment.device import DevicePreprocess
from pipeline.augment.registry import LABEL_OPS, NO_XLA_OPS, OPS, Op, identity, register
from pipeline.augment.resizing import EvalResize, sized_spec
from pipeline.augment.spec import DEFAULT_TRAIN_AUGMENT, build, parse_spec

__all__ = ["DEFAULT_TRAIN_AUGMENT", "DevicePreprocess", "EvalResize", "LABEL_OPS", "NO_XLA_OPS",
           "OPS", "Op", "RNG_ALG", "build", "identity", "parse_spec", "register", "sized_spec"]
