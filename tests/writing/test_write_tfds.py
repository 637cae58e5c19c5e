"""The writer's tfds: input: a TFDS split prepared locally (never downloaded), written with the
same guarantees as a CSV: class names, labels and pixels as TFDS has them, rejects, determinism,
multi-task writing, clear errors."""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from conftest import (REPO_ROOT, read_records, tree_digest, write_config, write_csv,
                      write_images)
from pipeline import errors
from pipeline.core import schema, workspace
from pipeline.writing import tfds_source, tfds_staging
from pipeline.writing.output_dir import OutputDirError, is_our_file
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset

CLASSES = ("zebra", "ant", "moth")  # not sorted: TFDS's order is the label order
SIDE = 6  # source images are SIDE x SIDE, written at image_size=SIDE: the resize is identity
SPLIT_SIZES = {"train": 40, "test": 6, "holdout": 4}
UNDECODABLE = 3  # train record 3 (by generation key) holds bytes no decoder reads
# Shard after shard in file order: TFDS's order of a split.
IN_ORDER = tfds.ReadConfig(interleave_cycle_length=1)
# Offline (never ask GCS); 2 shards of 20 train records, more than the 16 that TFDS's default
# read interleaves, so reading out of order would show.
PREPARE = tfds.download.DownloadConfig(try_download_gcs=False, num_shards=2)


