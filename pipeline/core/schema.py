"""What a dataset is: feature keys, dtypes and shape, shard names, and the manifest.

A dataset directory holds sharded TFRecord files and one `dataset.json`:

    train-00000-of-00036.tfrecord ... train-00035-of-00036.tfrecord
    val-00000-of-00004.tfrecord ...
    train-00000-of-00036.tfrecord.idx ...  # DALI index of each uncompressed shard
    train-00000-of-00036.tfrecord.offsets ...  # record index (pipeline.core.record_index)
    dataset.json      # written last: its presence means the dataset is complete
    rejects.csv       # source images that could not be decoded, with the reason
    dataset_info.json, features.json, label.labels.txt   # TFDS's view (writing.tfds_export)

Each record is a serialised `tf.train.Example` with three features, a fourth in a
multi-label or regression dataset (`target_kind`), and a fifth with `features`:

    image:  bytes    the raw uint8 tensor, shape `image_shape` = [3, H, W] (CHW), C-contiguous
    label:  int64    class index into `classes`, or -1 for an unlabeled (test) image; in a
                     multi-label or regression dataset 0 for a labeled image (`target`)
    path:   bytes    the source image's path relative to the input (UTF-8)
    target: float32  multi-label: [len(classes)] multi-hot, 1.0 for each of the image's
                     classes, in `classes` order; regression: [len(targets)] values, in
                     `targets` order (zeros for an unlabeled image)
    features: float32 [len(features)] the row's --feature_columns values, in that order

This module, pipeline.core.manifest_json (dataset.json's text), pipeline.core.records (the
same records as bytes: encoding, framing, CRCs), pipeline.core.record_fields (where a record's
fields lie in its bytes) and pipeline.core.record_index are the only places that know the
format; the writer, the reader and the tools import them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Any, Mapping, Sequence

from pipeline import errors
from pipeline.core import files

# 2: dataset.json holds each record index's sha256, each index every record's data CRC
# (pipeline.core.record_index); shards are byte for byte those of 1, which still reads.
# 3: multi-label and regression datasets (target_kind, the records' `target`, the record
# index's targets block). A dataset names the oldest format that reads it
# (format_version_for): a class dataset needs nothing of 3 and is written as 2, byte for byte
# as before, while code that reads only 2 refuses a multi-label dataset rather than reading
# every label as 0.
FORMAT_VERSION = 3
CLASS_FORMAT_VERSION = 2
MANIFEST_NAME = "dataset.json"
REJECTS_NAME = "rejects.csv"

IMAGE_KEY = "image"
LABEL_KEY = "label"
PATH_KEY = "path"
TARGET_KEY = "target"
FEATURES_KEY = "features"

# What a dataset's labels are (Manifest.target_kind): one class per image, any number of
# classes per image (multi-hot `target` vectors; Planet's tags, one-hot columns with several
# 1s), or numbers to predict (`target` values; PetFinder's Pawpularity).
CLASS, MULTI_LABEL, REGRESSION = "class", "multi_label", "regression"
TARGET_KINDS = (CLASS, MULTI_LABEL, REGRESSION)
LABELED = 0  # the label of every labeled image of a multi-label or regression dataset

DTYPE = "uint8"
LAYOUT = "CHW"
CHANNELS = 3
UNLABELED = -1  # label of every image in an unlabeled split (e.g. a Kaggle test.csv)

# Split names the writer produces; readers accept any split named in the manifest.
TRAIN, VAL, TEST = "train", "val", "test"

# TFRecord compression as TensorFlow names it -> file-name suffix.
COMPRESSION_SUFFIXES = {"NONE": "", "GZIP": ".gz", "ZLIB": ".zlib"}
# Fixed compression level so output bytes never depend on a library default.
COMPRESSION_LEVEL = 6
# NVIDIA DALI's fn.readers.tfrecord needs, per shard, the index its `tfrecord2idx` tool makes.
# It is named `<shard>.idx`, beside its shard: the pair sorts together in a listing, and the
# index paths are the shard paths plus a suffix. DALI reads only uncompressed TFRecords, so
# compressed shards get none.
DALI_INDEX_SUFFIX = ".idx"
# Our own index of each uncompressed shard: where every record, its image and its label lie,
# for random access (pipeline.core.record_index).
RECORD_INDEX_SUFFIX = ".offsets"


class FormatError(errors.PipelineError, ValueError):
    """A dataset directory, manifest or record does not match this format."""


# ---------------------------------------------------------------------------------------------
# Shard names
# ---------------------------------------------------------------------------------------------


def shard_filename(split: str, index: int, count: int, compression: str = "NONE") -> str:
    """`train-00003-of-00036.tfrecord` (+ `.gz` / `.zlib` when compressed)."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} out of range for {count} shards")
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord{compression_suffix(compression)}"


