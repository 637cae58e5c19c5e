"""The rows of the ImageNet crop and of scaling with cores.

  jpeg_tfdata_rrc           tf.data over the JPEGs with the ImageNet recipe of tensorflow/models
                            (sample_distorted_bounding_box, decode_and_crop_jpeg: only the box
                            is decoded, resize, flip): what a user would run instead of ours
  read_random_rrc           make_dataset with random_resized_crop + flip_lr (done in the reader,
                            OpenCV), from the same split, to RRC_SIDE(stored side)
  <row>_1core               `<row>` run by a child bench pinned to one core (os.sched_setaffinity
                            before TensorFlow starts): with `<row>` itself (all cores), what a
                            second core gains (ONE_CORE_ROWS)

The stored side is --image_size; the crop's output is 7/8 of it (224 from 256, ImageNet's), so
`--image_size=256` gives the measurement the targets are set for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

from pipeline.core import schema
from pipeline.tools.bench.measure import (READ_SEED, Bench, BenchError, Monitor, Row,
                                          jpeg_map_row, make_row, read_batch_size,
                                          time_batches)

ONE_CORE_SUFFIX = "_1core"
# The rows whose one-core twin the bench can run: the JPEG path, the default read and
# augment=None.
ONE_CORE_ROWS = ("jpeg_tfdata", "read_random_augment", "read_random_aug_on_device")
RRC_SPEC = "random_resized_crop(size={size})|flip_lr"


def rrc_side(image_size: int) -> int:
    return image_size * 7 // 8


def read_rrc_row(bench: Bench, name: str) -> Row:
    """make_dataset, training, random access, random_resized_crop + flip in the reader."""
    from pipeline import dataset

    with Monitor() as monitor:
        train = dataset.make_dataset(
            bench.shards_dir, schema.TRAIN, read_batch_size(bench), training=True,
            access="random", seed=READ_SEED,
            augment=RRC_SPEC.format(size=rrc_side(bench.image_size)))
        seen, seconds = time_batches(iter(train.repeat()), bench.read_min_images)
    return make_row(name, seen, seconds, monitor.peak_mib, monitor.other_cpu)


def jpeg_rrc_row(bench: Bench, name: str) -> Row:
    """tensorflow/models' ImageNet training preprocessing over the JPEG folder: a distorted
    box (area 0.08-1, aspect 3/4-4/3, 10 tries), only the box decoded, resized, flipped."""
    import tensorflow as tf

    side = rrc_side(bench.image_size)

    def load(path):
        data = tf.io.read_file(path)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.io.extract_jpeg_shape(data), tf.zeros([1, 0, 4]), min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True, seed=READ_SEED)
        offset_y, offset_x, _ = tf.unstack(begin)
        height, width, _ = tf.unstack(size)
        image = tf.io.decode_and_crop_jpeg(data, tf.stack([offset_y, offset_x, height, width]),
                                           channels=3)
        image = tf.image.resize(image, [side, side], method="bilinear")
        return tf.image.random_flip_left_right(tf.cast(tf.round(image), tf.uint8))

    return jpeg_map_row(bench, name, load)


def one_core_row(bench: Bench, name: str) -> Row:
    """Row `name` without its suffix, run by a child bench on the first core this process may
    use. A child, not a thread of this process: TensorFlow sizes its thread pools from the
    cores it sees when it starts."""
    base = name[:-len(ONE_CORE_SUFFIX)]
    core = min(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "rows.json")
        command = [sys.executable, "-m", "pipeline.bench", f"--rows={base}", "--repeats=1",
                   f"--workdir={bench.workdir}", f"--images={bench.images}",
                   f"--image_size={bench.image_size}", f"--read_images={bench.read_min_images}",
                   f"--json={output}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}))
        if done.returncode != 0:
            raise BenchError(f"{name}: the child bench on core {core} failed (exit "
                             f"{done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        with open(output, encoding="utf-8") as f:
            document = json.load(f)
    cores = document["settings"]["cores"]
    if cores != 1:
        raise BenchError(f"{name}: the child bench ran on {cores} cores, not 1")
    (row,) = document["rows"]
    return dataclasses.replace(
        make_row(name, row["images"], row["seconds"], row["peak_rss_mib"], row["other_cpu"]),
        note=f"{base} pinned to core {core}")


ROWS = {"jpeg_tfdata_rrc": jpeg_rrc_row, "read_random_rrc": read_rrc_row,
        **{base + ONE_CORE_SUFFIX: one_core_row for base in ONE_CORE_ROWS}}
