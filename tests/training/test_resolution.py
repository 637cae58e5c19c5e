"""Training at another resolution than the stored one: the sizing ops (eagerly, in tf.data
and in the model), the progressive schedule and its fits, and a run that trains at growing
sizes, evaluates at eval_image_size, and whose model takes any size it is fed."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_labeled_dataset
from pipeline import augment, errors, training
from pipeline.training import distribute, legs, predict
from pipeline.training.resolution import make_resolution
from pipeline.training.settings import TrainingError


def _batch(side=16, count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 3, side, side), np.uint8)


def test_the_sizing_ops_are_the_same_eagerly_in_tf_data_and_on_the_device():
    images = _batch()
    for spec, side in (("resize(size=8)", 8), ("center_crop(size=12, crop=0.875)", 12),
                       ("random_resized_crop(size=10)|flip_lr", 10)):
        op = augment.build(spec, jit_compile=False)
        eager, _ = op(images, None, tf.constant([1, 2], tf.int64))
        assert eager.dtype == tf.uint8 and eager.shape == (4, 3, side, side), spec
        mapped = tf.data.Dataset.from_tensors(images).map(
            lambda x: op(x, None, tf.constant([1, 2], tf.int64))[0])
        (in_graph,) = list(mapped)
        assert in_graph.shape == (4, 3, side, side)  # static: known to the graph
        np.testing.assert_array_equal(in_graph.numpy(), eager.numpy())
    # On the device: the layer augments float pixels before normalising.
    layer = augment.DevicePreprocess([0.0] * 3, [1.0] * 3, augment="resize(size=8)", seed=0)
    assert layer(images, training=True).shape == (4, 8, 8, 3)


def test_resize_and_center_crop_at_the_stored_size_change_nothing():
    images = _batch()
    for spec in ("resize(size=16)", "center_crop(size=16, crop=1.0)",
                 "random_resized_crop(scale=(1, 1), ratio=(1, 1), size=16)"):
        out, _ = augment.build(spec)(images, None, tf.constant([0, 0], tf.int64))
        np.testing.assert_array_equal(out.numpy(), images)
    # A centre crop keeps the middle: a smooth 16 image cropped to its central half, at 8,
    # is its middle 8x8 (up to the resampling's fraction of a pixel: 10 levels a pixel).
    y, x = np.mgrid[0:16, 0:16]
    ramp = np.broadcast_to((10 * x + 5 * y).astype(np.uint8), (2, 3, 16, 16))
    out, _ = augment.build("center_crop(size=8, crop=0.5)")(ramp, None,
                                                            tf.constant([0, 0], tf.int64))
    np.testing.assert_allclose(out.numpy(), ramp[:, :, 4:12, 4:12], atol=4)
    with pytest.raises(errors.ConfigError, match="size=0"):
        augment.build("resize(size=0)")


def test_a_training_spec_ends_at_the_training_size():
    assert augment.sized_spec("random_crop(pad=2)|flip_lr", 8) == (
        "random_crop(pad=2)|flip_lr()|resize(size=8)")
    assert augment.sized_spec("random_resized_crop(scale=(0.5, 1.0))|flip_lr", 8) == (
        "random_resized_crop(scale=(0.5, 1.0), size=8)|flip_lr()")
    assert augment.sized_spec(None, 8) == "resize(size=8)"
    with pytest.raises(errors.ConfigError, match="leave size out"):
        augment.sized_spec("random_resized_crop(size=12)", 8)


def test_the_progressive_schedule_grows_in_steps_and_cuts_the_fits():
    resolution = make_resolution((3, 32, 32), image_size=32, eval_image_size=None,
                                 eval_crop=1.0, progressive_resizing=(16, 1, 5, 8))
    assert [resolution.size_at(epoch) for epoch in range(7)] == [16, 16, 24, 24, 32, 32, 32]
    fits = legs.training_legs(0, 10, 7, freeze_epochs=3, size_at=resolution.size_at)
    assert [(leg.initial_epoch, leg.epochs, leg.frozen, leg.image_size) for leg in fits] == [
        (0, 2, True, 16), (2, 3, True, 24), (3, 4, False, 24), (4, 7, False, 32)]
    # Resumed inside epoch 2: that epoch's rest first, at its size.
    fits = legs.training_legs(25, 10, 7, size_at=resolution.size_at)
    assert [(leg.start_batch, leg.initial_epoch, leg.epochs, leg.image_size)
            for leg in fits][:2] == [(25, 2, 3, 24), (30, 3, 4, 24)]
    for bad in ((16, 5, 1), (16, 1), "16"):
        with pytest.raises(TrainingError, match="progressive_resizing="):
            make_resolution((3, 32, 32), image_size=None, eval_image_size=None, eval_crop=1.0,
                            progressive_resizing=bad)
    with pytest.raises(TrainingError, match="eval_crop=1.5"):
        make_resolution((3, 32, 32), image_size=None, eval_image_size=None, eval_crop=1.5,
                        progressive_resizing=None)


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory):
    """45 labeled 16x16 images of 3 classes, 2 train shards, and a val split."""
    return write_labeled_dataset(tmp_path_factory.mktemp("sizes"), 45, "sizes", side=16,
                                 shards=2, val_fraction=0.3)


@pytest.mark.slow
def test_a_run_trains_at_growing_sizes_and_evaluates_at_the_eval_size(photos_dir, tmp_path,
                                                                       monkeypatch):
    seen = []
    make_input = distribute.make_input

    def recording(strategy, plan, batch_size, **kwargs):
        data = make_input(strategy, plan, batch_size, **kwargs)
        if plan.training:
            seen.append(tuple(data.element_spec[0].shape))
        return data

    monkeypatch.setattr(distribute, "make_input", recording)
    workdir = str(tmp_path / "run")
    metrics = training.train_and_evaluate(
        data_dir=photos_dir, workdir=workdir, depth=10, width=4, stem="small", batch_size=4,
        warmup_epochs=0, epochs=3, cache=None, verbose=0, augment="flip_lr",
        image_size=12, eval_image_size=16, eval_crop=0.875, progressive_resizing=(8, 0, 2, 4))
    # One fit per size: epoch 1 at 8, epochs 2-3 at 12 (static shapes: known to the graph).
    assert seen == [(4, 3, 8, 8), (4, 3, 12, 12)]
    assert np.isfinite(metrics["val_loss"])
    model = predict.load_model(workdir)
    eval_layer = model.get_layer("eval_resize")
    assert (eval_layer.size, eval_layer.crop) == (16, 0.875)
    for side in (16, 20, 9):  # the model takes the sizes it is fed
        assert model.predict(_batch(side), verbose=0).shape == (4, 3)
    # Evaluation sees the central 0.875 at 16, whatever it is fed; training what it is fed.
    images = _batch(20)
    expected, _ = augment.build("center_crop(size=16, crop=0.875)")(
        images, None, tf.constant([0, 0], tf.int64))
    np.testing.assert_array_equal(eval_layer(images, training=False).numpy(), expected.numpy())
    np.testing.assert_array_equal(eval_layer(images, training=True).numpy(), images)