def _png(rng):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """Random PNGs: train (one undecodable), a labeled test split, an unlabeled holdout (-1)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(names=list(CLASSES)),
            "id": tfds.features.Text(),
        }))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SPLIT_SIZES}

    def _generate_examples(self, split):
        rng = np.random.default_rng(list(SPLIT_SIZES).index(split))
        for i in range(SPLIT_SIZES[split]):
            image = b"not an image" if (split, i) == ("train", UNDECODABLE) else _png(rng)
            label = -1 if split == "holdout" else i % len(CLASSES)
            yield f"{split}{i}", {"image": image, "label": label, "id": f"{split}{i}"}


class TinyCaptions(tfds.core.GeneratorBasedBuilder):
    """Images with captions and no ClassLabel: not image classification data."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "caption": tfds.features.Text(),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(3):
            yield i, {"image": _png(rng), "caption": f"picture {i}"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data dir with tiny_shapes and tiny_captions prepared, offline."""
    root = tmp_path_factory.mktemp("tensorflow_datasets")
    for builder_class in (TinyShapes, TinyCaptions):
        builder_class(data_dir=str(root)).download_and_prepare(download_config=PREPARE)
    return root


def _config(data_dir, output_dir, **overrides):
    return write_config("tfds:tiny_shapes:train", output_dir, **{
        **dict(tfds_data_dir=str(data_dir), image_size=SIDE, shards=2, val_fraction=0.3,
               max_reject_fraction=0.1), **overrides})

def tfds_records(data_dir, split):
    """[(CHW pixels decoded by TensorFlow, or None when it cannot, label)] of a tiny_shapes
    split in TFDS's order."""
    builder = tfds.builder_from_directory(str(data_dir / "tiny_shapes" / "1.0.0"))
    dataset = builder.as_dataset(split=split, shuffle_files=False, read_config=IN_ORDER,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    records = []
    for example in dataset:
        try:
            pixels = tf.io.decode_png(example["image"], channels=3).numpy().transpose(2, 0, 1)
        except tf.errors.InvalidArgumentError:
            pixels = None
        records.append((pixels, int(example["label"])))
    return records


def record_index(path):
    """`tiny_shapes/train/00000012.png` -> 12."""
    return int(os.path.splitext(path.rsplit("/", 1)[1])[0])


def test_records_are_the_tfds_split_with_its_class_names_and_labels(data_dir, tmp_path):
    out = tmp_path / "out"
    manifest = write_dataset(_config(data_dir, out)).manifest
    assert manifest.classes == CLASSES
    assert manifest.flags["input"] == "tfds:tiny_shapes:train"
    assert manifest.flags["tfds_data_dir"] == str(data_dir)
    reference = tfds_records(data_dir, "train")
    assert len(reference) == SPLIT_SIZES["train"]
    bad = [index for index, (pixels, _) in enumerate(reference) if pixels is None]
    assert len(bad) == 1
    seen = []
    for split in ("train", "val"):
        records = read_records(out, split)
        assert len(records) == manifest.split(split).count > 0
        counts = {}
        for image, label, path in records:
            assert path.startswith("tiny_shapes/train/") and path.endswith(".png")
            pixels, tfds_label = reference[record_index(path)]
            assert label == tfds_label
            np.testing.assert_array_equal(image, pixels)
            counts[CLASSES[label]] = counts.get(CLASSES[label], 0) + 1
            seen.append(record_index(path))
        assert manifest.split(split).class_counts == counts
    assert sorted(seen) == [i for i in range(SPLIT_SIZES["train"]) if i not in bad]
    rejects = (out / schema.REJECTS_NAME).read_text().splitlines()
    assert rejects[1:] == [f"tiny_shapes/train/{bad[0]:08d}.png,not an image (format not "
                           "recognised)"]
    assert manifest.rejects == 1
    # The path's index is the record's place in the split: TFDS's slicing gives it back,
    # in the first shard and in the second.
    builder = tfds.builder_from_directory(str(data_dir / "tiny_shapes" / "1.0.0"))
    assert len(builder.info.splits["train"].shard_lengths) == 2
    for index in [i for i in (0, 19, 20, len(reference) - 1) if i not in bad]:
        (example,) = tfds.as_numpy(builder.as_dataset(split=f"train[{index}:{index + 1}]"))
        assert example["label"] == reference[index][1]
        np.testing.assert_array_equal(example["image"].transpose(2, 0, 1), reference[index][0])
    # Nothing staged lands in the dataset directory.
    assert all(is_our_file(name) and not name.startswith(".") for name in os.listdir(out))


def test_same_flags_give_identical_bytes_even_when_staged_anew(data_dir, tmp_path,
                                                               monkeypatch):
    write_dataset(_config(data_dir, tmp_path / "one"))
    staged = tmp_path / "workspace" / "raw" / "tfds" / "tiny_shapes" / "1.0.0"
    (folder,) = os.listdir(staged)  # one folder, no leftovers of the build
    assert folder.startswith("train-")
    assert json.loads((staged / folder / tfds_staging.STAGED_INFO).read_text())["classes"] == \
        list(CLASSES)

    # Another command on the same split reuses the staged images: no TFDS reading at all.
    def must_not_stage(*args, **kwargs):
        raise AssertionError("staged again")

    stage_split = tfds_staging.stage_split
    monkeypatch.setattr(tfds_staging, "stage_split", must_not_stage)
    write_dataset(_config(data_dir, tmp_path / "other", image_size=4, resize="pad"))
    assert write_dataset(_config(data_dir, tmp_path / "one")).written == 0
    monkeypatch.setattr(tfds_staging, "stage_split", stage_split)

    # A fresh workspace stages again; with two workers the output is still byte-identical.
    monkeypatch.setenv("PIPELINE_WORKSPACE", str(tmp_path / "fresh"))
    write_dataset(_config(data_dir, tmp_path / "two", num_workers=2))
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")


def test_a_source_prepared_again_is_a_different_command(data_dir, tmp_path):
    """Record paths name only the split and position: the prepared version and features are
    part of the fingerprint, so a rerun never keeps shards of another preparation."""
    summary = write_dataset(_config(data_dir, tmp_path / "out"))
    (source,) = summary.manifest.flags["sources"]
    assert source.startswith("tfds:tiny_shapes:train tiny_shapes/1.0.0 ")
    again = tmp_path / "again"
    shutil.copytree(data_dir, again)
    info = again / "tiny_shapes" / "1.0.0" / "dataset_info.json"
    info.write_text(json.dumps(dict(json.loads(info.read_text()), description="again")))
    with pytest.raises(OutputDirError):
        write_dataset(_config(again, tmp_path / "out"))
    rewritten = write_dataset(_config(again, tmp_path / "out", overwrite=True))
    assert rewritten.written == sum(len(info.shards) for info in summary.manifest.splits.values())
    assert rewritten.manifest.fingerprint != summary.manifest.fingerprint


def test_a_killed_staging_leaves_nothing_behind(data_dir, tmp_path):
    spec = tfds_source.parse_tfds_input("tfds:tiny_shapes:train")
    prepared = tfds_source.find_prepared(str(data_dir), spec)
    folder = tfds_staging.staged_folder(
        os.path.join(workspace.raw_dir(), tfds_staging.STAGING_DIR), prepared, "train",
        tfds_staging.staging_digest(prepared, "train", None, None))
    abandoned = os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}-x1y2")
    os.makedirs(abandoned)
    write_dataset(_config(data_dir, tmp_path / "out"))
    assert os.listdir(os.path.dirname(folder)) == [os.path.basename(folder)]


def test_tasks_then_finalize_equal_one_host(data_dir, tmp_path):
    write_dataset(_config(data_dir, tmp_path / "one", shards=3))
    shared = tmp_path / "shared"
    for task in (1, 0):
        write_dataset(_config(data_dir, shared, shards=3, num_tasks=2, task_index=task))
    write_dataset(_config(data_dir, shared, shards=3, num_tasks=2, finalize=True))
    assert tree_digest(shared) == tree_digest(tmp_path / "one")


def test_unlabeled_tfds_split_is_the_unlabeled_test_split_in_order(data_dir, tmp_path):
    manifest = write_dataset(_config(
        data_dir, tmp_path / "out", test_input="tfds:tiny_shapes:holdout")).manifest
    records = read_records(tmp_path / "out", "test")
    assert [path for _, _, path in records] == [
        f"tiny_shapes/holdout/{i:08d}.png" for i in range(SPLIT_SIZES["holdout"])]
    assert {label for _, label, _ in records} == {schema.UNLABELED}
    assert manifest.split("test").class_counts == {} and manifest.classes == CLASSES
    for (image, _, _), (pixels, _) in zip(records, tfds_records(data_dir, "holdout")):
        np.testing.assert_array_equal(image, pixels)
    # As --input it is written alone, as an unlabeled CSV would be.
    alone = write_dataset(_config(data_dir, tmp_path / "alone", shards=1,
                                        input="tfds:tiny_shapes:holdout")).manifest
    assert list(alone.splits) == ["test"] and alone.mean is None


def test_a_split_is_all_labeled_or_all_unlabeled():
    spec = tfds_source.parse_tfds_input("tfds:shapes")
    assert tfds_staging.check_labels([0, 2, 1], 3, spec)
    assert not tfds_staging.check_labels([-1, -1], 3, spec)
    with pytest.raises(InputError, match="1 of 2 records have no label"):
        tfds_staging.check_labels([0, -1], 3, spec)
    with pytest.raises(InputError, match=r"label\(s\) \[3\] outside"):
        tfds_staging.check_labels([0, 3], 3, spec)


def _cli(args, workspace_root):
    env = dict(os.environ, PIPELINE_WORKSPACE=str(workspace_root))
    return subprocess.run([sys.executable, "-m", "pipeline.write", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_writes_train_val_and_the_labeled_test_split(data_dir, tmp_path):
    out = tmp_path / "out"
    result = _cli(["--input=tfds:tiny_shapes", "--test_input=tfds:tiny_shapes:test",
                   f"--tfds_data_dir={data_dir}", f"--image_size={SIDE}", "--shards=2",
                   "--num_workers=2", "--max_reject_fraction=0.1", f"--output_dir={out}"],
                  tmp_path / "ws")
    assert result.returncode == 0, result.stderr
    manifest = schema.read_manifest(str(out))
    assert manifest.classes == CLASSES and set(manifest.splits) == {"train", "val", "test"}
    assert manifest.split("train").count + manifest.split("val").count == \
        SPLIT_SIZES["train"] - 1
    records = read_records(out, "test")
    reference = tfds_records(data_dir, "test")
    assert [path for _, _, path in records] == [
        f"tiny_shapes/test/{i:08d}.png" for i in range(SPLIT_SIZES["test"])]
    assert [label for _, label, _ in records] == [label for _, label in reference]
    for (image, _, _), (pixels, _) in zip(records, reference):
        np.testing.assert_array_equal(image, pixels)


def test_a_malformed_tfds_input_exits_2(tmp_path):
    # No --output_dir: naming the default output dir parses the input first.
    result = _cli(["--input=tfds:tiny_shapes:train[:10%]"], tmp_path / "ws")
    assert result.returncode == errors.EXIT_USAGE, result.stderr
    assert "slicing" in result.stderr and "Traceback" not in result.stderr


def test_not_prepared_exits_2_naming_where_it_looked_and_how_to_prepare(data_dir, tmp_path):
    result = _cli(["--input=tfds:not_there:train", f"--tfds_data_dir={data_dir}",
                   f"--output_dir={tmp_path / 'out'}"], tmp_path / "ws")
    assert result.returncode == errors.EXIT_USAGE
    message = " ".join(result.stderr.split())
    assert f"{data_dir / 'not_there'}/<version>/dataset_info.json" in message
    assert "tfds build not_there" in message and "--tfds_data_dir" in message
    assert "tiny_shapes" in message  # what is prepared there
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="does not exist"):
        write_dataset(_config(tmp_path / "nowhere", tmp_path / "out"))


@pytest.mark.parametrize("overrides, message", [
    (dict(input="tfds:tiny_shapes:validation"),
     r"no split 'validation'.*\['holdout', 'test', 'train'\]"),
    (dict(input="tfds:tiny_captions"),
     r"no tfds.features.ClassLabel feature; its features are caption: Text, image: Image"),
    (dict(tfds_label_key="id"), r"--tfds_label_key='id' is a Text, not a ClassLabel"),
    (dict(tfds_image_key="photo"), r"--tfds_image_key='photo'.*no such feature.*id: Text"),
    (dict(input="tfds:tiny_shapes:train[:50%]"), r"slicing"),
    (dict(input="tfds:tiny_shapes/small:train"), r"tiny_shapes/small/<version>"),
    (dict(label_column="class", label_column_required=True), r"--tfds_label_key"),
])
def test_unusable_tfds_inputs_name_the_problem(data_dir, tmp_path, overrides, message):
    with pytest.raises(InputError, match=message):
        write_dataset(_config(data_dir, tmp_path / "out", **overrides))
    assert not (tmp_path / "out").exists()


def test_a_labeled_test_split_needs_the_same_classes(data_dir, tmp_path):
    rows = write_images(str(tmp_path / "src"), 12, size=(SIDE, SIDE))  # cat, dog, owl
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    with pytest.raises(InputError, match="same classes"):
        write_dataset(_config(data_dir, tmp_path / "out",
                                    input=str(tmp_path / "src" / "train.csv"),
                                    test_input="tfds:tiny_shapes:test"))
    with pytest.raises(InputError, match="--tfds_data_dir.*apply to a tfds:NAME input"):
        write_dataset(_config(data_dir, tmp_path / "out",
                                    input=str(tmp_path / "src" / "train.csv")))


def _prepared(folder, *versions):
    for version in versions:
        os.makedirs(folder / version)
        for name in (tfds_source.INFO_NAME, tfds_source.FEATURES_NAME):
            (folder / version / name).write_text("{}")


def test_the_highest_prepared_version_is_found(tmp_path):
    _prepared(tmp_path / "shapes", "1.9.0", "1.10.0", "incomplete.AB12_2.0.0")
    os.makedirs(tmp_path / "shapes" / "3.0.0")  # a version folder with nothing prepared in it
    found = tfds_source.find_prepared(str(tmp_path), tfds_source.parse_tfds_input("tfds:shapes"))
    assert (found.version, found.config) == ("1.10.0", None)
    assert found.directory == str(tmp_path / "shapes" / "1.10.0")


def test_without_a_config_the_recorded_default_config_is_used(tmp_path):
    _prepared(tmp_path / "shapes" / "small", "1.0.0")
    _prepared(tmp_path / "shapes" / "large", "1.0.0")
    spec = tfds_source.parse_tfds_input("tfds:shapes:test")
    with pytest.raises(InputError, match=r"configs \['large', 'small'\].*tfds:shapes/large:test"):
        tfds_source.find_prepared(str(tmp_path), spec)
    os.makedirs(tmp_path / "shapes" / ".config")
    (tmp_path / "shapes" / ".config" / "metadata.json").write_text(
        json.dumps({"default_config_name": "small"}))
    found = tfds_source.find_prepared(str(tmp_path), spec)
    assert (found.config, found.full_name) == ("small", "shapes/small/1.0.0")
    assert tfds_staging.record_prefix(found, spec.split) == "shapes/small/test/"


def test_a_dataset_prepared_again_differently_is_staged_anew(tmp_path):
    _prepared(tmp_path / "shapes", "1.0.0")
    found = tfds_source.find_prepared(str(tmp_path), tfds_source.parse_tfds_input("tfds:shapes"))
    digest = tfds_staging.staging_digest(found, "train", None, None)
    assert tfds_staging.staging_digest(found, "train", None, None) == digest
    assert tfds_staging.staging_digest(found, "train", None, "label") != digest
    (tmp_path / "shapes" / "1.0.0" / tfds_source.INFO_NAME).write_text('{"splits": []}')
    assert tfds_staging.staging_digest(found, "train", None, None) != digest


def test_the_default_data_dir_is_tfds_own(monkeypatch):
    from tensorflow_datasets.core import constants

    monkeypatch.delenv(tfds_source.DATA_DIR_ENV, raising=False)
    assert tfds_source.default_data_dir() == constants.get_default_data_dir()
    monkeypatch.setenv(tfds_source.DATA_DIR_ENV, "/data/tfds")
    assert tfds_source.default_data_dir() == constants.get_default_data_dir() == "/data/tfds"


def test_default_output_dir_names_the_dataset():
    assert tfds_source.default_output_name("tfds:cifar10") == "cifar10"
    assert tfds_source.default_output_name("tfds:cifar10:test") == "cifar10-test"
    assert tfds_source.default_output_name("tfds:imagenet_resized/32x32:train") == \
        "imagenet_resized-32x32"


def test_staged_files_are_named_by_their_bytes():
    assert tfds_staging.image_extension(b"\xff\xd8\xff\xe0rest", "png") == "jpg"
    assert tfds_staging.image_extension(b"RIFF\0\0\0\0WEBPVP8 ", None) == "webp"
    assert tfds_staging.image_extension(b"garbage", "jpeg") == "jpg"
    assert tfds_staging.image_extension(b"garbage", None) == tfds_staging.UNKNOWN_EXTENSION
