"""The bench's inputs, made offline once and cached in its workdir.

A folder of photo crops: random crops (random size and aspect, randomly mirrored) of the two
photos that ship inside scikit-learn (china.jpg and flower.jpg, 427x640), saved as JPEG
quality 90 with a `train.csv` of 10 classes, the layout our users bring, in `<workdir>/photos`
beside a marker of the parameters that made it, and rebuilt when they differ. The reader rows
also need the same photos written as our shards (`<workdir>/shards`) and resized to the stored
size as JPEGs (`<workdir>/jpeg_<size>`), the folder of equally sized JPEGs a user would
otherwise train from.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import multiprocessing
import os
import time

import numpy as np
from absl import logging
from PIL import Image

from pipeline.core import files, schema, workspace
from pipeline.tools.bench.measure import READ_MIN_IMAGES, Bench, BenchError
from pipeline.writing import images, writer
from pipeline.writing.settings import WriteConfig

DEFAULT_IMAGES = 2000
# --quick: 400 photos keep the whole run (photos made once, then both writer rows) well under
# a minute on 2 cores, yet every shard still holds dozens of images.
QUICK_IMAGES = 400
PHOTO_SEED = 0
# Bump whenever make_photo_folder would write different bytes, so cached folders are rebuilt.
PHOTO_GENERATOR_VERSION = 1
PHOTOS_DIR = "photos"
PHOTOS_MARKER = "bench_photos.json"  # the parameters of a complete folder; written last
# Crops keep at least 256 px on each side (pixels), more than the default 224 output, so every
# image is downscaled as real photos are; the long side is at most 427 * 1.5 = 640, the photos'
# full width, and aspects run from 2:3 to 3:2 like camera and phone pictures.
CROP_MIN_SIDE = 256
CROP_MAX_ASPECT = 1.5
# What cameras and web photos use; subsampling is explicit so the bytes never depend on a
# Pillow default.
JPEG_QUALITY = 90
JPEG_SUBSAMPLING = "4:2:0"
NUM_CLASSES = 10  # label = image index % 10, so classes are balanced

# 16 train shards (+2 val): with 2 workers the 18 shards split 9/9, as the 36+4 of a real
# dataset do, and shards keep ~100 images each so per-shard costs weigh as they do there.
# (8 shards + 1 val split 5/4: the last shard alone capped the speed-up at 1.81x.)
WRITE_SHARDS = 16
# With few images the shard count shrinks so that no shard can be empty (the writer refuses
# more shards than images in a split).
MIN_IMAGES_PER_SHARD = 2
WRITE_VAL_FRACTION = 0.1
READER_SHARDS_DIR = "shards"
# Bump whenever the writer adds or changes files, so cached reader shards are rewritten (2: DALI
# indexes and the TFDS metadata the tfds_benchmark_tfds_reader row reads; 3: record indexes).
READER_SHARDS_VERSION = 3
JPEG_DIR = "jpeg_{size}"  # the photos resized to the stored size, as a user's folder would be


def make_photo_folder(folder: str, count: int, seed: int = PHOTO_SEED) -> str:
    """`folder/images/<i>.jpg` + `folder/train.csv` of `count` photo crops; returns the CSV path.

    The same (count, seed) always gives the same bytes. A folder already made with these
    parameters is reused as it is; one made with others is rebuilt. The folder appears
    atomically (built beside it, then renamed), so an interrupted build is never trusted.
    """
    if count < 1:
        raise ValueError(f"count={count}: a photo folder needs at least 1 image")
    csv_path = os.path.join(folder, "train.csv")
    wanted = photo_parameters(count, seed)
    existing = read_photo_marker(folder)
    if existing == wanted:
        return csv_path
    if existing is None and os.path.exists(folder):
        raise BenchError(
            f"{folder} exists but was not made by the bench (no {PHOTOS_MARKER}); remove it or "
            "choose another --workdir"
        )
    # Replaces a folder the bench made with other parameters.
    with files.staged_directory(folder) as staging:
        write_photo_crops(staging, count, seed)
        files.atomic_write_text(os.path.join(staging, PHOTOS_MARKER),
                                json.dumps(wanted, sort_keys=True) + "\n")
    return csv_path


def photo_parameters(count: int, seed: int) -> dict:
    """Everything that decides the folder's bytes; equal parameters mean a reusable folder."""
    return {
        "version": PHOTO_GENERATOR_VERSION,
        "count": count,
        "seed": seed,
        "crop_min_side": CROP_MIN_SIDE,
        "crop_max_aspect": CROP_MAX_ASPECT,
        "jpeg_quality": JPEG_QUALITY,
        "jpeg_subsampling": JPEG_SUBSAMPLING,
        "classes": NUM_CLASSES,
    }


def read_photo_marker(folder: str) -> dict | None:
    return _read_json(os.path.join(folder, PHOTOS_MARKER))


