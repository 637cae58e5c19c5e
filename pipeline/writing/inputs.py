"""From the settings to the images of each split: resolve --input/--test_input, then split.

An input is a CSV, a class-folder tree (pipeline.writing.sources), a TensorFlow Datasets split
prepared locally (pipeline.writing.tfds_source), or nothing: the bundled sample
(pipeline.writing.sample). Every problem with a listing raises InputError before anything is
written.
"""

from __future__ import annotations

import os
from typing import Sequence

from pipeline.core import schema, workspace
from pipeline.writing import plan, sources, tfds_source, tfds_staging
from pipeline.writing.sample import SAMPLE_CSVS, ensure_sample_dataset
from pipeline.writing.settings import WriteConfig
from pipeline.writing.sources import (MAX_EXAMPLES, InputError, Listing, SourceImage,
                                      load_listing)


def resolve_inputs(config: WriteConfig) -> tuple[Listing, Listing | None]:
    """(labeled or only listing, test listing or None) for the config. A test listing is
    unlabeled, or a tfds: split labeled with --input's classes."""
    input_path, test_input = config.input, config.test_input
    if input_path is None:
        if config.image_path is not None:
            raise InputError(f"--image_path={config.image_path} makes paths of a CSV's values: "
                             "give the CSV with --input")
        sample = ensure_sample_dataset(workspace.raw_dir())
        train_csv, test_csv = (os.path.join(sample, name) for name in SAMPLE_CSVS)
        input_path, test_input = train_csv, test_input or test_csv
    check_input_flags(config, [input_path, test_input])
    main = load_input(input_path, config, label_column_required=(
        config.label_column_required or config.label_columns is not None
        or config.target_columns is not None))
    if config.multi_label and main.target_kind != schema.MULTI_LABEL:
        raise InputError(f"--multi_label reads a CSV's tag column (--label_column); --input="
                         f"{input_path} has none")
    if config.target_columns is not None and main.target_kind != schema.REGRESSION:
        raise InputError(f"--target_columns reads a CSV's numeric columns; --input="
                         f"{input_path} is not such a CSV")
    check_feature_columns(config, main, input_path)
    if test_input is None:
        return main, None
    if not main.labeled:
        raise InputError(
            f"--input={input_path} is already unlabeled; --test_input adds an unlabeled split "
            "beside a labeled --input"
        )
    test = load_input(test_input, config)
    check_feature_columns(config, test, test_input)
    if test.labeled and not tfds_source.is_tfds_input(test_input):
        raise InputError(
            f"--test_input={test_input} has the label column(s) "
            f"{config.label_columns or config.label_column!r}; the test split "
            "is unlabeled (give labeled data through --input)"
        )
    if test.labeled and test.classes != main.classes:
        raise InputError(
            f"--test_input={test_input} is labeled with the classes "
            f"{list(test.classes)[:MAX_EXAMPLES]}, --input with "
            f"{list(main.classes)[:MAX_EXAMPLES]}: a labeled test split needs the same "
            "classes in the same order (another split of the same TFDS dataset)"
        )
    return main, test


def check_feature_columns(config: WriteConfig, listing: Listing, given: str) -> None:
    """--feature_columns: read from `given` (a CSV; a tfds: split has none), and none of them
    the image column or a column to learn (it would train with the answer as an input)."""
    names = config.feature_column_names
    if not names:
        return
    if listing.features != names:
        raise InputError(f"--feature_columns reads a CSV's numeric columns; {given} is not "
                         "such a CSV")
    learned = {config.image_column, *config.target_column_names, *config.label_column_names,
               *([config.label_column] if config.label_column_required else [])}
    both = [name for name in names if name in learned]
    if both:
        raise InputError(f"--feature_columns={config.feature_columns}: {', '.join(both)} is "
                         "also the image column or a column to learn; a feature must be "
                         "neither")


