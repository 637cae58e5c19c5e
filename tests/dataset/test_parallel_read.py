"""The random-access reader on several threads, and the augmentation it does itself: the same
bytes for any number of threads, the same crops as the TensorFlow ops, positions with
random_resized_crop, static shapes, errors from the threads, and the log line saying where
each op ran."""

import os
import shutil
import threading

import google_crc32c
import numpy as np
import pytest
import tensorflow as tf

from conftest import write_labeled_dataset
from pipeline import augment, dataset, errors
from pipeline.core import schema
from pipeline.dataset import fused, kernels, random_access

SPECS = ("random_crop(pad=3)|flip_lr", "random_resized_crop|flip_lr",
         "random_resized_crop(size=6)", "random_crop(pad=16)|flip_lr|brightness", None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """64 labeled 12x12 images in 4 train shards (+ val), written by the real writer."""
    return write_labeled_dataset(tmp_path_factory.mktemp("pr"), 64, "out", side=12, shards=4,
                                 val_shards=1, val_fraction=0.2)


def _batches(ds, count):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


@pytest.mark.parametrize("spec", SPECS)
def test_the_same_seed_and_batch_give_the_same_bytes_for_any_number_of_threads(data_dir, spec):
    runs = [_batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=4,
                                          augment=spec, access="random",
                                          num_parallel_reads=threads), 6)
            for threads in (1, 2, 4)]
    for other in runs[1:]:
        for (xa, ya), (xb, yb) in zip(runs[0], other):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("spec", SPECS)
def test_the_in_memory_table_gives_the_bytes_of_random_access(data_dir, spec):
    """The table gathers and crops in its threads as random access reads and crops."""
    read = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=4,
                                         augment=spec, access="random"), 5)
    for threads in (1, 3):
        table = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=4,
                                              augment=spec, cache="memory",
                                              num_parallel_reads=threads), 5)
        for (xa, ya), (xb, yb) in zip(read, table):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def _tf_ops(data_dir, spec, count):
    """The same batches read plainly from the in-memory table, then every op of `spec` run
    by TensorFlow with the seed the reader gives batch g."""
    plain = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=4,
                                          augment=None, cache="memory"), count)
    op = augment.build(spec, num_classes=schema.read_manifest(data_dir).num_classes)
    return [op(x, y, tf.constant([4, g], tf.int64)) for g, (x, y) in enumerate(plain)]


@pytest.mark.parametrize("spec", ["random_crop(pad=3)|flip_lr", "flip_lr",
                                  "random_crop(pad=20)", "random_crop(pad=3)|flip_lr|contrast"])
def test_crops_and_flips_in_the_reader_are_the_bytes_of_the_tensorflow_ops(data_dir, spec):
    assert fused.host_ops(spec).count >= 1
    ours = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=4,
                                         augment=spec, access="random"), 4)
    for (x, y), (tx, ty) in zip(ours, _tf_ops(data_dir, spec, 4)):
        np.testing.assert_array_equal(x, tx)
        np.testing.assert_array_equal(y, ty)


@pytest.mark.parametrize("spec", ["random_resized_crop|flip_lr", "random_resized_crop(size=20)"])
def test_resized_crops_in_the_reader_agree_with_the_tensorflow_op(data_dir, spec):
    ours = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=4,
                                         augment=spec, access="random"), 4)
    for (x, y), (tx, ty) in zip(ours, _tf_ops(data_dir, spec, 4)):
        assert x.shape == tuple(tx.shape)
        diff = np.abs(x.astype(int) - tx.numpy().astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.8, (diff.max(), (diff > 0).mean())
        np.testing.assert_array_equal(y, ty)


def test_start_batch_with_random_resized_crop_continues_an_uninterrupted_run(data_dir):
    spec = "random_resized_crop(size=8)|flip_lr"
    whole = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=2,
                                          augment=spec, start_batch=0), 9)
    later = _batches(dataset.make_dataset(data_dir, "train", batch_size=16, seed=2,
                                          augment=spec, start_batch=5), 4)
    for (xa, ya), (xb, yb) in zip(whole[5:], later):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("spec,side", [("random_resized_crop(size=7)|flip_lr", 7),
                                       ("random_crop(pad=2)|flip_lr", 12)])
def test_batches_from_the_reader_have_static_shapes(data_dir, spec, side):
    ds = dataset.make_dataset(data_dir, "train", batch_size=16, seed=1, augment=spec)
    images, labels = ds.element_spec
    assert images.shape.as_list() == [16, 3, side, side] and labels.shape.as_list() == [16]


