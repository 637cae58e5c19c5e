"""`python -m pipeline.inspect`: the summary's numbers, the grid's pixels, one record, errors.

The dataset is written by the real writer; every expectation is read independently of the tool
(file sizes from the file system, records with a plain TFRecordDataset over the shards).
"""

import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from conftest import REPO_ROOT, write_csv, write_images
from pipeline import inspect as inspect_tool
from pipeline.core import schema
from pipeline.tools import grid, record_view, summary
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset

CLASSES = ("cat", "dog", "owl")
SIZE = 8  # stored 8x8: the grid enlarges tiles, which the pixel test must account for


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """30 random 8x8 PNGs: 24 labeled (train.csv), 6 unlabeled (test.csv)."""
    folder = tmp_path_factory.mktemp("src")
    rows = write_images(str(folder), 30, classes=CLASSES, size=(SIZE, SIZE))
    write_csv(folder / "train.csv", ["image", "label"], rows[:24])
    write_csv(folder / "test.csv", ["image"], [(path,) for path, _ in rows[24:]])
    return folder


@pytest.fixture(scope="module")
def data_dir(source, tmp_path_factory):
    """train (3 shards), val (1 shard) and an unlabeled test split (1 shard)."""
    out = tmp_path_factory.mktemp("ds") / "out"
    write_dataset(WriteConfig(
        output_dir=str(out), input=str(source / "train.csv"),
        test_input=str(source / "test.csv"), image_size=SIZE, shards=3, val_shards=1,
        test_shards=1, val_fraction=0.25, num_workers=1, show_progress=False))
    return str(out)


def _records(data_dir, split):
    """[(uint8 CHW image, label, path)] of a split, in shard order, read without the tool."""
    manifest = schema.read_manifest(data_dir)
    out = []
    for serialized in tf.data.TFRecordDataset(
            manifest.shard_paths(data_dir, split),
            schema.tf_compression_type(manifest.compression)):
        parsed = tf.io.parse_single_example(serialized, schema.tf_feature_spec())
        image = np.frombuffer(parsed["image"].numpy(), np.uint8).reshape(manifest.image_shape)
        out.append((image, int(parsed["label"]), parsed["path"].numpy().decode()))
    return out


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


def test_summary_gives_counts_shape_and_bytes_on_disk(data_dir):
    manifest = schema.read_manifest(data_dir)
    text = summary.summarize(manifest, data_dir, "train")
    lines = text.splitlines()
    assert set(manifest.splits) == {"train", "val", "test"}
    total = 0
    for name, info in manifest.splits.items():
        on_disk = sum(os.path.getsize(path) for path in manifest.shard_paths(data_dir, name))
        total += on_disk
        row = next(line for line in lines if line.split()[:1] == [name])
        assert row.split()[1:3] == [f"{info.count:,}", str(len(info.shards))]
        assert f"{on_disk:,}" in row
    assert f"{total:,}" in next(line for line in lines if line.startswith("total"))
    assert f"(C,H,W) = (3, {SIZE}, {SIZE})" in text and "uint8" in text
    # Every class with its count in the chosen split, as the histogram's first two columns.
    counts = manifest.split("train").class_counts
    assert sum(counts.values()) == manifest.split("train").count
    for name in CLASSES:
        assert any(line.split()[:2] == [name, str(counts[name])] for line in lines), name


def test_summary_estimates_cache_ram_and_the_source_ratio(data_dir, source):
    manifest = schema.read_manifest(data_dir)
    text = summary.summarize(manifest, data_dir, "train")
    count = manifest.split("train").count
    assert summary.cache_bytes(manifest, count) == count * (3 * SIZE * SIZE + 8)
    assert "2x" in text  # the loading peak is named
    images = [os.path.join(source, "images", name) for name in os.listdir(source / "images")]
    source_bytes = sum(os.path.getsize(path) for path in images)
    assert f"{len(images)} images" in text and f"{source_bytes:,} bytes" in text
    shards = sum(os.path.getsize(path) for name in manifest.splits
                 for path in manifest.shard_paths(data_dir, name))
    assert f"source = {shards / source_bytes:.1f}x" in text


