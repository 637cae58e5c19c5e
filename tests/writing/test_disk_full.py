"""A full disk while writing: exit 3 with one line (the path, the bytes still to write and
the bytes free), the complete shards kept, no temporary files left, and the same command,
once there is room, finishing byte-identical to a write that never failed."""

import hashlib
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, write_csv, write_images
from pipeline import errors
from pipeline.core import files


def tree_digest(folder):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            digest.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _write(source, out, cwd):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "pipeline.write", f"--input={source}",
                           f"--output_dir={out}", "--image_size=48", "--shards=8",
                           "--num_workers=2", "--val_fraction=0"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_full_disk_exits_3_keeps_what_is_complete_and_the_rerun_finishes(small_disk,
                                                                           tmp_path):
    rows = write_images(str(tmp_path / "src"), 200, size=(48, 48))  # ~1.4 MB of records
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    source = str(tmp_path / "src" / "train.csv")
    reference = tmp_path / "reference"
    assert _write(source, reference, str(tmp_path)).returncode == 0

    out = small_disk / "out"
    result = _write(source, out, str(tmp_path))
    assert result.returncode == errors.EXIT_IO, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "cannot write" in line]
    assert len(said) == 1 and "No space left on device" in said[0], result.stderr[-2000:]
    assert "bytes still to write" in said[0] and "free there" in said[0]
    assert not [name for name in os.listdir(out) if files.is_temp_name(name)]
    kept = [name for name in os.listdir(out) if name.endswith(".tfrecord")]

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    rerun = _write(source, out, str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(kept)} kept" in rerun.stderr
    assert tree_digest(out) == tree_digest(reference)
