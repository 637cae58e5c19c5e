"""Likely mistakes in a run's settings: warned about, never refused."""

import logging

import pytest

from conftest import write_csv, write_images
from pipeline import training
from pipeline.core import schema
from pipeline.training import advice
from pipeline.writing.settings import WriteConfig
from pipeline.writing.writer import write_dataset


def _manifest(val_classes):
    """A manifest whose train split has classes a, b, c and val split `val_classes`."""
    def split(classes):
        return schema.SplitInfo(len(classes), (), {name: 1 for name in classes})
    return schema.Manifest(image_shape=(3, 8, 8), classes=("a", "b", "c"), mean=(0.0,) * 3,
                           std=(1.0,) * 3, splits={schema.TRAIN: split("abc"),
                                                   schema.VAL: split(val_classes)})


def test_warmup_as_long_as_training_is_a_likely_mistake():
    found = advice.likely_mistakes(manifest=_manifest("abc"), epochs=1, warmup_epochs=2,
                                   train_split=schema.TRAIN, val_split=schema.VAL)
    assert found == [found[0]] and "warmup_epochs=2 is not shorter than epochs=1" in found[0]
    assert advice.likely_mistakes(manifest=_manifest("abc"), epochs=3, warmup_epochs=2,
                                  train_split=schema.TRAIN, val_split=schema.VAL) == []


def test_classes_without_a_validation_image_are_named():
    found = advice.likely_mistakes(manifest=_manifest("a"), epochs=5, warmup_epochs=1,
                                   train_split=schema.TRAIN, val_split=schema.VAL)
    assert len(found) == 1 and "2 of 3 classes have no image in the val split (b, c)" in found[0]
    assert "--val_fraction" in found[0]


@pytest.mark.slow
def test_a_run_logs_its_likely_mistakes(tmp_path, caplog):
    # Class "rare" has one image: it lands in train, and val has none of it.
    rows = write_images(str(tmp_path / "src"), 13, size=(8, 8), classes=("a", "b"))
    rows[-1] = (rows[-1][0], "rare")
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    write_dataset(WriteConfig(output_dir=str(tmp_path / "shards"), image_size=8,
                              input=str(tmp_path / "src" / "train.csv"), shards=1,
                              val_shards=1, val_fraction=0.3, num_workers=1,
                              show_progress=False))
    with caplog.at_level(logging.WARNING):
        training.train_and_evaluate(data_dir=str(tmp_path / "shards"),
                                    workdir=str(tmp_path / "run"), epochs=1, warmup_epochs=2,
                                    depth=10, width=4, stem="small", batch_size=4, cache=None,
                                    augment=None, verbose=0)
    warned = [record.getMessage() for record in caplog.records]
    assert any("warmup_epochs=2 is not shorter than epochs=1" in line for line in warned)
    assert any("no image in the val split (rare)" in line for line in warned), warned


def test_the_fix_fits_a_dataset_in_folds(tmp_path):
    """A fold's validation is its held-out fold: no --val_fraction applies; fewer folds do."""
    from pipeline.dataset import read_manifest

    rows = write_images(str(tmp_path / "src"), 13, size=(8, 8), classes=("a", "b"))
    rows[-1] = (rows[-1][0], "rare")  # one image: in one fold, missing from the others
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    write_dataset(WriteConfig(output_dir=str(tmp_path / "folds"), image_size=8,
                              input=str(tmp_path / "src" / "train.csv"), shards=3, folds=3,
                              num_workers=1, show_progress=False))
    found = [line for fold in range(3)
             for line in advice.likely_mistakes(
                 manifest=read_manifest(str(tmp_path / "folds"), fold), epochs=5,
                 warmup_epochs=1, train_split=schema.TRAIN, val_split=schema.VAL)]
    assert len(found) == 2, found  # the two folds without the rare image
    for line in found:
        assert "no image in the val split (rare)" in line and "--val_fraction" not in line
        assert "in each of the 3 folds, and these have as few as 1" in line
        assert "fewer --folds" in line
