"""The trainer's settings grouped by what they configure, and its error type.

`train_and_evaluate` takes flat keyword arguments, one gin binding each
(`train_and_evaluate.depth = 18`), and builds these frozen objects from them once
(`from_arguments`: each field takes the argument of its name), which are what the phases of a
run receive: the network (`ModelSettings`), the optimiser and its schedule
(`OptimizerSettings`); the input's settings are the reader's own
(pipeline.dataset.ReadOptions).

Why gin does not configure these dataclasses directly (`ModelSettings.depth = 18`): a user's
.gin file would have to know which object each option lives in, several namespaces instead of
one, and every existing `train_and_evaluate.*` binding would break or need a second name; the
defaults would live in each dataclass while `train.py --help` lists the function's. So the
flat surface stays the one users write, with one default per option, and the grouping is ours
to change. A field and a parameter of one name must agree on its default: the trainer's tests
check that every field here is a parameter of train_and_evaluate (or one the run derives).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras

from pipeline import errors

# The batch size the base learning rate is quoted for (Goyal et al. 2017: lr = 0.1 x B / 256).
LR_REFERENCE_BATCH = 256


class TrainingError(errors.PipelineError, ValueError):
    """The run cannot start as asked (e.g. a workdir that belongs to another dataset)."""


def from_arguments(settings_type: type, arguments: Mapping[str, Any], **derived: Any):
    """A `settings_type` whose fields take the `arguments` of the same names (others are left
    out); `derived`: fields the run computes, which win over an argument of their name."""
    names = {field.name for field in dataclasses.fields(settings_type)}
    return settings_type(**{**{name: value for name, value in arguments.items()
                               if name in names}, **derived})


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """The network: build_resnet's arguments besides what the manifest says."""

    depth: int = 50
    width: int = 64
    stem: str = "imagenet"
    input_pool: int = 1
    data_format: str = "auto"
    weight_decay: float = 1e-4
    augment: str | Sequence[str] | None = None  # run on the device (DevicePreprocess)
    seed: int = 0  # of the device-side augmentation
    backbone: str = "resnet"  # ours (depth, width, stem, ...), or a keras.applications name
    weights: str | None = None  # a keras.applications backbone's: None, "imagenet" or a file
    backbone_lr_factor: float = 1.0  # a keras.applications backbone's share of the rate
    any_size: bool = False  # takes images of any side (trained at other sizes: resolution.py)
    eval_resize: tuple[int, float] | None = None  # (size, crop) evaluation sees (EvalResize)


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """SGD with momentum on a linear warmup then cosine decay, and the loss's smoothing."""

    base_learning_rate: float = 0.1
    warmup_epochs: float = 5.0
    momentum: float = 0.9
    label_smoothing: float = 0.1

    def peak_learning_rate(self, batch_size: int) -> float:
        """base_learning_rate scaled linearly with the batch (Goyal et al. 2017)."""
        return self.base_learning_rate * batch_size / LR_REFERENCE_BATCH

    def schedule(self, batch_size: int, steps_per_epoch: int, epochs: int):
        return warmup_cosine(self.peak_learning_rate(batch_size),
                             warmup_steps=round(self.warmup_epochs * steps_per_epoch),
                             total_steps=epochs * steps_per_epoch)


def warmup_cosine(peak: float, *, warmup_steps: int, total_steps: int):
    """Linear warmup from 0 to `peak`, then cosine decay to 0 at `total_steps`."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=peak, warmup_steps=warmup_steps)
