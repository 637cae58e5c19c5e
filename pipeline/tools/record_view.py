"""Records as they are stored: read a range of a split, and `--record=N` in words.

Reads shard by shard from the one holding the first record asked for, through the reader's
own TFRecord reading (pipeline.dataset.streaming.read_shards), and parses every feature,
the path included. TensorFlow is imported only when records are read: the summary that
`python -m pipeline.inspect` prints first never needs it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from pipeline.core import schema
from pipeline.tools.summary import (MISSING_NAMED, InspectError, check_split, class_caption,
                                    disk_bytes, locate_record)

HEX_BYTES = 32  # first bytes of the image shown by --record
CHANNEL_NAMES = ("R", "G", "B")  # the writer stores RGB (pipeline.writing.images)


@dataclasses.dataclass(frozen=True)
class Record:
    index: int  # in the split, shard order
    shard: str  # file name
    index_in_shard: int
    path: str
    label: int
    image: np.ndarray  # uint8 [3, H, W], as stored
    # A labeled multi-label or regression record's target in words (target_caption); None:
    # its label's class says it.
    caption: str | None = None

    def described(self, classes: Sequence[str]) -> str:
        """What the record is labeled, in words: its class, tags or values."""
        return self.caption if self.caption is not None else class_caption(self.label, classes)


def target_caption(manifest: schema.Manifest, target) -> str:
    """A target in words: a multi-label record's classes ("clear haze", or "(no class)"), a
    regression record's values ("Pawpularity 42")."""
    values = np.asarray(target).tolist()
    if manifest.target_kind == schema.MULTI_LABEL:
        return " ".join(name for name, on in zip(manifest.classes, values) if on) or \
            "(no class)"
    return ", ".join(f"{name} {value:.6g}" for name, value in zip(manifest.targets, values))


def decode_image(raw: bytes, image_shape: Sequence[int], where: str) -> np.ndarray:
    """Stored image bytes -> uint8 [C, H, W], or a FormatError naming the record."""
    expected = math.prod(image_shape)
    if len(raw) != expected:
        raise schema.FormatError(f"{where}: the image holds {len(raw):,} bytes; image_shape "
                                 f"{list(image_shape)} in dataset.json needs {expected:,}")
    return np.frombuffer(raw, np.uint8).reshape(image_shape)


def read_records(data_dir: str, split: str, start: int, count: int,
                 manifest: schema.Manifest | None = None) -> list[Record]:
    """Records start..start+count-1 of `split`, in shard order, each with where it lies.

    Reads shard by shard from the one holding `start`, so a record deep in a large split costs
    reading its own shard, not the ones before it.
    """
    import tensorflow as tf

    from pipeline.dataset.streaming import read_shards

    manifest = manifest or schema.read_manifest(data_dir)
    info = check_split(manifest, split)
    if count < 1:
        return []
    position, offset = locate_record(manifest, split, start)
    locate_record(manifest, split, start + count - 1)  # the last one must exist too
    paths = manifest.shard_paths(data_dir, split)
    _, missing = disk_bytes(paths)
    if missing:
        raise InspectError(f"{len(missing)} shard file(s) of {split!r} are missing, e.g. "
                           f"{missing[:MISSING_NAMED]}; copy them back or rewrite the dataset")
    compression = schema.tf_compression_type(manifest.compression)
    records: list[Record] = []
    while len(records) < count:
        shard = info.shards[position]
        wanted = min(count - len(records), shard.count - offset)
        dataset = read_shards(paths[position], compression).skip(offset).take(wanted)
        try:
            batches = list(dataset.batch(wanted))
        except tf.errors.OpError as err:
            raise InspectError(f"{shard.file} cannot be read ({err.message}); it is damaged: "
                               "rewrite the dataset with `python -m pipeline.write "
                               "--overwrite`") from err
        got = sum(int(batch.shape[0]) for batch in batches)
        if got != wanted:
            raise InspectError(f"{shard.file} holds {offset + got} records, dataset.json says "
                               f"{shard.count}; rewrite the dataset")
        parsed = tf.io.parse_example(batches[0], schema.tf_feature_spec(manifest.target_size))
        for i in range(wanted):
            where = f"{shard.file} record {offset + i}"
            records.append(Record(
                index=start + len(records),
                shard=shard.file,
                index_in_shard=offset + i,
                path=parsed[schema.PATH_KEY][i].numpy().decode("utf-8"),
                label=int(parsed[schema.LABEL_KEY][i]),
                image=decode_image(parsed[schema.IMAGE_KEY][i].numpy(), manifest.image_shape,
                                   where),
                caption=(target_caption(manifest, parsed[schema.TARGET_KEY][i])
                         if manifest.target_size and parsed[schema.LABEL_KEY][i] >= 0
                         else None),
            ))
        position, offset = position + 1, 0
    return records


def record_dump(data_dir: str, split: str, index: int,
                manifest: schema.Manifest | None = None) -> str:
    """Record `index` of `split` (0-based, shard order) in words; `manifest`: dataset.json's,
    or a fold's view of it."""
    manifest = manifest or schema.read_manifest(data_dir)
    locate_record(manifest, split, index)  # the range error before TensorFlow starts
    (record,) = read_records(data_dir, split, index, 1, manifest)
    info = manifest.split(split)
    shard_count = next(s.count for s in info.shards if s.file == record.shard)
    image = record.image
    flat = image.reshape(image.shape[0], -1)
    raw = image.tobytes()
    lines = [
        f"record    {index:,} of {split!r} (0-based, shard order; the split has "
        f"{info.count:,})",
        f"shard     {record.shard}, record {record.index_in_shard} of {shard_count} there",
        f"path      {record.path}",
        f"label     {record.label} ({record.described(manifest.classes)})",
        f"image     {tuple(image.shape)} {image.dtype} {manifest.layout}, {len(raw):,} bytes",
        "channel   min  max     mean",
    ]
    for name, values in zip(CHANNEL_NAMES, flat):
        lines.append(f"  {name:<6}{values.min():>5}{values.max():>5}{values.mean():>9.2f}")
    shown = raw[:HEX_BYTES]
    lines.append(f"bytes     first {len(shown)} of {len(raw):,} ({CHANNEL_NAMES[0]} channel, "
                 f"row 0 first): {shown.hex(' ')}")
    return "\n".join(lines)