def is_shard_file(name: str) -> bool:
    """Whether `name` is one that shard_filename or dali_index_filename makes."""
    return bool(_SHARD_FILE.match(name))


# A shard of any split and compression, or an index of an uncompressed one.
_SHARD_FILE = re.compile(r"^[\w.]+-\d{5}-of-\d{5}\.tfrecord(\.gz|\.zlib|%s|%s)?$"
                         % (re.escape(DALI_INDEX_SUFFIX), re.escape(RECORD_INDEX_SUFFIX)))


def dali_index_filename(shard_file: str, compression: str) -> str | None:
    """`train-00003-of-00036.tfrecord.idx` for an uncompressed shard; None for a compressed one
    (DALI cannot read it, so it has no index)."""
    compression_suffix(compression)  # validates
    return None if compression != "NONE" else shard_file + DALI_INDEX_SUFFIX


def record_index_filename(shard_file: str, compression: str) -> str | None:
    """`train-00003-of-00036.tfrecord.offsets` for an uncompressed shard; None for a
    compressed one (its records cannot be read at an offset)."""
    compression_suffix(compression)  # validates
    return None if compression != "NONE" else shard_file + RECORD_INDEX_SUFFIX


def compression_suffix(compression: str) -> str:
    try:
        return COMPRESSION_SUFFIXES[compression]
    except KeyError:
        raise FormatError(
            f"unknown compression {compression!r}; use one of {sorted(COMPRESSION_SUFFIXES)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    file: str
    count: int
    bytes: int
    sha256: str
    fold: int | None = None  # in a dataset written with folds: the fold of all its records
    # sha256 of its record index file (format 2, uncompressed shards): ties the place and CRC of
    # every record to this manifest (pipeline.core.record_index). None: compressed, or format 1.
    index_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entry: "fold" and "index_sha256" only where there is one."""
        entry = dataclasses.asdict(self)
        for optional in ("fold", "index_sha256"):
            if entry[optional] is None:
                del entry[optional]
        return entry


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    count: int
    shards: tuple[ShardInfo, ...]
    class_counts: Mapping[str, int]  # class name -> records; empty for unlabeled splits


def merged_split(shards: Sequence[ShardInfo], parts: Sequence[SplitInfo]) -> SplitInfo:
    """The SplitInfo of `shards`, whose records are those of `parts` together."""
    class_counts: collections.Counter = collections.Counter()
    for part in parts:
        class_counts.update(part.class_counts)
    return SplitInfo(sum(shard.count for shard in shards), tuple(shards), dict(class_counts))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """`dataset.json`: everything a reader or trainer needs to know about a dataset."""

    image_shape: tuple[int, int, int]  # (3, H, W)
    classes: tuple[str, ...]  # index -> class name
    splits: Mapping[str, SplitInfo]
    mean: tuple[float, ...] | None  # per channel, 0-255 scale, of the train split
    std: tuple[float, ...] | None
    compression: str = "NONE"
    rejects: int = 0
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Digest of the write plan and settings (see plan.fingerprint): equal means same output.
    fingerprint: str = ""
    format_version: int = FORMAT_VERSION
    dtype: str = DTYPE
    layout: str = LAYOUT
    # Written with --folds=K: the train split's records in K stratified folds, each in whole
    # shards of its own (ShardInfo.fold), one SplitInfo per fold. Empty: no folds.
    folds: tuple[SplitInfo, ...] = ()
    # A view for one fold (for_fold): its train split is every fold but this one, its val
    # split this fold. None: the manifest as stored.
    fold: int | None = None
    target_kind: str = CLASS  # one of TARGET_KINDS (stored only when not CLASS)
    # Regression: the target columns' names, and per name the train split's "mean", "std",
    # "min" and "max" (the trainer learns the standardised values; predict undoes it).
    targets: tuple[str, ...] = ()
    target_stats: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    # With --feature_columns: the numeric columns stored beside each image (`features`), and
    # the train split's stats of each (the model standardises them).
    features: tuple[str, ...] = ()
    feature_stats: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    # The test CSV's rows without a record (--allow_missing_test): core.test_rows.MissingRow.
    missing_test: tuple = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def target_size(self) -> int:
        """Floats in each record's `target` (and each record index row's): 0 without one."""
        return {MULTI_LABEL: self.num_classes, REGRESSION: len(self.targets)}.get(
            self.target_kind, 0)

    @property
    def feature_size(self) -> int:
        """Floats in each record's `features` (and each record index row's): 0 without."""
        return len(self.features)

    @property
    def outputs(self) -> int:
        """A model's outputs for this dataset: a logit per class, or a value per target."""
        return len(self.targets) if self.target_kind == REGRESSION else self.num_classes

    @property
    def label_values(self) -> int:
        """The label field's values besides UNLABELED, 0..label_values-1: the classes, or
        LABELED alone where `target` holds what is learned (what the reader's checks take)."""
        return self.num_classes if self.target_kind == CLASS else 1

    def for_fold(self, fold: int | None) -> "Manifest":
        """The dataset as fold `fold` of a cross-validation reads it: "train" all folds but
        `fold`, "val" fold `fold`, other splits as they are. None: as stored (a folded
        dataset's "train" is then every fold)."""
        if fold is None:
            return self
        if not self.folds:
            raise FormatError(f"fold={fold}: this dataset has no folds; write one with "
                              "`python -m pipeline.write --folds=K`")
        if not 0 <= fold < len(self.folds) or self.fold is not None:
            raise FormatError(f"fold={fold}: this dataset has folds 0..{len(self.folds) - 1}")
        shards = self.splits[TRAIN].shards
        rest = [number for number in range(len(self.folds)) if number != fold]
        splits = {**self.splits,
                  TRAIN: merged_split([s for s in shards if s.fold != fold],
                                      [self.folds[number] for number in rest]),
                  VAL: merged_split([s for s in shards if s.fold == fold], [self.folds[fold]])}
        return dataclasses.replace(self, splits=splits, fold=fold)

    def stored_split(self, name: str) -> str:
        """The stored split holding `name`'s records (a fold view's "val" is in "train")."""
        return TRAIN if self.fold is not None and name in (TRAIN, VAL) else name

    @property
    def image_bytes(self) -> int:
        channels, height, width = self.image_shape
        return channels * height * width

    def split(self, name: str) -> SplitInfo:
        try:
            return self.splits[name]
        except KeyError:
            folds = (f", its {TRAIN!r} in {len(self.folds)} folds: read fold k's held-out "
                     f"records as split {VAL!r} with fold=k") if self.folds else ""
            raise FormatError(
                f"split {name!r} is not in this dataset; it has {sorted(self.splits)}{folds}"
            ) from None

    def shard_paths(self, data_dir: str, split: str) -> list[str]:
        return [os.path.join(data_dir, shard.file) for shard in self.split(split).shards]

    def to_json(self) -> str:
        """dataset.json's text (pipeline.core.manifest_json)."""
        from pipeline.core import manifest_json

        return manifest_json.to_json(self)

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        """The manifest in dataset.json's `text`; FormatError naming `source` when it is not
        one this code reads (pipeline.core.manifest_json)."""
        from pipeline.core import manifest_json

        return manifest_json.from_json(text, source)