def test_summary_says_when_the_source_is_gone(data_dir):
    manifest = schema.read_manifest(data_dir)
    moved = schema.Manifest(**{**manifest.__dict__,
                               "flags": {**manifest.flags, "input": "/nowhere/train.csv"}})
    text = summary.summarize(moved, data_dir, "train")
    assert "source    not available" in text and "/nowhere/train.csv" in text


def test_unlabeled_split_lists_classes_without_counts(data_dir):
    manifest = schema.read_manifest(data_dir)
    text = summary.summarize(manifest, data_dir, "test")
    assert "'test' is unlabeled" in text and ", ".join(CLASSES) in text


def test_histogram_scales_to_the_largest_count():
    lines = summary.histogram_lines([("a", 10), ("bb", 5), ("c", 0), ("d", 1)], width=20)
    assert [line.count("#") for line in lines] == [20, 10, 0, 2]
    assert lines[1].startswith("bb  ")


# ---------------------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------------------


def test_grid_layout_places_tiles_in_rows_without_overlap():
    layout = grid.grid_layout(10, SIZE, SIZE, padding=3, label_h=12, min_tile=64)
    assert (layout.columns, layout.rows, layout.scale) == (4, 3, 8)
    assert (layout.tile_w, layout.tile_h) == (64, 64)
    assert (layout.width, layout.height) == (3 + 4 * 67, 3 + 3 * (64 + 12 + 3))
    boxes = [layout.tile_box(i) for i in range(10)]
    assert boxes[0] == (3, 3, 67, 67) and boxes[4] == (3, 82, 67, 146)  # row 2 starts tile 4
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= layout.width and a[3] <= layout.height
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    # Large images are never shrunk or enlarged.
    assert grid.grid_layout(1, 224, 224).scale == 1
    with pytest.raises(summary.InspectError, match="at least 1"):
        grid.grid_layout(0, SIZE, SIZE)


def _grid(data_dir, split, n):
    """The grid inspect --grid draws of the first `n` records of `split`."""
    manifest = schema.read_manifest(data_dir)
    return grid.render_grid(grid.grid_records(data_dir, split, n, manifest), manifest.classes)


def test_grid_tiles_are_the_records_images_in_shard_order(data_dir, tmp_path):
    n = 10  # spans two of the three train shards
    manifest = schema.read_manifest(data_dir)
    assert manifest.split("train").shards[0].count < n
    path = str(tmp_path / "grid.png")
    grid.write_png(_grid(data_dir, "train", n), path)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        pixels = np.asarray(png)
    layout = grid.grid_layout(n, SIZE, SIZE)
    assert pixels.shape == (layout.height, layout.width, 3)
    scale = layout.scale
    assert scale == math.ceil(grid.MIN_TILE_PX / SIZE)
    for i, (image, label, _) in enumerate(_records(data_dir, "train")[:n]):
        left, top, right, bottom = layout.tile_box(i)
        tile = pixels[top:bottom, left:right]
        expected = image.transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)
        np.testing.assert_array_equal(tile, expected, err_msg=f"tile {i}")
        # The same bytes read as HWC (a layout mistake) would not match: the test can see it.
        wrong = image.reshape(SIZE, SIZE, 3).repeat(scale, axis=0).repeat(scale, axis=1)
        assert not np.array_equal(tile, wrong)
        # A caption is drawn in the band under the tile.
        band = pixels[bottom:bottom + layout.label_h, left:right]
        assert (band != grid.BACKGROUND_RGB).any(), f"tile {i} has no caption"


def test_grid_of_more_than_the_split_shows_all_of_it(data_dir):
    count = schema.read_manifest(data_dir).split("test").count
    image = _grid(data_dir, "test", 1000)
    layout = grid.grid_layout(count, SIZE, SIZE)
    assert image.size == (layout.width, layout.height)


