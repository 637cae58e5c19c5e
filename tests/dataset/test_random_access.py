"""Random access and the in-memory table as make_dataset reads them: positions (start_batch),
static shapes with every op, the access chosen and said, the fallbacks to streaming, datasets
written before record indexes, and a clean exit with a live iterator."""

import logging
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_batches as _same
from conftest import write_labeled_dataset
from pipeline import augment, dataset
from pipeline.core import record_index, schema
from pipeline.dataset import plan
from pipeline.dataset.order import Order

READS = {"random": dict(access="random"), "table": dict(cache="memory")}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """96 labeled 8x8 images in 8 train shards (+ val), written by the real writer."""
    return write_labeled_dataset(tmp_path_factory.mktemp("ra"), 96, "out", shards=8,
                                 val_shards=1, val_fraction=0.2)


def _batches(ds, count=None):
    ds = ds.take(count) if count is not None else ds
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _train_images(data_dir):
    """The train split's images in shard order (random access's positions), independently."""
    manifest = schema.read_manifest(data_dir)
    spec = {schema.IMAGE_KEY: schema.tf_feature_spec()[schema.IMAGE_KEY]}
    return [tf.io.parse_single_example(r, spec)[schema.IMAGE_KEY].numpy()
            for r in tf.data.TFRecordDataset(manifest.shard_paths(data_dir, "train"))]


@pytest.mark.parametrize("read", sorted(READS))
def test_start_batch_continues_an_uninterrupted_run_exactly(data_dir, read):
    count = schema.read_manifest(data_dir).split("train").count
    per_epoch = dataset.batches_per_epoch(count, 8, training=True)
    run = dataset.make_dataset(data_dir, "train", batch_size=8, seed=5, start_batch=0,
                               **READS[read])  # the default augmentation
    whole = _batches(run, 3 * per_epoch + 2)
    for start in (1, per_epoch - 1, per_epoch, 2 * per_epoch + 1):
        later = dataset.make_dataset(data_dir, "train", batch_size=8, seed=5,
                                     start_batch=start, **READS[read])
        _same(_batches(later, 3), whole[start:start + 3])
    # One epoch per iteration (start_batch=None, Keras's epochs) is the same run.
    epochs = dataset.make_dataset(data_dir, "train", batch_size=8, seed=5, **READS[read])
    _same(_batches(epochs), whole[:per_epoch])
    _same(_batches(epochs), whole[per_epoch:2 * per_epoch])


@pytest.mark.parametrize("read", sorted(READS))
def test_a_start_far_into_the_run_is_found_not_replayed(data_dir, read, monkeypatch):
    asked = []
    indices = Order.indices

    def counted(order, batch):
        asked.append(batch)
        return indices(order, batch)

    monkeypatch.setattr(Order, "indices", counted)
    ds = dataset.make_dataset(data_dir, "train", batch_size=8, seed=5, start_batch=10**6,
                              augment=None, **READS[read])
    images, _ = next(iter(ds))
    assert min(asked) == 10**6 and len(asked) < 100  # the batches read, not those before
    manifest = schema.read_manifest(data_dir)
    counts = [shard.count for shard in manifest.split("train").shards]
    positions = indices(Order.global_shuffle(counts, 8, 5), 10**6)
    everything = _train_images(data_dir)
    assert [x.tobytes() for x in images.numpy()] == [everything[p] for p in positions]


def test_start_batch_is_a_position_in_a_training_run(data_dir):
    with pytest.raises(dataset.DatasetError, match="needs random access or cache='memory'"):
        dataset.make_dataset(data_dir, "train", start_batch=3, access="stream")
    with pytest.raises(dataset.DatasetError, match="a position in a training run"):
        dataset.make_dataset(data_dir, "val", training=False, start_batch=0)
    with pytest.raises(dataset.DatasetError, match="a position in a training run"):
        dataset.make_dataset(data_dir, "train", start_batch=-1)
    streamed = dataset.make_dataset(data_dir, "train", batch_size=8, start_batch=0,
                                    access="stream")
    assert streamed.cardinality() == tf.data.INFINITE_CARDINALITY  # the run's stream


