r"""A prepared TensorFlow Datasets split as a writer input: `--input=tfds:NAME[/CONFIG][:SPLIT]`.

    python -m pipeline.write --input=tfds:cifar10 --tfds_data_dir=/data/tensorflow_datasets
    python -m pipeline.write --input=tfds:cifar10:train --test_input=tfds:cifar10:test

Nothing is downloaded: the dataset must already be prepared (by `tfds build NAME` or
`tfds.load(NAME, download=True)` on a machine with network) under the TFDS data dir, as

    <data dir>/<name>/[<config>/]<version>/dataset_info.json, features.json, *.tfrecord-*

This module parses the spec and finds that folder without TensorFlow or the dataset's builder
class (the highest version when there are several; without CONFIG, the default config TFDS
recorded). SPLIT defaults to `train`. pipeline.writing.tfds_staging then reads the split once
and stages its images as files the writer decodes like any other input.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from pipeline.writing import tfds_export
from pipeline.writing.sources import MAX_EXAMPLES, InputError

PREFIX = "tfds:"
DEFAULT_SPLIT = "train"
# TFDS's own default data dir (tfds.core.constants.get_default_data_dir), mirrored so that
# finding a dataset, or finding it missing, needs no TensorFlow.
DATA_DIR_ENV = "TFDS_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")
# Files a prepared version folder holds: the ones tfds_export writes beside our shards.
INFO_NAME = tfds_export.INFO_NAME
FEATURES_NAME = tfds_export.FEATURES_NAME
# Where TFDS records the default config of a dataset with configs: <name>/.config/metadata.json.
DEFAULT_CONFIG_FILE = os.path.join(".config", "metadata.json")

_SPEC = re.compile(r"^tfds:(?P<name>\w+)(?:/(?P<config>[\w.\-]+))?(?::(?P<split>\w+))?$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_PREPARE_HINT = (
    "This command never downloads. Prepare it on a machine with network, e.g. `tfds build "
    "{name}{config_flag} --data_dir=DIR` or `tfds.load('{full}', data_dir=DIR, download=True)`, "
    "copy DIR here and pass --tfds_data_dir=DIR (default: ${env}, else {default})")


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """`tfds:NAME[/CONFIG][:SPLIT]`, parsed."""

    name: str
    config: str | None
    split: str

    def __str__(self) -> str:
        config = f"/{self.config}" if self.config else ""
        return f"{PREFIX}{self.name}{config}:{self.split}"


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """Where a prepared version lives, with the config it resolved to."""

    name: str
    config: str | None
    version: str
    directory: str  # <data dir>/<name>/[<config>/]<version>

    @property
    def full_name(self) -> str:
        return "/".join(part for part in (self.name, self.config, self.version) if part)


def is_tfds_input(given: str | None) -> bool:
    return given is not None and given.startswith(PREFIX)


def parse_tfds_input(given: str) -> TfdsSpec:
    match = _SPEC.match(given)
    if match is None:
        hint = (" (TFDS slicing such as train[:10%] is not supported: give a whole split)"
                if "[" in given else "")
        raise InputError(f"{given!r}: expected tfds:NAME[/CONFIG][:SPLIT], e.g. "
                         f"tfds:cifar10 or tfds:imagenet_resized/32x32:validation{hint}")
    return TfdsSpec(match["name"], match["config"], match["split"] or DEFAULT_SPLIT)


def default_data_dir() -> str:
    """TFDS's default: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return os.environ.get(DATA_DIR_ENV, os.path.expanduser(DEFAULT_DATA_DIR))


def default_output_name(given: str) -> str:
    """`cifar10`, `cifar10-test`, `imagenet_resized-32x32`: the shards folder's default name."""
    spec = parse_tfds_input(given)
    split = spec.split if spec.split != DEFAULT_SPLIT else None
    return "-".join(part for part in (spec.name, spec.config, split) if part)


# ---------------------------------------------------------------------------------------------
# Finding the prepared dataset (no TensorFlow)
# ---------------------------------------------------------------------------------------------


