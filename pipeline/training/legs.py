"""A run as a few `model.fit` calls (legs): what each covers, and where its input starts.

A run is a stream of batches (the reader's start_batch counts them across epochs) and a
step count. Continuing at step S means: the weights and optimizer state of step S (put back
by run_state.restore), the batches from S on, and the epochs cut where an uninterrupted run
cuts them. Keras fit has no "initial step", so a run resumed inside epoch E trains the rest
of E as a fit of its own (`Leg`), then the epochs after it; a new fit also starts where the
backbone's freeze ends and where the training image size changes (resolution.py).

Each leg's input starts at its own batch when the reader can position it (random access or
the in-memory table); a streamed split cannot be, so a resumed run reads it from its start
(start_batch_for), and deterministic=True refuses it (why_unpositioned). With
`deterministic=True` (op determinism, and an input that is a pure function of the step) the
result is bit-identical to a run that was never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import keras

from pipeline.dataset import ReadPlan
from pipeline.training import backbones
from pipeline.training.settings import TrainingError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Leg:
    """One model.fit call: `epochs` (Keras' meaning: the epoch to stop before) from
    `initial_epoch`, `steps_per_epoch` each, reading the run's batches from `start_batch`;
    `frozen`: with the backbone frozen (the first freeze_epochs epochs)."""

    start_batch: int
    initial_epoch: int
    epochs: int
    steps_per_epoch: int
    frozen: bool = False
    image_size: int | None = None  # the side it trains at, when the run changes sizes


def training_legs(step: int, steps_per_epoch: int, epochs: int, freeze_epochs: int = 0,
                  size_at: Callable[[int], int] | None = None) -> list[Leg]:
    """The fits that take a run from `step` to the end of `epochs`: the rest of a partial
    epoch, then whole ones, cut where the backbone's freeze ends and where the training image
    size `size_at(epoch)` changes."""
    def phase(epoch):
        return epoch < freeze_epochs, None if size_at is None else size_at(epoch)

    epoch, within = divmod(step, steps_per_epoch)
    legs = []
    if within and epoch < epochs:
        legs.append(Leg(step, epoch, epoch + 1, steps_per_epoch - within, *phase(epoch)))
        epoch += 1
    while epoch < epochs:
        stop = epoch + 1
        while stop < epochs and phase(stop) == phase(epoch):
            stop += 1
        legs.append(Leg(epoch * steps_per_epoch, epoch, stop, steps_per_epoch, *phase(epoch)))
        epoch = stop
    return legs


def set_frozen(net: keras.Model, frozen: bool) -> None:
    """Freeze or unfreeze a keras.applications backbone (nothing for our ResNets). Keras
    traces the train step with the trainable variables of the time, so it is traced again."""
    base = backbones.backbone_of(net)
    if base is None or base.trainable != frozen:
        return
    base.trainable = not frozen
    net.train_function = None
    log.info("backbone %s", "frozen: training the head only" if frozen else "unfrozen")


def why_unpositioned(plan: ReadPlan) -> str | None:
    """None when the plan's training reads can start at any batch (random access, the
    table); else why not (a streamed split), which deterministic=True refuses."""
    if plan.positioned:
        return None
    if plan.options.deterministic:
        raise TrainingError(f"deterministic=True needs an input read by position, and "
                            f"{plan.split!r} is streamed: {plan.access.reason}")
    return plan.access.reason


def start_batch_for(leg: Leg, unpositioned: str | None, split: str, resumed: bool) -> int:
    """The leg's first batch where the reader can find it; a streamed split cannot be
    positioned (`unpositioned` says why), so a resumed run reads it from its start."""
    if unpositioned is None or leg.start_batch == 0:
        return leg.start_batch
    if resumed:
        log.warning("split %r is streamed (%s): the resumed run continues at its step with "
                    "batches in a new order, not those an uninterrupted run would read",
                    split, unpositioned)
    return 0
