"""DALI index files: one per uncompressed shard, exactly what DALI's tfrecord2idx would write."""

import os
import struct

import pytest

from conftest import tree_digest, write_csv, write_images, write_labeled_dataset
from pipeline.core import files, records, schema
from pipeline.writing import shard_writer, tfds_export
from pipeline.writing.output_dir import is_our_file
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset


def scan_index(path):
    """The DALI index of a TFRecord file, found independently of the code under test, the way
    tfrecord2idx does: each record is length (8 bytes LE), length CRC (4), data, data CRC (4)."""
    with open(path, "rb") as f:
        content = f.read()
    lines, offset = [], 0
    while offset < len(content):
        (length,) = struct.unpack_from("<Q", content, offset)
        size = 8 + 4 + length + 4
        lines.append(f"{offset} {size}\n")
        offset += size
    assert offset == len(content), f"{path}: the last record runs past the end of the file"
    return "".join(lines)


def _all_shards(manifest):
    return [shard for info in manifest.splits.values() for shard in info.shards]


def _labeled_with_test_split(root, output="out", **config):
    """24 labeled images (train + val) and 6 unlabeled ones (a test split) in `root/src`
    (made once), written into `root/<output>`."""
    src = root / "src"
    if not src.exists():
        rows = write_images(str(src), 30, size=(8, 8))
        write_csv(src / "train.csv", ["image", "label"], rows[:24])
        write_csv(src / "test.csv", ["image"], [(path,) for path, _ in rows[24:]])
    settings = dict(output_dir=str(root / output), input=str(src / "train.csv"),
                    test_input=str(src / "test.csv"), image_size=8, shards=3,
                    val_fraction=0.25, num_workers=1, show_progress=False)
    settings.update(config)
    return write_dataset(WriteConfig(**settings))


def test_every_shard_has_an_index_of_its_records_offsets_and_sizes(tmp_path):
    summary = _labeled_with_test_split(tmp_path)
    out = summary.output_dir
    shards = _all_shards(summary.manifest)
    assert {name for name in os.listdir(out) if name.endswith(".idx")} == {
        shard.file + ".idx" for shard in shards}
    for shard in shards:
        with open(os.path.join(out, shard.file + ".idx"), encoding="ascii") as f:
            index = f.read()
        assert index == scan_index(os.path.join(out, shard.file)), shard.file
        assert len(index.splitlines()) == shard.count > 0


def test_index_text_is_tfrecord2idx_format():
    assert records.dali_index_text([(0, 208), (208, 209)]) == "0 208\n208 209\n"
    assert records.dali_index_text([]) == ""


@pytest.mark.parametrize("compression", ["GZIP", "ZLIB"])
def test_compressed_shards_have_no_index(tmp_path, compression):
    out = write_labeled_dataset(tmp_path, 12, "out", shards=2, compression=compression)
    names = os.listdir(out)
    assert [name for name in names if name.endswith(".idx")] == []
    assert sum(name.endswith(schema.compression_suffix(compression)) for name in names) >= 2
    assert schema.dali_index_filename("train-00000-of-00002.tfrecord.gz", compression) is None


class _Crash(Exception):
    pass


def test_a_kept_shard_whose_index_is_gone_gets_it_rebuilt(tmp_path, monkeypatch):
    reference = _labeled_with_test_split(tmp_path, "reference").output_dir
    real_write_shard = shard_writer.write_shard
    written = []

    def crash_on_third(spec, output_dir, **kwargs):
        if len(written) == 2:
            raise _Crash()
        written.append(spec.filename())
        return real_write_shard(spec, output_dir, **kwargs)

    monkeypatch.setattr(shard_writer, "write_shard", crash_on_third)
    with pytest.raises(_Crash):
        _labeled_with_test_split(tmp_path)
    out = tmp_path / "out"
    os.remove(out / (written[0] + ".idx"))

    monkeypatch.setattr(shard_writer, "write_shard", real_write_shard)
    summary = _labeled_with_test_split(tmp_path)
    assert summary.reused == 2  # both shards: the first's index is rebuilt from its bytes
    assert tree_digest(out) == tree_digest(reference)


def test_index_and_tfds_files_are_recognised_as_ours():
    index = schema.shard_filename(schema.TRAIN, 3, 36) + ".idx"
    for name in (index, files.temp_name(index), *tfds_export.METADATA_NAMES):
        assert is_our_file(name), name
    assert not is_our_file("notes.idx")
