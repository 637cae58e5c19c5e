"""The benchmark tool: a deterministic photo folder, writer rows that run end to end, its report.

No timing assertions: performance targets are printed by `python -m pipeline.bench`, never
tested (a loaded machine would fail them at random).
"""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from PIL import Image

from conftest import tree_digest
from pipeline import bench as bench_command
from pipeline.tools.bench import measure, photos, scaling
from pipeline.tools.bench import report as bench_report
from pipeline.tools.bench import rows as bench_rows

WRITER_ROWS = ["write_1_worker", "write_2_workers"]


def _csv_rows(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_photo_folder_is_deterministic_and_listed(tmp_path):
    first = photos.make_photo_folder(str(tmp_path / "a"), 6, seed=0)
    second = photos.make_photo_folder(str(tmp_path / "b"), 6, seed=0)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")

    rows = _csv_rows(first)
    assert [row["image"] for row in rows] == [f"images/{i}.jpg" for i in range(6)]
    assert [row["label"] for row in rows] == [f"class_{i}" for i in range(6)]
    for row in rows:
        with Image.open(os.path.join(tmp_path / "a", row["image"])) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) >= photos.CROP_MIN_SIDE
    assert second == str(tmp_path / "b" / "train.csv")

    other_seed = photos.make_photo_folder(str(tmp_path / "c"), 6, seed=1)
    assert len(_csv_rows(other_seed)) == 6
    first_photo = "images/0.jpg"
    assert tree_digest(tmp_path / "c")[first_photo] != tree_digest(tmp_path / "a")[first_photo]


def test_photo_folder_is_reused_or_rebuilt(tmp_path):
    folder = str(tmp_path / "photos")
    photos.make_photo_folder(folder, 6, seed=0)
    sentinel = os.path.join(folder, "kept")
    open(sentinel, "w").close()
    photos.make_photo_folder(folder, 6, seed=0)
    assert os.path.exists(sentinel)  # same parameters: the folder is kept as it is

    csv_path = photos.make_photo_folder(folder, 4, seed=0)
    assert not os.path.exists(sentinel)  # other parameters: rebuilt from scratch
    assert len(_csv_rows(csv_path)) == 4
    assert sorted(os.listdir(os.path.join(folder, "images"))) == [f"{i}.jpg" for i in range(4)]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    with pytest.raises(measure.BenchError, match="not made by the bench"):
        photos.make_photo_folder(str(foreign), 4, seed=0)


@pytest.fixture
def parsed_flags():
    """The bench's absl flags at their defaults, as `app.run` would leave them."""
    if "quick" not in flags.FLAGS:
        bench_command.define_flags()
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver():
        yield flags.FLAGS


def _run_bench(flag_values, tmp_path, images, rows, **more_flags):
    """bench_command.main on `images` photos at 16 px, one run of `rows`; returns the JSON path."""
    # Made here, so main reuses it instead of building it in a child process.
    photos.make_photo_folder(str(tmp_path / photos.PHOTOS_DIR), images, seed=photos.PHOTO_SEED)
    json_path = tmp_path / "bench.json"
    settings = dict(workdir=str(tmp_path), images=images, image_size=16, repeats=1,
                    json=str(json_path), rows=rows, **more_flags)
    for name, value in settings.items():
        setattr(flag_values, name, value)
    bench_command.main(["bench"])
    return json_path


def test_writer_rows_write_json(tmp_path, parsed_flags, capsys):
    json_path = _run_bench(parsed_flags, tmp_path, 12, WRITER_ROWS)

    document = json.loads(json_path.read_text())
    assert [row["name"] for row in document["rows"]] == WRITER_ROWS
    for row in document["rows"]:
        assert row["images"] == 12
        assert row["images_per_s"] > 0 and row["peak_rss_mib"] > 0
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
    assert bench_rows.select_rows([]) == list(bench_rows.ROWS)
    assert bench_rows.select_rows(["write_2_workers"]) == ["write_2_workers"]
    with pytest.raises(measure.BenchError, match="unknown row"):
        bench_rows.select_rows(["write_3_workers"])

    runs = [measure.make_row("write_1_worker", 100, seconds, peak, 0.0)
            for seconds, peak in [(2.0, 50.0), (1.0, 40.0), (4.0, 60.0)]]
    best = measure.best_of(runs)
    assert (best.seconds, best.images_per_s, best.peak_rss_mib) == (1.0, 100.0, 60.0)
    assert best.runs == (2.0, 1.0, 4.0) and best.spread == 3.0

    parallel = measure.make_row("write_2_workers", 100, 0.5)
    assert bench_report.write_speedup([best, parallel]) == 2.0
    assert bench_report.write_speedup([best]) is None
    assert "target >= 1.8x: met" in bench_report.format_report([best, parallel])


