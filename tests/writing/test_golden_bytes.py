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
    "sample": "99b767f7d2c96edde5a06f356643b1cb40ae1a75479e6515b46febc3a3326513",
    # A labeled CSV with one undecodable image, an unlabeled test CSV, center_crop, GZIP.
    "csv_gzip": "64ee02ae37284bd14b3ebb1d93f97993d6e76854399410bc58d3aef750821472",
    # The same labeled CSV as fold 1 of 3, padded.
    "csv_folds": "6abc99369cb37b5750db7d048f91425b449b24eadb1486fd175e7d835d9b706c",
}
# The record indexes of the same writes (a GZIP dataset has none).
GOLDEN_RECORD_INDEXES = {
    "sample": "c6139823141c6fd79a51baa4669e024d66aae14f4dcb8880b9b0fec4b20487c9",
    "csv_gzip": hashlib.sha256().hexdigest(),
    "csv_folds": "956048df9637f81bfdadb8f717e7e0d56d8f738156ccae3a038dbd2dd062b6be",
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
                  "--image_size=12", "--shards=2", "--resize=pad", "--max_reject_fraction=0.1",
                  "--folds=3", "--fold=1")
    assert tree_sha256(csv_folder / "out_folds") == GOLDEN["csv_folds"]
    assert tree_sha256(csv_folder / "out_folds", record_indexes=True) == (
        GOLDEN_RECORD_INDEXES["csv_folds"])
