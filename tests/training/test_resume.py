"""Exact resume: a run SIGKILLed at any step (or while it writes a checkpoint) and started
again with the same command ends as if it had never stopped, and no file is lost."""

import csv
import json
import os
import sys

import keras
import numpy as np
import pytest

from pipeline.training import checkpoints, predict, run_files
from pipeline.training.settings import TrainingError
from conftest import TINY_GIN as TINY
from conftest import run_in_repo, tiny_gin_file
from pipeline import training

EPOCHS = 3
STEPS_PER_EPOCH = 7  # 30 training records, batches of 4, the remainder dropped
TEST_IMAGES = 6  # write_train_dataset's unlabeled test split
# What the logs hold besides timing (images/s and input wait differ between any two runs).
LOGGED = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def _tensorboard_epochs(workdir):
    import tensorflow as tf

    folder = workdir / run_files.TENSORBOARD_DIR / "train"
    return sorted(event.step for name in os.listdir(folder)
                  for event in tf.compat.v1.train.summary_iterator(str(folder / name))
                  for value in event.summary.value if value.tag == "epoch_loss")


@pytest.fixture(scope="module")
def data_dir(train_data_dir):
    return train_data_dir


def _config(tmp_path, data_dir, name, *, epochs=EPOCHS, kill_at=None, on_device=False):
    extra = ("train_and_evaluate.deterministic = True\n"
             "train_and_evaluate.checkpoint_every_steps = 2\n"
             f"train_and_evaluate.augment_on_device = {on_device}\n")
    if kill_at is not None:
        extra += ("import tests.training.train_hooks\n"
                  "train_and_evaluate.extra_callbacks = [@SigkillAtStep()]\n"
                  f"SigkillAtStep.step = {kill_at}\n")
    return tiny_gin_file(tmp_path / f"{name}.gin", data_dir, epochs=epochs, extra=extra)


def _train(config, workdir, **kwargs):
    return run_in_repo([sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}"],
                **kwargs)


def _weights(workdir):
    model = keras.saving.load_model(os.path.join(workdir, run_files.MODEL_FILE))
    return model.get_weights()


def _log(workdir):
    with open(os.path.join(workdir, run_files.CSV_LOG), newline="") as f:
        return [{name: row[name] for name in LOGGED} for row in csv.DictReader(f)]


@pytest.mark.parametrize("on_device", [False, True], ids=["augment_in_tf_data",
                                                         "augment_on_device"])
@pytest.mark.slow
def test_killed_twice_mid_epoch_ends_bit_identical(data_dir, tmp_path, on_device):
    uninterrupted = tmp_path / "uninterrupted"
    plain = _config(tmp_path, data_dir, "plain", on_device=on_device)
    result = _train(plain, uninterrupted)
    assert result.returncode == 0, result.stderr[-3000:]
    rng = np.random.default_rng(14 + on_device)
    total = EPOCHS * STEPS_PER_EPOCH
    mid_epoch = [step for step in range(3, total) if step % STEPS_PER_EPOCH]
    first, second = sorted(rng.choice(mid_epoch, size=2, replace=False))
    if second - first < 3:  # the second kill must come after a checkpoint past the first
        second = min(first + 3, total - 1)
    workdir, resumed_at = tmp_path / "run", []
    for step in (first, second):
        killed = _train(_config(tmp_path, data_dir, f"kill{step}", kill_at=step,
                                on_device=on_device), workdir)
        assert killed.returncode == -9, killed.stderr[-3000:]
        state = checkpoints.read_state(str(workdir))
        assert state.step <= step and step - state.step <= 2  # checkpoint_every_steps = 2
        resumed_at.append(divmod(state.step, STEPS_PER_EPOCH))
    done = _train(plain, workdir)
    assert done.returncode == 0, done.stderr[-3000:]

    for ours, theirs in zip(_weights(workdir), _weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # One row per epoch, none missing or repeated, each as the uninterrupted run logged it
    # (the resumed epochs' loss and accuracy cover the whole epoch).
    assert _log(workdir) == _log(uninterrupted)
    assert [row["epoch"] for row in _log(workdir)] == ["0", "1", "2"]
    # TensorBoard: one curve, each epoch once, numbered across the resumes, at the count of
    # epochs done (as the verdict text is).
    assert _tensorboard_epochs(workdir) == list(range(1, EPOCHS + 1))
    metrics = json.loads((workdir / run_files.METRICS_FILE).read_text())
    assert [(r["epoch"], r["step"]) for r in metrics["resumes"]] == resumed_at
    assert any(step for _, step in resumed_at)  # at least one resume inside an epoch
    assert metrics["checkpoints"] > 0 and metrics["checkpoint_seconds"] > 0


@pytest.mark.slow
def test_a_kill_while_a_checkpoint_is_written_loses_nothing(data_dir, tmp_path):
    """Killed in the middle of each weights file the last epoch writes in turn (the first,
    then the second, ...), the same command finishes the run and every checkpoint loads."""
    plain = tiny_gin_file(tmp_path / "plain.gin", data_dir, epochs=EPOCHS)
    for nth in range(1, 5):
        workdir = tmp_path / f"run{nth}"
        cut = tiny_gin_file(tmp_path / "cut.gin", data_dir, epochs=EPOCHS, extra=(
            "import tests.training.train_hooks\n"
            "train_and_evaluate.extra_callbacks = [@SigkillDuringSave()]\n"
            f"SigkillDuringSave.epoch = {EPOCHS - 1}\nSigkillDuringSave.nth = {nth}\n"))
        killed = _train(cut, workdir)
        if killed.returncode == 0:  # the last epoch writes fewer than nth weights files
            assert nth > 1
            break
        assert killed.returncode == -9, killed.stderr[-3000:]
        done = _train(plain, workdir)
        assert done.returncode == 0, done.stderr[-3000:]
        assert [row["epoch"] for row in _log(workdir)] == ["0", "1", "2"]
        for weights in ("last", "best", "final"):  # every checkpoint loads and predicts
            # In this process: what `python -m pipeline.predict --weights=...` calls.
            output, rows = predict.write_predictions(
                str(workdir), weights=weights, output=str(tmp_path / f"{weights}.csv"))
            assert rows == TEST_IMAGES and os.path.getsize(output) > 0, (nth, weights)
        leftovers = [name for name in os.listdir(workdir / run_files.CHECKPOINT_DIR)
                     if ".tmp." in name]
        assert not leftovers


@pytest.mark.slow
def test_best_survives_a_worse_resumed_epoch(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    settings = dict(TINY, checkpoint_every_steps=0, verbose=0)
    training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=2, **settings)
    state = checkpoints.read_state(workdir)
    state.best["value"] = 2.0  # better than any accuracy: no later epoch may replace it
    checkpoints.write_state(workdir, state)
    best_before = open(os.path.join(workdir, "checkpoints", "best.weights.h5"), "rb").read()
    metrics = training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=3,
                                          **settings)
    assert metrics["epochs_this_run"] == 1 and metrics["best_epoch"] == state.best["epoch"]
    assert open(os.path.join(workdir, "checkpoints", "best.weights.h5"), "rb").read() == (
        best_before)