# The ops without defaults for every argument, as a spec would give them.
OPS_NEEDING_ARGUMENTS = {"resize": "resize(size=6)", "center_crop": "center_crop(size=6)"}


@pytest.mark.parametrize("read", ["random", "table", "stream"])
@pytest.mark.slow
def test_every_op_gives_fully_known_shapes(data_dir, read):
    how = READS.get(read, dict(access="stream"))
    for name in sorted(augment.registry.OPS):
        spec = OPS_NEEDING_ARGUMENTS.get(name, name)
        ds = dataset.make_dataset(data_dir, "train", batch_size=8, augment=spec, **how)
        images, labels = ds.element_spec
        assert images.shape.is_fully_defined() and labels.shape.is_fully_defined(), name
        x, y = next(iter(ds))
        assert x.shape == images.shape and y.shape == labels.shape, name
    # Evaluation's last batch is partial: all but the batch size is known.
    images, _ = dataset.make_dataset(data_dir, "val", batch_size=8, training=False,
                                     **how).element_spec
    assert images.shape.as_list() == [None, 3, 8, 8]


@pytest.mark.parametrize("read", ["random", "table", "stream"])
def test_a_model_that_needs_known_shapes_trains_on_the_default_augmentation(data_dir, read):
    # Before static shapes, random_crop left the image shape unknown and this failed with
    # "Shapes used to initialize variables must be fully-defined".
    num_classes = schema.read_manifest(data_dir).num_classes
    ds = dataset.make_dataset(data_dir, "train", batch_size=8, seed=0,
                              **READS.get(read, dict(access="stream")))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, tf.one_hot(y, num_classes)))
    net = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(num_classes)])
    net.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    history = net.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _chosen(logs, make):
    logs.clear()
    make()
    lines = [r.getMessage() for r in logs.records if r.getMessage().startswith("split ")]
    assert len(lines) == 1, lines
    return lines[0]


def test_auto_says_what_it_chose_and_why(data_dir, tmp_path, info_logs):
    said = _chosen(info_logs, lambda: dataset.make_dataset(data_dir, "train", batch_size=8))
    assert said.startswith("split 'train': random (uncompressed local shards")
    assert "a global shuffle every epoch" in said
    said = _chosen(info_logs, lambda: dataset.make_dataset(data_dir, "train", batch_size=8,
                                                        cache="memory"))
    assert said.startswith("split 'train': table (cache='memory'")
    said = _chosen(info_logs, lambda: dataset.make_dataset(data_dir, "val", batch_size=8,
                                                        training=False))
    assert said.startswith("split 'val': random") and said.endswith("in order")
    cache = str(tmp_path / "cache")
    said = _chosen(info_logs, lambda: dataset.make_dataset(data_dir, "train", batch_size=8,
                                                        cache=cache))
    assert said.startswith(f"split 'train': stream (cache={cache!r} caches the streamed")


def test_gzip_shards_are_streamed_and_say_so(tmp_path, info_logs):
    data_dir = write_labeled_dataset(tmp_path, 24, "gz", shards=2, val_shards=1,
                                     val_fraction=0.25, compression="GZIP")
    said = _chosen(info_logs, lambda: dataset.make_dataset(data_dir, "train", batch_size=4))
    assert said.startswith("split 'train': stream (the shards are GZIP-compressed")
    with pytest.raises(dataset.DatasetError, match="access='random' cannot read this split: "
                                                   "the shards are GZIP-compressed"):
        dataset.make_dataset(data_dir, "train", access="random")
    table = dataset.make_dataset(data_dir, "val", batch_size=4, training=False, cache="memory")
    streamed = dataset.make_dataset(data_dir, "val", batch_size=4, training=False)
    _same(_batches(table), _batches(streamed))


def test_a_path_with_a_scheme_is_streamed_and_says_so(data_dir, info_logs):
    remote = "file://" + data_dir  # what gs:// or s3:// look like: not a local path
    said = _chosen(info_logs, lambda: dataset.make_dataset(remote, "val", batch_size=4,
                                                        training=False))
    assert said.startswith("split 'val': stream (file:// is not a local file system")
    local = dataset.make_dataset(data_dir, "val", batch_size=4, training=False)
    _same(_batches(dataset.make_dataset(remote, "val", batch_size=4, training=False)),
          _batches(local))
    with pytest.raises(dataset.DatasetError, match="file:// is not a local file system"):
        dataset.make_dataset(remote, "train", access="random")


