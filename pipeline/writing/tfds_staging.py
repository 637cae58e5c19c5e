r"""A prepared TFDS split staged as image files, and the writer's listing of them.

    listing = load_tfds_listing("tfds:cifar10:test", data_dir=..., staging_root=...)

The image is the dataset's `tfds.features.Image`, the label its `tfds.features.ClassLabel`,
whose `names` become the class names in their order. The encoded images are staged once as
files, in the split's order, so the writer's workers decode them with Pillow exactly like any
other input (and never import TensorFlow):

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
import shutil
import time
from typing import Mapping

from absl import logging

from pipeline.core import files, schema, units
from pipeline.writing.sources import MAX_EXAMPLES, InputError, Listing, SourceImage
from pipeline.writing.tfds_source import (FEATURES_NAME, INFO_NAME, PREFIX, PreparedDataset,
                                          TfdsSpec, find_prepared, parse_tfds_input)

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

    split = open_split(prepared, spec, image_key, label_key)
    logging.info("staging %s (%s, %d records) from %s into %s", spec, prepared.full_name,
                 split.total, prepared.directory, folder)
    # Keep every image encoded (also other Image features, which are not needed and would cost
    # a decode each); shard after shard, each in file order: TFDS's order of the split.
    skip = {key: tfds.decode.SkipDecoding() for key, feature in split.features.items()
            if isinstance(feature, tfds.features.Image)}
    dataset = split.builder.as_dataset(split=spec.split, shuffle_files=False, decoders=skip,
                                       read_config=tfds.ReadConfig(interleave_cycle_length=1))
    start = last_log = time.monotonic()
    with files.staged_directory(folder, replace=False) as staging:
        rows: list[tuple[str, int]] = []
        try:
            for index, example in enumerate(tfds.as_numpy(dataset)):
                rows.append(stage_image(example, index, staging, split.image_key,
                                        split.label_key, split.encoding_format))
                if time.monotonic() - last_log >= STAGE_LOG_EVERY_S:
                    last_log = time.monotonic()
                    logging.info("staged %d/%d images of %s", len(rows), split.total, spec)
        except tf.errors.OpError as err:  # a corrupt record or shard of the prepared dataset
            raise damaged_message(spec, prepared, err) from err
        labeled = check_labels([label for _, label in rows], len(split.classes), spec)
        write_staged_listing(staging, rows, {
            "dataset": prepared.full_name, "prepared_dir": os.path.abspath(prepared.directory),
            "split": spec.split, "image_key": split.image_key, "label_key": split.label_key,
            "classes": list(split.classes), "labeled": labeled, "images": len(rows)})
    staged = sum(os.path.getsize(os.path.join(folder, name)) for name, _ in rows)
    logging.info("staged %d images of %s (%s) in %.1f s; delete %s to reclaim the disk "
                 "(a later write stages again)", len(rows), spec, units.format_bytes(staged),
                 time.monotonic() - start, folder)


@dataclasses.dataclass(frozen=True)
class OpenSplit:
    """A prepared split opened through TFDS, with the features to stage."""

    builder: object  # tfds.core.DatasetBuilder
    features: Mapping[str, object]  # the dataset's top-level features
    image_key: str
    label_key: str
    encoding_format: str | None  # the Image feature's declared encoding
    classes: tuple[str, ...]  # the ClassLabel's names
    total: int  # records in the split


def open_split(prepared: PreparedDataset, spec: TfdsSpec, image_key: str | None,
               label_key: str | None) -> OpenSplit:
    """Open `spec`'s split and pick its Image and ClassLabel (InputError names what is
    there when the split or a usable feature is not)."""
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
    image_feature = features[image_key]
    if str(image_feature.np_dtype) not in DECODABLE_IMAGE_DTYPES:
        raise InputError(f"{spec}: image feature {image_key!r} holds {image_feature.np_dtype} "
                         f"pixels; only {list(DECODABLE_IMAGE_DTYPES)} images can be stored")
    return OpenSplit(builder, features, image_key, label_key, image_feature.encoding_format,
                     tuple(features[label_key].names),
                     builder.info.splits[spec.split].num_examples)


def write_staged_listing(staging: str, rows, info: Mapping) -> None:
    """listing.csv (file,label per staged image) and staged.json (`info`) into `staging`."""
    with open(os.path.join(staging, STAGED_LISTING), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    with open(os.path.join(staging, STAGED_INFO), "w", encoding="utf-8") as f:
        f.write(json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


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
