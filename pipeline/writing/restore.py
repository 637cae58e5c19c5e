"""What a rerun over a complete dataset can restore from the shards themselves: rejects.csv.

The shards hold every image that was stored, by its path; the plan lists every image the
command read. Those planned and not stored were rejected: deleted, rejects.csv is rebuilt
from that difference (one read of the shards, ~1 s per GiB), each reason found again by
decoding the image once more (a reject is rare: the write fails past --max_reject_fraction).
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from absl import logging

from pipeline.core import record_fields, records, schema, streams
from pipeline.writing import images, plan, rejects
from pipeline.writing.settings import WriteConfig

DECODES_NOW = "rejected when the dataset was written; it decodes now"


def restore_rejects(config: WriteConfig, manifest: schema.Manifest,
                    shards: Sequence[plan.ShardSpec]) -> int | None:
    """rejects.csv written again when it is missing; how many it lists (None: it was there)."""
    if os.path.exists(os.path.join(config.output_dir, schema.REJECTS_NAME)):
        return None
    stored = set()
    for info in manifest.splits.values():
        for shard in info.shards:
            stored.update(stored_paths(os.path.join(config.output_dir, shard.file),
                                       manifest.compression))
    planned = {image.path: image.file for spec in shards for image in spec.images}
    found = [(path, reason_now(file, config)) for path, file in planned.items()
             if path not in stored]
    rejects.write_rejects_csv(config.output_dir, found)
    logging.info("restored %s: %d reject(s), found by comparing the shards with the input",
                 schema.REJECTS_NAME, len(found))
    if len(found) != manifest.rejects:
        logging.warning("%s lists %d reject(s) where %s counts %d", schema.REJECTS_NAME,
                        len(found), schema.MANIFEST_NAME, manifest.rejects)
    return len(found)


def stored_paths(path: str, compression: str) -> Iterator[str]:
    """The source path of every record of the shard at `path`."""
    with open(path, "rb") as raw:
        stream = raw if compression == "NONE" else streams.InflatingReader(raw, compression)
        for data in records.iter_framed_records(stream):
            yield record_fields.path_of(data)


def reason_now(file: str, config: WriteConfig) -> str:
    """Why `file` is rejected, found by decoding it again."""
    try:
        images.decode_image(file, config.image_size, config.resize)
    except images.RejectedImage as err:
        return err.reason
    return DECODES_NOW
