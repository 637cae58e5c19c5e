"""MultiWorkerMirroredStrategy from TF_CONFIG: two train.py processes on loopback ports train
one model together for a few steps, on shards that split unevenly between them."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO_ROOT, free_ports, write_labeled_dataset
from pipeline import dataset
from pipeline.core import schema
from pipeline.training import run_files

DEADLINE_S = 300  # both processes import TensorFlow, build a ResNet-10 and meet in a ring
# The smoke config made tiny: a ResNet-10 of 4-32 channels on 8x8 images, one epoch of 7
# global steps of 4 images.
BINDINGS = ["width = 4", "input_pool = 1", "epochs = 1", "batch_size = 4", "warmup_epochs = 0",
            "cache = None", "augment = 'flip_lr'", "seed = 3"]


@pytest.mark.slow
def test_two_worker_processes_train_one_model(tmp_path):
    # 3 train and 3 val shards: one worker reads twice as many as the other, yet both must
    # run the same steps (see distribute.make_input).
    data_dir = write_labeled_dataset(tmp_path, 40, "shards", shards=3, val_shards=3,
                                     val_fraction=0.25)
    for returncode, stderr in _train_two_workers(tmp_path, data_dir, BINDINGS):
        assert returncode == 0, stderr[-3000:]
    metrics = [json.loads((tmp_path / f"worker{i}" / run_files.METRICS_FILE).read_text())
               for i in range(2)]
    assert [m["replicas"] for m in metrics] == [2, 2]
    # One model: both start from the same seed, and only gradients all-reduced every step
    # keep the weights equal while each trains on its own shards; BatchNorm's moving
    # statistics, which each worker keeps, are averaged (distribute.AverageMovingStatistics).
    models = [keras.models.load_model(tmp_path / f"worker{i}" / run_files.MODEL_FILE,
                                      compile=False) for i in range(2)]
    for mine, theirs in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)
    # Validation covered every val record once, across both workers: the reported accuracy
    # is the accuracy of the saved model on the whole split.
    assert metrics[0]["val_accuracy"] == metrics[1]["val_accuracy"]
    assert metrics[0]["val_accuracy"] == pytest.approx(_local_accuracy(models[0], data_dir))


@pytest.mark.slow
def test_two_workers_killed_mid_epoch_resume_at_the_same_step(tmp_path):
    """Each worker saves its own checkpoint into its own workdir at the same steps, and both
    continue from them."""
    data_dir = write_labeled_dataset(tmp_path, 40, "shards", shards=3, val_shards=3,
                                     val_fraction=0.25)
    bindings = [b for b in BINDINGS if not b.startswith("epochs")] + [
        "epochs = 2", "checkpoint_every_steps = 2"]
    kill = ["extra_callbacks = [@SigkillAtStep()]", "SigkillAtStep.step = 5"]
    for returncode, stderr in _train_two_workers(tmp_path, data_dir, bindings + kill,
                                                 hooks=True):
        assert returncode == -9, stderr[-3000:]
    for returncode, stderr in _train_two_workers(tmp_path, data_dir, bindings):
        assert returncode == 0, stderr[-3000:]
    metrics = [json.loads((tmp_path / f"worker{i}" / run_files.METRICS_FILE).read_text())
               for i in range(2)]
    assert [m["resumes"] for m in metrics] == [[{"epoch": 0, "step": 4}]] * 2
    models = [keras.models.load_model(tmp_path / f"worker{i}" / run_files.MODEL_FILE,
                                      compile=False) for i in range(2)]
    for mine, theirs in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)


def _train_two_workers(tmp_path, data_dir, bindings, hooks=False):
    """Run train.py as the two workers of one cluster; [(returncode, stderr)] of each."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
               # oneDNN's CPU convolution mishandles an empty per-replica batch (see
               # distribute.choose_strategy).
               "TF_ENABLE_ONEDNN_OPTS": "0",
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        flags = [f"--gin_bindings=train_and_evaluate.{b}" if not b.startswith("Sigkill")
                 else f"--gin_bindings={b}" for b in bindings + [f"data_dir = '{data_dir}'"]]
        if hooks:
            flags.insert(0, "--config=tests/training/hooks.gin")
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--config=configs/smoke.gin", *flags,
             f"--workdir={tmp_path / f'worker{index}'}"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [process.communicate(timeout=DEADLINE_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [(process.returncode, stderr) for process, (_, stderr) in zip(processes, outputs)]


def _local_accuracy(net, data_dir):
    data = dataset.make_dataset(data_dir, "val", 4, training=False)
    right = total = 0
    for images, labels in data:
        predicted = np.argmax(net(images, training=False).numpy(), axis=1)
        right += int(np.sum(predicted == labels.numpy()))
        total += len(labels)
    assert total == schema.read_manifest(data_dir).split("val").count
    return right / total
