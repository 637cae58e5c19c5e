"""Pure planning: splits, shard counts, record order, fingerprints."""

import dataclasses

import pytest

from pipeline.writing import plan
from pipeline.writing.sources import SourceImage


def _images(n, prefix="img"):
    return [SourceImage(f"{prefix}/{i}.jpg", f"/data/{prefix}/{i}.jpg", i % 3) for i in range(n)]


def _classes(counts, prefix="img"):
    """Images of len(counts) classes, counts[c] of class c."""
    return [SourceImage(f"{prefix}/{c}/{i}.jpg", f"/d/{c}/{i}.jpg", c)
            for c, count in enumerate(counts) for i in range(count)]


CLASS_COUNTS = [1, 2, 3, 4, 5, 7, 10, 11, 29, 60, 133]
CLASS_NAMES = [f"class{c}" for c in range(len(CLASS_COUNTS))]


def _per_class(images):
    counts = {}
    for image in images:
        counts[image.label] = counts.get(image.label, 0) + 1
    return counts


def test_the_val_split_is_stratified():
    images = _classes(CLASS_COUNTS)
    splits = plan.split_labeled(images, val_fraction=0.1)
    val, train = _per_class(splits["val"]), _per_class(splits["train"])
    assert sorted(i.path for i in splits["val"] + splits["train"]) == sorted(
        i.path for i in images)
    for label, count in enumerate(CLASS_COUNTS):
        # Every class with two images or more in both splits, val about its share.
        expected = 0 if count < 2 else min(count - 1, max(1, int(count * 0.1 + 0.5)))
        assert val.get(label, 0) == expected, (label, count)
        assert train[label] == count - expected


def test_adding_images_moves_at_most_one_image_of_their_class():
    before = plan.split_labeled(_classes(CLASS_COUNTS), val_fraction=0.2)
    grown = list(CLASS_COUNTS)
    for label in (3, 9, 10):
        grown[label] += 1
        after = plan.split_labeled(_classes(grown), val_fraction=0.2)
        old_val = {i.path for i in before["val"]}
        new_val = {i.path for i in after["val"]}
        old_paths = {i.path for i in _classes(grown[:label] + [grown[label] - 1] +
                                              grown[label + 1:])}
        moved = {path for path in old_paths if (path in old_val) != (path in new_val)}
        assert len(moved) <= 1 and all(f"/{label}/" in path for path in moved), moved
        before = after


def test_zero_val_fraction_gives_only_train():
    assert list(plan.split_labeled(_images(50), val_fraction=0.0)) == ["train"]


