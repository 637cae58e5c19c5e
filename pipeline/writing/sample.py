"""The embedded sample dataset: scikit-learn's handwritten digits as a Kaggle-style folder.

Real scanned digits (1,797 images, 10 classes, 8x8 grayscale) ship inside the scikit-learn
wheel, so `python -m pipeline.write` with no `--input` works offline on a fresh machine. They
are written once, in the layout our users bring (the classify-leaves competition's):

    workspace/raw/digits/images/0.png ...
    workspace/raw/digits/train.csv          image,label   (labeled)
    workspace/raw/digits/test.csv           image         (unlabeled, for predictions)
    workspace/raw/digits/test_solution.csv  image,label   (the answers, to score predictions)
    workspace/raw/digits/train_tags.csv     image,tags    (multi-label: each digit's DIGIT_TAGS,
                                                           `make demo-tags`)
    workspace/raw/digits/train_ink.csv      image,ink     (regression: the share of the scan
                                                           inked, `make demo-regression`)

A dataset written from it records its input in dataset.json as `sample:digits` (the folder's
path depends on the workspace, the name does not); `sample_listings` turns that back into the
CSVs, for tools that look at the source images (pipeline.tools.summary).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
from PIL import Image

from pipeline.core import files

SAMPLE_NAME = "digits"
# dataset.json's "input" for a dataset written from the sample: the prefix, then its name.
SAMPLE_INPUT_PREFIX = "sample:"
# The listings written into the sample folder, labeled first.
SAMPLE_CSVS = ("train.csv", "test.csv")
# The multi-label listing: what each digit is, as space-separated tags (Planet's shape).
TAGS_CSV = "train_tags.csv"
# The regression listing: how much of each scan is ink (its mean pixel, 0-1).
INK_CSV = "train_ink.csv"
DIGIT_TAGS = {"even": {0, 2, 4, 6, 8}, "prime": {2, 3, 5, 7}, "loop": {0, 6, 8, 9},
              "small": {0, 1, 2, 3, 4}}
# The last images are held out as the unlabeled test split (as a competition does).
TEST_IMAGES = 180
DIGITS_MAX_VALUE = 16  # load_digits() pixels are 0..16


def ensure_sample_dataset(raw_root: str) -> str:
    """Write the sample under `raw_root/digits` unless it is already there; return that folder.

    The folder appears atomically (built beside it, then renamed), so an interrupted first run
    never leaves a half-written sample that a later run would trust.
    """
    target = os.path.join(raw_root, SAMPLE_NAME)
    if os.path.exists(os.path.join(target, SAMPLE_CSVS[0])):
        _add_missing_listings(target)  # a sample written before the tags and ink listings
        return target
    from sklearn.datasets import load_digits  # heavy import, only needed once

    # Replaces an incomplete earlier attempt (one without train.csv) if there is one.
    with files.staged_directory(target) as staging:
        digits = load_digits()
        write_digit_folder(staging, digits.images, digits.target)
    return target


def sample_input(name: str = SAMPLE_NAME) -> str:
    """How dataset.json records an --input left empty: `sample:digits`."""
    return f"{SAMPLE_INPUT_PREFIX}{name}"


def sample_listings(recorded_input: str, raw_root: str) -> list[str] | None:
    """The sample's CSVs under `raw_root` when `recorded_input` names a sample, else None."""
    if not recorded_input.startswith(SAMPLE_INPUT_PREFIX):
        return None
    folder = os.path.join(raw_root, recorded_input[len(SAMPLE_INPUT_PREFIX):])
    return [os.path.join(folder, name) for name in SAMPLE_CSVS]


def write_digit_folder(folder: str, images: np.ndarray, labels: np.ndarray) -> None:
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    pixels = np.rint(images * (255 / DIGITS_MAX_VALUE)).astype(np.uint8)
    rows = []
    for i, (image, label) in enumerate(zip(pixels, labels)):
        path = f"images/{i}.png"
        Image.fromarray(image, mode="L").save(os.path.join(folder, path))
        rows.append((path, str(int(label))))
    train, test = rows[:-TEST_IMAGES], rows[-TEST_IMAGES:]
    train_csv, test_csv = SAMPLE_CSVS
    _write_csv(os.path.join(folder, train_csv), ["image", "label"], train)
    _write_csv(os.path.join(folder, test_csv), ["image"], [(path,) for path, _ in test])
    _write_csv(os.path.join(folder, "test_solution.csv"), ["image", "label"], test)
    for name, (header, listed) in derived_listings(pixels, labels).items():
        _write_csv(os.path.join(folder, name), header, listed)


def derived_listings(pixels: np.ndarray, labels: np.ndarray) -> dict:
    """{file name: (header, rows)} of the train images' multi-label and regression listings:
    each digit's tags (TAGS_CSV), and the share of its scan that is ink (INK_CSV)."""
    train = range(len(labels) - TEST_IMAGES)
    return {TAGS_CSV: (["image", "tags"], [(f"images/{i}.png", digit_tags(int(labels[i])))
                                            for i in train]),
            INK_CSV: (["image", "ink"], [(f"images/{i}.png", f"{pixels[i].mean() / 255:.4f}")
                                         for i in train])}


def _add_missing_listings(folder: str) -> None:
    """Write the derived listings a sample folder lacks, each atomically, leaving the rest
    of the folder as it is."""
    missing = [name for name in (TAGS_CSV, INK_CSV)
               if not os.path.exists(os.path.join(folder, name))]
    if not missing:
        return
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / DIGITS_MAX_VALUE)).astype(np.uint8)
    for name, (header, listed) in derived_listings(pixels, digits.target).items():
        if name in missing:
            text = io.StringIO(newline="")
            _rows_to(text, header, listed)
            files.atomic_write_text(os.path.join(folder, name), text.getvalue())


def digit_tags(digit: int) -> str:
    """The digit's DIGIT_TAGS, space-separated ("even loop small" for 0)."""
    return " ".join(tag for tag, digits in sorted(DIGIT_TAGS.items()) if digit in digits)


def _write_csv(path: str, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        _rows_to(f, header, rows)


def _rows_to(f, header, rows) -> None:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
