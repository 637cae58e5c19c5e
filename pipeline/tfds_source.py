"""A prepared TensorFlow Datasets split as a writer input: `--input=tfds:NAME[/CONFIG][:SPLIT]`.

    python -m pipeline.write --input=tfds:cifar10 --tfds_data_dir=/data/tensorflow_datasets
    python -m pipeline.write --input=tfds:cifar10:train --test_input=tfds:cifar10:test

Nothing is downloaded: the dataset must already be prepared (by `tfds build NAME` or
`tfds.load(NAME, download=True)` on a machine with network) under the TFDS data dir, as

    <data dir>/<name>/[<config>/]<version>/dataset_info.json, features.json, *.tfrecord-*

It is found without its builder class (the highest version when there are several; without
CONFIG, the default config TFDS recorded) and opened with `tfds.builder_from_directory`.
SPLIT defaults to `train`. The image is the dataset's `tfds.features.Image`, the label its
`tfds.features.ClassLabel`, whose `names` become the class names in their order.

The encoded images are staged once as files, in the split's order, so the writer's workers
decode them with Pillow exactly like any other input (and never import TensorFlow):

    workspace/raw/tfds/<name>/[<config>/]<version>/<split>-<digest>/
        00000000.png ...   the image bytes as TFDS stores them
        listing.csv        file,label
        staged.json        what was staged, from where (class names included)

The folder appears whole (built beside it, then renamed) and is never changed afterwards: its
name carries a digest of the prepared dataset's metadata, the split and the feature flags, so a
rerun (a resumed write, another task of a multi-host write, another --image_size) reuses it
without importing TensorFlow, and a dataset prepared again differently gets a new folder.
Delete it to reclaim the disk; the next write stages again.

Each record's `path` is `<name>/[<config>/]<split>/<index>.<ext>`: index is the record's
position in TFDS's order of the split, so `tfds.load(NAME, split=f"{SPLIT}[{i}:{i + 1}]")`
gives that record back. A split whose labels are all -1 (TFDS's "no label", e.g. a
competition's test split) is an unlabeled listing, written like an unlabeled CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from typing import Mapping

from absl import logging

from pipeline import files, schema, tfds_export
from pipeline.sources import MAX_EXAMPLES, InputError, Listing, SourceImage

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
# Features picked when the dataset has several of a kind and no flag names one.
CONVENTIONAL_IMAGE_KEY = "image"
CONVENTIONAL_LABEL_KEY = "label"
# Image dtypes Pillow decodes to what TFDS means; float32 images are bit-cast into RGBA PNGs.
DECODABLE_IMAGE_DTYPES = ("uint8", "uint16")
NO_LABEL = schema.UNLABELED  # ClassLabel's "no label" is -1 too

STAGING_DIR = "tfds"  # under workspace.raw_dir()
STAGED_LISTING = "listing.csv"
STAGED_INFO = "staged.json"
# Part of every staging digest: a change of the staged layout must not reuse old folders.
STAGING_FORMAT = 1
DIGEST_CHARS = 12  # of the sha256, in the folder name
INDEX_DIGITS = 8  # 00000012.png; wider indexes simply get more digits
# Staging logs its progress at most this often (seconds).
STAGE_LOG_EVERY_S = 10.0
# Leading bytes -> file extension of the staged image (cosmetic: Pillow reads the content).
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF87a", "gif"),
          (b"GIF89a", "gif"), (b"BM", "bmp"), (b"II*\x00", "tif"), (b"MM\x00*", "tif"))
_ENCODING_EXTENSIONS = {"png": "png", "jpeg": "jpg"}  # tfds.features.Image(encoding_format=)
UNKNOWN_EXTENSION = "img"

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


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def describe_features(features: Mapping[str, object]) -> str:
    """`image: Image, label: ClassLabel, id: Text`: the top-level features, for errors."""
    return ", ".join(f"{key}: {type(feature).__name__}"
                     for key, feature in sorted(features.items()))


def pick_feature(features: Mapping[str, object], kind: type, wanted: str | None,
                 conventional: str, flag: str, spec: TfdsSpec) -> str:
    """The key of the `kind` feature to use: `wanted` (a flag), else the only one, else the
    conventional name when it is among several."""
    candidates = sorted(key for key, feature in features.items() if isinstance(feature, kind))
    listed = describe_features(features)
    if wanted is not None:
        if wanted not in features:
            raise InputError(f"{flag}={wanted!r}: {spec} has no such feature; it has {listed}")
        if wanted not in candidates:
            raise InputError(f"{flag}={wanted!r} is a {type(features[wanted]).__name__}, not a "
                             f"{kind.__name__}; {spec} has {listed}")
        return wanted
    if len(candidates) == 1:
        return candidates[0]
    if conventional in candidates:
        return conventional
    if not candidates:
        raise InputError(
            f"{spec}: no tfds.features.{kind.__name__} feature; its features are {listed}. "
            "pipeline.write takes image classification data: an Image and a ClassLabel")
    raise InputError(f"{spec}: {len(candidates)} {kind.__name__} features {candidates}; "
                     f"choose one with {flag}")


def image_extension(data: bytes, encoding_format: str | None) -> str:
    """The file extension the image's bytes say, else the feature's declared encoding."""
    for magic, extension in _MAGIC:
        if data.startswith(magic):
            return extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return _ENCODING_EXTENSIONS.get(encoding_format or "", UNKNOWN_EXTENSION)


def check_labels(labels, num_classes: int, spec: TfdsSpec) -> bool:
    """True when every record is labeled, False when none is (all -1); InputError otherwise."""
    if not labels:
        raise InputError(f"{spec}: the split has no records")
    out_of_range = sorted({label for label in labels if not NO_LABEL <= label < num_classes})
    if out_of_range:
        raise InputError(f"{spec}: label(s) {out_of_range[:MAX_EXAMPLES]} outside the "
                         f"ClassLabel's {num_classes} classes")
    missing = sum(1 for label in labels if label == NO_LABEL)
    if missing and missing != len(labels):
        raise InputError(
            f"{spec}: {missing} of {len(labels)} records have no label ({NO_LABEL}); a split "
            "is written either all labeled or all unlabeled (as the test split)")
    return missing == 0


# ---------------------------------------------------------------------------------------------
# Staging and the listing
# ---------------------------------------------------------------------------------------------


def staging_digest(prepared: PreparedDataset, split: str, image_key: str | None,
                   label_key: str | None) -> str:
    """What decides the staged files: the prepared metadata (name, version, splits with their
    sizes, features), the split and the requested features."""
    digest = hashlib.sha256(json.dumps(
        {"format": STAGING_FORMAT, "split": split, "image_key": image_key,
         "label_key": label_key}, sort_keys=True).encode())
    for name in (INFO_NAME, FEATURES_NAME):
        with open(os.path.join(prepared.directory, name), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def staged_folder(staging_root: str, prepared: PreparedDataset, split: str, digest: str) -> str:
    return os.path.join(staging_root, prepared.name, *([prepared.config] if prepared.config
                                                        else []),
                        prepared.version, f"{split}-{digest[:DIGEST_CHARS]}")


def record_prefix(prepared: PreparedDataset, split: str) -> str:
    """`<name>/[<config>/]<split>/`: each record's `path` is this plus its staged file name."""
    return "/".join(part for part in (prepared.name, prepared.config, split) if part) + "/"