def test_folds_partition_the_images_stratified_by_class():
    images = _classes(CLASS_COUNTS)
    folds = plan.assign_folds(images, CLASS_NAMES, 5)
    paths = [i.path for fold in folds for i in fold]
    assert sorted(paths) == sorted(i.path for i in images)  # disjoint and complete
    per_fold = [_per_class(fold) for fold in folds]
    for label, count in enumerate(CLASS_COUNTS):
        counts = [fold.get(label, 0) for fold in per_fold]
        assert max(counts) - min(counts) <= 1, (label, counts)
        if count >= 5:
            assert min(counts) >= 1
    sizes = [len(fold) for fold in folds]
    # Totals: not balanced across classes (that would let one class move another's images).
    assert sum(c // 5 for c in CLASS_COUNTS) <= min(sizes) <= max(sizes) <= sum(
        -(-c // 5) for c in CLASS_COUNTS), sizes


def test_adding_an_image_moves_few_of_its_class_to_other_folds():
    def fold_of(counts):
        return {i.path: number for number, fold in
                enumerate(plan.assign_folds(_classes(counts), CLASS_NAMES, 5)) for i in fold}

    before = fold_of(CLASS_COUNTS)
    grown = list(CLASS_COUNTS)
    grown[10] += 1
    after = fold_of(grown)
    moved = [path for path in before if before[path] != after[path]]
    assert len(moved) <= 4 and all(path.startswith("img/10/") for path in moved), moved
    assert len(after) == len(before) + 1


def test_fold_shards_hold_one_fold_each_numbered_through():
    images = _classes(CLASS_COUNTS)
    shards = plan.fold_shards(images, CLASS_NAMES, folds=3, num_shards=8, seed=0)
    assert [s.index for s in shards] == list(range(8))
    assert {s.num_shards for s in shards} == {8} and {s.split for s in shards} == {"train"}
    assert [s.fold for s in shards] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert sorted(i.path for s in shards for i in s.images) == sorted(i.path for i in images)
    folds = plan.assign_folds(images, CLASS_NAMES, 3)
    for number in range(3):
        held = {i.path for s in shards if s.fold == number for i in s.images}
        assert held == {i.path for i in folds[number]}
    with pytest.raises(plan.PlanError, match="use --shards>=3"):
        plan.fold_shards(images, CLASS_NAMES, folds=3, num_shards=2, seed=0)


def test_shard_counts_proportional_with_overrides():
    counts = plan.shard_counts({"train": 9000, "val": 1000, "test": 500}, 36)
    assert counts == {"train": 36, "val": 4, "test": 2}
    assert plan.shard_counts({"train": 9000, "val": 1000}, 36, {"val": 7})["val"] == 7
    assert plan.shard_counts({"train": 100, "val": 1}, 36)["val"] == 1


def test_too_many_shards_error_names_the_fix():
    with pytest.raises(plan.PlanError, match=r"--shards=36 but split 'train' has only 20 images; "
                                             r"use --shards<=20"):
        plan.shard_counts({"train": 20}, 36)
    with pytest.raises(plan.PlanError, match="--val_shards=5"):
        plan.shard_counts({"train": 20, "val": 3}, 2, {"val": 5})


def test_shards_sizes_differ_by_at_most_one_and_keep_order():
    images = _images(103)
    shards = plan.cut_into_shards(images, split="train", num_shards=10)
    sizes = [len(s.images) for s in shards]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 103
    assert [i for s in shards for i in s.images] == images
    assert shards[3].filename() == "train-00003-of-00010.tfrecord"


def test_order_is_seeded_and_independent_of_listing_order():
    images = _images(50)
    a = plan.order_split(images, split="train", seed=1, shuffle=True)
    b = plan.order_split(list(reversed(images)), split="train", seed=1, shuffle=True)
    c = plan.order_split(images, split="train", seed=2, shuffle=True)
    assert a == b and a != c and sorted(a, key=lambda i: i.path) == sorted(images,
                                                                          key=lambda i: i.path)


def test_golden_order():
    # A fixed seed must give this exact order on every machine and Python version; if this
    # changes, existing datasets would no longer be reproducible from their flags.
    order = plan.order_split(_images(8), split="train", seed=0, shuffle=True)
    assert [i.path for i in order] == GOLDEN_ORDER


GOLDEN_ORDER = ["img/4.jpg", "img/1.jpg", "img/2.jpg", "img/6.jpg", "img/7.jpg", "img/5.jpg",
                "img/0.jpg", "img/3.jpg"]


def test_test_split_keeps_file_order():
    images = list(reversed(_images(10)))
    shards = plan.plan_shards({"test": images}, {"test": 3}, seed=0)
    assert [i for s in shards for i in s.images] == images


def test_plan_shards_mixes_classes_across_shards():
    shards = plan.plan_shards({"train": _images(300)}, {"train": 6}, seed=0)
    for shard in shards:
        assert {i.label for i in shard.images} == {0, 1, 2}


def test_fingerprint_changes_with_plan_and_settings():
    shards = plan.plan_shards({"train": _images(20)}, {"train": 2}, seed=0)
    base = plan.fingerprint(shards, {"image_size": 8})
    assert base == plan.fingerprint(shards, {"image_size": 8})
    assert base != plan.fingerprint(shards, {"image_size": 16})
    reseeded = plan.plan_shards({"train": _images(20)}, {"train": 2}, seed=1)
    assert base != plan.fingerprint(reseeded, {"image_size": 8})
    relabeled = [SourceImage(i.path, i.file, 0) for i in _images(20)]
    assert base != plan.fingerprint(
        plan.plan_shards({"train": relabeled}, {"train": 2}, seed=0), {"image_size": 8})


def test_path_hash_is_fixed():
    assert plan.path_hash("images/0.jpg") == int.from_bytes(
        __import__("hashlib").sha256(b"images/0.jpg").digest()[:8], "big")


def test_shards_much_smaller_than_100_mib_draw_a_warning_with_a_count_that_fits():
    image = 3 * 224 * 224  # 150,528 bytes
    # The case users hit: 36 shards of ~7.2 MiB for 1,800 images.
    warning = plan.small_shards_warning(1_800, 36, image)
    assert warning.startswith("36 train shards of ~7.2 MiB each for 1,800 images: shards "
                              "of ~100 MiB read fastest")
    assert warning.endswith("--shards=3 fits this data")
    assert plan.small_shards_warning(1_800, 3, image) is None  # the suggested count
    assert plan.small_shards_warning(100_000, 512, image) is None  # ~28 MiB each: fine
    assert plan.small_shards_warning(40, 2, 3 * 8 * 8) is None  # tiny data: one shard or two


def test_a_write_with_tiny_shards_warns_in_its_summary(tmp_path):
    from conftest import write_csv, write_images
    from pipeline.writing.settings import WriteConfig
    from pipeline.writing.writer import write_dataset

    rows = write_images(str(tmp_path / "src"), 80, size=(224, 224))  # 12 MiB stored
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    summary = write_dataset(WriteConfig(
        output_dir=str(tmp_path / "shards"), input=str(tmp_path / "src" / "train.csv"),
        image_size=224, shards=8, val_fraction=0.0, num_workers=1, show_progress=False))
    assert [line for line in summary.warnings if line.startswith(
        "8 train shards of ~1.4 MiB each for 80 images")] != [], summary.warnings
    assert summary.warnings[-1].endswith("--shards=1 fits this data")


def test_the_shard_advice_is_a_multiple_of_the_folds():
    image = 3 * 224 * 224
    for images in (200, 700, 1_800, 5_000, 20_000):
        for shards in (36, 64, 128):
            for folds in (0, 2, 5, 10):
                advice = plan.small_shards_warning(images, shards, image, folds=folds)
                if advice is not None:
                    suggested = int(advice.rsplit("--shards=", 1)[1].split()[0])
                    assert suggested >= max(folds, 1), (images, shards, folds, advice)
                    assert suggested % max(folds, 1) == 0, (images, shards, folds, advice)
    advice = plan.small_shards_warning(1_800, 36, image, folds=5)
    assert advice.endswith("--shards=5 fits this data (a multiple of --folds=5)")
    assert plan.small_shards_warning(1_800, 36, image).endswith("--shards=3 fits this data")
    assert plan.small_shards_warning(1_800, 5, image, folds=5) is None


def test_the_writer_advises_shards_that_it_then_accepts_with_folds(tmp_path, monkeypatch):
    from conftest import write_csv, write_images
    from pipeline.writing import write_plan
    from pipeline.writing.settings import WriteConfig

    # Shard sizes scaled down to 24 8x8 images (4,608 bytes): they "fit" 4 shards, which
    # --folds=5 would refuse.
    monkeypatch.setattr(plan, "GOOD_SHARD_BYTES", 1_500)
    monkeypatch.setattr(plan, "SMALL_SHARD_BYTES", 1_000)
    write_csv(tmp_path / "train.csv", ["image", "label"], write_images(str(tmp_path), 24))
    cfg = WriteConfig(output_dir=str(tmp_path / "out"), input=str(tmp_path / "train.csv"),
                      image_size=8, folds=5, shards=10, val_fraction=0.0)
    (advice,) = write_plan.make_plan(cfg).advice
    suggested = int(advice.rsplit("--shards=", 1)[1].split()[0])
    assert suggested == 5
    assert write_plan.make_plan(dataclasses.replace(cfg, shards=suggested)).advice == ()
