"""Reruns verify what they keep: a kept shard's bytes against its digest, its indexes against it.

A rerun keeps the shards an earlier run completed (output_dir) and, once the dataset is
complete, every shard dataset.json lists. Checking their sizes alone let a damaged shard
through ("already complete ... nothing to do" over a flipped byte), so each kept shard is
hashed (sha256, as MosaicML Streaming's `validate_hash`) and compared with what was recorded
when it was written: its `.progress/` record while the write is unfinished, dataset.json after.
A shard that differs is rewritten; the plan makes it byte-identical to the first.

The indexes beside an uncompressed shard (the DALI `.idx`, the record index) are derived from
its bytes: they are rebuilt from the shard (index_scan.scan_shard, small preads) and
compared byte for byte, and one that differs is replaced without rewriting the shard.
Checking costs one read of every kept byte: ~1 s per GiB here from the page cache (sha256
alone 0.6 s per GiB; 258 MiB of 224x224 shards checked, indexes included, in 0.24 s); a cold
disk reads slower than that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from absl import logging

from pipeline import errors
from pipeline.core import files, index_scan, record_index, records, schema
from pipeline.writing import tfds_export

# Bytes hashed per read: large enough that the per-call cost vanishes next to sha256's.
HASH_CHUNK_BYTES = 1 << 20
# Formats whose datasets the same command upgrades in place: their shards are this format's
# byte for byte; only the record indexes and dataset.json change (upgrade_manifest).
UPGRADABLE_VERSIONS = (1,)


def file_digest(path: str) -> tuple[int, str]:
    """(size, sha256 hex) of the file at `path`."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def index_digest(output_dir: str, shard_file: str) -> str:
    """The sha256 of the record index file beside the uncompressed shard `shard_file`."""
    return file_digest(os.path.join(output_dir,
                                    schema.record_index_filename(shard_file, "NONE")))[1]


def shard_problem(output_dir: str, filename: str, size: int, sha256: str) -> str | None:
    """Why the shard `filename` is not the one of `size` bytes and digest `sha256` (missing,
    another size, other bytes), or None when it is."""
    path = os.path.join(output_dir, filename)
    if not os.path.exists(path):
        return "missing"
    if os.path.getsize(path) != size:
        return f"{os.path.getsize(path):,} bytes, {size:,} when written"
    found = file_digest(path)[1]
    if found != sha256:
        return f"damaged (sha256 {found[:16]}..., {sha256[:16]}... when written)"
    return None


def expected_indexes(output_dir: str, filename: str, size: int, sha256: str, image_bytes: int,
                     widths: record_index.Widths = record_index.Widths()
                     ) -> dict[str, bytes] | None:
    """{index file name: its bytes} of the intact uncompressed shard `filename`, rebuilt from
    the shard; None when its records cannot be framed (the shard must be rewritten)."""
    scan = index_scan.scan_shard(os.path.join(output_dir, filename), image_bytes, widths)
    if scan.problem is not None:
        return None
    table = scan.table
    framing = records.HEADER_BYTES + records.FOOTER_BYTES
    dali = records.dali_index_text([(int(offset), int(length) + framing)
                                    for offset, length in table[:, :2]])
    index = record_index.RecordIndex(filename, size, sha256, image_bytes, table, scan.targets,
                                     scan.features)
    return {schema.dali_index_filename(filename, "NONE"): dali.encode("ascii"),
            schema.record_index_filename(filename, "NONE"): record_index.encode(index)}


def repair_indexes(output_dir: str, expected: dict[str, bytes]) -> list[tuple[str, bool]]:
    """Replace the index files that differ from `expected`; returns (name, whether it was an
    older format's record index, which an upgrade replaces as a matter of course)."""
    replaced = []
    for name, data in sorted(expected.items()):
        path = os.path.join(output_dir, name)
        try:
            with open(path, "rb") as f:
                found = f.read()
        except FileNotFoundError:
            found = b""
        if found != data:
            files.atomic_write_bytes(path, data)
            replaced.append((name, found.startswith(record_index.MAGIC_V1)))
    return replaced


def check_kept_shard(output_dir: str, shard, *, compression: str, image_bytes: int,
                     widths: record_index.Widths = record_index.Widths()) -> str | None:
    """None when `shard` (a dataset.json ShardInfo or a progress record: its file, bytes and
    sha256) may be kept, its indexes repaired where they differ; otherwise why it must be
    rewritten, which is also logged."""
    filename, size, sha256 = shard.file, shard.bytes, shard.sha256
    problem = shard_problem(output_dir, filename, size, sha256)
    if problem is None and compression == "NONE":
        expected = expected_indexes(output_dir, filename, size, sha256, image_bytes, widths)
        if expected is None:
            problem = "its records cannot be framed"
        else:
            for name, older in repair_indexes(output_dir, expected):
                if older:
                    logging.info("%s rebuilt from %s in this format", name, filename)
                else:
                    logging.warning("%s did not match its shard; rebuilt it from %s", name,
                                    filename)
    if problem is not None:
        logging.warning("%s is %s; writing it again", filename, problem)
    return problem


