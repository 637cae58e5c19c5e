r"""Benchmark the pipeline on a realistic photo folder: one table on stdout, optionally JSON.

    python -m pipeline.bench                        # 2,000 photos at 224x224, every row
    python -m pipeline.bench --quick                # 400 photos: under a minute on 2 cores
    python -m pipeline.bench --rows=read_random_augment,jpeg_tfdata --json=/tmp/bench.json

The input is made offline, once: random crops of the two photos that ship inside scikit-learn,
saved as JPEGs with a `train.csv` of 10 classes, cached in --workdir. The table has the writer
with one and two worker processes, then every way of reading the same images (img/s, peak
memory, speed relative to `tf.data` over the JPEGs), then training steps fed by the reader;
the rows are described in pipeline.tools.bench.

Exit codes: the table in pipeline.errors, which --help shows.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags

from pipeline import cli
from pipeline.tools.bench import measure, photos, rows, runner
from pipeline.writing.settings import DEFAULT_IMAGE_SIZE

FLAGS = flags.FLAGS
# The same run on the 2-core VM varied by 5-40% from one try to the next (and two independent
# CPU-bound processes there scaled anywhere from 1.1x to 2.2x): one run per row cannot tell a
# regression from noise. Runs are interleaved, so a slow spell hits every row alike, and each
# row keeps its fastest (the least disturbed, as `timeit` does).
DEFAULT_REPEATS = 3


def define_flags() -> None:
    flags.DEFINE_bool(
        "quick", False, f"Small sizes for a smoke run: {photos.QUICK_IMAGES} images unless "
        "--images is given (under a minute on 2 cores).")
    flags.DEFINE_integer(
        "images", None, f"Photos in the benchmark folder (default {photos.DEFAULT_IMAGES}; with "
        f"--quick {photos.QUICK_IMAGES}). Made once and cached in --workdir.", lower_bound=1)
    flags.DEFINE_integer(
        "read_images", None, f"Images each reader row times after its first batch (default "
        f"{measure.READ_MIN_IMAGES:,}; with --quick {measure.QUICK_READ_MIN_IMAGES:,}); the "
        "photos are read as many epochs as that takes.", lower_bound=1)
    flags.DEFINE_string(
        "workdir", None, "Where the photo folder and each row's output go. Default: "
        "<workspace>/bench (see pipeline.core.workspace; PIPELINE_WORKSPACE moves it).")
    flags.DEFINE_integer(
        "repeats", DEFAULT_REPEATS, "Runs of every row, interleaved; each row reports its "
        "fastest run and the spread between its runs.", lower_bound=1)
    flags.DEFINE_list(
        "rows", [], f"Comma-separated rows to run (default: all): {', '.join(rows.ROWS)}.")
    flags.DEFINE_string(
        "json", None, "Also write the rows (and the speedup) as JSON to this file.")
    flags.DEFINE_integer(
        "image_size", DEFAULT_IMAGE_SIZE, "Side of the stored images, in pixels, in every row "
        "(writer, shards and JPEGs read).", lower_bound=1)


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    print(runner.run_bench(
        workdir=FLAGS.workdir or photos.default_workdir(),
        images=FLAGS.images or (photos.QUICK_IMAGES if FLAGS.quick else photos.DEFAULT_IMAGES),
        image_size=FLAGS.image_size, names=FLAGS.rows, repeats=FLAGS.repeats,
        read_min_images=FLAGS.read_images or (
            measure.QUICK_READ_MIN_IMAGES if FLAGS.quick else measure.READ_MIN_IMAGES),
        json_path=FLAGS.json))


if __name__ == "__main__":
    cli.run(main, define_flags)
