"""What the reader can be asked, as small frozen objects, and the reader's error type.

`make_dataset` takes flat keyword arguments (one gin binding per line, one word per option in
a notebook) and groups them here once: `ReadOptions` holds everything but the split and the
batch size, with the damaged-shard policy (`DamagedShards`) and the tf.data service
(`ServiceSettings`) as objects of their own, each checked when it is made.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
from typing import Sequence

from absl import logging

from pipeline import errors
from pipeline.augment import DEFAULT_TRAIN_AUGMENT
from pipeline.core import schema

# on_corrupt="skip" tolerates losing this share of a split's records to damaged shards.
DEFAULT_MAX_CORRUPT_FRACTION = 0.01
ON_CORRUPT = ("fail", "skip")
SERVICE_MODES = ("distributed_epoch", "parallel_epochs")
# The batches' image layout: the stored [B, 3, H, W] (the trainer's model and DevicePreprocess
# take it), or Keras' default [B, H, W, 3] for a model of one's own.
CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
DATA_FORMATS = (CHANNELS_FIRST, CHANNELS_LAST)
# Seeds drawn for an unseeded training run (still stateless ops: see make_dataset's `seed`).
FRESH_SEED_MAX = 2**31


class DatasetError(errors.PipelineError, ValueError):
    """The dataset cannot be read as asked (missing shards, too few shards for the workers)."""


@dataclasses.dataclass(frozen=True)
class DamagedShards:
    """What a damaged record (failing its CRC, cut short, a label outside the manifest's
    classes) does to reading.

    policy "fail": reading stops with an error naming the shard file and the record (a
    DatasetError from make_dataset when the damage is found up front, by the in-memory table's
    load or a record index's build; else tf.errors.InvalidArgumentError while iterating, see
    damaged.damage_named). "skip": the damaged records are left out, with a warning per shard
    naming it and the records lost; losing more than `max_fraction` of the split is an error.
    Random access and the table lose exactly the damaged records, streaming each damaged shard
    from its first bad record on (see damaged.py). The dataset's length counts only the
    records read.
    """

    policy: str = "fail"
    max_fraction: float = DEFAULT_MAX_CORRUPT_FRACTION

    def __post_init__(self):
        if self.policy not in ON_CORRUPT:
            raise DatasetError(f"on_corrupt={self.policy!r}: use one of {ON_CORRUPT}")

    @property
    def skip(self) -> bool:
        return self.policy == "skip"


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """A tf.data service that runs the pipeline: reading, shuffling, parsing and augmentation
    run on its workers (python -m pipeline.service), only the prefetch stays here.

    address: "grpc://HOST:PORT" of the dispatcher.
    processing_mode: "distributed_epoch": the workers share the shard files, every record is
      read once per pass (in training each worker drops its own last partial batch); if a
      worker dies, the files it was reading are lost for that pass (at most once).
      "parallel_epochs": every worker reads the whole split, each in its own file order.
    job_name: consumers with the same job name share one job's data (one per training run).
    """

    address: str
    processing_mode: str = "distributed_epoch"
    job_name: str | None = None

    def __post_init__(self):
        check_processing_mode(self.processing_mode)

    @classmethod
    def from_args(cls, address: str | None, processing_mode: str = "distributed_epoch",
                  job_name: str | None = None) -> "ServiceSettings | None":
        """The settings for make_dataset's flat arguments; None without an address (the mode
        is checked anyway: a typo must not wait until a service is used)."""
        check_processing_mode(processing_mode)
        return cls(address, processing_mode, job_name) if address else None


def check_processing_mode(processing_mode: str) -> None:
    if processing_mode not in SERVICE_MODES:
        raise DatasetError(f"processing_mode={processing_mode!r}: use one of {SERVICE_MODES}")


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """Everything make_dataset is asked besides data_dir, split, batch_size and training (see
    make_dataset for what each means)."""

    cache: str | None = None
    access: str = "auto"
    start_batch: int | None = None
    shuffle_buffer: int | None = None
    seed: int | None = None
    deterministic: bool | None = None
    augment: str | Sequence[str] | None = DEFAULT_TRAIN_AUGMENT
    num_parallel_reads: int | None = None
    to_device: str | None = None
    damaged: DamagedShards = DamagedShards()
    service: ServiceSettings | None = None
    fold: int | None = None
    data_format: str = CHANNELS_FIRST

    def __post_init__(self):
        check_data_format(self.data_format)

    def for_training(self, training: bool) -> "ReadOptions":
        """The defaults that depend on the mode filled in: deterministic only when evaluating,
        and a fresh seed for an unseeded training run."""
        deterministic = (not training) if self.deterministic is None else self.deterministic
        seed = self.seed
        if seed is None and training:
            seed = random.SystemRandom().randrange(FRESH_SEED_MAX)
        return dataclasses.replace(self, deterministic=deterministic, seed=seed)


def check_data_format(data_format: str) -> None:
    if data_format not in DATA_FORMATS:
        raise errors.ConfigError(
            f"data_format={data_format!r}: use 'channels_first' (images [B, 3, H, W], as "
            "stored) or 'channels_last' ([B, H, W, 3], what a Keras model's Input((H, W, 3)) "
            "takes)")


def read_manifest(data_dir: str, fold: int | None = None) -> schema.Manifest:
    """The manifest as fold `fold` reads it (schema.Manifest.for_fold), a fold the dataset
    does not have a DatasetError. The trainer and predict read their folds through it."""
    try:
        manifest = schema.read_manifest(data_dir)
        if manifest.format_version < schema.CLASS_FORMAT_VERSION:
            _say_older_format(os.path.abspath(data_dir), manifest.format_version)
        return manifest.for_fold(fold)
    except schema.FormatError as err:
        if fold is None:
            raise
        raise DatasetError(f"{data_dir}: {err}") from None


@functools.lru_cache(maxsize=None)
def _say_older_format(data_dir: str, version: int) -> None:
    """Once per dataset: what an older format misses, and the one command that upgrades it."""
    logging.warning(
        "%s is a format %d dataset: each record is checked against its own CRC, but nothing "
        "ties the shards and their record indexes to dataset.json. Run the `python -m "
        "pipeline.write` command that wrote it again (same flags) to upgrade it to format %d "
        "in place: the shards are kept as they are", data_dir, version,
        schema.CLASS_FORMAT_VERSION)
