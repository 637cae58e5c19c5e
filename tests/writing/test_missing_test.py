"""A test split short of a row is a short submission: a test image that cannot be read fails
the write unless --allow_missing_test, which lists the row in dataset.json for predict's prior;
rejects.csv lists every reject, however many, also when the write fails."""

import csv
import functools
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, folder_config, write_csv, write_images
from pipeline import errors
from pipeline.core import schema
from pipeline.writing import write_plan
from pipeline.writing.rejects import TooManyRejects
from pipeline.writing.writer import write_dataset

TEST_COUNT = 9
MISSING = "images/27.png"  # the fourth row of test.csv


@pytest.fixture
def folder(tmp_path):
    """images/ for 24 labeled and TEST_COUNT test images; train.csv and test.csv (in a
    shuffled order); the test image MISSING deleted."""
    rows = write_images(str(tmp_path), 24 + TEST_COUNT, size=(8, 8))
    write_csv(tmp_path / "train.csv", ["image", "label"], rows[:24])
    test = [path for path, _ in rows[24:]]
    order = test[::-2] + test[-2::-2]  # 32, 30, 28, 26, 24, 31, 29, 27, 25
    order.insert(3, order.pop(order.index(MISSING)))  # 32, 30, 28, 27, 26, 24, 31, 29, 25
    write_csv(tmp_path / "test.csv", ["image"], [(path,) for path in order])
    os.remove(tmp_path / MISSING)
    return tmp_path


config = functools.partial(folder_config, image_size=8, shards=2, test_shards=3,
                           val_fraction=0.25, max_reject_fraction=0.2)


def csv_test_rows(folder):
    with open(folder / "test.csv", newline="", encoding="utf-8") as f:
        return [row["image"] for row in csv.DictReader(f)]


def rejects_listed(output_dir):
    with open(os.path.join(output_dir, schema.REJECTS_NAME), newline="",
              encoding="utf-8") as f:
        return [row["path"] for row in csv.DictReader(f)]


def test_a_missing_test_image_fails_the_write_naming_it_and_the_flag(folder):
    with pytest.raises(TooManyRejects) as info:
        write_dataset(config(folder))
    message = str(info.value)
    assert info.value.exit_code == errors.EXIT_FAILED == 1
    assert "\n" not in message
    assert "the test split: 1 of 9 images could not be read" in message
    assert f"{MISSING}: missing file" in message and "--allow_missing_test" in message
    assert not (folder / "out" / schema.MANIFEST_NAME).exists()
    assert rejects_listed(folder / "out") == [MISSING]


def test_the_command_exits_1_with_one_line(folder):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.write", f"--input={folder / 'train.csv'}",
         f"--test_input={folder / 'test.csv'}", f"--output_dir={folder / 'out'}",
         "--image_size=8", "--shards=2", "--num_workers=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PIPELINE_WORKSPACE=str(folder / "workspace")))
    assert result.returncode == errors.EXIT_FAILED, result.stderr[-2000:]
    errors_said = [line for line in result.stderr.splitlines() if "--allow_missing_test" in line]
    assert len(errors_said) == 1 and MISSING in errors_said[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_with_the_flag_the_manifest_lists_every_test_row(folder):
    summary = write_dataset(config(folder, allow_missing_test=True))
    manifest = summary.manifest
    rows = csv_test_rows(folder)
    assert manifest.split("test").count == TEST_COUNT - 1
    assert manifest.missing_test == ((3, MISSING),)
    assert rejects_listed(folder / "out") == [MISSING]
    assert schema.read_manifest(str(folder / "out")) == manifest
    doc = json.loads((folder / "out" / schema.MANIFEST_NAME).read_text())
    assert doc["missing_test"] == [{"row": 3, "path": MISSING}]

    from pipeline import dataset
    from pipeline.core import test_rows
    stored = dataset.split_paths(str(folder / "out"), "test")
    assert test_rows.every_row(stored, manifest.missing_test) == [
        (path, path != MISSING) for path in rows]

    # The same command again keeps everything and says the same.
    again = write_dataset(config(folder, allow_missing_test=True))
    assert again.written == 0 and again.manifest == manifest

    # inspect counts the source images without calling the rejected one gone: it never was.
    from pipeline.tools import summary as summary_lib
    source = summary_lib.source_lines(manifest, str(folder / "out"))
    assert source[0].startswith("source    ") and "gone" not in source[0], source
    assert "1 of them rejected" in source[0], source


def test_without_missing_rows_the_manifest_has_no_such_key(folder):
    (folder / MISSING).write_bytes((folder / "images/0.png").read_bytes())
    write_dataset(config(folder))
    doc = json.loads((folder / "out" / schema.MANIFEST_NAME).read_text())
    assert "missing_test" not in doc and doc["format_version"] == schema.CLASS_FORMAT_VERSION


def test_the_flag_keeps_the_reject_limit_of_the_test_split(folder):
    for name in ("images/25.png", "images/26.png"):
        os.remove(folder / name)
    with pytest.raises(TooManyRejects, match=r"the test split: 3 of 9 images could not be "
                                             r"read, more than --max_reject_fraction=0.2"):
        write_dataset(config(folder, allow_missing_test=True))


@pytest.mark.parametrize("allow", [False, True])
def test_rejects_csv_lists_every_test_image_when_all_are_missing(folder, allow):
    for path in csv_test_rows(folder):
        if path != MISSING:
            os.remove(folder / path)
    with pytest.raises(TooManyRejects, match="the test split would be empty: all 9 of its "
                                             "images were rejected"):
        write_dataset(config(folder, allow_missing_test=allow))
    assert sorted(rejects_listed(folder / "out")) == sorted(csv_test_rows(folder))


@pytest.mark.parametrize("workers", [1, 2])
def test_rejects_csv_lists_every_reject_of_a_write_stopped_early(folder, info_logs, workers):
    """Train images missing in many shards: the write stops at the first shard past the limit,
    yet rejects.csv and the message count every one (the unwritten shards' images decoded by
    the workers)."""
    (folder / MISSING).write_bytes((folder / "images/0.png").read_bytes())
    gone = [f"images/{i}.png" for i in range(0, 24, 3)]  # 8 of 24, in every shard
    for path in gone:
        os.remove(folder / path)
    cfg = config(folder, shards=6, num_workers=workers)
    with pytest.raises(TooManyRejects) as info:
        write_dataset(cfg)
    assert sorted(rejects_listed(folder / "out")) == sorted(gone)
    train = {image.path for spec in write_plan.make_plan(cfg).shards if spec.split == "train"
             for image in spec.images}
    missing_train = len(set(gone) & train)
    assert f"the train split: {missing_train} of {len(train)} images" in str(info.value)
    assert any("checking" in record.getMessage() for record in info_logs.records)
