"""The trainer end to end: write -> train -> predict, resume after SIGKILL, the smoke config's
accuracy on the bundled digits, and the errors users hit first."""

import csv
import glob
import json
import os
import pathlib
import re
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import (REPO_ROOT, TINY_GIN, TRAIN_CLASSES, run_in_repo, tiny_gin_file,
                      write_csv, write_images)
from pipeline import dataset, errors, training
from pipeline.core import schema
from pipeline.tools import profiling
from pipeline.training import callbacks, predict, run_files
from pipeline.training.settings import TrainingError
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset

CLASSES = TRAIN_CLASSES
TINY = TINY_GIN  # a ResNet-10 of 4-32 channels on 8x8 images: seconds per run


@pytest.fixture(scope="module")
def data_dir(train_data_dir):
    return train_data_dir


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(workdir, metrics) of a one-epoch run."""
    workdir = str(tmp_path_factory.mktemp("run"))
    metrics = training.train_and_evaluate(data_dir=data_dir, workdir=workdir, epochs=1,
                                          verbose=0, profile_batches=(2, 3), **TINY)
    return workdir, metrics


@pytest.mark.slow
def test_one_epoch_leaves_model_metrics_logs_and_checkpoints(trained, data_dir):
    workdir, metrics = trained
    saved = json.loads(open(os.path.join(workdir, run_files.METRICS_FILE)).read())
    assert saved == metrics
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["val_loss"] > 0
    assert metrics["epochs"] == 1 and metrics["epochs_this_run"] == 1
    assert metrics["images_per_second"] > 0 and 0.0 <= metrics["input_wait_fraction"] <= 1.0
    for name in (run_files.MODEL_FILE, "checkpoints/last.weights.h5",
                 "checkpoints/best.weights.h5", f"{run_files.EXPORT_DIR}/saved_model.pb"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert not os.path.exists(os.path.join(workdir, run_files.BACKUP_DIR))  # finished: removed
    with open(os.path.join(workdir, run_files.CSV_LOG), newline="") as f:
        log_rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in log_rows] == ["0"]
    for column in ("loss", "accuracy", "val_accuracy", "learning_rate", "images_per_second",
                   "input_wait_fraction"):
        assert column in log_rows[0], column
    written = [name for _, _, names in os.walk(os.path.join(workdir, run_files.TENSORBOARD_DIR))
               for name in names]
    assert any(name.startswith("events.out.tfevents") for name in written)
    assert any(name.endswith(".xplane.pb") for name in written)  # profile_batches=(2, 3)
    assert "input-bound" in metrics["input_verdict"] or "not measured" in metrics["input_verdict"]
    run = json.loads(open(os.path.join(workdir, run_files.RUN_FILE)).read())
    assert run["classes"] == list(CLASSES) and run["image_shape"] == [3, 8, 8]


@pytest.mark.slow
def test_tensorboard_shows_the_verdict_and_reads_the_profiled_steps(trained):
    workdir, metrics = trained
    board = os.path.join(workdir, run_files.TENSORBOARD_DIR)
    texts, layouts = [], []
    for path in glob.glob(os.path.join(board, callbacks.VERDICT_RUN, "events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "text":
                    texts.append((event.step, value.tag, value.tensor.string_val[0].decode()))
                if value.metadata.plugin_data.plugin_name == "custom_scalars":
                    layouts.append(value)
    # "epoch 1: ..." at step 1, not 0.
    assert texts == [(1, callbacks.VERDICT_TAG, callbacks.verdict_text(0, metrics))]
    assert texts[0][2].startswith("epoch 1: ")
    assert metrics["input_verdict"] in texts[0][2] and "img/s" in texts[0][2]
    assert len(layouts) == 1
    # The scalars of the epoch the text describes sit at its step too.
    losses = [event.step for path in glob.glob(os.path.join(board, "train", "events.out*"))
              for event in tf.compat.v1.train.summary_iterator(path)
              for value in event.summary.value if value.tag == "epoch_loss"]
    assert losses[:1] == [texts[0][0]]
    # TensorBoard's own analyzer finds the training steps profile_batches traced.
    traces = glob.glob(os.path.join(board, "**", "*.xplane.pb"), recursive=True)
    seen = profiling.tensorboard_verdict(traces)
    assert seen.category is not None, seen.conclusion


@pytest.mark.slow
def test_predictions_keep_the_test_csv_order(trained, data_dir, tmp_path):
    workdir, _ = trained
    rows = predict.predict_split(workdir, "test")
    with open(os.path.join(os.path.dirname(data_dir), "src", "test.csv"), newline="") as f:
        expected_paths = [row["image"] for row in csv.DictReader(f)]
    assert [path for path, _ in rows] == expected_paths
    assert all(label in CLASSES for _, label in rows)
    text = predict.submission_csv(rows)
    assert text.splitlines()[0] == "image,label" and len(text.splitlines()) == 7

    # The command writes the same file; the best checkpoint loads too.
    output = tmp_path / "submission.csv"
    result = run_in_repo([sys.executable, "-m", "pipeline.predict", f"--workdir={workdir}",
                   f"--output={output}", "--weights=best"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert output.read_text() == text  # one epoch: best and final are the same weights


@pytest.mark.slow
def test_predict_without_a_trained_model_says_how_to_train(tmp_path):
    result = run_in_repo([sys.executable, "-m", "pipeline.predict", f"--workdir={tmp_path}"])
    assert result.returncode == errors.EXIT_USAGE
    assert "python train.py" in result.stderr


def _write_two_class_dataset(tmp_path):
    """tmp_path/other: 12 images of classes a and b."""
    rows = write_images(str(tmp_path / "src"), 12, size=(8, 8), classes=("a", "b"))
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    write_dataset(WriteConfig(
        output_dir=str(tmp_path / "other"), input=str(tmp_path / "src" / "train.csv"),
        image_size=8, shards=1, val_shards=1, val_fraction=0.3, num_workers=1,
        show_progress=False))


def test_rerun_on_another_dataset_refuses_the_workdir(trained, tmp_path):
    workdir, _ = trained
    _write_two_class_dataset(tmp_path)
    with pytest.raises(TrainingError, match="3 classes.*2 classes.*another --workdir"):
        training.train_and_evaluate(data_dir=str(tmp_path / "other"), workdir=workdir,
                                    epochs=1, verbose=0, **TINY)


def test_a_rerun_on_other_data_of_the_same_classes_is_refused_naming_both(trained, data_dir,
                                                                         tmp_path):
    workdir, _ = trained
    other = tmp_path / "reshuffled"
    write_dataset(WriteConfig(  # the same images and classes, shuffled into other shards
        output_dir=str(other), input=os.path.join(os.path.dirname(data_dir), "src", "train.csv"),
        image_size=8, shards=2, val_shards=1, val_fraction=0.25, num_workers=1, seed=1,
        show_progress=False))
    before = open(os.path.join(workdir, run_files.RUN_FILE)).read()
    with pytest.raises(TrainingError, match=rf"holds a run on another dataset: {data_dir} "
                                            rf"\(dataset.json sha256 \w{{12}}, splits .*\), not "
                                            rf"{other} .*allow_other_data=True"):
        training.train_and_evaluate(data_dir=str(other), workdir=workdir, epochs=1, verbose=0,
                                    **TINY)
    assert open(os.path.join(workdir, run_files.RUN_FILE)).read() == before
    # Allowed explicitly; and the same dataset copied elsewhere is the same data.
    training.train_and_evaluate(data_dir=str(other), workdir=workdir, epochs=1, verbose=0,
                                allow_other_data=True, **TINY)
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    training.train_and_evaluate(data_dir=str(copy), workdir=workdir, epochs=1, verbose=0,
                                **TINY)


@pytest.mark.slow
def test_predict_refuses_a_dataset_of_other_classes(trained, tmp_path):
    workdir, _ = trained
    _write_two_class_dataset(tmp_path)
    result = run_in_repo([sys.executable, "-m", "pipeline.predict", f"--workdir={workdir}",
                   f"--data_dir={tmp_path / 'other'}", "--split=train",
                   f"--output={tmp_path / 'out.csv'}"])
    assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
    assert "3 classes ['cat', 'dog', 'owl']" in result.stderr
    assert "2 classes ['a', 'b']" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.csv").exists()


def test_predict_on_an_empty_split_names_the_split(trained, data_dir, tmp_path):
    workdir, _ = trained
    empty = tmp_path / "empty"
    shutil.copytree(data_dir, empty)
    manifest = json.loads((empty / "dataset.json").read_text())
    manifest["splits"]["test"] = {"count": 0, "class_counts": {}, "shards": []}
    (empty / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(predict.PredictError, match="split 'test' .* has no records"):
        predict.predict_split(workdir, "test", data_dir=str(empty))


@pytest.mark.slow
def test_killed_run_with_epoch_checkpoints_resumes_at_the_epoch_it_was_in(data_dir, tmp_path):
    workdir = tmp_path / "run"
    every_epoch = "train_and_evaluate.checkpoint_every_steps = 0\n"
    plain = tiny_gin_file(tmp_path / "plain.gin", data_dir, epochs=4, extra=every_epoch)
    crash = tiny_gin_file(tmp_path / "crash.gin", data_dir, epochs=4, extra=(
        every_epoch + "import tests.training.train_hooks\n"
        "train_and_evaluate.extra_callbacks = [@SigkillAt()]\n"
        "SigkillAt.epoch = 2\nSigkillAt.batch = 1\n"))
    first = run_in_repo([sys.executable, "train.py", f"--config={crash}", f"--workdir={workdir}"])
    assert first.returncode == -9, first.stderr[-3000:]  # SIGKILL during epoch 3
    assert not (workdir / run_files.METRICS_FILE).exists()

    second = run_in_repo([sys.executable, "train.py", f"--config={plain}", f"--workdir={workdir}"])
    assert second.returncode == 0, second.stderr[-3000:]
    with open(workdir / run_files.CSV_LOG, newline="") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f)]
    assert epochs == ["0", "1", "2", "3"]  # epochs 1-2 were not trained again
    metrics = json.loads((workdir / run_files.METRICS_FILE).read_text())
    assert metrics["epochs"] == 4 and metrics["epochs_this_run"] == 2
    config = (workdir / "config.gin").read_text()
    assert "train_and_evaluate.epochs = 4" in config


@pytest.mark.slow
def test_train_errors_name_the_fix(tmp_path, data_dir):
    no_data = tiny_gin_file(tmp_path / "none.gin", str(tmp_path / "missing"), epochs=1)
    result = run_in_repo([sys.executable, "train.py", f"--config={no_data}",
                   f"--workdir={tmp_path / 'a'}"])
    assert result.returncode == 2 and "pipeline.write" in result.stderr

    config = tiny_gin_file(tmp_path / "ok.gin", data_dir, epochs=1)
    result = run_in_repo([sys.executable, "train.py", f"--config={config}",
                   "--gin_bindings=train_and_evaluate.no_such_setting = 3",
                   f"--workdir={tmp_path / 'b'}"])
    assert result.returncode == 2 and "no_such_setting" in result.stderr
    assert not (tmp_path / "b").exists()  # nothing started

    result = run_in_repo([sys.executable, "train.py", "--config=configs/resnet50.gin",
                   f"--workdir={tmp_path / 'c'}"])
    assert result.returncode == 2 and "data_dir" in result.stderr  # %gin.REQUIRED


# Two replicas on two logical CPUs: the MirroredStrategy path (per-replica batches from
# distribute_datasets_from_function, each pipeline reading its own shards) without GPUs.
TWO_REPLICAS = """
import json, sys
import keras
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pipeline import training
from pipeline.training import distribute
distribute.choose_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

