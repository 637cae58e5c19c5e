"""The trainer on a full disk: exit 3 with one line and no traceback, no temporary file left,
and the same command, once there is room, finishing the run."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, small_tmpfs, write_labeled_dataset
from pipeline import errors


@pytest.fixture
def tiny_disk(tmp_path):
    """A 150 KiB tmpfs (root only), unmounted after the test."""
    with small_tmpfs(tmp_path / "disk", "150k") as mount:
        yield mount


def _train(config, workdir):
    return subprocess.run([sys.executable, "train.py", f"--config={config}",
                           f"--workdir={workdir}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO_ROOT})


def _tiny_config(tmp_path, *, images, epochs):
    """A gin file training a tiny ResNet for `epochs` on `images` written in tmp_path/data."""
    data_dir = write_labeled_dataset(tmp_path, images, "data", shards=1, val_shards=1,
                                     val_fraction=0.25)
    config = tmp_path / "tiny.gin"
    config.write_text(f"train_and_evaluate.data_dir = '{data_dir}'\n"
                      f"train_and_evaluate.epochs = {epochs}\ntrain_and_evaluate.depth = 10\n"
                      "train_and_evaluate.width = 4\ntrain_and_evaluate.stem = 'small'\n"
                      "train_and_evaluate.batch_size = 4\n"
                      "train_and_evaluate.warmup_epochs = 0\n")
    return config


@pytest.mark.slow
def test_a_full_disk_stops_training_in_one_line_and_the_rerun_finishes(tiny_disk, tmp_path):
    config = _tiny_config(tmp_path, images=24, epochs=3)
    workdir = tiny_disk / "run"
    result = _train(config, workdir)
    assert result.returncode == errors.EXIT_IO, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "cannot write" in line]
    assert len(said) == 1 and "No space left on device" in said[0], result.stderr[-3000:]
    assert "run the same command again" in said[0]
    leftovers = [name for _, _, names in os.walk(workdir) for name in names if ".tmp." in name]
    assert not leftovers

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    rerun = _train(config, workdir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert os.path.exists(workdir / "metrics.json")


@pytest.mark.slow
def test_a_read_only_workdir_stops_training_in_one_line(tiny_disk, tmp_path):
    config = _tiny_config(tmp_path, images=12, epochs=1)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    result = _train(config, tiny_disk / "run")
    assert result.returncode == errors.EXIT_IO, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "Read-only file system" in line]
    assert len(said) == 1, result.stderr[-3000:]
