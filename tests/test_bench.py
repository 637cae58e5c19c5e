"""The benchmark tool: a deterministic photo folder, writer rows that run end to end, its report.

No timing assertions: performance targets are printed by `python -m pipeline.bench`, never
tested (a loaded machine would fail them at random).
"""

import csv
import json
import os

import pytest
from absl import flags
from absl.testing import flagsaver
from PIL import Image

from conftest import tree_digest
from pipeline import bench

WRITER_ROWS = ["write_1_worker", "write_2_workers"]


def _csv_rows(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_photo_folder_is_deterministic_and_listed(tmp_path):
    first = bench.make_photo_folder(str(tmp_path / "a"), 6, seed=0)
    second = bench.make_photo_folder(str(tmp_path / "b"), 6, seed=0)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")

    rows = _csv_rows(first)
    assert [row["image"] for row in rows] == [f"images/{i}.jpg" for i in range(6)]
    assert [row["label"] for row in rows] == [f"class_{i}" for i in range(6)]
    for row in rows:
        with Image.open(os.path.join(tmp_path / "a", row["image"])) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) >= bench.CROP_MIN_SIDE
    assert second == str(tmp_path / "b" / "train.csv")

    other_seed = bench.make_photo_folder(str(tmp_path / "c"), 6, seed=1)
    assert len(_csv_rows(other_seed)) == 6
    first_photo = "images/0.jpg"
    assert tree_digest(tmp_path / "c")[first_photo] != tree_digest(tmp_path / "a")[first_photo]


def test_photo_folder_is_reused_or_rebuilt(tmp_path):
    folder = str(tmp_path / "photos")
    bench.make_photo_folder(folder, 6, seed=0)
    sentinel = os.path.join(folder, "kept")
    open(sentinel, "w").close()
    bench.make_photo_folder(folder, 6, seed=0)
    assert os.path.exists(sentinel)  # same parameters: the folder is kept as it is

    csv_path = bench.make_photo_folder(folder, 4, seed=0)
    assert not os.path.exists(sentinel)  # other parameters: rebuilt from scratch
    assert len(_csv_rows(csv_path)) == 4
    assert sorted(os.listdir(os.path.join(folder, "images"))) == [f"{i}.jpg" for i in range(4)]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    with pytest.raises(bench.BenchError, match="not made by the bench"):
        bench.make_photo_folder(str(foreign), 4, seed=0)


@pytest.fixture
def parsed_flags():
    """The bench's absl flags at their defaults, as `app.run` would leave them."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver():
        yield flags.FLAGS


def test_writer_rows_write_json(tmp_path, parsed_flags, capsys):
    # Made here, so main reuses it instead of building it in a child process.
    bench.make_photo_folder(str(tmp_path / bench.PHOTOS_DIR), 12, seed=bench.PHOTO_SEED)
    json_path = tmp_path / "bench.json"
    parsed_flags.workdir = str(tmp_path)
    parsed_flags.images = 12
    parsed_flags.image_size = 16
    parsed_flags.repeats = 1
    parsed_flags.json = str(json_path)

    bench.main(["bench"])

    document = json.loads(json_path.read_text())
    assert [row["name"] for row in document["rows"]] == WRITER_ROWS
    for row in document["rows"]:
        assert row["images"] == 12
        assert row["images_per_s"] > 0 and row["peak_rss_mb"] > 0
        assert len(row["runs"]) == 1
    assert document["settings"]["image_size"] == 16
    assert document["write_speedup"] > 0
    table = capsys.readouterr().out
    assert all(name in table for name in WRITER_ROWS) and "write speedup" in table
    # Both rows wrote the same dataset: workers never change the output.
    manifests = [json.loads((tmp_path / name / "dataset.json").read_text())
                 for name in WRITER_ROWS]
    assert manifests[0]["splits"] == manifests[1]["splits"]


def test_rows_select_and_keep_their_fastest_run():
    assert bench.select_rows([]) == list(bench.ROWS)
    assert bench.select_rows(["write_2_workers"]) == ["write_2_workers"]
    with pytest.raises(bench.BenchError, match="unknown row"):
        bench.select_rows(["write_3_workers"])

    runs = [bench.make_row("write_1_worker", 100, seconds, peak, 0.0)
            for seconds, peak in [(2.0, 50.0), (1.0, 40.0), (4.0, 60.0)]]
    best = bench.best_of(runs)
    assert (best.seconds, best.images_per_s, best.peak_rss_mb) == (1.0, 100.0, 60.0)
    assert best.runs == (2.0, 1.0, 4.0) and best.spread == 3.0

    parallel = bench.make_row("write_2_workers", 100, 0.5)
    assert bench.write_speedup([best, parallel]) == 2.0
    assert bench.write_speedup([best]) is None
    assert "target >= 1.8x: met" in bench.format_report([best, parallel])
