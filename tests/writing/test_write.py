"""The writer end to end: contents, determinism, resume after interruption, input errors."""

import functools
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import (REPO_ROOT, command_help, folder_config, read_records, tree_digest, write_csv,
                      write_images)
from pipeline.core import schema
from pipeline.writing import plan, progress_dir, shard_writer
from pipeline.writing import settings as write_settings
from pipeline.writing.images import decode_image
from pipeline.writing.output_dir import OutputDirError
from pipeline.writing.settings import WriteConfig
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset


_config = functools.partial(folder_config, image_size=8, shards=4, val_fraction=0.25)


def test_records_hold_the_decoded_images_and_labels(kaggle_folder, tmp_path):
    out = tmp_path / "out"
    summary = write_dataset(_config(kaggle_folder, out))
    manifest = summary.manifest
    assert manifest.image_shape == (3, 8, 8)
    assert manifest.classes == ("cat", "dog", "owl")
    assert set(manifest.splits) == {"train", "val", "test"}
    assert manifest.split("train").count + manifest.split("val").count == 40
    labels = dict(line.split(",") for line in
                  (kaggle_folder / "train.csv").read_text().splitlines()[1:])
    seen = set()
    for split in ("train", "val"):
        records = read_records(out, split)
        assert len(records) == manifest.split(split).count
        for image, label, path in records:
            assert manifest.classes[label] == labels[path]
            expected = decode_image(str(kaggle_folder / path), 8)
            np.testing.assert_array_equal(image, expected)
            seen.add(path)
        counts = {}
        for _, label, _ in records:
            counts[manifest.classes[label]] = counts.get(manifest.classes[label], 0) + 1
        assert manifest.split(split).class_counts == counts
    assert seen == set(labels)
    # Every shard's size and hash in the manifest are the file's.
    for info in manifest.splits.values():
        for shard in info.shards:
            data = (out / shard.file).read_bytes()
            assert len(data) == shard.bytes
            assert __import__("hashlib").sha256(data).hexdigest() == shard.sha256
    # No leftovers: only shards with their DALI and record indexes, the manifest, rejects.csv
    # and the TFDS metadata.
    shard_files = [s.file for info in manifest.splits.values() for s in info.shards]
    assert sorted(os.listdir(out)) == sorted(
        shard_files + [name + ".idx" for name in shard_files]
        + [name + ".offsets" for name in shard_files]
        + ["dataset.json", "rejects.csv", "dataset_info.json", "features.json",
           "label.labels.txt"])


def test_mean_and_std_are_those_of_the_train_split(kaggle_folder, tmp_path):
    manifest = write_dataset(_config(kaggle_folder, tmp_path / "out")).manifest
    pixels = np.stack([image for image, _, _ in read_records(tmp_path / "out", "train")])
    channels = pixels.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(manifest.mean, channels.mean(1), atol=1e-3)
    np.testing.assert_allclose(manifest.std, channels.std(1), atol=1e-3)


def test_test_split_is_unlabeled_and_in_file_order(kaggle_folder, tmp_path):
    write_dataset(_config(kaggle_folder, tmp_path / "out", test_shards=3))
    records = read_records(tmp_path / "out", "test")
    listed = [line for line in (kaggle_folder / "test.csv").read_text().splitlines()[1:]]
    assert [path for _, _, path in records] == listed
    assert {label for _, label, _ in records} == {schema.UNLABELED}


def test_shards_are_balanced_and_mix_classes(tmp_path):
    folder = tmp_path / "big"
    rows = write_images(str(folder), 90, size=(4, 4))
    write_csv(folder / "train.csv", ["image", "label"], rows)
    out = tmp_path / "out"
    manifest = write_dataset(WriteConfig(
        output_dir=str(out), input=str(folder / "train.csv"), image_size=4, shards=6,
        val_fraction=0.0, num_workers=1, show_progress=False)).manifest
    sizes = [s.count for s in manifest.split("train").shards]
    assert sum(sizes) == 90 and max(sizes) - min(sizes) <= 1
    records = read_records(out, "train")
    start = 0
    for size in sizes:
        assert len({label for _, label, _ in records[start:start + size]}) > 1
        start += size


