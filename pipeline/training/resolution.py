"""Training at another resolution than the stored one, and progressive resizing.

    from pipeline.training import train_and_evaluate
    train_and_evaluate(data_dir="workspace/shards/leaves", workdir="workspace/runs/leaves-160",
                       image_size=160, eval_image_size=224, eval_crop=0.875,
                       progressive_resizing=(128, 2, 8))

FFCV's ResNet-50 recipe trains at 160-192 and tests at 224+, growing the training size
during the run (low resolution early, when the model learns coarse features fast, full
resolution late); timm trains at --img-size and evaluates a centre crop (crop_pct). Here the
training batches are sized in the input pipeline (augment.sized_spec: random_resized_crop
outputs the size, else a resize ends the spec) and the model takes any size; evaluation,
prediction and the exported model see the central `eval_crop` of each stored image resized to
`eval_image_size`, inside the model (augment.EvalResize). A size change starts a new fit, as
the backbone's unfreezing does (legs.training_legs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from pipeline import augment
from pipeline.training.settings import TrainingError

# Progressive sizes are rounded to a multiple of this (FFCV rounds to 32: the strides of a
# ResNet divide it, so every stage sees whole feature maps).
DEFAULT_SIZE_STEP = 32


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The run's image sizes: `stored` (the manifest's side), `image_size` (training, at the
    end of a progressive schedule), `eval_image_size` and `eval_crop` (evaluation), and
    `progressive` (min_size, start_epoch, end_epoch[, step]): min_size until start_epoch,
    then growing linearly to image_size at end_epoch, in multiples of step."""

    stored: int
    image_size: int | None = None
    eval_image_size: int | None = None
    eval_crop: float = 1.0
    progressive: tuple[int, ...] | None = None

    @property
    def train_size(self) -> int:
        return self.image_size or self.stored

    @property
    def eval_size(self) -> int:
        return self.eval_image_size or self.train_size

    @property
    def any_size(self) -> bool:
        """Whether the model must take other sizes than the stored one."""
        return (self.progressive is not None or self.train_size != self.stored
                or self.eval_resize is not None)

    @property
    def eval_resize(self) -> tuple[int, float] | None:
        """(size, crop) of the model's evaluation-time resize, or None when it sees the
        stored images as they are."""
        if self.eval_size == self.stored and self.eval_crop == 1.0:
            return None
        return self.eval_size, self.eval_crop

    def size_at(self, epoch: int) -> int:
        """The training size of `epoch` (0-based)."""
        if self.progressive is None:
            return self.train_size
        low, start, end, step = (*self.progressive, DEFAULT_SIZE_STEP)[:4]
        if epoch <= start:
            return low
        if epoch >= end:
            return self.train_size
        size = low + (self.train_size - low) * (epoch - start) / (end - start)
        return min(self.train_size, max(low, math.floor(size / step + 0.5) * step))

    def train_augment(self, spec, epoch: int):
        """The training spec of `epoch`: `spec` as it is at the stored size, else ending at
        that epoch's size."""
        size = self.size_at(epoch)
        return spec if size == self.stored else augment.sized_spec(spec, size)


def make_resolution(stored_shape: Sequence[int], *, image_size, eval_image_size, eval_crop,
                    progressive_resizing) -> Resolution:
    """A checked Resolution for images of `stored_shape` (C, H, W)."""
    _, height, width = stored_shape
    for name, value in (("image_size", image_size), ("eval_image_size", eval_image_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise TrainingError(f"{name}={value!r}: a side in pixels (an int >= 1), or None "
                                f"for the stored {height}")
    if not 0 < eval_crop <= 1:
        raise TrainingError(f"eval_crop={eval_crop!r}: the share of each side evaluation "
                            "keeps, in (0, 1] (timm's crop_pct, e.g. 0.875)")
    resolution = Resolution(height, image_size, eval_image_size, float(eval_crop),
                            check_progressive(progressive_resizing))
    if resolution.progressive and resolution.progressive[0] > resolution.train_size:
        raise TrainingError(f"progressive_resizing={progressive_resizing!r} starts above "
                            f"image_size={resolution.train_size}: it grows to image_size")
    if height != width and resolution.any_size:
        raise TrainingError(f"the stored images are {height}x{width}; other training or "
                            "evaluation sizes need square ones (python -m pipeline.write "
                            "stores image_size x image_size)")
    return resolution


def check_progressive(progressive) -> tuple[int, ...] | None:
    if progressive is None:
        return None
    values = tuple(progressive) if isinstance(progressive, (list, tuple)) else ()
    if len(values) not in (3, 4) or not all(isinstance(v, int) and v >= 0 for v in values) or (
            values[0] < 1 or values[2] <= values[1] or (len(values) == 4 and values[3] < 1)):
        raise TrainingError(
            f"progressive_resizing={progressive!r}: (min_size, start_epoch, end_epoch) or "
            "(min_size, start_epoch, end_epoch, step), e.g. (160, 2, 8): min_size until "
            "start_epoch, then growing to image_size at end_epoch in multiples of step "
            f"(default {DEFAULT_SIZE_STEP})")
    return values