# The rows run in this process (the one-core rows run a child bench each: their own test).
IN_PROCESS_READER_ROWS = [name for name in bench_rows.READER_ROWS
                          if not name.endswith(scaling.ONE_CORE_SUFFIX)]


@pytest.mark.slow
def test_reader_rows_time_every_reader_against_the_jpeg_baseline(tmp_path, parsed_flags, capsys):
    json_path = _run_bench(parsed_flags, tmp_path, 24, IN_PROCESS_READER_ROWS, read_images=40)

    document = json.loads(json_path.read_text())
    rows = {row["name"]: row for row in document["rows"]}
    assert list(rows) == IN_PROCESS_READER_ROWS
    manifest = json.loads((tmp_path / photos.READER_SHARDS_DIR / "dataset.json").read_text())
    train_count = manifest["splits"]["train"]["count"]
    batch = min(measure.READ_BATCH, train_count)
    for name, row in rows.items():
        assert row["images_per_s"] > 0 and row["peak_rss_mib"] > 0, name
        if name == "disk_sequential_read":  # whole passes over the training shards
            assert row["images"] % train_count == 0 and row["mib_per_s"] > 0
            continue
        assert row["images"] % batch == 0, name  # whole batches only
        if name != "jpeg_pillow_loop":  # one epoch at most: it is the slow one
            assert row["images"] >= 40, name
    assert rows[bench_rows.BASELINE_ROW]["vs_jpeg"] == 1.0
    assert 0.0 <= rows["train_resnet"]["input_wait"] <= 1.0
    assert all(row["input_wait"] is None for name, row in rows.items() if name != "train_resnet")
    assert document["speedups"]["read_random_augment"] == {
        "vs_jpeg": rows["read_random_augment"]["vs_jpeg"], "target": 3.0}
    assert document["stream_speedup"] == rows["read_stream_augment"]["vs_jpeg"]
    assert all(rows[name]["mib_per_s"] > 0 for name in ("read_random_cold", "read_stream_cold"))
    table = capsys.readouterr().out
    assert "the default read (random access, crop + flip in the pipeline) / tf.data" in table
    assert "random access with augment=None / tf.data over JPEGs" in table
    assert "streaming (compressed or remote shards, a tf.data service) with" in table
    assert "read_random_cold: " in table and "of the disk's sequential" in table
    assert "read_cached:" in table and "the target is for 224^2" in table
    assert "train_resnet (ResNet-10" in table and "of step time waiting for input" in table
    assert "random_resized_crop in the reader / the JPEG decode_and_crop_jpeg recipe: " in table
    assert "random_resized_crop in the reader / augment=None: " in table

    # The JPEG folder holds the training photos at the stored size, as a user's would.
    jpeg_dir = tmp_path / photos.JPEG_DIR.format(size=16)
    listed = _csv_rows(jpeg_dir / "train.csv")
    assert len(listed) == 24
    for row in listed:
        with Image.open(jpeg_dir / row["image"]) as image:
            assert image.format == "JPEG" and image.size == (16, 16)
    # A second run reuses both the shards and the JPEGs.
    before = tree_digest(tmp_path / photos.READER_SHARDS_DIR)
    stamp = os.stat(jpeg_dir / listed[0]["image"]).st_mtime_ns
    parsed_flags.rows = ["memcpy"]
    bench_command.main(["bench"])
    assert tree_digest(tmp_path / photos.READER_SHARDS_DIR) == before
    assert os.stat(jpeg_dir / listed[0]["image"]).st_mtime_ns == stamp


@pytest.mark.slow
def test_one_core_rows_run_a_child_bench_pinned_to_one_core(tmp_path, parsed_flags, capsys):
    names = ["read_random_aug_on_device", "jpeg_tfdata", "jpeg_tfdata_1core",
             "read_random_aug_on_device_1core"]
    json_path = _run_bench(parsed_flags, tmp_path, 24, names, read_images=40)
    rows = {row["name"]: row for row in json.loads(json_path.read_text())["rows"]}
    core = min(os.sched_getaffinity(0))
    for name in names[2:]:
        assert rows[name]["images"] >= 40 and rows[name]["images_per_s"] > 0
        assert rows[name]["note"] == f"{name[:-len('_1core')]} pinned to core {core}"
    assert "read_random_aug_on_device: all cores / 1 core " in capsys.readouterr().out