def format_version_for(target_kind: str, features: Sequence[str] = ()) -> int:
    """The format_version a dataset of `target_kind` (and `features`) is written as (see
    FORMAT_VERSION)."""
    return CLASS_FORMAT_VERSION if target_kind == CLASS and not features else FORMAT_VERSION


def manifest_path(data_dir: str) -> str:
    return os.path.join(data_dir, MANIFEST_NAME)


def read_manifest(data_dir: str) -> Manifest:
    """Load `dataset.json` from a dataset directory, with a fix in the error if it is absent."""
    path = manifest_path(data_dir)
    try:
        text = files.read_text(path)
    except FileNotFoundError:
        raise FormatError(f"no {MANIFEST_NAME} in {data_dir!r}: it is not a complete dataset. "
                          "Write one with `python -m pipeline.write --output_dir=...`.") from None
    except NotADirectoryError:
        raise FormatError(f"{data_dir!r} is a file, not a dataset directory: give the "
                          f"directory that holds {MANIFEST_NAME} (pipeline.write "
                          "--output_dir)") from None
    return Manifest.from_json(text, source=path)


# The writer's --image_path template has this where a CSV's value goes: the stored path is
# the template with the value in it (manifest flag "image_path").
IMAGE_PATH_SLOT = "{}"


def path_from_value(template: str, value: str) -> str:
    """The image path --image_path=`template` makes of a CSV value."""
    return template.replace(IMAGE_PATH_SLOT, value)