@pytest.mark.parametrize("compression", ["NONE", "GZIP"])
def test_output_is_identical_whatever_the_worker_count(kaggle_folder, tmp_path, compression):
    one = write_dataset(_config(kaggle_folder, tmp_path / "one", num_workers=1,
                                      compression=compression))
    two = write_dataset(_config(kaggle_folder, tmp_path / "two", num_workers=2,
                                      compression=compression))
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    assert one.manifest == two.manifest


def test_seed_changes_order_not_content(kaggle_folder, tmp_path):
    write_dataset(_config(kaggle_folder, tmp_path / "a", seed=1))
    write_dataset(_config(kaggle_folder, tmp_path / "b", seed=2))
    a = [path for _, _, path in read_records(tmp_path / "a", "train")]
    b = [path for _, _, path in read_records(tmp_path / "b", "train")]
    assert a != b and sorted(a) == sorted(b)


def test_rerun_of_a_complete_dataset_does_nothing(kaggle_folder, tmp_path):
    config = _config(kaggle_folder, tmp_path / "out")
    write_dataset(config)
    before = {name: os.stat(tmp_path / "out" / name).st_mtime_ns
              for name in os.listdir(tmp_path / "out")}
    summary = write_dataset(config)
    assert summary.written == 0
    assert before == {name: os.stat(tmp_path / "out" / name).st_mtime_ns
                      for name in os.listdir(tmp_path / "out")}


class _Crash(Exception):
    pass


