"""The whole plan of a write, made from its settings before a pixel is read: `make_plan`.

The input is listed and split (inputs), every split cut into shards in record order (plan), and
the result fingerprinted: a `WritePlan`, which the writer executes and finish checks against.
plan.py holds the pure steps; this module resolves the input (reading a CSV or a folder tree,
staging a TFDS split) and puts them together, so plan.py stays free of any I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from absl import logging

from pipeline.core import record_index, schema
from pipeline.writing import inputs, kept, plan
from pipeline.writing.settings import WriteConfig
from pipeline.writing.sources import Listing


@dataclasses.dataclass(frozen=True)
class WritePlan:
    """Everything decided before a pixel is read: the listings, the shards, the fingerprint."""

    main: Listing
    test: Listing | None
    shards: tuple[plan.ShardSpec, ...]
    sources: Mapping  # what decides the images' bytes beyond their paths (inputs.source_ids)
    fingerprint: str
    advice: tuple[str, ...] = ()  # about the plan: shards much smaller than they should be
    older: tuple[str, ...] = ()  # fingerprints of the same write in older formats (upgraded)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.main.warnings + (self.test.warnings if self.test else ()) + self.advice

    @property
    def widths(self):
        """What each record's index row holds beside the table (ShardSpec.widths)."""
        return self.shards[0].widths if self.shards else record_index.Widths()

    @property
    def total_images(self) -> int:
        return sum(len(spec.images) for spec in self.shards)


def make_plan(config: WriteConfig) -> WritePlan:
    """The listings, their splits, every shard's images in order, and the fingerprint."""
    main, test = inputs.resolve_inputs(config)
    splits = inputs.split_listings(main, test, config)
    counts = plan.shard_counts(
        {name: len(images) for name, images in splits.items()}, config.shards,
        {schema.VAL: config.val_shards, schema.TEST: config.test_shards},
    )
    shards = plan_all_shards(splits, counts, main.classes, config)
    size = {schema.MULTI_LABEL: len(main.classes), schema.REGRESSION: len(main.targets)}
    if main.target_kind in size or main.features:  # targets (multi-hot, or values), features
        shards = [dataclasses.replace(spec, target_size=size.get(main.target_kind, 0),
                                      feature_size=len(main.features)) for spec in shards]
    sources = inputs.source_ids(main, test)
    version = {"format_version": schema.format_version_for(main.target_kind, main.features)}
    fingerprint = plan.fingerprint(shards, {**config.output_settings(), **version, **sources})
    older = tuple(plan.fingerprint(shards, {**config.output_settings(), "format_version": v,
                                            **sources}) for v in kept.UPGRADABLE_VERSIONS)
    logging.info("input: %s%s", main.description, f"; test: {test.description}" if test else "")
    for warning in main.warnings + (test.warnings if test else ()):
        logging.warning("input: %s", warning)
    logging.info("plan: %s -> %s", ", ".join(
        f"{name} {len(images):,} images in {counts[name]} shards"
        for name, images in sorted(splits.items())), config.output_dir)
    # Not for the bundled sample: its 36 shards are the design card's default, shown on it.
    advice = None if config.input is None else plan.small_shards_warning(
        len(splits.get(schema.TRAIN, ())), counts.get(schema.TRAIN, 0), config.image_bytes,
        folds=config.folds)
    if advice:
        logging.warning("plan: %s", advice)
    return WritePlan(main, test, tuple(shards), sources, fingerprint, (advice,) if advice else (),
                     older)


def plan_all_shards(splits, counts, classes, config: WriteConfig) -> list[plan.ShardSpec]:
    """Every shard in plan order (split by name, then index): with --folds, train's in folds."""
    if not config.folds or schema.TRAIN not in splits:
        return plan.plan_shards(splits, counts, seed=config.seed)
    folded = plan.fold_shards(splits[schema.TRAIN], classes, folds=config.folds,
                              num_shards=counts[schema.TRAIN], seed=config.seed)
    others = plan.plan_shards({name: images for name, images in splits.items()
                               if name != schema.TRAIN}, counts, seed=config.seed)
    return sorted(folded + others, key=lambda spec: (spec.split, spec.index))