@pytest.mark.slow
def test_more_epochs_continue_a_finished_run_and_fewer_are_refused(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    settings = dict(TINY, checkpoint_every_steps=0, verbose=0)
    first = training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=1,
                                        **settings)
    again = training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=1,
                                        **settings)
    assert again == first  # finished: nothing trained
    more = training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=2,
                                       **settings)
    assert more["epochs_this_run"] == 1
    assert [row["epoch"] for row in _log(workdir)] == ["0", "1"]
    assert more["resumes"] == [{"epoch": 1, "step": 0}]
    with pytest.raises(TrainingError, match="trained 2 epochs.*epochs>=2"):
        training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=1, **settings)
    with pytest.raises(TrainingError, match=r"depth: 10 -> 18.*Set them back"):
        training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=3,
                                    **dict(settings, depth=18))


@pytest.mark.slow
def test_a_refused_run_leaves_nothing(data_dir, tmp_path):
    workdir = tmp_path / "run"
    config = tiny_gin_file(tmp_path / "bad.gin", data_dir, epochs=1,
                       extra="train_and_evaluate.checkpoint_every_steps = -1\n")
    result = _train(config, workdir)
    assert result.returncode == 2 and "checkpoint_every_steps" in result.stderr
    assert not workdir.exists()
    config = tiny_gin_file(tmp_path / "big.gin", data_dir, epochs=1)
    result = _train(config, workdir, env={})
    assert result.returncode == 0
    before = sorted(os.listdir(workdir))
    wrong = tiny_gin_file(tmp_path / "wrong.gin", data_dir, epochs=1,
                      extra="train_and_evaluate.seed = 5\n")
    result = _train(wrong, workdir)
    assert result.returncode == 2 and "seed: 0 -> 5" in result.stderr
    assert sorted(os.listdir(workdir)) == before


def test_a_workdir_of_the_epoch_level_trainer_is_refused(data_dir, tmp_path):
    from pipeline.core import schema

    workdir = tmp_path / "old"
    (workdir / run_files.BACKUP_DIR).mkdir(parents=True)
    record = run_files.run_record(data_dir, schema.read_manifest(data_dir))
    (workdir / run_files.RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(TrainingError, match="older version of train.py.*another --workdir"):
        training.train_and_evaluate(data_dir=data_dir, workdir=str(workdir), epochs=1,
                                    verbose=0, **TINY)
    assert sorted(os.listdir(workdir)) == [run_files.BACKUP_DIR, run_files.RUN_FILE]


@pytest.mark.slow
def test_deterministic_refuses_a_streamed_input_before_anything_is_written(tmp_path):
    from conftest import write_labeled_dataset

    gzip = write_labeled_dataset(tmp_path, 40, "gzip", shards=2, val_shards=1,
                                 val_fraction=0.25, compression="GZIP")
    workdir = tmp_path / "run"
    config = tiny_gin_file(tmp_path / "det.gin", gzip, epochs=1,
                       extra="train_and_evaluate.deterministic = True\n")
    result = _train(config, workdir)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "deterministic=True needs an input read by position" in result.stderr
    assert not workdir.exists()
