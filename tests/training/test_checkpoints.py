"""The pieces of exact resume, without training: where a run continues, when it saves, which
settings a checkpoint insists on, and what a save leaves on disk."""

import os

import pytest

from pipeline.core import files
from pipeline.training import checkpoints
from pipeline.training.checkpoints import RunState, SaveSchedule
from pipeline.training.legs import Leg, training_legs
from pipeline.training.settings import TrainingError


def test_legs_finish_a_partial_epoch_then_run_whole_ones():
    assert training_legs(0, 7, 3) == [Leg(0, 0, 3, 7)]
    assert training_legs(9, 7, 3) == [Leg(9, 1, 2, 5), Leg(14, 2, 3, 7)]
    assert training_legs(14, 7, 3) == [Leg(14, 2, 3, 7)]
    assert training_legs(20, 7, 3) == [Leg(20, 2, 3, 1)]
    assert training_legs(21, 7, 3) == []  # trained: only the finish is left
    assert training_legs(21, 7, 5) == [Leg(21, 3, 5, 7)]  # more epochs on a finished run


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_time_budget_waits_fifty_times_what_a_save_cost():
    clock = Clock()
    schedule = SaveSchedule(None, clock=clock)
    clock.now = checkpoints.MIN_SAVE_INTERVAL_S - 0.1
    assert not schedule.due(1)
    clock.now = checkpoints.MIN_SAVE_INTERVAL_S
    assert schedule.due(1)
    schedule.saved(1.0)  # a 1 s save: the next one 50 s later, 2% of the time
    clock.now += 49.0
    assert not schedule.due(2)
    clock.now += 1.0
    assert schedule.due(2)


def test_step_schedules_and_bad_values():
    assert [s for s in range(1, 10) if SaveSchedule(3).due(s)] == [3, 6, 9]
    assert not any(SaveSchedule(0).due(s) for s in range(1, 100))
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(TrainingError, match="checkpoint_every_steps"):
            SaveSchedule(bad)


def test_settings_that_change_the_meaning_of_a_checkpoint_are_refused(tmp_path):
    saved = {"depth": 50, "batch_size": 256, "base_learning_rate": 0.1, "epochs": 10}
    refused, changed = checkpoints.compare_settings(
        saved, {"depth": 18, "batch_size": 256, "base_learning_rate": 0.2, "epochs": 20})
    assert refused == ["depth: 50 -> 18"] and changed == ["base_learning_rate: 0.1 -> 0.2"]
    state = RunState(settings=saved, rows=[{"epoch": 0}, {"epoch": 1}])
    with pytest.raises(TrainingError, match=r"depth: 50 -> 18.*Set them back"):
        checkpoints.check_resume(state, dict(saved, depth=18), str(tmp_path))
    with pytest.raises(TrainingError, match="trained 2 epochs, more than epochs=1"):
        checkpoints.check_resume(state, dict(saved, epochs=1), str(tmp_path))
    checkpoints.check_resume(state, dict(saved, epochs=2, base_learning_rate=0.3),
                             str(tmp_path))


def test_publish_links_the_state_s_files_and_removes_the_rest(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("ckpt-000000007.weights.h5", "ckpt-000000014.weights.h5",
                 "ckpt-000000016.weights.h5", "ckpt-000000018.tmp.99.weights.h5"):
        (folder / name).write_bytes(name.encode())
    state = RunState(settings={}, step=16, weights="ckpt-000000016.weights.h5",
                     last="ckpt-000000014.weights.h5",
                     best={"value": 0.9, "epoch": 0, "weights": "ckpt-000000014.weights.h5"})
    checkpoints.publish(str(tmp_path), state)
    assert sorted(os.listdir(folder)) == [
        "best.weights.h5", "ckpt-000000014.weights.h5", "ckpt-000000016.weights.h5",
        "last.weights.h5"]
    assert os.path.samefile(folder / "last.weights.h5", folder / "ckpt-000000014.weights.h5")
    assert (folder / "best.weights.h5").read_bytes() == b"ckpt-000000014.weights.h5"


def test_state_round_trips_and_a_foreign_file_is_named(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    state = RunState(settings={"depth": 10}, step=5, rows=[{"epoch": 0, "loss": 0.1}],
                     metrics=[1.5, 4.0], resumes=[{"epoch": 0, "step": 4}])
    checkpoints.write_state(str(tmp_path), state)
    assert checkpoints.read_state(str(tmp_path)) == state
    (tmp_path / "checkpoints" / checkpoints.STATE_FILE).write_text("{not json")
    with pytest.raises(TrainingError, match="state.json cannot be read"):
        checkpoints.read_state(str(tmp_path))


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with files.atomic_path(str(target), ".keras") as temporary:
            assert temporary.endswith(".keras") and files.is_temp_path(
                os.path.basename(temporary))
            with open(temporary, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["model.keras"] and target.read_bytes() == b"previous"
