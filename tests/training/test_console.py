"""What a training run says on the console: a progress bar with ETA on a terminal, gin's
harmless search errors kept out."""

import os
import pty
import select
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, write_labeled_dataset
from pipeline import errors

# A ResNet-10 of 4-32 channels on 8x8 images, 10 steps per epoch: seconds per run.
TINY = dict(depth=10, width=4, stem="small", batch_size=4, base_learning_rate=0.1,
            warmup_epochs=0, cache=None, augment="flip_lr", epochs=1)


def _gin_file(path, data_dir):
    lines = [f"train_and_evaluate.{key} = {value!r}" for key, value in TINY.items()]
    path.write_text("\n".join([f"train_and_evaluate.data_dir = {data_dir!r}", *lines]) + "\n")
    return str(path)


def _env():
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the commands' own default
    return env


def _run_on_a_terminal(command, timeout=300):
    """(exit code, what the program wrote to its terminal): stdout is a pseudo-terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_env(), stdout=follower,
                               stderr=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            process.kill()
            raise AssertionError(f"no output for {timeout} s: {b''.join(chunks)[-2000:]!r}")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the program closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar_with_eta(tmp_path):
    data_dir = write_labeled_dataset(tmp_path, 50, "shards", shards=2, val_fraction=0.2)
    config = _gin_file(tmp_path / "tiny.gin", data_dir)
    code, shown = _run_on_a_terminal([sys.executable, "train.py", f"--config={config}",
                                      f"--workdir={tmp_path / 'run'}"])
    assert code == 0, shown[-3000:]
    # Keras's bar: "3/10 ━━━━━━━━━━━━━━━━━━━━ 1s 120ms/step - accuracy: ..." redrawn in place.
    assert "━" in shown and "/step" in shown and "\r" in shown, shown[-3000:]
    assert "10/10" in shown


@pytest.mark.slow
def test_a_gin_include_logs_no_path_not_found_error(tmp_path):
    included = tmp_path / "base.gin"
    included.write_text(f"train_and_evaluate.data_dir = {str(tmp_path / 'missing')!r}\n")
    (tmp_path / "run.gin").write_text("include 'base.gin'\ntrain_and_evaluate.epochs = 1\n")
    result = subprocess.run([sys.executable, "train.py", f"--config={tmp_path / 'run.gin'}",
                             f"--workdir={tmp_path / 'run'}"], cwd=REPO_ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == errors.EXIT_USAGE and "pipeline.write" in result.stderr
    assert "Path not found" not in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_a_resumed_epochs_bar_times_the_steps_it_saw():
    """Resumed at step 5 of 7, one step in 2 s: 2 s a step, not 2 s over six steps."""
    from pipeline.training import callbacks

    progress = callbacks.RunProgress(epochs=3, steps_per_epoch=7)
    progress.set_params({"verbose": 1, "epochs": 2, "steps": 2})  # the fit of the rest
    assert (progress.epochs, progress.target, progress.skipped) == (3, 7, 5)
    progress._maybe_init_progbar()
    bar = progress.progbar
    assert bar._estimate_step_duration(6, bar._start + 2.0) == 2.0


def test_the_epoch_estimate_counts_a_whole_epoch_after_a_resume(info_logs):
    """A run resumed at batch 6 of 16 first fits the epoch's last 10 steps; the estimate is
    still of an epoch of 16 (it said "per epoch of 10 steps")."""
    from pipeline.training import callbacks

    milestones = callbacks.StepMilestones(steps_per_epoch=16)
    milestones.set_params({"steps": 10})
    milestones.on_train_begin()
    for batch in range(10):
        milestones.on_train_batch_end(batch)
    estimate = [r.getMessage() for r in info_logs.records if "per epoch of" in r.getMessage()]
    assert len(estimate) == 1 and estimate[0].endswith("per epoch of 16 steps"), estimate
