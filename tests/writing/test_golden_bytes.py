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
"""

import hashlib
import os
import subprocess
import sys

import pytest

from conftest import write_csv, write_images
from pipeline.core.schema import RECORD_INDEX_SUFFIX

GOLDEN = {
    # The bundled sample (digits) at 32x32 in 4 train shards.
    "sample": "987b66607c4ede7b66968a653722d9dcafca57d9f2ffcee09af491503c1af6a1",
    # A labeled CSV with one undecodable image, an unlabeled test CSV, center_crop, GZIP.
    "csv_gzip": "e07cd7c17acc133c025d376b101f4e081d732fc29d330dce697585fd2e8bef50",
    # The same labeled CSV in 3 folds, padded.
    "csv_folds": "cea1edafd5f4663669b6cc5d4a0c28071d82d2945cfc5b6eebf5c2bbeabc4a08",
}
# The record indexes of the same writes (a GZIP dataset has none).
GOLDEN_RECORD_INDEXES = {
    "sample": "679ad34cf76805941cb3ab04aaa5d107730495ec0b097479f3d50be602da17c7",
    "csv_gzip": hashlib.sha256().hexdigest(),
    "csv_folds": "53e3603edf3836586542c1b74b3030543b765bb2f3d9c394a821a9c014a9ef63",
}


def tree_sha256(folder, record_indexes=False):
    """One sha256 over every file's relative path and contents, in sorted order: all but the
    record indexes, or only those."""
    digest = hashlib.sha256()
    for dirpath, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if name.endswith(RECORD_INDEX_SUFFIX) != record_indexes:
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
    assert tree_sha256(tmp_path / "out") == GOLDEN["sample"]
    assert tree_sha256(tmp_path / "out", record_indexes=True) == GOLDEN_RECORD_INDEXES["sample"]


def test_a_csv_write_with_rejects_a_test_split_and_gzip_is_byte_identical(csv_folder):
    write_command(str(csv_folder), "--input=src/train.csv", "--test_input=src/test.csv",
                  "--output_dir=out", "--image_size=12", "--shards=3", "--val_fraction=0.25",
                  "--resize=center_crop", "--compression=GZIP", "--max_reject_fraction=0.1",
                  "--seed=7")
    assert tree_sha256(csv_folder / "out") == GOLDEN["csv_gzip"]
    assert tree_sha256(csv_folder / "out", record_indexes=True) == (
        GOLDEN_RECORD_INDEXES["csv_gzip"])


def test_a_fold_write_is_byte_identical(csv_folder):
    write_command(str(csv_folder), "--input=src/train.csv", "--output_dir=out_folds",
                  "--image_size=12", "--shards=3", "--resize=pad", "--max_reject_fraction=0.1",
                  "--folds=3")
    assert tree_sha256(csv_folder / "out_folds") == GOLDEN["csv_folds"]
    assert tree_sha256(csv_folder / "out_folds", record_indexes=True) == (
        GOLDEN_RECORD_INDEXES["csv_folds"])
