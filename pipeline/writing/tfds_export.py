"""TFDS metadata beside the shards, so `tfds.builder_from_directory` reads them as they are.

    import tensorflow_datasets as tfds
    builder = tfds.builder_from_directory("workspace/shards/digits")
    builder.info.features["label"].names               # the manifest's classes
    ds = builder.as_dataset(split="train", shuffle_files=True)
    # {"image": uint8 [3, H, W], "label": int64 (-1 when unlabeled), "path": string}

TFDS finds a dataset through three files, written here from the manifest alone:

    dataset_info.json   name, version, file format, per split the shard-name template and
                        every shard's record count (shardLengths) and bytes
    features.json       the features: image Tensor(uint8, [3, H, W], encoding=bytes), which
                        TFDS reads as one bytes value and decode_raw()s, exactly our `image`;
                        label ClassLabel; path Text
    label.labels.txt    the ClassLabel's names, one a line

They are the protobuf JSON TFDS itself writes for those protos, produced without importing
tensorflow_datasets (the writer never needs it); the tests load them with the real TFDS.

What TFDS cannot read, it gets no metadata for (`unsupported_reason` says why, and the writer
logs it): compressed shards (TFDS opens TFRecords without a compression type), class names that
label.labels.txt would change (TFDS strips each line and splits on newlines), and shard names
its `{SPLIT}-{SHARD_X_OF_Y}.tfrecord` template does not produce (100,000 shards or more).

Labels of an unlabeled split stay -1: ClassLabel documents -1 as "no label" and decoding does
not check the range. The record order TFDS gives is not ours unless asked: by default it
interleaves 16 shards; `read_config=tfds.ReadConfig(interleave_cycle_length=1)` reads shard
after shard in manifest order (what predictions on a test split want). The dataset is not
marked `disable_shuffling`, because TFDS would then refuse `shuffle_files=True` for training.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

from pipeline.core import files, schema

INFO_NAME = "dataset_info.json"
FEATURES_NAME = "features.json"
LABEL_NAMES_NAME = f"{schema.LABEL_KEY}.labels.txt"  # ClassLabel's `<feature>.labels.txt`
METADATA_NAMES = (INFO_NAME, FEATURES_NAME, LABEL_NAMES_NAME)

# What `builder.name` says. Fixed, not the folder's name: the files must be byte-identical
# wherever the dataset is written (a multi-host write is compared with a one-host one).
DATASET_NAME = "raw_chw_images"
FILE_FORMAT = "tfrecord"
# TFDS's placeholders; SHARD_X_OF_Y is `00003-of-00036` (5 digits, more past 99,999 shards).
FILEPATH_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.tfrecord"
TFDS_MIN_SHARD_DIGITS = 5

_FEATURES_MODULE = "tensorflow_datasets.core.features"
_CLASS_NAMES = {
    "dict": f"{_FEATURES_MODULE}.features_dict.FeaturesDict",
    "tensor": f"{_FEATURES_MODULE}.tensor_feature.Tensor",
    "class_label": f"{_FEATURES_MODULE}.class_label_feature.ClassLabel",
    "text": f"{_FEATURES_MODULE}.text_feature.Text",
}


def tfds_version(manifest: schema.Manifest) -> str:
    """TFDS wants x.y.z; ours is the record format's version."""
    return f"{manifest.format_version}.0.0"


def tfds_shard_filename(split: str, index: int, count: int) -> str:
    """The name FILEPATH_TEMPLATE gives shard `index` of `count` (TFDS's naming rule)."""
    digits = max(len(str(count)), TFDS_MIN_SHARD_DIGITS)
    return f"{split}-{index:0{digits}d}-of-{count:0{digits}d}.tfrecord"


def unsupported_reason(manifest: schema.Manifest) -> str | None:
    """Why TFDS could not read this dataset through our metadata, or None when it can."""
    if manifest.compression != "NONE":
        return (f"its shards are {manifest.compression}-compressed and TFDS reads only "
                "uncompressed TFRecords (write with --compression=NONE for TFDS)")
    mangled = [name for name in manifest.classes if name != name.strip() or "\n" in name]
    if mangled:
        return (f"class name(s) {mangled[:5]} have surrounding spaces or a newline, which "
                f"TFDS's {LABEL_NAMES_NAME} cannot hold; rename those classes")
    for split, info in manifest.splits.items():
        for index, shard in enumerate(info.shards):
            expected = tfds_shard_filename(split, index, len(info.shards))
            if shard.file != expected:
                return (f"shard {shard.file} does not follow TFDS's naming {FILEPATH_TEMPLATE} "
                        f"(it expects {expected}); use fewer shards")
    return None


