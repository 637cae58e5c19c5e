"""Ctrl-C during training: the run stops at the end of its step, saved, in one line and exit
130; the same command resumes it, and its console counts epochs and steps as the run does."""

import csv
import re

import pytest

from conftest import INTERRUPT_AT_STEP, KILLED_RUN, console_lines, train_py
from pipeline import errors

RUN = {**KILLED_RUN, "epochs": 3}  # 30 training images in batches of 8: 3 steps an epoch


def _log(workdir):
    with open(workdir / "train_log.csv", newline="") as f:
        return [{key: row[key] for key in ("epoch", "loss", "accuracy", "val_loss")}
                for row in csv.DictReader(f)]


@pytest.mark.slow
def test_ctrl_c_saves_the_step_says_how_to_resume_and_the_rerun_finishes(
        tmp_path, train_data_dir):
    data_dir = train_data_dir
    stopped = train_py(tmp_path / "run", data_dir, INTERRUPT_AT_STEP.format(step=4), **RUN)
    lines = console_lines(stopped.stderr)
    assert stopped.returncode == errors.EXIT_INTERRUPTED == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    # Step 4 (epoch 1, batch 1) finishes, and the run is saved after it.
    assert "saved at step 5 (epoch 1, batch 2 of 3)" in lines[-1], lines[-1]
    assert lines[-1].endswith(f"the same command again resumes there: python train.py "
                              f"--config={tmp_path / 'run'}.gin --workdir={tmp_path / 'run'}")
    assert not (tmp_path / "run" / "metrics.json").exists()

    resumed = train_py(tmp_path / "run", data_dir, **RUN)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 5 (epoch 1, batch 2 of 3)" in resumed.stderr
    # Keras counted the fit that finishes epoch 1 on its own: "Epoch 2/2" and a bar of 1 step.
    assert re.findall(r"^Epoch \d+/\d+", resumed.stdout, re.M) == ["Epoch 2/3", "Epoch 3/3"]
    assert re.findall(r"^(\d+/\d+) ", resumed.stdout, re.M) == ["3/3", "3/3"], resumed.stdout
    # The steps after training say what they do, before and after (an export is 40-66 s).
    for step in ("final evaluation on 'val'", "saving ", "exporting the SavedModel to "):
        assert re.search(rf"{step}.* \.\.\.$", resumed.stderr, re.M), step
        assert re.search(rf"{step}.*: done in \d+\.\d s$", resumed.stderr, re.M), step

    assert train_py(tmp_path / "plain", data_dir, **RUN).returncode == 0
    assert _log(tmp_path / "run") == _log(tmp_path / "plain")
    assert len(_log(tmp_path / "run")) == 3


@pytest.mark.slow
def test_ctrl_c_in_an_epochs_last_step_stops_after_its_validation(tmp_path, train_data_dir):
    """A step that ends an epoch is not a place to stop: the epoch's validation and logs come
    first, so the epoch is saved whole, and the rerun starts the next one."""
    import signal

    import pytest

    from conftest import train_tiny
    from pipeline.training import checkpoints, interrupt
    from tests.training.train_hooks import SigintAtStep

    data_dir = train_data_dir
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(interrupt.Interrupted, match=r"saved at step 3 \(end of epoch 0\)"):
        train_tiny(data_dir, tmp_path / "run", **RUN, extra_callbacks=[SigintAtStep(2)])
    assert signal.getsignal(signal.SIGINT) is before
    state = checkpoints.read_state(str(tmp_path / "run"))
    assert state.step == 3 and [row["epoch"] for row in state.rows] == [0]
    assert state.weights == state.last == checkpoints.checkpoint_name(3)

    metrics = train_tiny(data_dir, tmp_path / "run", **RUN)
    assert metrics["epochs_this_run"] == 2 and metrics["resumes"] == [{"epoch": 1, "step": 0}]