def test_scaling_targets_compare_the_gain_of_more_cores_with_the_jpeg_paths():
    rows = [measure.make_row(name, images, 1.0) for name, images in (
        ("jpeg_tfdata", 160), ("jpeg_tfdata_1core", 100), ("read_random_augment", 800),
        ("read_random_augment_1core", 500), ("read_random_aug_on_device", 900),
        ("read_random_aug_on_device_1core", 800), ("jpeg_tfdata_rrc", 100),
        ("read_random_rrc", 350))]
    lines = bench_report.scaling_lines(rows)
    assert lines[0].endswith("decode_and_crop_jpeg recipe: 3.50x (target >= 3.0x: met)")
    assert lines[1].endswith("augment=None: 0.39x (target >= 0.5x: NOT met)")
    assert lines[2].startswith("read_random_augment: all cores / 1 core 1.60x (the JPEG "
                               "path's 1.60x), on 1 core 5.00x the JPEG path")
    assert lines[2].endswith(": met)")
    assert lines[3].startswith("read_random_aug_on_device: all cores / 1 core 1.12x")
    assert lines[3].endswith("NOT met)")
    assert bench_report.scaling_lines(rows[:3]) == []


def test_time_batches_skips_the_first_batch_and_counts_images():
    batches = iter([np.zeros((4, 1))] * 3 + [(np.zeros((4, 1)), np.zeros(4))] * 10)
    seen, seconds = measure.time_batches(batches, 10)
    assert seen == 12 and seconds >= 0  # 3 batches after the first reach 10
    assert len(list(batches)) == 13 - 4


def test_pillow_batches_flip_half_and_repeat_deterministically(tmp_path):
    paths = []
    for i in range(4):
        pixels = np.zeros((2, 3, 3), np.uint8)
        pixels[:, 0] = 50 * (i + 1)  # the left column marks the image and whether it flipped
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    first = bench_rows.pillow_batches(paths, 2, seed=3)
    again = bench_rows.pillow_batches(paths, 2, seed=3)
    batches = [next(first) for _ in range(6)]  # 3 epochs of 2 batches
    assert all(np.array_equal(a, next(again)) for a in batches)
    assert all(batch.shape == (2, 2, 3, 3) and batch.dtype == np.uint8 for batch in batches)
    epoch = np.concatenate(batches[:2])
    marks = sorted(int(max(image[0, 0, 0], image[0, -1, 0])) for image in epoch)
    assert marks == [50, 100, 150, 200]  # every image once per epoch
    flipped = [image[0, -1, 0] > 0 for batch in batches for image in batch]
    assert any(flipped) and not all(flipped)


def test_targets_are_judged_against_the_jpeg_row():
    rows = [measure.make_row("read_random_augment", 160, 1.0),
            measure.make_row("read_random_aug_on_device", 200, 1.0),
            measure.make_row("read_cached", 20_000, 1.0),
            measure.make_row("jpeg_tfdata", 50, 1.0)]
    assert bench_report.baseline_ratio(rows, "read_random_augment") == 3.2
    assert bench_report.baseline_ratio(rows[:2], "read_random_augment") is None
    lines = bench_report.target_lines(rows, 224)
    assert lines[0].endswith("3.20x (target >= 3.0x: met)")
    assert lines[1].endswith("4.00x (target >= 4.0x: met)")
    assert lines[2] == "read_cached: 20,000 img/s (target >= 16,000 img/s: met)"
    report = bench_report.format_report(rows)
    assert "3.20x" in report and "1.00x" in report


def test_cold_rows_are_judged_against_the_disk():
    disk = dataclasses.replace(measure.make_row("disk_sequential_read", 1000, 1.0),
                               mib_per_s=400.0)
    cold = dataclasses.replace(measure.make_row("read_random_cold", 500, 1.0), mib_per_s=100.0)
    assert bench_report.cold_lines([cold, disk]) == [
        "read_random_cold: 100 MiB/s from the disk (500 img/s), 25% of the disk's sequential "
        "400 MiB/s"]
    assert bench_report.cold_lines([cold]) == [
        "read_random_cold: 100 MiB/s from the disk (500 img/s)"]


def test_the_training_row_trains_what_users_train_on_an_accelerator():
    what, settings = bench_rows.train_settings(224, gpus=1)
    assert settings == dict(batch_size=256, depth=50, width=64, stem="imagenet", input_pool=1,
                            mixed_precision=True, to_device="/gpu:0")
    assert what.startswith("ResNet-50, mixed precision, batch 256")
    what, settings = bench_rows.train_settings(224, gpus=0)
    assert settings["depth"] == 10 and "mixed_precision" not in settings
    assert settings["input_pool"] == 7 and what.startswith("ResNet-10")