def _read_json(path: str) -> dict | None:
    """A marker's parameters; None when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise BenchError(f"{path} is damaged ({err}); remove it and run again") from err


def write_photo_crops(folder: str, count: int, seed: int) -> None:
    from sklearn.datasets import load_sample_images  # heavy import, only needed to build once

    photos = load_sample_images().images  # [china, flower], uint8 (427, 640, 3)
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"))
    rows = []
    for i in range(count):
        crop = random_crop(photos[rng.integers(len(photos))], rng)
        path = f"images/{i}.jpg"
        Image.fromarray(crop).save(os.path.join(folder, path), "JPEG", quality=JPEG_QUALITY,
                                   subsampling=JPEG_SUBSAMPLING)
        rows.append((path, f"class_{i % NUM_CLASSES}"))
    with open(os.path.join(folder, "train.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "label"])
        writer.writerows(rows)


def random_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of random size, aspect and place, mirrored left-right half of the time (HWC).

    Draws from `rng` in a fixed order, so the crops depend only on the seed.
    """
    height, width = photo.shape[:2]
    crop_h = int(rng.integers(CROP_MIN_SIDE, height + 1))
    # Log-uniform aspect: 2:3 is as likely as 3:2.
    aspect = float(np.exp(rng.uniform(-np.log(CROP_MAX_ASPECT), np.log(CROP_MAX_ASPECT))))
    crop_w = int(np.clip(round(crop_h * aspect), CROP_MIN_SIDE, width))
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    crop = photo[top:top + crop_h, left:left + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def write_shards(images: int) -> int:
    return max(1, min(WRITE_SHARDS, images // MIN_IMAGES_PER_SHARD))


def prepare(workdir: str, images: int, image_size: int, *, reader_inputs: bool = False,
            read_min_images: int = READ_MIN_IMAGES) -> Bench:
    """Make (or reuse) the photo folder, and with `reader_inputs` what reader rows read.

    A new folder is made in a child process: scikit-learn and SciPy, imported to load the
    photos, would otherwise stay in this process and add ~80 MiB to every row's peak memory on
    the first run only.
    """
    start = time.perf_counter()
    folder = os.path.join(workdir, PHOTOS_DIR)
    if read_photo_marker(folder) == photo_parameters(images, PHOTO_SEED):
        photos_csv = make_photo_folder(folder, images, PHOTO_SEED)  # reuses it
    else:
        context = multiprocessing.get_context("spawn")  # as the writer: never fork
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            photos_csv = pool.submit(make_photo_folder, folder, images, PHOTO_SEED).result()
    logging.info("photos: %d in %s (ready in %.1f s)", images, folder,
                 time.perf_counter() - start)
    bench = Bench(workdir=workdir, images=images, image_size=image_size, photos_csv=photos_csv,
                  read_min_images=read_min_images)
    if reader_inputs:
        bench = dataclasses.replace(
            bench,
            shards_dir=write_reader_shards(bench, os.path.join(workdir, READER_SHARDS_DIR)),
            jpeg_dir=make_jpeg_folder(photos_csv, os.path.join(
                workdir, JPEG_DIR.format(size=image_size)), image_size),
        )
    return bench


def write_reader_shards(bench: Bench, output_dir: str) -> str:
    """The photos as our shards, written once: the same command again keeps a complete
    dataset, and a changed one (other --images or --image_size) rewrites it."""
    start = time.perf_counter()
    config = WriteConfig(
        output_dir=output_dir, input=bench.photos_csv, shards=write_shards(bench.images),
        image_size=bench.image_size, val_fraction=WRITE_VAL_FRACTION, show_progress=False,
        overwrite=True,
    )
    # The marker sits beside the dataset: the writer owns every file inside it.
    marker = output_dir + ".json"
    wanted = {"version": READER_SHARDS_VERSION,
              "photos": read_photo_marker(os.path.dirname(bench.photos_csv)),
              "image_size": bench.image_size, "shards": config.shards,
              "val_fraction": config.val_fraction}
    if not os.path.exists(schema.manifest_path(output_dir)) or _read_json(marker) != wanted:
        if os.path.exists(marker):
            os.remove(marker)
        writer.write_dataset(config)
        files.atomic_write_text(marker, json.dumps(wanted, sort_keys=True) + "\n")
    logging.info("reader shards: %s (ready in %.1f s)", output_dir, time.perf_counter() - start)
    return output_dir


def make_jpeg_folder(photos_csv: str, folder: str, image_size: int) -> str:
    """The training photos decoded and resized exactly as the writer stores them, saved as
    JPEG again (quality JPEG_QUALITY), with a train.csv: the folder of equally sized JPEGs a
    user would otherwise train from. Made once; the marker holds the parameters."""
    wanted = {"photos_csv": os.path.abspath(photos_csv), "image_size": image_size,
              "photos": read_photo_marker(os.path.dirname(photos_csv)),
              "jpeg_quality": JPEG_QUALITY, "jpeg_subsampling": JPEG_SUBSAMPLING}
    if read_photo_marker(folder) == wanted:
        return folder
    if os.path.exists(folder) and read_photo_marker(folder) is None:
        raise BenchError(f"{folder} exists but was not made by the bench (no {PHOTOS_MARKER}); "
                         "remove it or choose another --workdir")
    source = os.path.dirname(photos_csv)
    with open(photos_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with files.staged_directory(folder) as staging:
        os.makedirs(os.path.join(staging, "images"))
        for row in rows:
            chw = images.decode_image(os.path.join(source, row["image"]), image_size)
            Image.fromarray(chw.transpose(1, 2, 0)).save(
                os.path.join(staging, row["image"]), "JPEG", quality=JPEG_QUALITY,
                subsampling=JPEG_SUBSAMPLING)
        with open(os.path.join(staging, "train.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["image", "label"], lineterminator="\n")
            writer.writeheader()
            writer.writerows({"image": row["image"], "label": row["label"]} for row in rows)
        files.atomic_write_text(os.path.join(staging, PHOTOS_MARKER),
                                json.dumps(wanted, sort_keys=True) + "\n")
    return folder


def default_workdir() -> str:
    return os.path.join(workspace.root(), "bench")