def value_from_path(template: str, path: str) -> str:
    """The CSV value a stored path was made from (the inverse of path_from_value)."""
    before, after = template.split(IMAGE_PATH_SLOT)
    if not (path.startswith(before) and path.endswith(after)):
        raise FormatError(f"{path!r} was not made by the template {template!r}")
    return path[len(before):len(path) - len(after)]


def label_problem(label: int, num_classes: int) -> str | None:
    """Why `label` is no label of a dataset with `num_classes` classes, or None: a label
    outside the classes is damage, not data."""
    if label == UNLABELED or 0 <= label < num_classes:
        return None
    return f"label {label} {label_range(num_classes)}"


def label_range(num_classes: int) -> str:
    """The words after "label L" in label_problem (the streaming reader's check in the graph
    says the same)."""
    classes = f"0..{num_classes - 1}" if num_classes else "none: the dataset has no classes"
    return f"out of range ({UNLABELED} for unlabeled, else {classes})"


# ---------------------------------------------------------------------------------------------
# TensorFlow side (imported lazily: the writer never needs it)
# ---------------------------------------------------------------------------------------------


def parse_batch(serialized, image_shape, batch_size: int = -1, target_size: int = 0):
    """A batch of serialised records -> (uint8 images [B, *image_shape], int64 labels [B],
    float32 targets [B, target_size] or None when `target_size` is 0); B is static when
    `batch_size` gives it.

    One parse_example and one decode_raw for the whole batch: the per-record cost is a memcpy
    of the image bytes. The path feature is not parsed (most readers never need it).
    """
    import tensorflow as tf

    spec = tf_feature_spec(target_size)
    features = tf.io.parse_example(serialized, {key: spec[key] for key in spec
                                                if key != PATH_KEY})
    images = tf.io.decode_raw(features[IMAGE_KEY], tf.uint8)
    images = tf.reshape(images, [batch_size, *image_shape])
    return images, features[LABEL_KEY], features.get(TARGET_KEY)


def parse_features(serialized, feature_size: int):
    """float32 [B, feature_size]: a batch of records' `features`."""
    import tensorflow as tf

    spec = {FEATURES_KEY: tf.io.FixedLenFeature([feature_size], tf.float32)}
    return tf.io.parse_example(serialized, spec)[FEATURES_KEY]


def tf_compression_type(compression: str) -> str:
    """The `compression_type` argument of tf.data.TFRecordDataset ("" means none)."""
    compression_suffix(compression)  # validates
    return "" if compression == "NONE" else compression


def tf_feature_spec(target_size: int = 0):
    """The `tf.io.parse_example` spec of a record (with its `target` when `target_size`)."""
    import tensorflow as tf

    spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
            PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
    if target_size:
        spec[TARGET_KEY] = tf.io.FixedLenFeature([target_size], tf.float32)
    return spec