def test_the_log_says_which_ops_ran_in_the_reader_and_which_in_tf_data(data_dir, info_logs,
                                                                      tmp_path):
    def said(**kwargs):
        info_logs.clear()
        dataset.make_dataset(data_dir, "train", batch_size=16, seed=1, **kwargs)
        return [r.getMessage() for r in info_logs.records
                if r.getMessage().startswith("split ")][-1]

    line = said(augment="random_crop(pad=2)|flip_lr|brightness")
    assert line.endswith("; augmentation random_crop(pad=2)|flip_lr() in the reader, "
                         "brightness() in tf.data"), line
    assert said(augment="brightness|flip_lr").endswith(
        "; augmentation brightness()|flip_lr() in tf.data"), line
    line = said(augment="random_resized_crop|flip_lr", access="stream")
    assert line.startswith("split 'train': stream") and line.endswith(
        "; augmentation random_resized_crop()|flip_lr() in tf.data (only random access crops "
        "in the reader)"), line
    assert "augmentation" not in said(augment=None)


def test_a_damaged_record_is_named_the_same_whatever_the_threads(data_dir, tmp_path):
    damaged = str(tmp_path / "damaged")
    shutil.copytree(data_dir, damaged)
    manifest = schema.read_manifest(damaged)
    shard = manifest.split("train").shards[2]
    with open(os.path.join(damaged, shard.file), "r+b") as f:
        f.seek(400)  # inside the first record's image
        byte = f.read(1)
        f.seek(400)
        f.write(bytes([byte[0] ^ 0xFF]))
    for threads in (1, 3):
        ds = dataset.make_dataset(damaged, "train", batch_size=48, seed=0, augment=None,
                                  access="random", num_parallel_reads=threads)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"{shard.file}: record 0: data CRC mismatch"):
            _batches(ds, 1)


def test_an_error_in_a_reading_thread_names_the_thread(data_dir, monkeypatch):
    manifest = schema.read_manifest(data_dir)
    records = random_access.open_records(data_dir, manifest, manifest.split("train").shards,
                                         "train", dataset.DamagedShards(), threads=3)
    plain = kernels.read_batch

    def failing(*args):
        if args[4] > 0:  # the parts after the first
            raise MemoryError("no room for the batch")
        return plain(*args)

    monkeypatch.setattr(kernels, "read_batch", failing)
    images = np.empty((12, *manifest.image_shape), np.uint8)
    with pytest.raises(random_access.ReaderFailed,
                       match=r"reading thread 1 of 3 \(records 4..7 of the batch\) failed "
                             "reading a batch: MemoryError: no room for the batch"):
        records.reader.read_into(np.arange(12), images, np.empty(12, np.int64))


@pytest.mark.parametrize("start,stop", [(0, 100003), (3, 99999), (1, 2), (5, 5), (7, 64)])
def test_the_kernels_crc32c_is_google_crc32c(start, stop):
    data = np.frombuffer(os.urandom(100003), np.uint8)
    expected = google_crc32c.value(data[start:stop].tobytes())
    assert kernels._crc_hardware(0, data, start, stop) == expected or not kernels.HARDWARE_CRC
    assert kernels._crc_software(0, data, start, stop) == expected
    assert kernels.crc32c(kernels.crc32c(0, data, start, (start + stop) // 2), data,
                          (start + stop) // 2, stop) == expected


def test_reading_threads_end_with_their_batch(data_dir):
    """Nothing outlives a batch: no thread to join at exit, no worker process or shared
    memory for a killed run to leave behind."""
    ds = dataset.make_dataset(data_dir, "train", batch_size=16, seed=0, access="random",
                              num_parallel_reads=4)
    _batches(ds, 3)
    assert not [t for t in threading.enumerate() if t.name.startswith("record-reader")]


@pytest.mark.parametrize("spec", ["random_resized_crop(6)", "random_resized_crop(scale=(0, 2))",
                                  "random_resized_crop(ratio=(1, 0))|flip_lr"])
def test_a_bad_resized_crop_is_one_line_before_the_reader_uses_it(data_dir, spec):
    # random_resized_crop(6) takes the 6 as its first parameter, scale: a ConfigError naming
    # it, not a TypeError from the reader's fused crop.
    with pytest.raises(errors.ConfigError, match="random_resized_crop: (scale|ratio)="):
        dataset.make_dataset(data_dir, "train", batch_size=16, seed=4, augment=spec,
                             access="random")