def check_manifest(output_dir: str, manifest: schema.Manifest, expected: dict) -> str | None:
    """Over a complete dataset: why dataset.json no longer says what this command wrote
    (changed_manifest_field), for the writer to refuse; else None, the TFDS metadata derived
    from it restored where missing or changed."""
    changed = changed_manifest_field(manifest, expected)
    if changed:
        return (f"{schema.manifest_path(output_dir)} was changed after it was written: "
                f"{changed}. Put it back as it was, or write the dataset again with "
                "--overwrite")
    texts = (tfds_export.metadata_files(manifest)
             if tfds_export.unsupported_reason(manifest) is None else {})
    restored = restore_files(output_dir, texts)
    if restored:
        logging.info("restored %s from %s", ", ".join(restored), schema.MANIFEST_NAME)


def changed_manifest_field(manifest: schema.Manifest, expected: dict) -> str | None:
    """The first of dataset.json's fields that the write decides (image_shape, classes,
    compression, the shard files) and that no longer says what the write wrote; the other
    fields (counts, statistics, digests) are checked through the shards themselves."""
    found = {"image_shape": list(manifest.image_shape), "classes": list(manifest.classes),
             "compression": manifest.compression,
             "shards": sorted(shard.file for info in manifest.splits.values()
                              for shard in info.shards)}
    for field, value in expected.items():
        if found[field] != value:
            return (f"its {field} is {_short(found[field])} where this command wrote "
                    f"{_short(value)}")
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def restore_files(output_dir: str, texts: dict[str, str]) -> list[str]:
    """Write each of `texts` (name -> content) that is missing or differs; the names written."""
    restored = []
    for name, text in texts.items():
        path = os.path.join(output_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == text:
                    continue
        except FileNotFoundError:
            pass
        files.atomic_write_text(path, text)
        restored.append(name)
    return restored


class ChangedManifest(errors.PipelineError):
    """dataset.json no longer says what the write wrote (exit 2: put it back, or --overwrite)."""


def settle_manifest(output_dir: str, manifest: schema.Manifest,
                    fingerprint: str) -> schema.Manifest:
    """After every shard of a complete dataset was checked and its record indexes rebuilt
    (check_kept_shard): ChangedManifest when dataset.json lists another index digest than the
    rebuilt index's; an older format's dataset upgraded (upgrade_manifest)."""
    if manifest.format_version < schema.format_version_for(manifest.target_kind,
                                                           manifest.features):
        return upgrade_manifest(output_dir, manifest, fingerprint)
    for info in manifest.splits.values():
        for shard in info.shards:
            if (shard.index_sha256 is not None
                    and index_digest(output_dir, shard.file) != shard.index_sha256):
                raise ChangedManifest(
                    f"{schema.manifest_path(output_dir)} was changed after it was written: "
                    f"the index_sha256 of {shard.file} is not its record index's. Put it back "
                    "as it was, or write the dataset again with --overwrite")
    return manifest


def upgrade_manifest(output_dir: str, manifest: schema.Manifest,
                     fingerprint: str) -> schema.Manifest:
    """A complete dataset of an older format, its shards checked and its record indexes
    rebuilt (check_kept_shard), made this format's: dataset.json gets every index's digest
    and this write's fingerprint, and the TFDS metadata (which names the format) follows."""

    def upgraded(shard: schema.ShardInfo) -> schema.ShardInfo:
        if manifest.compression != "NONE":
            return shard
        return dataclasses.replace(shard, index_sha256=index_digest(output_dir, shard.file))

    splits = {name: dataclasses.replace(info, shards=tuple(map(upgraded, info.shards)))
              for name, info in manifest.splits.items()}
    version = schema.format_version_for(manifest.target_kind, manifest.features)
    new = dataclasses.replace(manifest, splits=splits, fingerprint=fingerprint,
                              format_version=version)
    restore_files(output_dir, tfds_export.metadata_files(new)
                  if tfds_export.unsupported_reason(new) is None else {})
    files.atomic_write_text(schema.manifest_path(output_dir), new.to_json())
    logging.info("upgraded %s from format %d to %d: every record index is now listed in it "
                 "(the shards were kept as they are)", schema.manifest_path(output_dir),
                 manifest.format_version, version)
    return new