def load_tfds_listing(given: str, *, data_dir: str, staging_root: str,
                      image_key: str | None = None, label_key: str | None = None) -> Listing:
    """`tfds:NAME[/CONFIG][:SPLIT]` -> Listing, staging the split's images on first use."""
    spec = parse_tfds_input(given)
    prepared = find_prepared(data_dir, spec)
    digest = staging_digest(prepared, spec.split, image_key, label_key)
    folder = staged_folder(staging_root, prepared, spec.split, digest)
    if not os.path.exists(folder):
        remove_abandoned_staging(folder)
        stage_split(prepared, spec, folder, image_key=image_key, label_key=label_key)
    listing = read_staged_listing(folder, prepared, spec)
    return dataclasses.replace(listing, source_id=f"{spec} {prepared.full_name} {digest}")


def remove_abandoned_staging(folder: str) -> None:
    """Remove what a killed staging of `folder` left beside it (`.<name>-XXXX`, as large as
    the split): only a complete staging is ever renamed to `folder`, so these are never read."""
    parent, name = os.path.split(folder)
    if not os.path.isdir(parent):
        return
    for entry in os.scandir(parent):
        if entry.is_dir() and entry.name.startswith(f".{name}-"):
            logging.info("removing %s, left by an interrupted staging", entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)


