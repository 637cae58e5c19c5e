r"""Predict a split with a trained run: the rows of a Kaggle-style `submission.csv`.

    rows = predict_split("workspace/runs/smoke", "test")      # python -m pipeline.predict
    files.atomic_write_text(path, submission_csv(rows))

Reads the model `train.py` saved in the workdir (`model.keras`, or a checkpoint's weights)
and the dataset named in its `run.json`. One row per record, `image,label`: the image path
as given to `python -m pipeline.write` and the predicted class name, in the input's order.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence

import keras
import numpy as np

from pipeline import augment, dataset, errors
from pipeline.core import files, schema
from pipeline.training import run_files

SUBMISSION_NAME = "submission.csv"
HEADER = ("image", "label")
WEIGHTS = ("final", "best", "last")


class PredictError(errors.PipelineError, RuntimeError):
    """Nothing to predict with (no trained model) or nothing to predict (no such split)."""


def predict_split(workdir: str, split: str = schema.TEST, *, data_dir: str | None = None,
                  weights: str = "final", batch_size: int = 256) -> list[tuple[str, str]]:
    """[(image path, predicted class name)] for every record of `split`, in input order."""
    run = read_run(workdir)
    data_dir = data_dir or run["data_dir"]
    manifest = schema.read_manifest(data_dir)
    check_dataset(run, data_dir, manifest, split)
    model = load_model(workdir, weights)
    batches = dataset.make_dataset(data_dir, split, batch_size, training=False)
    logits = model.predict(batches.map(lambda images, labels: images), verbose=0)
    paths = dataset.split_paths(data_dir, split)
    if len(paths) != len(logits):
        raise PredictError(f"{len(logits)} predictions for {len(paths)} records of {split!r}")
    return [(path, manifest.classes[index])
            for path, index in zip(paths, np.argmax(logits, axis=1))]


def read_run(workdir: str) -> dict:
    run = run_files.read_run_file(workdir)
    if run is None:
        raise PredictError(f"{workdir} is not a training run (no {run_files.RUN_FILE}); train "
                           "first: python train.py --config=configs/smoke.gin")
    return run


def check_dataset(run: dict, data_dir: str, manifest: schema.Manifest, split: str) -> None:
    """Refuse a dataset the run was not trained for (other classes or image shape), and a
    split that has nothing to predict."""
    classes, shape = list(manifest.classes), list(manifest.image_shape)
    if (classes, shape) != (run["classes"], run["image_shape"]):
        raise PredictError(
            f"{data_dir} does not match the run it would be predicted with: the run trained "
            f"on {len(run['classes'])} classes {run['classes']} at {run['image_shape']}, the "
            f"dataset has {len(classes)} classes {classes} at {shape}. Predict with a run "
            "trained on this dataset's classes, or pass --data_dir of such a dataset")
    count = manifest.split(split).count  # a clear error naming the splits there are
    if count == 0:
        raise PredictError(f"split {split!r} of {data_dir} has no records: nothing to "
                           "predict; write it with python -m pipeline.write --test_input=...")


def load_model(workdir: str, weights: str = "final"):
    if weights not in WEIGHTS:
        raise PredictError(f"--weights={weights!r}: choose one of {WEIGHTS}")
    model_path = os.path.join(workdir, run_files.MODEL_FILE)
    if not os.path.exists(model_path):
        raise PredictError(f"no {run_files.MODEL_FILE} in {workdir}: training has not finished "
                           "there; run (or resume) python train.py with this --workdir")
    model = keras.saving.load_model(
        model_path, custom_objects={"DevicePreprocess": augment.DevicePreprocess})
    if weights != "final":
        model.load_weights(os.path.join(workdir, run_files.CHECKPOINT_DIR,
                                        f"{weights}.weights.h5"))
    return model


def submission_csv(rows: Sequence[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue()


def write_predictions(workdir: str, split: str = schema.TEST, *, data_dir: str | None = None,
                      weights: str = "final", batch_size: int = 256,
                      output: str | None = None) -> tuple[str, int]:
    """predict_split as a CSV at `output` (default <workdir>/submission.csv), written
    atomically; returns (its path, rows)."""
    rows = predict_split(workdir, split, data_dir=data_dir, weights=weights,
                         batch_size=batch_size)
    output = output or os.path.join(workdir, SUBMISSION_NAME)
    files.atomic_write_text(output, submission_csv(rows))
    return output, len(rows)