def load_input(given: str, config: WriteConfig, *, label_column_required: bool = False):
    """One --input or --test_input -> Listing: a tfds: split, a CSV or a class-folder tree."""
    if tfds_source.is_tfds_input(given):
        # `--tfds_data_dir=~/...`: the shell leaves a tilde after `=` alone.
        data_dir = os.path.expanduser(config.tfds_data_dir or tfds_source.default_data_dir())
        return tfds_staging.load_tfds_listing(
            given, data_dir=data_dir,
            staging_root=os.path.join(workspace.raw_dir(), tfds_staging.STAGING_DIR),
            image_key=config.tfds_image_key, label_key=config.tfds_label_key)
    return load_listing(given, image_column=config.image_column,
                        label_column=config.label_column,
                        label_column_required=label_column_required,
                        allow_outside=config.allow_outside_input,
                        image_path=config.image_path,
                        label_columns=config.label_column_names,
                        multi_label=config.multi_label,
                        label_delimiter=config.label_delimiter,
                        target_columns=config.target_column_names,
                        feature_columns=config.feature_column_names)


def check_input_flags(config: WriteConfig, inputs: Sequence[str | None]) -> None:
    """A flag for a kind of input that none of `inputs` is would be silently ignored."""
    tfds_inputs = [given for given in inputs if tfds_source.is_tfds_input(given)]
    tfds_flags = [f"--{name}={value}" for name, value in config.tfds_settings().items()]
    if tfds_flags and not tfds_inputs:
        raise InputError(f"{' '.join(tfds_flags)} apply to a tfds:NAME input, and neither "
                         "--input nor --test_input is one")
    if tfds_inputs and len(tfds_inputs) == len([given for given in inputs if given]):
        csv_flags = [flag for flag, given in (
            (f"--image_column={config.image_column}", config.image_column != "image"),
            (f"--label_column={config.label_column}", config.label_column_required),
            (f"--image_path={config.image_path}", config.image_path is not None),
            (f"--label_columns={config.label_columns}", config.label_columns is not None))
            if given]
        if csv_flags:
            raise InputError(f"{' '.join(csv_flags)} name CSV columns; a tfds: input takes its "
                             "features from --tfds_image_key / --tfds_label_key")


def split_listings(main: Listing, test: Listing | None,
                   config: WriteConfig) -> dict[str, list[SourceImage]]:
    """{split name: images}: train/val from a labeled --input (or all of an unlabeled one as
    test), and --test_input as test."""
    if config.folds == 1 or config.folds < 0:
        raise plan.PlanError(f"--folds={config.folds}: use 0 (no folds) or at least 2")
    if not 0.0 <= config.val_fraction < 1.0:
        raise plan.PlanError(f"--val_fraction={config.val_fraction} must be in [0, 1)")
    if main.labeled and config.folds:
        splits = {schema.TRAIN: list(main.images)}  # the folds: plan.fold_shards
    elif main.labeled:
        splits = plan.split_labeled(main.images, val_fraction=config.val_fraction)
    else:
        splits = {schema.TEST: list(main.images)}
    if test is not None:
        listed = {sources.image_key(image.file) for image in main.images}
        overlap = sorted(image.path for image in test.images
                         if sources.image_key(image.file) in listed)
        if overlap:
            raise InputError(
                f"{len(overlap)} image(s) are listed both in --input and --test_input (the "
                f"same file, however spelled), e.g. {overlap[:MAX_EXAMPLES]}"
            )
        splits[schema.TEST] = list(test.images)
    return splits


def source_ids(main: Listing, test: Listing | None) -> dict:
    """{"sources": [...]} for inputs whose paths do not decide their images' bytes (a TFDS
    split's version and features), so that a changed source is a different command; {} for
    files, leaving their fingerprints and manifests as they were."""
    ids = [listing.source_id for listing in (main, test) if listing and listing.source_id]
    return {"sources": ids} if ids else {}