def test_resume_after_a_crash_is_byte_identical(kaggle_folder, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    write_dataset(_config(kaggle_folder, reference))

    out = tmp_path / "out"
    config = _config(kaggle_folder, out)
    real_write_shard = shard_writer.write_shard
    calls = []

    def crash_on_fourth(spec, output_dir, **kwargs):
        calls.append(spec.filename())
        if len(calls) == 4:
            # Leave what a kill mid-shard leaves: a partial temporary file.
            with open(os.path.join(output_dir, spec.filename()) + ".tmp.999999", "wb") as f:
                f.write(b"partial")
            raise _Crash()
        return real_write_shard(spec, output_dir, **kwargs)

    monkeypatch.setattr(shard_writer, "write_shard", crash_on_fourth)
    with pytest.raises(_Crash):
        write_dataset(config)
    assert not (out / "dataset.json").exists()
    completed = calls[:3]
    # A shard renamed into place whose completion record was never written (killed in
    # between) must be rewritten, not trusted.
    record = out / progress_dir.NAME / (completed[2] + ".json")
    record.unlink()
    # A shard whose file was damaged after its record was written is rewritten too.
    with open(out / completed[1], "ab") as f:
        f.write(b"junk")

    monkeypatch.setattr(shard_writer, "write_shard", real_write_shard)
    summary = write_dataset(config)
    assert summary.reused == 1  # only the first shard survived intact
    assert tree_digest(out) == tree_digest(reference)


def _sigkill_run(args, env, out, wait_for):
    """Start the writer, SIGKILL it (the parent only) once `wait_for(out)` holds."""
    process = subprocess.Popen([sys.executable, "-m", "pipeline.write", *args], cwd=REPO_ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not wait_for(out):
        if process.poll() is not None:
            pytest.fail(f"the writer ended before the kill point: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("kill point never reached")
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()


def _has_temp_file(out):
    return out.is_dir() and any(".tmp." in name for name in os.listdir(out))


def _has_completed_shard(out):
    progress = out / progress_dir.NAME
    return progress.is_dir() and any(n.endswith(".tfrecord.json") for n in os.listdir(progress))


@pytest.mark.parametrize("kill_point", [_has_temp_file, _has_completed_shard],
                         ids=["mid-shard", "after-a-shard"])
def test_sigkill_then_rerun_is_byte_identical(tmp_path, kill_point):
    folder = tmp_path / "photos"
    rows = write_images(str(folder), 160, size=(256, 192), fmt="jpg")
    write_csv(folder / "train.csv", ["image", "label"], rows)
    args = [f"--input={folder / 'train.csv'}", "--image_size=96", "--shards=16",
            "--num_workers=2"]
    env = dict(os.environ, PIPELINE_WORKSPACE=str(tmp_path / "ws"))

    reference = tmp_path / "reference"
    write_dataset(WriteConfig(
        output_dir=str(reference), input=str(folder / "train.csv"), image_size=96, shards=16,
        num_workers=2, show_progress=False))

    out = tmp_path / "out"
    _sigkill_run([*args, f"--output_dir={out}"], env, out, kill_point)
    assert not (out / "dataset.json").exists()
    time.sleep(0.5)  # the workers die with their parent; give them the moment it takes
    rerun = subprocess.run([sys.executable, "-m", "pipeline.write", *args, f"--output_dir={out}"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert tree_digest(out) == tree_digest(reference)


def test_another_command_into_a_used_dir_is_refused(kaggle_folder, tmp_path):
    out = tmp_path / "out"
    write_dataset(_config(kaggle_folder, out))
    with pytest.raises(OutputDirError, match="different command.*--overwrite"):
        write_dataset(_config(kaggle_folder, out, seed=5))
    summary = write_dataset(_config(kaggle_folder, out, seed=5, overwrite=True))
    assert summary.manifest.flags["seed"] == 5
    assert tree_digest(out) == tree_digest(_fresh(kaggle_folder, tmp_path / "fresh", seed=5))


def _fresh(folder, out, **overrides):
    write_dataset(_config(folder, out, **overrides))
    return out


def test_a_dir_with_foreign_files_is_refused(kaggle_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="notes.txt"):
        write_dataset(_config(kaggle_folder, out))
    write_dataset(_config(kaggle_folder, out, overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only our files


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("image,label\n", "no rows"),
    ("file,label\nimages/0.png,cat\n", "no 'image' column"),
    ("image,label\nimages/0.png,cat\nimages/0.png,dog\n",
     "1 row.* name an image listed before, e.g. line 3 'images/0.png' is line 2 'images/0.png'"),
    # One image however its path is spelled.
    ("image,label\nimages/0.png,cat\nimages/1.png,cat\n./images/0.png,cat\nimages//1.png,dog\n",
     "2 row.*line 4 './images/0.png' is line 2 'images/0.png'; line 5 'images//1.png' is line 3"),
    ("image,label\nimages/0.png,cat\nimages/../images/0.png,cat\n",
     "line 3 'images/../images/0.png' is line 2 'images/0.png'"),
    ("image,label\nimages/0.png,\n", "empty 'label' on line"),
    ("image,label\n,cat\n", "empty image path on line"),
])
def test_bad_csv_fails_before_writing_anything(kaggle_folder, tmp_path, content, message):
    bad = kaggle_folder / "bad.csv"
    bad.write_text(content)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        write_dataset(_config(kaggle_folder, out, input=str(bad), test_input=None))
    assert not out.exists()


def test_a_link_to_a_listed_image_is_the_same_image(kaggle_folder, tmp_path):
    os.symlink("0.png", kaggle_folder / "images" / "zero.png")
    bad = kaggle_folder / "linked.csv"
    bad.write_text("image,label\nimages/0.png,cat\nimages/zero.png,dog\n")
    with pytest.raises(InputError, match="line 3 'images/zero.png' is line 2 'images/0.png'"):
        write_dataset(_config(kaggle_folder, tmp_path / "out", input=str(bad),
                              test_input=None))


def test_an_image_in_train_and_test_is_refused_however_spelled(kaggle_folder, tmp_path):
    train = (kaggle_folder / "train.csv").read_text().splitlines()
    first = train[1].split(",")[0]
    test = kaggle_folder / "leak.csv"
    test.write_text(f"image\n./{first}\n")
    with pytest.raises(InputError, match=rf"1 image\(s\) are listed both in --input and "
                                         rf"--test_input.*'\./{first}'"):
        write_dataset(_config(kaggle_folder, tmp_path / "out", test_input=str(test)))


def test_explicit_label_column_must_exist(kaggle_folder, tmp_path):
    with pytest.raises(InputError, match="no 'class' column"):
        write_dataset(_config(kaggle_folder, tmp_path / "out", label_column="class",
                                    label_column_required=True, test_input=None))


def test_unlabeled_csv_alone_gives_a_test_split(kaggle_folder, tmp_path):
    manifest = write_dataset(_config(
        kaggle_folder, tmp_path / "out", input=str(kaggle_folder / "test.csv"),
        test_input=None, shards=2)).manifest
    assert list(manifest.splits) == ["test"] and manifest.classes == ()
    assert manifest.mean is None


def test_class_folder_tree(tmp_path):
    root = tmp_path / "flowers"
    for name, count in (("rose", 5), ("tulip", 4)):
        write_images(str(root / name), count, size=(6, 6), seed=count)
    (root / "rose" / "README.txt").write_text("not an image, skipped")
    (root / "tulip" / "images" / "nested").mkdir()
    write_images(str(root / "tulip" / "images" / "nested"), 2, size=(6, 6))
    out = tmp_path / "out"
    manifest = write_dataset(WriteConfig(
        output_dir=str(out), input=str(root), image_size=6, shards=2, val_fraction=0.0,
        num_workers=1, show_progress=False)).manifest
    assert manifest.classes == ("rose", "tulip")
    assert manifest.split("train").class_counts == {"rose": 5, "tulip": 6}
    paths = {path for _, _, path in read_records(out, "train")}
    assert "tulip/images/nested/images/0.png" in paths


def test_numeric_class_names_sort_as_numbers(tmp_path):
    folder = tmp_path / "d"
    rows = write_images(str(folder), 12, classes=("2", "10", "1"), size=(4, 4))
    write_csv(folder / "train.csv", ["image", "label"], rows)
    manifest = write_dataset(WriteConfig(
        output_dir=str(tmp_path / "out"), input=str(folder / "train.csv"), image_size=4,
        shards=1, val_fraction=0.0, num_workers=1, show_progress=False)).manifest
    assert manifest.classes == ("1", "2", "10")


def test_folds_are_one_copy_in_shards_of_their_own(kaggle_folder, tmp_path):
    out = tmp_path / "folds"
    manifest = write_dataset(_config(kaggle_folder, out, folds=3, shards=5)).manifest
    assert sorted(manifest.splits) == ["test", "train"]  # no val split: a fold is one
    records = read_records(out, "train")
    listed = (kaggle_folder / "train.csv").read_text().splitlines()[1:]
    assert sorted(path for _, _, path in records) == sorted(line.split(",")[0]
                                                            for line in listed)  # each once
    shards = manifest.split("train").shards
    assert [shard.fold for shard in shards] == [0, 0, 1, 1, 2]
    assert [fold.count for fold in manifest.folds] == [
        sum(shard.count for shard in shards if shard.fold == k) for k in range(3)]
    for k, fold in enumerate(manifest.folds):
        assert sum(fold.class_counts.values()) == fold.count
        assert manifest.for_fold(k).split("val").class_counts == fold.class_counts
    on_disk = schema.read_manifest(str(out))
    assert on_disk.folds == manifest.folds and on_disk.split("train") == manifest.split("train")
    with pytest.raises(plan.PlanError, match="use --shards>=3"):
        write_dataset(_config(kaggle_folder, tmp_path / "x", folds=3, shards=2))


def test_too_many_shards_names_the_fix(kaggle_folder, tmp_path):
    with pytest.raises(plan.PlanError, match="use --shards<="):
        write_dataset(_config(kaggle_folder, tmp_path / "out", shards=36))


def _cli(args, env_root, **kwargs):
    env = dict(os.environ, PIPELINE_WORKSPACE=str(env_root))
    return subprocess.run([sys.executable, "-m", "pipeline.write", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300, **kwargs)


def test_helpfull_documents_every_flag():
    result = command_help("write")
    assert result.returncode == 0 and "python -m pipeline.write" in result.stdout
    defined = write_settings.flags.FlagValues()
    write_settings.define_flags(defined)
    module_flags = defined.get_flags_for_module(write_settings)
    assert module_flags
    for flag in module_flags:
        assert re.search(rf"--(\[no\])?{flag.name}:", result.stdout), flag.name
        assert flag.help and len(flag.help) > 10, flag.name


@pytest.mark.slow
def test_cli_writes_the_embedded_sample_offline(tmp_path):
    result = _cli(["--image_size=8", "--shards=4"], tmp_path / "ws")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "ws" / "shards" / "digits"
    manifest = schema.read_manifest(str(out))
    assert manifest.classes == tuple(str(d) for d in range(10))
    assert manifest.split("train").count + manifest.split("val").count == 1797 - 180
    assert manifest.split("test").count == 180
    assert "wrote" in result.stderr  # the one summary line
    # The same command again is a no-op, and a different one is refused with exit 2.
    assert _cli(["--image_size=8", "--shards=4"], tmp_path / "ws").returncode == 0
    refused = _cli(["--image_size=16", "--shards=4"], tmp_path / "ws")
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