def test_captions_name_the_class_or_unlabeled():
    assert summary.class_caption(1, CLASSES) == "dog"
    assert summary.class_caption(schema.UNLABELED, CLASSES) == "unlabeled"
    assert "7" in summary.class_caption(7, CLASSES)


# ---------------------------------------------------------------------------------------------
# --record and errors
# ---------------------------------------------------------------------------------------------


def test_record_dump_names_shard_path_and_label(data_dir):
    manifest = schema.read_manifest(data_dir)
    shards = manifest.split("train").shards
    index = shards[0].count + 1  # the second record of the second shard
    image, label, path = _records(data_dir, "train")[index]
    text = record_view.record_dump(data_dir, "train", index)
    assert f"shard     {shards[1].file}, record 1 of {shards[1].count}" in text
    assert f"path      {path}" in text
    assert f"label     {label} ({manifest.classes[label]})" in text
    assert f"({3}, {SIZE}, {SIZE}) uint8" in text
    assert image.tobytes()[:record_view.HEX_BYTES].hex(" ") in text
    red = image[0]
    assert f"{red.min():>5}{red.max():>5}{red.mean():>9.2f}" in text


def test_record_of_an_unlabeled_split(data_dir):
    _, label, path = _records(data_dir, "test")[0]
    text = record_view.record_dump(data_dir, "test", 0)
    assert label == schema.UNLABELED and "label     -1 (unlabeled)" in text and path in text


@pytest.mark.parametrize("index", [-1, "count"])
def test_record_out_of_range_gives_the_count(data_dir, index, caplog):
    count = schema.read_manifest(data_dir).split("val").count
    index = count if index == "count" else index
    with pytest.raises(summary.InspectError, match=f"has {count} records.*use 0..{count - 1}"):
        record_view.record_dump(data_dir, "val", index)
    out = io.StringIO()
    assert inspect_tool.inspect_command(data_dir, split="val", record=index, out=out) == 2
    assert out.getvalue() == ""  # one error, no partial output
    assert f"use 0..{count - 1}" in caplog.text


def test_unknown_split_and_missing_manifest_exit_2(data_dir, tmp_path, caplog):
    out = io.StringIO()
    assert inspect_tool.inspect_command(data_dir, split="tain", out=out) == 2
    assert "use one of ['test', 'train', 'val']" in caplog.text
    assert inspect_tool.inspect_command(str(tmp_path), out=out) == 2
    assert "no dataset.json" in caplog.text and "pipeline.write" in caplog.text
    assert inspect_tool.inspect_command(data_dir, grid=str(tmp_path / "g.png"), n=0,
                                        out=out) == 2
    assert "--n=0" in caplog.text
    assert out.getvalue() == ""


def test_importing_the_tool_keeps_the_standard_inspect_module():
    import inspect

    assert inspect is not inspect_tool and hasattr(inspect, "signature")
    assert "pipeline" not in inspect.__file__
    # The command's flags are defined only under __main__.
    assert "grid" not in flags.FLAGS and "record" not in flags.FLAGS


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.inspect", *args], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow
def test_cli_writes_the_grid_and_dumps_a_record(data_dir, tmp_path):
    png = tmp_path / "sub" / "grid.png"
    result = _cli(data_dir, f"--grid={png}", "--n=4", "--record=0")
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, path = _records(data_dir, "train")[0]
    assert "bytes on disk" in result.stdout and f"path      {path}" in result.stdout
    with Image.open(png) as image:
        layout = grid.grid_layout(4, SIZE, SIZE)
        assert image.format == "PNG" and image.size == (layout.width, layout.height)


def test_cli_bad_input_exits_2_with_the_fix(data_dir):
    result = _cli(data_dir, "--split=nope")
    assert result.returncode == 2
    assert "use one of ['test', 'train', 'val']" in result.stderr
    result = _cli()
    assert result.returncode == 2 and "DATA_DIR" in result.stderr
