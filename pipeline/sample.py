"""The embedded sample dataset: scikit-learn's handwritten digits as a Kaggle-style folder.

Real scanned digits (1,797 images, 10 classes, 8x8 grayscale) ship inside the scikit-learn
wheel, so `python -m pipeline.write` with no `--input` works offline on a fresh machine. They
are written once, in the layout our users bring (the classify-leaves competition's):

    workspace/raw/digits/images/0.png ...
    workspace/raw/digits/train.csv          image,label   (labeled)
    workspace/raw/digits/test.csv           image         (unlabeled, for predictions)
    workspace/raw/digits/test_solution.csv  image,label   (the answers, to score predictions)
"""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image

from pipeline import files

SAMPLE_NAME = "digits"
# The last images are held out as the unlabeled test split (as a competition does).
TEST_IMAGES = 180
DIGITS_MAX_VALUE = 16  # load_digits() pixels are 0..16


def ensure_sample_dataset(raw_root: str) -> str:
    """Write the sample under `raw_root/digits` unless it is already there; return that folder.

    The folder appears atomically (built beside it, then renamed), so an interrupted first run
    never leaves a half-written sample that a later run would trust.
    """
    target = os.path.join(raw_root, SAMPLE_NAME)
    if os.path.exists(os.path.join(target, "train.csv")):
        return target
    from sklearn.datasets import load_digits  # heavy import, only needed once

    # Replaces an incomplete earlier attempt (one without train.csv) if there is one.
    with files.staged_directory(target) as staging:
        digits = load_digits()
        write_digit_folder(staging, digits.images, digits.target)
    return target


def write_digit_folder(folder: str, images: np.ndarray, labels: np.ndarray) -> None:
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    pixels = np.rint(images * (255 / DIGITS_MAX_VALUE)).astype(np.uint8)
    rows = []
    for i, (image, label) in enumerate(zip(pixels, labels)):
        path = f"images/{i}.png"
        Image.fromarray(image, mode="L").save(os.path.join(folder, path))
        rows.append((path, str(int(label))))
    train, test = rows[:-TEST_IMAGES], rows[-TEST_IMAGES:]
    _write_csv(os.path.join(folder, "train.csv"), ["image", "label"], train)
    _write_csv(os.path.join(folder, "test.csv"), ["image"], [(path,) for path, _ in test])
    _write_csv(os.path.join(folder, "test_solution.csv"), ["image", "label"], test)


def _write_csv(path: str, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
