"""inspect with many classes: a compact class summary, classes missing from a split, grid
captions that keep record index and both ends of a name, and the tile-to-path map."""

import csv
import io

import numpy as np
import pytest
from PIL import ImageFont

from conftest import write_csv, write_images
from pipeline import inspect as inspect_tool
from pipeline.core import schema
from pipeline.tools import grid
from pipeline.tools.record_view import Record
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset

# 30 classes, one of them ("rare") with a single image: it lands in train and val has none.
CLASSES = tuple(f"hubble_deep_field_{i:02d}" for i in range(29)) + ("rare",)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    rows = write_images(str(root / "src"), 29 * 4, size=(8, 8), classes=CLASSES[:29])
    rows.append((write_images(str(root / "rare"), 1, size=(8, 8))[0][0], "rare"))
    rows[-1] = ("../rare/" + rows[-1][0], "rare")
    write_csv(root / "src" / "train.csv", ["image", "label"], rows)
    write_dataset(WriteConfig(output_dir=str(root / "out"), input=str(root / "src" / "train.csv"),
                              image_size=8, shards=2, val_shards=1, val_fraction=0.25,
                              num_workers=1, show_progress=False, allow_outside_input=True))
    return str(root / "out")


def _lines(data_dir, **options):
    out = io.StringIO()
    assert inspect_tool.inspect_command(data_dir, out=out, **options) == 0
    return out.getvalue().splitlines()


def test_many_classes_get_a_compact_summary_and_the_histogram_on_request(data_dir):
    manifest = schema.read_manifest(data_dir)
    counts = manifest.split("train").class_counts
    compact = _lines(data_dir)
    histogram = _lines(data_dir, histogram=True)
    bars = {line.split()[0]: int(line.split()[1]) for line in histogram
            if line.split()[:1] and line.split()[0] in CLASSES}
    assert bars == {name: counts[name] for name in CLASSES}  # every class, with its count
    assert len(compact) < len(histogram) - 20
    smallest = next(line for line in compact if line.strip().startswith("smallest 5:"))
    assert smallest.split(": ", 1)[1].startswith(f"rare {counts['rare']}")
    assert any(line.strip().startswith("largest 5:") for line in compact)
    assert any("--histogram lists all 30" in line for line in compact)


def test_classes_with_no_image_in_a_split_are_named(data_dir):
    compact = _lines(data_dir)
    assert "  no image in 'val': 1 class(es): rare" in compact
    assert not any("no image in 'train'" in line for line in compact)


def test_captions_keep_the_record_index_and_both_ends_of_the_name():
    font = ImageFont.load_default()
    image = np.zeros((3, 8, 8), np.uint8)
    first, second = (Record(index, "s.tfrecord", index, f"{index}.png", label, image)
                     for index, label in ((3, 0), (17, 17)))
    classes = ("hubble_deep_field_1", "x", "y") + ("z",) * 14 + ("hubble_deep_field_2",)
    one, two = (grid.tile_caption(record, classes, font, 64) for record in (first, second))
    assert one.startswith("#3 hubb") and one.endswith("_1") and ".." in one
    assert two.startswith("#17 hu") and two.endswith("_2")
    assert font.getlength(one) <= 64 and font.getlength(two) <= 64
    assert grid.tile_caption(first, ("a",) * 4, font, 64) == "#3 a"  # fits: whole


def test_grid_writes_a_tile_map_beside_the_png(data_dir, tmp_path):
    png = tmp_path / "grids" / "train.png"
    lines = _lines(data_dir, grid=str(png), n=6)
    tiles_csv = tmp_path / "grids" / "train.tiles.csv"
    assert any(str(tiles_csv) in line for line in lines)
    rows = list(csv.DictReader(tiles_csv.open(newline="")))
    assert [int(row["tile"]) for row in rows] == list(range(6))
    assert [(int(row["row"]), int(row["column"])) for row in rows] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # ceil(sqrt(6)) = 3 per row
    records = grid.grid_records(data_dir, "train", 6)
    assert [row["path"] for row in rows] == [record.path for record in records]
    assert [int(row["record"]) for row in rows] == list(range(6))
    manifest = schema.read_manifest(data_dir)
    assert [row["class"] for row in rows] == [manifest.classes[r.label] for r in records]
    assert rows[0]["shard"] == manifest.split("train").shards[0].file
