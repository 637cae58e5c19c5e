"""The writer's bytes, pinned: these commands write exactly these files, whatever the code
around them becomes.

Each command runs as a user runs it: `python -m pipeline.write` from a folder outside the
repository (the installed package), with relative paths. Every file written (shards, DALI
indexes, dataset.json, the TFDS metadata, rejects.csv) goes into one digest, taken before
the modules moved into stage packages; the record indexes (`*.offsets`, added for random
access) into a second one, so that adding them provably changed no other byte. A failure
means the output changed: that needs a new FORMAT_VERSION (pipeline.core.schema) or a
deliberate update here, with the reason (a pinned dependency such as Pillow's resampling or
scikit-learn's digits moving counts as one).

Updates so far: the val split and the folds became stratified by class (plan.split_labeled,
plan.assign_folds), and --folds writes every fold into one copy (--fold went: a run picks
its fold when reading), which moved images between splits and changed dataset.json.
FORMAT_VERSION 2 tied each record index to dataset.json (its sha256 there, each record's CRC in
it): dataset.json, the TFDS metadata (which names the format) and the record indexes changed;
GOLDEN_KEPT, recorded with format 1, proves every other file (shards, DALI indexes,
rejects.csv) stayed byte for byte what format 1 wrote.
"""

import hashlib
import os
import subprocess
import sys

import pytest

from conftest import write_csv, write_images
from pipeline.core.schema import MANIFEST_NAME, RECORD_INDEX_SUFFIX

GOLDEN = {
    # The bundled sample (digits) at 32x32 in 4 train shards.
    "sample": "a4eb50270845d01e27c04a89b6ce0b5bf637b92e1af9233de315957d84562ff0",
    # A labeled CSV with one undecodable image, an unlabeled test CSV, center_crop, GZIP.
    "csv_gzip": "b1b9b774f559e5c29e60d5dc65fb2ab7176f4d52db82f457681809cc56bed67e",
    # The same labeled CSV in 3 folds, padded.
    "csv_folds": "41622b060288a4b7a40504eb2dbb0e0ed577bb68c86c0c524d495c36c6288201",
}
# The record indexes of the same writes (a GZIP dataset has none).
GOLDEN_RECORD_INDEXES = {
    "sample": "4e82cb6da92fdb0fd812500871257ef6369aaf065f530f1b5e401dd043f1d2ea",
    "csv_gzip": hashlib.sha256().hexdigest(),
    "csv_folds": "a02e77a90ad2482589ce03b2c009cb671c4354cc1c43c0021640c43cce81fb2b",
}


# Every file but dataset.json, the TFDS metadata and the record indexes: the same since format 1.
GOLDEN_KEPT = {
    "sample": "756510bfc8134310cc6fcf7dea05e245db404edd7bd1bc6f1c1f7af9c4761c38",
    "csv_gzip": "afcfe3edf10227ded6c9aa6cde41dffc0916dd2be60d078d36f92036773bba0e",
    "csv_folds": "2d4c1756130d67a0381a61e4f3720205030b351e41300a9c74fe9df562ba94ec",
}
FORMAT_FILES = (MANIFEST_NAME, "dataset_info.json", "features.json")


def tree_sha256(folder, record_indexes=False, kept=False):
    """One sha256 over every file's relative path and contents, in sorted order: all but the
    record indexes, or only those; `kept`: all but those and the FORMAT_FILES."""
    digest = hashlib.sha256()
    for dirpath, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if name.endswith(RECORD_INDEX_SUFFIX) != record_indexes or (
                    kept and name in FORMAT_FILES):
                continue
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digest.update(f"{os.path.relpath(path, folder)}\0".encode())
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def write_command(cwd, *flags):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PIPELINE_WORKSPACE"] = os.path.join(cwd, "ws")
    result = subprocess.run([sys.executable, "-m", "pipeline.write", *flags], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory):
    """src/images/*.png: 30 random 20x14 images and one that is not a PNG; src/train.csv lists
    24 of them and the broken one, src/test.csv the other 6."""
    root = tmp_path_factory.mktemp("golden")
    rows = write_images(str(root / "src"), 30, size=(20, 14))
    (root / "src" / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    write_csv(root / "src" / "train.csv", ["image", "label"],
              rows[:24] + [("images/broken.png", "cat")])
    write_csv(root / "src" / "test.csv", ["image"], [(path,) for path, _ in rows[24:]])
    return root


def test_the_sample_write_is_byte_identical(tmp_path):
    write_command(str(tmp_path), "--image_size=32", "--shards=4", "--output_dir=out")
    assert tree_sha256(tmp_path / "out", kept=True) == GOLDEN_KEPT["sample"]
    assert tree_sha256(tmp_path / "out") == GOLDEN["sample"]
    assert tree_sha256(tmp_path / "out", record_indexes=True) == GOLDEN_RECORD_INDEXES["sample"]


def test_a_csv_write_with_rejects_a_test_split_and_gzip_is_byte_identical(csv_folder):
    write_command(str(csv_folder), "--input=src/train.csv", "--test_input=src/test.csv",
                  "--output_dir=out", "--image_size=12", "--shards=3", "--val_fraction=0.25",
                  "--resize=center_crop", "--compression=GZIP", "--max_reject_fraction=0.1",
                  "--seed=7")
    assert tree_sha256(csv_folder / "out", kept=True) == GOLDEN_KEPT["csv_gzip"]
    assert tree_sha256(csv_folder / "out") == GOLDEN["csv_gzip"]
    assert tree_sha256(csv_folder / "out", record_indexes=True) == (
        GOLDEN_RECORD_INDEXES["csv_gzip"])


def test_a_fold_write_is_byte_identical(csv_folder):
    write_command(str(csv_folder), "--input=src/train.csv", "--output_dir=out_folds",
                  "--image_size=12", "--shards=3", "--resize=pad", "--max_reject_fraction=0.1",
                  "--folds=3")
    assert tree_sha256(csv_folder / "out_folds", kept=True) == GOLDEN_KEPT["csv_folds"]
    assert tree_sha256(csv_folder / "out_folds") == GOLDEN["csv_folds"]
    assert tree_sha256(csv_folder / "out_folds", record_indexes=True) == (
        GOLDEN_RECORD_INDEXES["csv_folds"])