def version_key(version: str) -> tuple[int, int, int]:
    """"1.10.0" sorts after "1.9.0"."""
    major, minor, patch = _VERSION.match(version).groups()
    return int(major), int(minor), int(patch)


def prepared_versions(folder: str) -> list[str]:
    """Version folders under `folder` that hold a prepared dataset, lowest first.

    TFDS prepares into `incomplete.XXXX_<version>` and renames when done, so an interrupted
    preparation is never picked (its name is not a version).
    """
    if not os.path.isdir(folder):
        return []
    versions = [
        entry.name for entry in os.scandir(folder)
        if entry.is_dir() and _VERSION.match(entry.name)
        and all(os.path.isfile(os.path.join(entry.path, name)) for name in (INFO_NAME,
                                                                             FEATURES_NAME))
    ]
    return sorted(versions, key=version_key)


def prepared_configs(dataset_dir: str) -> list[str]:
    if not os.path.isdir(dataset_dir):
        return []
    return sorted(entry.name for entry in os.scandir(dataset_dir)
                  if entry.is_dir() and not entry.name.startswith(".")
                  and prepared_versions(entry.path))


def recorded_default_config(dataset_dir: str) -> str | None:
    """The default config TFDS wrote beside a dataset's configs, if it did."""
    try:
        with open(os.path.join(dataset_dir, DEFAULT_CONFIG_FILE), encoding="utf-8") as f:
            return json.load(f).get("default_config_name") or None
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, AttributeError):
        return None


def find_prepared(data_dir: str, spec: TfdsSpec) -> PreparedDataset:
    """The highest prepared version of `spec`'s dataset (and config) under `data_dir`.

    Without a config, a dataset prepared with configs resolves to the default config TFDS
    recorded; InputError names what is there otherwise.
    """
    dataset_dir = os.path.join(data_dir, spec.name)
    config = spec.config
    if config is None:
        versions = prepared_versions(dataset_dir)
        if versions:
            return PreparedDataset(spec.name, None, versions[-1],
                                   os.path.join(dataset_dir, versions[-1]))
        configs = prepared_configs(dataset_dir)
        if configs:
            config = recorded_default_config(dataset_dir)
            if config not in configs:
                raise InputError(
                    f"{spec}: {dataset_dir} holds the configs {configs} and no default one "
                    f"that is prepared; name one, e.g. {PREFIX}{spec.name}/{configs[0]}:"
                    f"{spec.split}")
    config_dir = os.path.join(dataset_dir, config) if config else dataset_dir
    versions = prepared_versions(config_dir)
    if versions:
        return PreparedDataset(spec.name, config, versions[-1],
                               os.path.join(config_dir, versions[-1]))
    raise InputError(not_prepared_message(data_dir, spec, config_dir))


def not_prepared_message(data_dir: str, spec: TfdsSpec, looked_in: str) -> str:
    where = f"{looked_in}/<version>/{INFO_NAME}"
    if not os.path.isdir(data_dir):
        there = f"--tfds_data_dir {data_dir} does not exist"
    else:
        present = sorted(entry.name for entry in os.scandir(data_dir)
                         if entry.is_dir() and not entry.name.startswith(".")
                         and entry.name != "downloads")
        there = (f"{data_dir} holds {present[:MAX_EXAMPLES]}"
                 f"{' ...' if len(present) > MAX_EXAMPLES else ''}" if present
                 else f"{data_dir} holds no dataset")
        configs = prepared_configs(os.path.join(data_dir, spec.name))
        if spec.config and configs:
            there += f"; {spec.name} is prepared with the configs {configs}"
    full = f"{spec.name}/{spec.config}" if spec.config else spec.name
    hint = _PREPARE_HINT.format(
        name=spec.name, config_flag=f" --config={spec.config}" if spec.config else "",
        full=full, env=DATA_DIR_ENV, default=DEFAULT_DATA_DIR)
    return f"{spec}: no prepared dataset at {where} ({there}). {hint}"
