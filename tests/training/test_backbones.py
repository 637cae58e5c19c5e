"""keras.applications backbones: built by name on uint8 CHW batches, started from a weights
file (nothing downloads here), fine-tuned with the backbone frozen first."""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, console_lines, write_labeled_dataset
from pipeline import errors, training
from pipeline.training import backbones, predict

BACKBONE = "MobileNetV3Small"  # the smallest application: seconds per epoch at 32x32


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return write_labeled_dataset(root, 48, "shards", side=32, shards=2, val_shards=1,
                                 val_fraction=0.25)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A .weights.h5 of the application without its top, as a user would save one."""
    base = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                               input_shape=(32, 32, 3), pooling="avg")
    rng = np.random.default_rng(0)
    base.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) if w.ndim > 1 else w
                      for w in base.get_weights()])
    path = str(tmp_path_factory.mktemp("weights") / "mobilenet.weights.h5")
    base.save_weights(path)
    return path, base.get_weights()


@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetV2B0", "ResNet50"])
def test_an_application_takes_uint8_chw_batches(name):
    net = backbones.build_application(name=name, num_classes=5, image_shape=(3, 32, 32))
    images = np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    logits = net(images, training=False)
    assert logits.shape == (2, 5) and logits.dtype == "float32"


def test_a_weights_file_is_what_the_backbone_starts_from(weights_file):
    path, expected = weights_file
    net = backbones.build_application(name=BACKBONE, num_classes=3, image_shape=(3, 32, 32),
                                      weights=path)
    loaded = backbones.backbone_of(net).get_weights()
    assert len(loaded) == len(expected)
    for mine, theirs in zip(loaded, expected):
        np.testing.assert_array_equal(mine, theirs)


def test_bad_names_and_files_say_what_works(tmp_path):
    with pytest.raises(errors.ConfigError, match="backbone='ResNet51'.*EfficientNetV2B0"):
        backbones.application("ResNet51")
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not h5")
    with pytest.raises(errors.ConfigError, match="include_top=False"):
        backbones.build_application(name=BACKBONE, num_classes=3, image_shape=(3, 32, 32),
                                    weights=str(bad))


@pytest.mark.slow
def test_the_shipped_finetune_config_offline_names_the_download_in_one_line(
        data_dir, tmp_path, monkeypatch):
    """Keras's cache is empty and every download goes to a closed port: the run stops before
    it builds anything, exit 2, naming the file, its URL and the binding that takes it."""
    from conftest import run_in_repo

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: refused at once
    config = tmp_path / "offline.gin"
    config.write_text(f"include '{REPO_ROOT}/configs/finetune.gin'\n"
                      f"train_and_evaluate.data_dir = '{data_dir}'\n"
                      "train_and_evaluate.batch_size = 8\n")
    result = run_in_repo([sys.executable, "train.py", f"--config={config}",
                   f"--workdir={tmp_path / 'run'}"], timeout=300)
    lines = console_lines(result.stdout + result.stderr)
    assert result.returncode == errors.EXIT_USAGE and len(lines) <= 3, lines
    assert "efficientnetv2-b0_notop.h5" in lines[-1] and "https://" in lines[-1]
    assert "train_and_evaluate.weights=" in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_kerass_own_download_format_is_a_weights_file(weights_file, tmp_path):
    """What the offline message says to fetch (`*_notop.h5`, Keras's legacy HDF5 layout)
    loads as weights=."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    _, expected = weights_file
    base = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                               input_shape=(32, 32, 3), pooling="avg")
    base.set_weights(expected)
    path = str(tmp_path / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    net = backbones.build_application(name=BACKBONE, num_classes=3, image_shape=(3, 32, 32),
                                      weights=path)
    for mine, theirs in zip(backbones.backbone_of(net).get_weights(), expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_weights_file_of_another_model_says_what_was_expected(data_dir, tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    (tmp_path / "text.weights.h5").write_text("not weights\n")
    for name, why in (("other", "layers do not load"), ("text", "not an HDF5 file"),
                      ("missing", "no such file")):
        with pytest.raises(errors.ConfigError) as raised:
            training.train_and_evaluate(
                data_dir=data_dir, workdir=str(tmp_path / name), backbone=BACKBONE,
                weights=str(tmp_path / f"{name}.weights.h5"), epochs=1, batch_size=8)
        message = str(raised.value)
        assert "\n" not in message and len(message) < 600, message
        assert why in message and f"{BACKBONE}(include_top=False)" in message
        assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_a_wrong_weights_file_in_train_py_is_one_line(data_dir, tmp_path):
    from conftest import run_in_repo

    (tmp_path / "text.weights.h5").write_text("not weights\n")
    bindings = [f"data_dir = '{data_dir}'", f"weights = '{tmp_path / 'text.weights.h5'}'",
                f"backbone = '{BACKBONE}'", "batch_size = 8"]
    result = run_in_repo([sys.executable, "train.py", "--config=configs/finetune.gin",
                   *[f"--gin_bindings=train_and_evaluate.{b}" for b in bindings],
                   f"--workdir={tmp_path / 'run'}"])
    lines = console_lines(result.stdout + result.stderr)
    assert result.returncode == errors.EXIT_USAGE and len(lines) == 1, lines
    assert "not an HDF5 file" in lines[0] and "include_top=False" in lines[0]


class BackboneSnapshots(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        if not hasattr(self, "epochs"):
            self.epochs = {-1: self._weights()}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch] = self._weights()

    def _weights(self):
        base = backbones.backbone_of(self.model)
        head = self.model.get_layer("logits")
        return ([w.copy() for w in base.get_weights()], [w.copy() for w in head.get_weights()])


@pytest.mark.slow
def test_fine_tune_freezes_the_backbone_then_trains_it(data_dir, weights_file, tmp_path):
    path, _ = weights_file
    snapshots = BackboneSnapshots()
    workdir = str(tmp_path / "run")
    metrics = training.train_and_evaluate(
        data_dir=data_dir, workdir=workdir, backbone=BACKBONE, weights=path, freeze_epochs=1,
        epochs=2, batch_size=8, base_learning_rate=0.05, warmup_epochs=0, cache=None,
        augment="flip_lr", extra_callbacks=[snapshots], verbose=0)
    (start_base, start_head), (frozen_base, frozen_head), (free_base, _) = (
        snapshots.epochs[-1], snapshots.epochs[0], snapshots.epochs[1])
    # Epoch 0: only the head learns (BatchNorm statistics included, the backbone is frozen).
    assert all(np.array_equal(a, b) for a, b in zip(start_base, frozen_base))
    assert not all(np.array_equal(a, b) for a, b in zip(start_head, frozen_head))
    # Epoch 1: the backbone trains too.
    assert not all(np.array_equal(a, b) for a, b in zip(frozen_base, free_base))
    assert np.isfinite(metrics["val_loss"])
    rows = predict.predict_split(workdir, "val")  # model.keras loads, with its layers
    assert len(rows) == 12
    with pytest.raises(training.settings.TrainingError, match="freeze_epochs=2"):
        training.train_and_evaluate(data_dir=data_dir, workdir=str(tmp_path / "x"),
                                    backbone=BACKBONE, freeze_epochs=2, epochs=2, batch_size=8,
                                    verbose=0)
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.slow
def test_the_finetune_config_runs_offline(data_dir, tmp_path):
    from conftest import run_in_repo

    workdir = tmp_path / "run"
    bindings = [f"data_dir = '{data_dir}'", "weights = None", f"backbone = '{BACKBONE}'",
                "epochs = 2", "batch_size = 8", "cache = None"]
    result = run_in_repo([sys.executable, "train.py", "--config=configs/finetune.gin",
                   *[f"--gin_bindings=train_and_evaluate.{b}" for b in bindings],
                   f"--workdir={workdir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backbone frozen: training the head only" in result.stderr
    assert "backbone unfrozen" in result.stderr
    assert json.loads((workdir / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.slow
def test_the_backbone_learns_at_its_factor_of_the_rate(weights_file):
    path, _ = weights_file
    nets = [backbones.build_application(name=BACKBONE, num_classes=3, image_shape=(3, 32, 32),
                                        weights=path, backbone_lr_factor=factor)
            for factor in (1.0, 0.25)]
    nets[1].get_layer("logits").set_weights(nets[0].get_layer("logits").get_weights())
    images = np.random.default_rng(1).integers(0, 256, (4, 3, 32, 32), np.uint8)
    labels = tf.one_hot([0, 1, 2, 0], 3)
    grads = []
    for net in nets:
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(labels, net(images, training=True),
                                                         from_logits=True)
        grads.append(tape.gradient(loss, [net.get_layer("logits").kernel,
                                          backbones.backbone_of(net).trainable_variables[0]]))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-7)  # the head
    np.testing.assert_allclose(grads[1][1], 0.25 * grads[0][1], rtol=1e-4, atol=1e-8)
    assert np.abs(grads[0][1]).max() > 0


def test_a_learning_rate_factor_is_for_an_application(data_dir, tmp_path):
    from pipeline.training.settings import TrainingError

    for backbone, factor in (("resnet", 0.5), (BACKBONE, 0.0)):
        with pytest.raises(TrainingError, match="backbone_lr_factor="):
            training.train_and_evaluate(data_dir=data_dir, workdir=str(tmp_path / backbone),
                                        backbone=backbone, backbone_lr_factor=factor,
                                        depth=10, epochs=1, batch_size=4, verbose=0)
        assert not os.path.exists(tmp_path / backbone)  # refused before writing anything
