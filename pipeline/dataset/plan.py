"""What one input pipeline reads and how: the read plan, made once per dataset.

    from pipeline.dataset import ReadOptions, build_dataset, plan_read
    plan = plan_read("workspace/shards/digits", "train", True, ReadOptions())
    plan.access.kind, plan.access.reason   # "table", "random" or "stream", and why
    dataset = build_dataset(plan, batch_size=256)

plan_read reads the manifest (the fold's view), picks this pipeline's shards (all of the
split's, or its share of whole shards under tf.distribute), checks that they exist, fills in
the options that depend on the mode (ReadOptions.for_training: an unseeded training run's seed
is drawn here), resolves the cache and chooses the access (access.py). Everything after it
takes the plan rather than planning again: the reader and its two ways of reading
(indexed.py, streaming.py), and the questions the trainer asks before it reads (how many
records an epoch reads, whether a run can start at any batch). One plan, one answer: the
cache and the access the trainer counted with are those the dataset reads with.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import tensorflow as tf

from pipeline.core import files, schema
from pipeline.dataset import access as access_lib
from pipeline.dataset.options import DatasetError, ReadOptions, read_manifest

# cache="auto" keeps a split in RAM when it takes at most this share of the available memory.
AUTO_CACHE_RAM_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    data_dir: str
    split: str
    training: bool
    manifest: schema.Manifest  # as the fold reads it
    shards: list[schema.ShardInfo]  # this input pipeline's
    paths: list[str]  # of `shards`
    options: ReadOptions  # as they apply (for_training)
    cache_mode: str | None  # None, "memory" or a file path: cache="auto" resolved
    access: access_lib.Access

    @property
    def count(self) -> int:
        """The records of this pipeline's shards, as the manifest lists them."""
        return sum(shard.count for shard in self.shards)

    @property
    def augment(self):
        """The augmentation this read applies: the options' in training, none in evaluation."""
        return self.options.augment if self.training else None

    @property
    def positioned(self) -> bool:
        """Whether training reads can start at any start_batch: random access and the table
        can; a streamed split (compressed, remote, a service) cannot (access.reason says
        why)."""
        return self.access.kind != access_lib.STREAM

    def from_batch(self, start_batch: int | None, augment) -> "ReadPlan":
        """The same read from another batch, with another augmentation (a training run's
        legs): neither changes what is read or how, so nothing is planned again."""
        return dataclasses.replace(self, options=dataclasses.replace(
            self.options, start_batch=start_batch, augment=augment))

    def for_pipeline(self, input_context: tf.distribute.InputContext | None) -> "ReadPlan":
        """This plan for one of several input pipelines (tf.distribute), which reads only its
        share of the shards; with one pipeline, this plan."""
        if input_context is None or input_context.num_input_pipelines <= 1:
            return self
        return plan_read(self.data_dir, self.split, self.training, self.options, input_context)


def plan_read(data_dir: str, split: str, training: bool, options: ReadOptions,
              input_context: tf.distribute.InputContext | None = None) -> ReadPlan:
    """What a pipeline reads and how, checked: its shards exist, the cache, the access."""
    manifest = read_manifest(data_dir, options.fold)
    shards = pipeline_shards(manifest, split, input_context)
    paths = [os.path.join(data_dir, shard.file) for shard in shards]
    check_files_exist(paths)
    options = options.for_training(training)
    cache_mode = choose_cache(options, manifest, sum(shard.count for shard in shards))
    chosen = access_lib.choose_access(options.access, data_dir, manifest, cache_mode, options)
    return ReadPlan(data_dir, split, training, manifest, shards, paths, options, cache_mode,
                    chosen)


def check_files_exist(paths: Sequence[str]) -> None:
    """DatasetError naming the shard files the manifest lists and the disk lacks."""
    missing = [path for path in paths if not files.exists(path)]
    if missing:
        raise DatasetError(
            f"{len(missing)} shard file(s) listed in the manifest are missing, e.g. {missing[:3]}; "
            "copy the whole dataset directory or rewrite it with `python -m pipeline.write`"
        )


def pipeline_shards(manifest: schema.Manifest, split: str,
                    input_context: tf.distribute.InputContext | None) -> list[schema.ShardInfo]:
    """The shards this input pipeline reads: all of the split's, or its share of whole
    shards under tf.distribute."""
    shards = list(manifest.split(split).shards)
    if input_context is not None and input_context.num_input_pipelines > 1:
        pipelines = input_context.num_input_pipelines
        if len(shards) < pipelines:
            raise DatasetError(
                f"split {split!r} has {len(shards)} shards but there are {pipelines} input "
                f"pipelines; every pipeline needs at least one whole shard. Rewrite with "
                f"`python -m pipeline.write --shards={pipelines * 4}` (a multiple of {pipelines})"
            )
        shards = shards[input_context.input_pipeline_id::pipelines]
    return shards


def choose_cache(options: ReadOptions, manifest: schema.Manifest, count: int) -> str | None:
    """The cache mode to read with: "auto" streams on a service, where the in-memory table
    cannot leave this process, and "memory" there is refused."""
    if options.service and options.cache == "auto":
        return None
    cache_mode = resolve_cache(options.cache, manifest, count)
    if options.service and cache_mode == "memory":
        raise DatasetError("cache='memory' cannot run on a tf.data service (the table lives in "
                           "this process); use cache=None with service=")
    return cache_mode


def resolve_cache(cache: str | None, manifest: schema.Manifest, count: int) -> str | None:
    if cache == "auto":
        needed = count * manifest.image_bytes
        return "memory" if needed <= AUTO_CACHE_RAM_FRACTION * available_memory() else None
    if cache in (None, "memory") or isinstance(cache, str) and cache:
        return cache
    raise DatasetError(f"cache={cache!r}: use None, 'memory', 'auto' or a file path")


def available_memory() -> int:
    import psutil

    return psutil.virtual_memory().available