class ReplicaCopies(keras.callbacks.Callback):
    # Runs after the trainer's own callbacks: how far apart the two replicas' copies of the
    # BatchNorm moving statistics end.
    def on_train_end(self, logs=None):
        self.gap = max(float(np.max(np.abs(a.numpy() - b.numpy())))
                       for layer in self.model.layers
                       if isinstance(layer, keras.layers.BatchNormalization)
                       for weight in (layer.moving_mean, layer.moving_variance)
                       for a, b in [weight.value.values])

copies = ReplicaCopies()
metrics = training.train_and_evaluate(data_dir=sys.argv[1], workdir=sys.argv[2], epochs=1,
                                      verbose=0, extra_callbacks=[copies],
                                      **json.loads(sys.argv[3]))
print(json.dumps(dict(metrics, replica_gap=copies.gap)))
"""


@pytest.mark.slow
def test_mirrored_strategy_trains_with_a_pipeline_per_replica(data_dir, tmp_path):
    # Validation's last batch leaves one replica an empty batch, and TensorFlow's oneDNN CPU
    # convolution returns a wrong shape for an empty batch (see distribute.choose_strategy).
    result = run_in_repo([sys.executable, "-c", TWO_REPLICAS, data_dir, str(tmp_path / "run"),
                   json.dumps(TINY)], env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["replicas"] == 2 and metrics["batch_size"] == TINY["batch_size"]
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["images_per_second"] > 0
    # Keras keeps BatchNorm's moving statistics per replica; the trainer averages them, so
    # the model validated and saved is the same whichever replica's copy is read.
    assert metrics["replica_gap"] < 1e-6


@pytest.mark.slow
def test_smoke_config_learns_the_digits(tmp_path):
    """The bundled sample is real data: the smoke config must really learn it (a few minutes
    on 2 CPU cores). Its console, with TF_CPP_MIN_LOG_LEVEL unset, is the commands' own."""
    env = {"PIPELINE_WORKSPACE": str(tmp_path / "ws"), "TF_CPP_MIN_LOG_LEVEL": None}
    wrote = run_in_repo([sys.executable, "-m", "pipeline.write"], env=env)
    assert wrote.returncode == 0, wrote.stderr[-3000:]
    data_dir = tmp_path / "ws" / "shards" / "digits"
    workdir = tmp_path / "smoke"
    trained = run_in_repo([sys.executable, "train.py", "--config=configs/smoke.gin",
                    f"--gin_bindings=train_and_evaluate.data_dir = '{data_dir}'",
                    f"--workdir={workdir}"], env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((workdir / run_files.METRICS_FILE).read_text())
    assert metrics["val_accuracy"] >= 0.9, metrics
    _assert_a_quiet_console(trained, workdir)
    assert schema.read_manifest(str(data_dir)).num_classes == 10


def _assert_a_quiet_console(result, workdir):
    """No TensorFlow C++ INFO/WARNING line, no error line, the configuration named not dumped,
    and without a terminal: one line per epoch and the first step's milestones."""
    lines = result.stderr.splitlines()
    cpp = [line for line in lines if re.match(r"[IWE]\d{4} .*\.(cc|h):\d+\]", line)]
    assert not cpp, cpp[:5]
    assert not [line for line in lines if re.match(r"E\d{4} ", line)]
    assert f"configuration: {workdir / 'config.gin'}" in result.stderr
    assert "train_and_evaluate.depth = 10" not in result.stderr  # only at --verbosity=1
    assert "first step done in" in result.stderr and "s per epoch" in result.stderr
    assert "━" not in result.stdout and result.stdout.count("Epoch ") == 10
    # Every log line is ours: TensorFlow's saving chatter (renamed inputs, fingerprints) is not.
    ours = {path.name for path in pathlib.Path(REPO_ROOT, "pipeline").rglob("*.py")} | {
        "train.py"}
    sources = {found.group(1) for line in lines
               if (found := re.match(r"[IWE]\d{4} [\d:.]+ +\d+ ([^ :]+):\d+\]", line))}
    assert sources <= ours, sources - ours


@pytest.mark.slow
def test_tta_and_an_ensemble_average_probabilities_in_input_order(trained, data_dir, tmp_path):
    workdir, _ = trained
    other = str(tmp_path / "seed1")
    training.train_and_evaluate(data_dir=data_dir, workdir=other, epochs=1, verbose=0,
                                **dict(TINY, seed=1))
    _, paths, plain = predict.predict_probabilities(workdir, "test")
    _, _, flipped_only = predict.predict_probabilities(workdir, "test", tta="flip_lr")
    # The flip view alone, by hand: the model on mirrored images.
    model = predict.load_model(workdir)
    test = dataset.make_dataset(data_dir, "test", 4, training=False)
    images = np.concatenate([x for x, _ in test.as_numpy_iterator()])
    mirrored = tf.nn.softmax(tf.cast(model.predict(images[..., ::-1], verbose=0),
                                     tf.float64)).numpy()
    np.testing.assert_allclose(flipped_only, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    _, _, theirs = predict.predict_probabilities(other, "test")
    _, _, both = predict.predict_probabilities([workdir, other], "test")
    np.testing.assert_allclose(both, (plain + theirs) / 2, rtol=1e-5, atol=1e-6)

    submission, probabilities = tmp_path / "submission.csv", tmp_path / "probabilities.csv"
    result = run_in_repo([sys.executable, "-m", "pipeline.predict", f"--workdir={workdir}",
                   f"--workdir={other}", "--tta=flip", f"--output={submission}",
                   f"--probabilities={probabilities}"])
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(os.path.dirname(data_dir), "src", "test.csv"), newline="") as f:
        expected_paths = [row["image"] for row in csv.DictReader(f)]
    rows = list(csv.DictReader(submission.open(newline="")))
    assert [row["image"] for row in rows] == expected_paths == paths
    table = list(csv.DictReader(probabilities.open(newline="")))
    assert list(table[0]) == ["image", *CLASSES]
    for row, chosen in zip(table, rows):
        values = [float(row[name]) for name in CLASSES]
        assert abs(sum(values) - 1) < 1e-4
        assert CLASSES[int(np.argmax(values))] == chosen["label"]
    with pytest.raises(predict.PredictError, match="rot45 unknown.*flip_lr"):
        predict.predict_probabilities(workdir, "test", tta="flip,rot45")