def test_windows_are_chosen_when_the_split_exceeds_the_page_cache(data_dir, info_logs,
                                                                  monkeypatch):
    manifest = schema.read_manifest(data_dir)
    split_bytes = manifest.split("train").count * manifest.image_bytes
    monkeypatch.setattr(plan, "available_memory", lambda: split_bytes // 2)
    said = _chosen(info_logs, lambda: dataset.make_dataset(data_dir, "train", batch_size=8))
    assert "quasi-random: 2 of 8 shards at a time" in said, said
    ds = dataset.make_dataset(data_dir, "train", batch_size=8, augment=None, seed=2)
    shard_of = {}
    for number, path in enumerate(manifest.shard_paths(data_dir, "train")):
        for serialized in tf.data.TFRecordDataset(path):
            image = tf.io.parse_single_example(serialized, schema.tf_feature_spec())["image"]
            shard_of[image.numpy()] = number
    seen = []
    for images, _ in _batches(ds):
        keys = [x.tobytes() for x in images]
        assert len({shard_of[k] for k in keys}) <= 4  # at most two windows of two shards
        seen += keys
    assert len(seen) == len(set(seen)) == len(shard_of) // 8 * 8


def test_an_old_dataset_gets_its_indexes_built_once_and_said(data_dir, tmp_path, info_logs):
    old = str(tmp_path / "old")
    shutil.copytree(data_dir, old)
    for name in os.listdir(old):
        if name.endswith(schema.RECORD_INDEX_SUFFIX):
            os.remove(os.path.join(old, name))
    first = _batches(dataset.make_dataset(old, "train", batch_size=8, seed=1))
    assert "built the record index of 8 shard(s) of 'train'" in info_logs.text
    assert sum(n.endswith(schema.RECORD_INDEX_SUFFIX) for n in os.listdir(old)) == 8
    info_logs.clear()
    again = _batches(dataset.make_dataset(old, "train", batch_size=8, seed=1))
    assert "built the record index" not in info_logs.text
    _same(first, again)
    _same(first, _batches(dataset.make_dataset(data_dir, "train", batch_size=8, seed=1)))


def test_a_read_only_old_dataset_is_read_and_says_how_to_keep_its_indexes(
        data_dir, tmp_path, caplog, monkeypatch):
    old = str(tmp_path / "old")
    shutil.copytree(data_dir, old)
    for name in os.listdir(old):
        if name.endswith(schema.RECORD_INDEX_SUFFIX):
            os.remove(os.path.join(old, name))

    def read_only(path, data):  # what a read-only file system answers (tests run as root)
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(record_index.files, "atomic_write_bytes", read_only)
    with caplog.at_level(logging.WARNING):
        batches = _batches(dataset.make_dataset(old, "val", batch_size=8, training=False))
    assert "cannot save the record index" in caplog.text
    assert "make the dataset folder writable" in caplog.text
    _same(batches, _batches(dataset.make_dataset(data_dir, "val", batch_size=8,
                                                 training=False)))


EXIT_WITH_A_LIVE_ITERATOR = textwrap.dedent("""
    import sys
    from pipeline import dataset
    ds = dataset.make_dataset(sys.argv[1], "train", batch_size=64, start_batch=0, seed=0)
    iterator = iter(ds)
    next(iterator)
    print("read", flush=True)
    # exits here, the pipeline's reads still running
""")


@pytest.mark.slow
def test_a_program_ending_with_a_live_iterator_exits(tmp_path):
    data_dir = write_labeled_dataset(tmp_path, 512, "big", side=48, shards=4, val_shards=1,
                                     val_fraction=0.1)
    script = tmp_path / "live.py"
    script.write_text(EXIT_WITH_A_LIVE_ITERATOR)
    for _ in range(4):  # without the wait at exit, 4 of 6 runs hung
        done = subprocess.run([sys.executable, str(script), data_dir], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "read" in done.stdout, done.stderr[-2000:]
