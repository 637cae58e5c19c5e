r"""Predict a split with a trained model and write a Kaggle-style `submission.csv`.

    python -m pipeline.predict --workdir=workspace/runs/smoke            # the test split
    python -m pipeline.predict --workdir=... --split=val --output=val_predictions.csv

Reads the model `train.py` saved in --workdir (`model.keras`, or the best checkpoint with
--weights=best) and the dataset named in its `run.json`. The CSV has one row per record,
`image,label`: the image path as given to `python -m pipeline.write` and the predicted class
name, in the input's order.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence

from absl import app, flags, logging

from pipeline import files, schema

SUBMISSION_NAME = "submission.csv"
HEADER = ("image", "label")
WEIGHTS = ("final", "best", "last")
EXIT_NOT_READY = 2


class PredictError(RuntimeError):
    """Nothing to predict with (no trained model) or nothing to predict (no such split)."""


def predict_split(workdir: str, split: str = schema.TEST, *, data_dir: str | None = None,
                  weights: str = "final", batch_size: int = 256) -> list[tuple[str, str]]:
    """[(image path, predicted class name)] for every record of `split`, in input order."""
    import numpy as np

    from pipeline import dataset

    model = load_model(workdir, weights)
    data_dir = data_dir or read_run(workdir)["data_dir"]
    manifest = schema.read_manifest(data_dir)
    manifest.split(split)  # a clear error naming the splits there are
    batches = dataset.make_dataset(data_dir, split, batch_size, training=False)
    logits = model.predict(batches.map(lambda images, labels: images), verbose=0)
    paths = dataset.split_paths(data_dir, split)
    if len(paths) != len(logits):
        raise PredictError(f"{len(logits)} predictions for {len(paths)} records of {split!r}")
    return [(path, manifest.classes[index])
            for path, index in zip(paths, np.argmax(logits, axis=1))]


def read_run(workdir: str) -> dict:
    from pipeline import training

    run = training.read_run_file(workdir)
    if run is None:
        raise PredictError(f"{workdir} is not a training run (no {training.RUN_FILE}); train "
                           "first: python train.py --config=configs/smoke.gin")
    return run


def load_model(workdir: str, weights: str = "final"):
    import keras

    from pipeline import augment, training

    if weights not in WEIGHTS:
        raise PredictError(f"--weights={weights!r}: choose one of {WEIGHTS}")
    model_path = os.path.join(workdir, training.MODEL_FILE)
    if not os.path.exists(model_path):
        raise PredictError(f"no {training.MODEL_FILE} in {workdir}: training has not finished "
                           "there; run (or resume) python train.py with this --workdir")
    model = keras.saving.load_model(
        model_path, custom_objects={"DevicePreprocess": augment.DevicePreprocess})
    if weights != "final":
        model.load_weights(os.path.join(workdir, training.CHECKPOINT_DIR,
                                        f"{weights}.weights.h5"))
    return model


def submission_csv(rows: Sequence[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue()


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "A training run's directory (train.py --workdir).",
                        required=True)
    flags.DEFINE_string("split", schema.TEST, "The manifest split to predict.")
    flags.DEFINE_string("data_dir", None, "The dataset (default: the one the run trained on).")
    flags.DEFINE_string("output", None, f"The CSV to write (default: <workdir>/{SUBMISSION_NAME}).")
    flags.DEFINE_enum("weights", "final", WEIGHTS, "final: model.keras as training ended; "
                      "best: the epoch with the best val_accuracy; last: the last checkpoint.")
    flags.DEFINE_integer("batch_size", 256, "Images per prediction batch.", lower_bound=1)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    try:
        rows = predict_split(FLAGS.workdir, FLAGS.split, data_dir=FLAGS.data_dir,
                             weights=FLAGS.weights, batch_size=FLAGS.batch_size)
    except (PredictError, schema.FormatError) as err:
        logging.error("%s", err)
        return EXIT_NOT_READY
    output = FLAGS.output or os.path.join(FLAGS.workdir, SUBMISSION_NAME)
    files.atomic_write_text(output, submission_csv(rows))
    logging.info("%d predictions of %r -> %s", len(rows), FLAGS.split, output)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
