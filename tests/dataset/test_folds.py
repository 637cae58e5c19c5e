"""A dataset written with --folds=K, read as fold k: "train" every other fold, "val" fold k;
the same records whichever way the shards are read, and one clear error for a fold that is
not there."""

import pytest

from conftest import write_labeled_dataset
from pipeline import dataset
from pipeline.core import schema
from pipeline.writing import plan

FOLDS = 3
READS = {"stream": dict(access="stream"), "random": dict(access="random"),
         "table": dict(cache="memory")}


@pytest.fixture(scope="module")
def folded_dir(tmp_path_factory):
    """50 labeled 8x8 images of 3 classes in 3 folds, 7 shards."""
    return write_labeled_dataset(tmp_path_factory.mktemp("folds"), 50, "folds", shards=7,
                                 folds=FOLDS)


def _images(data_dir, split, fold, **read):
    ds = dataset.make_dataset(data_dir, split, 4, training=False, fold=fold, **read)
    return sorted(x.tobytes() for batch, _ in ds for x in batch.numpy())


@pytest.mark.parametrize("read", sorted(READS))
def test_fold_k_reads_val_from_fold_k_and_train_from_the_others(folded_dir, read):
    everything = _images(folded_dir, "train", None, **READS[read])
    assert len(everything) == 50
    held_out = []
    for k in range(FOLDS):
        val = _images(folded_dir, "val", k, **READS[read])
        train = _images(folded_dir, "train", k, **READS[read])
        assert sorted(val + train) == everything  # together every record, once
        assert not set(val) & set(train)
        held_out += val
    assert sorted(held_out) == everything  # the val folds partition the records


def test_a_fold_is_the_stratified_fold_the_writer_planned(folded_dir):
    manifest = schema.read_manifest(folded_dir)
    for k in range(FOLDS):
        view = manifest.for_fold(k)
        assert view.split("val").count == manifest.folds[k].count
        assert view.split("train").count == 50 - manifest.folds[k].count
        paths = dataset.split_paths(folded_dir, "val", fold=k)
        assert len(paths) == len(set(paths)) == manifest.folds[k].count
        counts = list(manifest.folds[k].class_counts.values())
        assert len(counts) == manifest.num_classes and sum(counts) == len(paths)
    # Per class, the folds' counts differ by at most one.
    for name in manifest.classes:
        per_fold = [fold.class_counts.get(name, 0) for fold in manifest.folds]
        assert max(per_fold) - min(per_fold) <= 1, (name, per_fold)


def test_a_training_read_of_a_fold_reads_only_its_train_folds(folded_dir):
    manifest = schema.read_manifest(folded_dir).for_fold(2)
    count = manifest.split("train").count
    ds = dataset.make_dataset(folded_dir, "train", count, seed=3, augment=None, fold=2)
    images = [x.tobytes() for batch, _ in ds.take(1) for x in batch.numpy()]
    assert sorted(images) == _images(folded_dir, "train", 2)


def test_a_missing_fold_or_split_says_what_there_is(folded_dir, tmp_path):
    with pytest.raises(dataset.DatasetError, match="has folds 0..2"):
        dataset.make_dataset(folded_dir, "val", 4, fold=FOLDS)
    with pytest.raises(schema.FormatError, match="with fold=k"):
        dataset.make_dataset(folded_dir, "val", 4)
    plain = write_labeled_dataset(tmp_path, 20, "plain", shards=2)
    with pytest.raises(dataset.DatasetError, match="no folds; write one with"):
        dataset.make_dataset(plain, "val", 4, fold=0)
    with pytest.raises(plan.PlanError, match="--folds=1"):
        write_labeled_dataset(tmp_path / "one", 20, "x", shards=2, folds=1)