def dataset_info(manifest: schema.Manifest) -> dict:
    """dataset_info.json: the DatasetInfo proto in protobuf's JSON form (int64 as strings)."""
    return {
        "description": ("Raw uint8 CHW images written by `python -m pipeline.write`; "
                        f"{schema.MANIFEST_NAME} beside this file is the full manifest."),
        "fileFormat": FILE_FORMAT,
        "name": DATASET_NAME,
        "splits": [
            {
                "filepathTemplate": FILEPATH_TEMPLATE,
                "name": split,
                "numBytes": str(sum(shard.bytes for shard in info.shards)),
                "shardLengths": [str(shard.count) for shard in info.shards],
            }
            for split, info in manifest.splits.items()
        ],
        # `as_supervised=True` yields (image, label) pairs; multi-label, (image, target).
        "supervisedKeys": {"tuple": {"items": [
            {"featureKey": schema.IMAGE_KEY},
            {"featureKey": schema.TARGET_KEY if manifest.target_size else schema.LABEL_KEY}]}},
        "version": tfds_version(manifest),
    }


def features(manifest: schema.Manifest) -> dict:
    """features.json: the FeaturesDict proto in protobuf's JSON form."""
    image = {
        "pythonClassName": _CLASS_NAMES["tensor"],
        # encoding "bytes": one bytes value per record, decode_raw'd to dtype and reshaped.
        "tensor": {"dtype": schema.DTYPE, "encoding": "bytes",
                   "shape": {"dimensions": [str(d) for d in manifest.image_shape]}},
    }
    # protobuf's JSON leaves out a zero (the default), as TFDS does for a class-less dataset.
    class_label = {"numClasses": str(manifest.num_classes)} if manifest.num_classes else {}
    label = {"classLabel": class_label, "pythonClassName": _CLASS_NAMES["class_label"]}
    path = {"pythonClassName": _CLASS_NAMES["text"], "text": {}}
    found = {schema.IMAGE_KEY: image, schema.LABEL_KEY: label, schema.PATH_KEY: path}
    if manifest.target_size:  # multi-label: the label only says labeled (0) or not (-1)
        found[schema.LABEL_KEY] = _tensor("int64", [])
        found[schema.TARGET_KEY] = _tensor("float32", [manifest.target_size])
    if manifest.feature_size:
        found[schema.FEATURES_KEY] = _tensor("float32", [manifest.feature_size])
    return {"featuresDict": {"features": found}, "pythonClassName": _CLASS_NAMES["dict"]}


def _tensor(dtype: str, shape) -> dict:
    """A Tensor feature stored as its dtype's list (float_list, int64_list)."""
    return {"pythonClassName": _CLASS_NAMES["tensor"],
            "tensor": {"dtype": dtype, "shape": {"dimensions": [str(d) for d in shape]}}}


def label_names(manifest: schema.Manifest) -> str:
    """label.labels.txt: class names in index order, one a line (as ClassLabel saves them)."""
    return "\n".join(manifest.classes) + "\n"


def metadata_files(manifest: schema.Manifest) -> Mapping[str, str]:
    """{file name: contents} of the TFDS metadata; check `unsupported_reason` first."""
    return {
        INFO_NAME: _json_text(dataset_info(manifest)),
        FEATURES_NAME: _json_text(features(manifest)),
        LABEL_NAMES_NAME: label_names(manifest),
    }


def _json_text(document: dict) -> str:
    # Sorted keys and fixed formatting: the same manifest always gives the same bytes.
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_metadata(output_dir: str, manifest: schema.Manifest) -> str | None:
    """Write the TFDS metadata into `output_dir`, each file atomically; returns None, or why
    there is none for this dataset (nothing is written then)."""
    reason = unsupported_reason(manifest)
    if reason is not None:
        return reason
    for name, text in metadata_files(manifest).items():
        files.atomic_write_text(os.path.join(output_dir, name), text)
    return None
