"""`python -m pipeline.inspect` on a dataset written with --folds=K: a table of the folds, and
--fold=k showing fold k's view ('val' its held-out records, 'train' the rest) as the trainer and
predict read it; a fold that is not there is one line naming the valid range."""

import io
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, labels_by_id, write_labeled_dataset
from pipeline import inspect as inspect_tool
from pipeline.core import schema

FOLDS = 3
CLASSES = ("cat", "dog", "owl")  # write_images' classes, in turn


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """30 labeled 8x8 images of 3 classes in 3 folds, 3 shards."""
    return write_labeled_dataset(tmp_path_factory.mktemp("folds"), 30, "folds", shards=3,
                                 folds=FOLDS)


def _inspect(data_dir, **options):
    out = io.StringIO()
    code = inspect_tool.inspect_command(data_dir, out=out, **options)
    return code, out.getvalue()


def _fold_rows(text):
    """{fold: [records, shards, per-class counts...]} of the folds table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("folds "))
    assert lines[start + 1].split() == ["fold", "records", "shards", *CLASSES]
    rows = {}
    for line in lines[start + 2:start + 2 + FOLDS]:
        cells = line.replace("*", "").split()
        rows[int(cells[0])] = [int(cell) for cell in cells[1:]]
    return rows


def _class_counts(labels):
    return [sum(1 for label in labels.values() if label == k) for k in range(len(CLASSES))]


def test_the_summary_shows_each_folds_size_shards_and_classes(folded):
    code, text = _inspect(folded)
    assert code == 0
    manifest = schema.read_manifest(folded)
    rows = _fold_rows(text)
    assert sorted(rows) == list(range(FOLDS))
    for k in range(FOLDS):
        # Read independently: the records fold k's view holds out, by make_dataset.
        held_out = labels_by_id(folded, "val", fold=k)
        shards = [s for s in manifest.split("train").shards if s.fold == k]
        assert rows[k] == [len(held_out), len(shards), *_class_counts(held_out)], k
    assert sum(row[0] for row in rows.values()) == 30
    assert "*" not in "".join(text.splitlines()[1:])  # no fold chosen


def test_fold_k_shows_its_view_as_the_trainer_reads_it(folded):
    code, text = _inspect(folded, split="val", fold=1)
    assert code == 0, text
    held_out, rest = labels_by_id(folded, "val", fold=1), labels_by_id(folded, "train", fold=1)
    lines = text.splitlines()
    assert any(line.split()[:2] == ["val", str(len(held_out))] for line in lines)
    assert any(line.split()[:2] == ["train", str(len(rest))] for line in lines)
    assert f"'val' is fold 1 ({len(held_out)} records), 'train' folds 0, 2" in text
    assert f"records per class in 'val' ({len(held_out)} records)" in text
    for name, count in zip(CLASSES, _class_counts(held_out)):
        assert any(line.split()[:2] == [name, str(count)] for line in lines), name
    assert next(line for line in lines if "* 1" in line).split()[2] == str(len(held_out))


def test_a_record_of_a_folds_held_out_part(folded):
    code, text = _inspect(folded, split="val", fold=2, record=0)
    assert code == 0, text
    first = next(iter(labels_by_id(folded, "val", fold=2)))
    assert f"record    0 of 'val'" in text and f"/{first}.png" in text


def test_val_without_a_fold_and_folds_out_of_range_are_one_line(folded, tmp_path, caplog):
    assert _inspect(folded, split="val") == (2, "")
    assert "--fold=k shows fold k's held-out records as 'val', k in 0..2" in caplog.text
    for fold in (FOLDS, -1):
        caplog.clear()
        assert _inspect(folded, fold=fold) == (2, "")
        assert f"--fold={fold} is out of range" in caplog.text and "--fold=0..2" in caplog.text
        assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    plain = write_labeled_dataset(tmp_path, 9, "plain", shards=1)
    caplog.clear()
    assert _inspect(plain, fold=0) == (2, "")
    assert "--fold=0" in caplog.text and "has no folds" in caplog.text
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert "folds " not in _inspect(plain)[1]  # no table without folds


def test_the_command_takes_fold(folded):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.inspect", f"--data_dir={folded}", "--fold=0",
         "--split=val"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'val' is fold 0" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.inspect", folded, "--fold=7"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert result.returncode == 2 and "use --fold=0..2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_many_classes_show_each_folds_smallest_and_largest():
    """Above FOLD_CLASS_COLUMNS classes a column per class would not fit: each fold's
    smallest and largest class instead (hand-built manifest: 10 classes, 2 folds)."""
    from pipeline.tools import folds

    classes = tuple(f"c{k}" for k in range(10))
    counts = [{name: 3 + (k == 4) - (k == 7) for k, name in enumerate(classes)},
              {name: 3 + (k == 0) for k, name in enumerate(classes)}]
    shards = tuple(schema.ShardInfo(f"train-0000{k}-of-00002.tfrecord", sum(c.values()), 1,
                                    "0" * 64, fold=k) for k, c in enumerate(counts))
    manifest = schema.Manifest(
        image_shape=(3, 8, 8), classes=classes, mean=None, std=None,
        splits={"train": schema.SplitInfo(sum(s.count for s in shards), shards, {})},
        folds=tuple(schema.SplitInfo(sum(c.values()), (), c) for c in counts))
    assert len(classes) > folds.FOLD_CLASS_COLUMNS
    lines = folds.fold_lines(manifest, "unused")
    assert lines[1].split() == ["fold", "records", "shards", "smallest", "class", "largest",
                                "class"]
    assert lines[2].split() == ["0", "30", "1", "2", "(c7)", "4", "(c4)"]
    assert lines[3].split() == ["1", "31", "1", "3", "(c1)", "4", "(c0)"]
