"""One trainer per workdir: a second trainer is refused at once naming the holder, a killed
holder never blocks, and a refused run leaves the workdir as it was."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, tree_digest
from pipeline.training import train_and_evaluate, workdir
from pipeline.training.settings import TrainingError

HOLD = """
import sys, time
from pipeline.training import workdir
with workdir.locked_workdir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path):
    """A process holding `path` as a trainer does, once it says so."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO_ROOT,
                               env={**os.environ, "PYTHONPATH": REPO_ROOT},
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.mark.slow
def test_a_second_trainer_is_refused_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.csv").write_text("epoch\n")
    holder = _holder(run)
    try:
        before = tree_digest(run)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "train.py", "--config=configs/smoke.gin", f"--workdir={run}",
             f"--gin_bindings=train_and_evaluate.data_dir='{tmp_path / 'nowhere'}'"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": REPO_ROOT})
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if "in use" in line]
        assert len(lines) == 1 and f"pid {holder.pid} on " in lines[0], result.stderr
        assert "is in use by another trainer" in lines[0] and "choose another --workdir" in lines[0]
        assert "Traceback" not in result.stderr
        assert time.monotonic() - started < 60
        notes = [name for name in os.listdir(run) if name.startswith(workdir.NOTE_PREFIX)]
        assert notes == [f"{workdir.NOTE_PREFIX}{holder.pid}.json"]  # the holder's, kept
        assert tree_digest(run) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_killed_trainers_lock_and_note_never_block(tmp_path):
    run = tmp_path / "run"
    holder = _holder(run)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    stale = run / f"{workdir.NOTE_PREFIX}{holder.pid}.json"
    assert json.loads(stale.read_text())["pid"] == holder.pid  # left behind by the kill
    with workdir.locked_workdir(str(run)):
        notes = sorted(name for name in os.listdir(run) if name.startswith(workdir.NOTE_PREFIX))
        assert notes == [f"{workdir.NOTE_PREFIX}{os.getpid()}.json"]
    assert os.listdir(run) == []  # this run's note goes with it


def test_the_lock_is_held_for_the_whole_call_and_released_after(tmp_path, monkeypatch):
    run = str(tmp_path / "run")
    with workdir.locked_workdir(run):
        with pytest.raises(TrainingError, match=r"is in use by another trainer \(pid "):
            train_and_evaluate(data_dir=str(tmp_path / "nowhere"), workdir=run, epochs=1)
    with pytest.raises(Exception, match="nowhere"):  # the lock is free: the run starts
        train_and_evaluate(data_dir=str(tmp_path / "nowhere"), workdir=run, epochs=1)
    assert not os.path.exists(run)  # a refused run leaves no workdir it created
