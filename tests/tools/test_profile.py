"""pipeline.profile: a trace TensorBoard's Profile tab opens, and the input-bound verdict."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, write_labeled_dataset
from pipeline import errors
from pipeline.tools import profiling
from pipeline.training import timing


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_labeled_dataset(tmp_path_factory.mktemp("profile"), 24, "shards", shards=2,
                                 val_fraction=0.0)


def test_reader_trace_is_written_for_tensorboard(data_dir, tmp_path):
    result = profiling.profile_input(data_dir, str(tmp_path / "logs"), steps=3, batch_size=4)
    assert len(result.trace_files) == 1
    trace = result.trace_files[0]
    assert trace.endswith(".xplane.pb") and os.path.getsize(trace) > 0
    assert os.path.relpath(trace, tmp_path / "logs").startswith(
        os.path.join("plugins", "profile"))
    assert result.reader_images_per_second > 0 and result.input_wait_fraction is None


def test_train_steps_measure_the_input_wait(data_dir, tmp_path):
    result = profiling.profile_input(data_dir, str(tmp_path / "logs"), steps=2, batch_size=4,
                                   train_steps=6, depth=10)
    assert 0.0 <= result.input_wait_fraction <= 1.0
    assert result.verdict == timing.input_verdict(result.input_wait_fraction)


def test_verdict_names_the_next_knob():
    assert timing.input_verdict(0.01).startswith("not input-bound")
    assert timing.input_verdict(0.1).startswith("slightly input-bound")
    bound = timing.input_verdict(0.6)
    assert bound.startswith("input-bound") and "augment_on_device=True" in bound
    assert "not measured" in timing.input_verdict(None)


def test_cli_prints_the_trace_and_fails_clearly_without_a_dataset(data_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ok = subprocess.run([sys.executable, "-m", "pipeline.profile", f"--data_dir={data_dir}",
                         f"--logdir={tmp_path / 'cli'}", "--steps=2", "--batch_size=4"],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "img/s" in ok.stdout and ".xplane.pb" in ok.stdout
    missing = subprocess.run([sys.executable, "-m", "pipeline.profile",
                              f"--data_dir={tmp_path / 'none'}", f"--logdir={tmp_path / 'x'}"],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == errors.EXIT_USAGE and "pipeline.write" in missing.stderr
