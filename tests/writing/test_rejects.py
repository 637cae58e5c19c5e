"""Bad source images end to end: rejected into rejects.csv, counted, and the run fails past
--max_reject_fraction (library and command line), keeping finished shards for the rerun."""

import csv
import dataclasses
import functools
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import REPO_ROOT, folder_config, write_csv, write_images
from pipeline import errors
from pipeline.core import schema
from pipeline.core.records import iter_framed_records
from pipeline.writing import tfds_export
from pipeline.writing.rejects import TooManyRejects
from pipeline.writing.images import decode_image
from pipeline.writing.writer import write_dataset

CLASSES = ("a", "b", "c")
GOOD_COUNT = 30
# Bad files, as listed in train.csv -> what the reject reason must say.
BAD = {
    "images/empty.png": r"empty",
    "images/truncated.png": r"truncated|corrupt",
    "images/notes, ü.png": r"not an image",  # a comma and non-ASCII: rejects.csv must quote it
    "images/missing.png": r"missing",
}
ODD_GOOD = "images/good ü, 1.png"  # a good image with an awkward name


@pytest.fixture
def dirty_folder(tmp_path):
    """images/ + train.csv (image,label): GOOD_COUNT good 16x16 PNGs and one of each bad kind."""
    folder = tmp_path / "dirty"
    rows = write_images(str(folder), GOOD_COUNT - 1, classes=CLASSES, size=(16, 16))
    Image.fromarray(np.full((16, 16, 3), 77, np.uint8)).save(folder / ODD_GOOD)
    rows.append((ODD_GOOD, "b"))

    (folder / "images/empty.png").write_bytes(b"")
    full = (folder / "images/0.png").read_bytes()
    (folder / "images/truncated.png").write_bytes(full[: len(full) // 2])
    (folder / "images/notes, ü.png").write_text("these are notes, not a picture\n",
                                                 encoding="utf-8")
    assert not (folder / "images/missing.png").exists()
    bad_rows = [(path, CLASSES[i % 3]) for i, path in enumerate(BAD)]

    # Bad rows spread through the listing, as they would be in a real CSV.
    listing = rows[:5] + bad_rows[:2] + rows[5:20] + bad_rows[2:] + rows[20:]
    write_csv(folder / "train.csv", ["image", "label"], listing)
    return folder


def good_labels(folder):
    with open(folder / "train.csv", newline="", encoding="utf-8") as f:
        return {row["image"]: row["label"] for row in csv.DictReader(f) if row["image"] not in BAD}


config = functools.partial(folder_config, test=False, image_size=8, shards=2,
                           val_fraction=0.2)


def read_rejects_csv(output_dir):
    with open(os.path.join(output_dir, schema.REJECTS_NAME), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "reason"]
    assert all(len(row) == 2 for row in rows[1:]), rows
    return dict(rows[1:])


def read_all_records(output_dir):
    """{path: (label, CHW array)} over every shard of every split, with TensorFlow's parser."""
    manifest = schema.read_manifest(str(output_dir))
    records = {}
    for split, info in manifest.splits.items():
        for shard in info.shards:
            with open(os.path.join(output_dir, shard.file), "rb") as f:
                payloads = list(iter_framed_records(f))
            assert len(payloads) == shard.count
            for payload in payloads:
                parsed = tf.io.parse_single_example(payload, schema.tf_feature_spec())
                path = parsed["path"].numpy().decode("utf-8")
                image = np.frombuffer(parsed["image"].numpy(), np.uint8)
                assert path not in records, f"{path} stored twice"
                records[path] = (int(parsed["label"]), image.reshape(manifest.image_shape))
    return records


def test_bad_images_are_rejected_and_the_good_ones_written(dirty_folder, tmp_path):
    out = tmp_path / "out"
    summary = write_dataset(config(dirty_folder, out, max_reject_fraction=0.5))
    manifest = summary.manifest

    # rejects.csv: exactly the bad paths, as the CSV lists them, each with its reason.
    rejects = read_rejects_csv(out)
    assert set(rejects) == set(BAD)
    for path, pattern in BAD.items():
        assert re.search(pattern, rejects[path], re.IGNORECASE), (path, rejects[path])

    # The manifest counts them, and holds every good image once.
    assert manifest == schema.read_manifest(str(out))
    assert manifest.rejects == len(BAD)
    assert sum(info.count for info in manifest.splits.values()) == GOOD_COUNT
    assert set(manifest.splits) == {"train", "val"}
    assert manifest.classes == CLASSES
    assert manifest.flags["max_reject_fraction"] == 0.5
    assert summary.written == sum(len(info.shards) for info in manifest.splits.values())
    assert summary.reused == 0

    labels = good_labels(dirty_folder)
    records = read_all_records(out)
    assert set(records) == set(labels)
    assert ODD_GOOD in records
    for path, (label, image) in records.items():
        assert manifest.classes[label] == labels[path]
        np.testing.assert_array_equal(image, decode_image(str(dirty_folder / path), 8))
    np.testing.assert_array_equal(records[ODD_GOOD][1], 77)

    # Per-split class counts add up to the good images' labels.
    counts = {name: 0 for name in CLASSES}
    for info in manifest.splits.values():
        for name, n in info.class_counts.items():
            counts[name] += n
    assert counts == {name: list(labels.values()).count(name) for name in CLASSES}

    # Nothing else is left: shards with their DALI and record indexes, dataset.json,
    # rejects.csv and the TFDS metadata (no .progress/, no temp files).
    shard_files = [s.file for info in manifest.splits.values() for s in info.shards]
    assert sorted(os.listdir(out)) == sorted(
        shard_files + [name + schema.DALI_INDEX_SUFFIX for name in shard_files]
        + [name + schema.RECORD_INDEX_SUFFIX for name in shard_files]
        + [schema.MANIFEST_NAME, schema.REJECTS_NAME, *tfds_export.METADATA_NAMES])


def _largest_reject_share(folder, out):
    """The largest share of rejects in one split, from a write that allowed them all."""
    summary = write_dataset(config(folder, out, max_reject_fraction=0.5))
    return max(summary.rejects[split] / (info.count + summary.rejects[split])
               for split, info in summary.manifest.splits.items())


@pytest.mark.parametrize("below,fails", [
    (0.0, False),  # exactly the largest split's reject share: allowed
    (0.01, True),
])
def test_max_reject_fraction_is_a_bound_on_each_splits_share_of_rejects(dirty_folder, tmp_path,
                                                                        below, fails):
    share = _largest_reject_share(dirty_folder, tmp_path / "all")
    assert share > len(BAD) / (GOOD_COUNT + len(BAD))  # the bad images are not evenly split
    cfg = config(dirty_folder, tmp_path / "out", max_reject_fraction=share - below)
    if fails:
        with pytest.raises(TooManyRejects):
            write_dataset(cfg)
    else:
        assert write_dataset(cfg).manifest.rejects == len(BAD)


def test_too_many_rejects_fails_then_a_rerun_with_a_higher_limit_resumes(dirty_folder, tmp_path):
    out = tmp_path / "out"
    strict = config(dirty_folder, out)  # the default max_reject_fraction
    assert strict.max_reject_fraction == 0.01

    with pytest.raises(TooManyRejects) as info:
        write_dataset(strict)
    message = str(info.value)
    assert any(path in message for path in BAD), message
    assert "max_reject_fraction=0.01" in message
    assert re.search(r"the (train|val) split: \d+ of \d+ images", message), message
    assert os.path.join(str(out), schema.REJECTS_NAME) in message

    # Incomplete: no dataset.json, but rejects.csv names every reject, those of the shards
    # the early stop left unwritten too.
    assert not (out / schema.MANIFEST_NAME).exists()
    assert set(read_rejects_csv(out)) == set(BAD)
    assert not [name for name in os.listdir(out) if ".tmp." in name]

    # Rerun with a higher limit: the same plan, so finished shards are kept.
    relaxed = dataclasses.replace(strict, max_reject_fraction=0.5)
    resumed = write_dataset(relaxed)
    total_shards = sum(len(i.shards) for i in resumed.manifest.splits.values())
    assert resumed.reused >= 1  # the shard whose rejects stopped the first run is complete
    assert resumed.written + resumed.reused == total_shards
    assert set(read_rejects_csv(out)) == set(BAD)

    # Byte-identical to a fresh run of the same (relaxed) config elsewhere.
    fresh_out = tmp_path / "fresh"
    fresh = write_dataset(dataclasses.replace(relaxed, output_dir=str(fresh_out)))
    assert fresh.reused == 0
    assert (out / schema.MANIFEST_NAME).read_bytes() == \
        (fresh_out / schema.MANIFEST_NAME).read_bytes()
    assert sorted(os.listdir(out)) == sorted(os.listdir(fresh_out))
    for name in os.listdir(out):
        assert (out / name).read_bytes() == (fresh_out / name).read_bytes(), name


def run_cli(tmp_path, *args):
    env = dict(os.environ, PIPELINE_WORKSPACE=str(tmp_path / "cli_workspace"))
    return subprocess.run(
        [sys.executable, "-m", "pipeline.write", *args, "--image_size=8", "--shards=2",
         "--num_workers=1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_cli_exits_1_on_too_many_rejects(dirty_folder, tmp_path):
    out = tmp_path / "cli_out"
    result = run_cli(tmp_path, f"--input={dirty_folder / 'train.csv'}", f"--output_dir={out}")
    assert result.returncode == errors.EXIT_FAILED == 1, result.stderr
    assert "max_reject_fraction" in result.stderr
    assert any(path in result.stderr for path in BAD), result.stderr[-2000:]
    assert not (out / schema.MANIFEST_NAME).exists()
    assert (out / schema.REJECTS_NAME).exists()


def test_cli_exits_2_on_a_csv_without_the_image_column(dirty_folder, tmp_path):
    bad_csv = write_csv(dirty_folder / "wrong.csv", ["file", "label"],
                        [("images/0.png", "a"), ("images/1.png", "b")])
    out = tmp_path / "cli_out"
    result = run_cli(tmp_path, f"--input={bad_csv}", f"--output_dir={out}")
    assert result.returncode == errors.EXIT_USAGE == 2, result.stderr
    assert "no 'image' column" in result.stderr
    assert "['file', 'label']" in result.stderr  # what the CSV has instead
    assert not out.exists() or os.listdir(out) == []
    assert not (tmp_path / "cli_workspace").exists() or \
        not any(files for _, _, files in os.walk(tmp_path / "cli_workspace"))


def test_the_reject_limit_holds_per_split_and_an_empty_split_fails(dirty_folder, tmp_path):
    # 30 good labeled images, and a test split of 3 whose every image is unreadable: 3 of 37
    # overall is under --max_reject_fraction=0.5, but the test split would end empty.
    for name in ("t0.png", "t1.png", "t2.png"):
        (dirty_folder / "images" / name).write_text("not a picture")
    write_csv(dirty_folder / "test.csv", ["image"], [(f"images/t{i}.png",) for i in range(3)])
    clean = dirty_folder / "clean.csv"
    write_csv(clean, ["image", "label"], sorted(good_labels(dirty_folder).items()))
    cfg = config(dirty_folder, tmp_path / "out", input=str(clean),
                 test_input=str(dirty_folder / "test.csv"), max_reject_fraction=0.5)
    with pytest.raises(TooManyRejects, match=r"the test split would be empty: all 3 of its "
                                             r"images were rejected.*images/t0\.png"):
        write_dataset(cfg)
    # 1 of 3 test images unreadable: a third of the split, 1 of 34 overall; a test split
    # loses none without --allow_missing_test (tests/writing/test_missing_test.py).
    for name in ("t1.png", "t2.png"):
        (dirty_folder / "images" / name).write_bytes((dirty_folder / "images/0.png").read_bytes())
    cfg = dataclasses.replace(cfg, allow_missing_test=True)
    with pytest.raises(TooManyRejects, match=r"the test split: 1 of 3 images could not be read"):
        write_dataset(dataclasses.replace(cfg, output_dir=str(tmp_path / "strict"),
                                          max_reject_fraction=0.2))
    summary = write_dataset(dataclasses.replace(cfg, output_dir=str(tmp_path / "ok")))
    assert summary.rejects == {"test": 1, "train": 0, "val": 0}