def stage_split(prepared: PreparedDataset, spec: TfdsSpec, folder: str, *,
                image_key: str | None, label_key: str | None) -> None:
    """Read the split through TFDS and stage it as `folder`: every record's encoded image as a
    file, then listing.csv and staged.json. The folder appears only when complete."""
    import tensorflow as tf  # here: only staging needs TensorFlow
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder_from_directory(prepared.directory)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise damaged_message(spec, prepared, err) from err
    splits = sorted(builder.info.splits.keys())
    if spec.split not in splits:
        raise InputError(f"{spec}: no split {spec.split!r} in {prepared.full_name}; it has "
                         f"{splits}. Name one as {PREFIX}{spec.name}"
                         f"{'/' + prepared.config if prepared.config else ''}:SPLIT")
    features = builder.info.features
    image_key = pick_feature(features, tfds.features.Image, image_key, CONVENTIONAL_IMAGE_KEY,
                             "--tfds_image_key", spec)
    label_key = pick_feature(features, tfds.features.ClassLabel, label_key,
                             CONVENTIONAL_LABEL_KEY, "--tfds_label_key", spec)
    image_feature, class_label = features[image_key], features[label_key]
    if str(image_feature.np_dtype) not in DECODABLE_IMAGE_DTYPES:
        raise InputError(f"{spec}: image feature {image_key!r} holds {image_feature.np_dtype} "
                         f"pixels; only {list(DECODABLE_IMAGE_DTYPES)} images can be stored")
    total = builder.info.splits[spec.split].num_examples
    logging.info("staging %s (%s, %d records) from %s into %s", spec, prepared.full_name, total,
                 prepared.directory, folder)
    # Keep every image encoded (also other Image features, which are not needed and would cost
    # a decode each); shard after shard, each in file order: TFDS's order of the split.
    skip = {key: tfds.decode.SkipDecoding() for key, feature in features.items()
            if isinstance(feature, tfds.features.Image)}
    dataset = builder.as_dataset(split=spec.split, shuffle_files=False, decoders=skip,
                                 read_config=tfds.ReadConfig(interleave_cycle_length=1))
    start = last_log = time.monotonic()
    with files.staged_directory(folder, replace=False) as staging:
        rows: list[tuple[str, int]] = []
        try:
            for index, example in enumerate(tfds.as_numpy(dataset)):
                rows.append(stage_image(example, index, staging, image_key, label_key,
                                        image_feature.encoding_format))
                if time.monotonic() - last_log >= STAGE_LOG_EVERY_S:
                    last_log = time.monotonic()
                    logging.info("staged %d/%d images of %s", len(rows), total, spec)
        except tf.errors.OpError as err:  # a corrupt record or shard of the prepared dataset
            raise damaged_message(spec, prepared, err) from err
        labeled = check_labels([label for _, label in rows], class_label.num_classes, spec)
        with open(os.path.join(staging, STAGED_LISTING), "w", newline="",
                  encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file", "label"])
            writer.writerows(rows)
        info = {"dataset": prepared.full_name,
                "prepared_dir": os.path.abspath(prepared.directory), "split": spec.split,
                "image_key": image_key, "label_key": label_key,
                "classes": list(class_label.names), "labeled": labeled, "images": len(rows)}
        with open(os.path.join(staging, STAGED_INFO), "w", encoding="utf-8") as f:
            f.write(json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    staged_mb = sum(os.path.getsize(os.path.join(folder, name)) for name, _ in rows) / 1e6
    logging.info("staged %d images of %s (%.1f MB) in %.1f s; delete %s to reclaim the disk "
                 "(a later write stages again)", len(rows), spec, staged_mb,
                 time.monotonic() - start, folder)


def stage_image(example, index: int, staging: str, image_key: str, label_key: str,
                encoding_format: str | None) -> tuple[str, int]:
    """Write one record's encoded image into `staging`; returns its (file name, label)."""
    data = example[image_key]
    name = f"{index:0{INDEX_DIGITS}d}.{image_extension(data, encoding_format)}"
    with open(os.path.join(staging, name), "wb") as f:
        f.write(data)
    return name, int(example[label_key])


def damaged_message(spec: TfdsSpec, prepared: PreparedDataset, err: Exception) -> InputError:
    return InputError(f"{spec}: reading the prepared dataset {prepared.directory} failed "
                      f"({type(err).__name__}: {err}); prepare it again")


def read_staged_listing(folder: str, prepared: PreparedDataset, spec: TfdsSpec) -> Listing:
    try:
        with open(os.path.join(folder, STAGED_INFO), encoding="utf-8") as f:
            info = json.load(f)
        with open(os.path.join(folder, STAGED_LISTING), newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
        if header != ["file", "label"] or len(body) != info["images"]:
            raise ValueError(f"{len(body)} rows under {header}, {info['images']} staged")
        prefix = record_prefix(prepared, spec.split)
        images = tuple(SourceImage(prefix + name, os.path.join(folder, name), int(label))
                       for name, label in body)
        classes, labeled = tuple(info["classes"]), bool(info["labeled"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise InputError(f"{folder}: the staged copy of {spec} is damaged ({err}); delete the "
                         "folder and run again to stage it anew") from err
    what = f"{len(classes)} classes" if labeled else "unlabeled"
    return Listing(images, classes, labeled,
                   f"TFDS {prepared.full_name} split {spec.split!r} ({len(images):,} images, "
                   f"{what}; staged in {folder})")
