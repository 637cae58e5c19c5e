r"""Predict a split with a trained run: the rows of a Kaggle-style `submission.csv`.

    rows = predict_split("workspace/runs/smoke", "test")      # python -m pipeline.predict
    files.atomic_write_text(path, submission_csv(rows))

Reads the model `train.py` saved in the workdir (`model.keras`, or a checkpoint's weights)
and the dataset named in its `run.json`. One row per record, `image,label` (or the input
CSV's own column names): the image path as given to `python -m pipeline.write` (with its
--image_path template, the CSV's own value) and the predicted class name, in the input's
order; a test split written with --allow_missing_test has a row for each of its CSV's rows,
those without an image given the training prior (pipeline.training.prior).
Several workdirs make an ensemble (e.g. one model per fold), and test-time views (`tta`:
flips) are averaged with the original: the mean of the probabilities of every model on every
view (softmax; a sigmoid per class for a multi-label dataset), which predict_probabilities
returns and probabilities_csv writes out. A multi-label dataset's rows name each image's
classes above the threshold tuned on validation (the mean of the runs' thresholds), space-
joined, as Planet's `image_name,tags` submission wants them.
write_predictions writes the rows where pipeline.training.oof.default_output says (the test
split's submission.csv, a fold's oof_fold<k>.csv with the truth beside each row, an
ensemble's in the current directory), and the log names the models, their weight files and
the TTA views averaged.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from pipeline import augment, dataset, errors
from pipeline.core import schema
from pipeline.training import oof, prior, run_files, targets
from pipeline.training.oof import csv_text

SUBMISSION_NAME = oof.SUBMISSION_NAME
HEADER = ("image", "label")
WEIGHTS = ("final", "best", "last")


log = logging.getLogger(__name__)


class PredictError(errors.PipelineError, RuntimeError):
    """Nothing to predict with (no trained model) or nothing to predict (no such split)."""


# Test-time views: deterministic transforms of a uint8 [B, C, H, W] batch, each predicted and
# the probabilities averaged with the original's (timm's --tta, without the crops).
TTA_VIEWS = {
    "flip_lr": lambda images: tf.reverse(images, axis=[3]),
    "flip_ud": lambda images: tf.reverse(images, axis=[2]),
    "rot180": lambda images: tf.reverse(images, axis=[2, 3]),
}
TTA_ALIASES = {"flip": ("flip_lr",), "none": ()}


def tta_views(tta: str | Sequence[str] | None) -> tuple[str, ...]:
    """"flip" or "flip_lr,flip_ud" -> the view names besides the original, checked."""
    if tta is None:
        return ()
    names = tta.split(",") if isinstance(tta, str) else list(tta)
    views = []
    for name in (n.strip() for n in names if n.strip()):
        views.extend(TTA_ALIASES.get(name, (name,)))
    unknown = [name for name in views if name not in TTA_VIEWS]
    if unknown:
        raise PredictError(f"--tta={tta!r}: {', '.join(unknown)} unknown; use 'flip' or a "
                           f"list of {', '.join(TTA_VIEWS)}")
    return tuple(dict.fromkeys(views))


def predict_probabilities(workdirs: str | Sequence[str], split: str = schema.TEST, *,
                          data_dir: str | None = None, weights: str = "final",
                          batch_size: int = 256, tta=None, fold: int | None = None):
    """(manifest, image paths, probabilities [N, K]) for every record of `split`, in input
    order: the softmax of each model (an ensemble of workdirs, e.g. fold models) on each view
    (the original and `tta`), averaged. `fold` (default: the one the runs held out) picks a
    folded dataset's view: split "val" of a fold run is its out-of-fold predictions."""
    workdirs = [workdirs] if isinstance(workdirs, str) else list(workdirs)
    runs = [read_run(workdir) for workdir in workdirs]
    data_dir = data_dir or runs[0]["data_dir"]
    if fold is not None:  # a fold the dataset lacks: its range, before what a run held out
        dataset.read_manifest(data_dir, fold)
    fold = choose_fold(runs, workdirs, split, fold, data_dir)
    manifest = dataset.read_manifest(data_dir, fold)
    for run in runs:
        check_dataset(run, data_dir, manifest, split)
    views = (None, *tta_views(tta))
    log_ensemble(len(workdirs), weights, views)
    batches = dataset.make_dataset(data_dir, split, batch_size, training=False, fold=fold)
    paths = dataset.split_paths(data_dir, split, fold)
    total = np.zeros((len(paths), manifest.outputs), np.float64)
    for number, workdir in enumerate(workdirs, 1):
        model = load_model(workdir, weights)
        log.info("model %d/%d: %s", number, len(workdirs),
                 " with ".join(weights_files(workdir, weights)))
        for view in views:
            logits = model.predict(view_of(batches, view), verbose=0)
            if len(logits) != len(paths):
                raise PredictError(f"{len(logits)} predictions for {len(paths)} records of "
                                   f"{split!r}")
            total += targets.probabilities(manifest, logits)
    # A test split: every row of its CSV, those without an image given the prior (prior.py).
    return manifest, *prior.with_missing_rows(manifest, split, paths,
                                              total / (len(workdirs) * len(views)))


def choose_fold(runs: Sequence[dict], workdirs: Sequence[str], split: str,
                fold: int | None, data_dir: str) -> int | None:
    """The fold to read: `fold`, else the one every run held out. Refused: held-out records
    predicted by a model that trained on them (another fold's run, or a run on every fold of
    this dataset: not out-of-fold), and runs that held out different folds predicting one of
    them."""
    held = {run.get("fold") for run in runs}
    if fold is None and len(held) > 1 and split in (schema.TRAIN, schema.VAL):
        raise PredictError(f"the runs hold out different folds ({sorted(held, key=str)}): "
                           f"predict split {split!r} of one fold with --fold, or each fold's "
                           "run alone")
    fold = fold if fold is not None else held.pop() if len(held) == 1 else None
    for run, workdir in zip(runs, workdirs):
        if split != schema.VAL or fold is None or run.get("fold") == fold:
            continue
        if run.get("fold") is not None:
            raise PredictError(f"the model in {workdir} held out fold {run['fold']} and "
                               f"trained on fold {fold}: its predictions of fold {fold} would "
                               "not be out-of-fold. Predict it with that fold's run")
        if os.path.realpath(run["data_dir"]) == os.path.realpath(data_dir):
            raise PredictError(f"the model in {workdir} trained on every fold of {data_dir}: "
                               f"its predictions of fold {fold} would not be out-of-fold. "
                               f"Predict them with the run of train_and_evaluate.fold={fold}")
    return fold


def log_ensemble(models: int, weights: str, views: Sequence[str | None]) -> None:
    """What a prediction averages, in one line (each model's files follow as it loads)."""
    tta = " + ".join(view or "original" for view in views) if len(views) > 1 else "none"
    log.info("%d model%s (%s weights), TTA: %s: %d predictions averaged per image", models,
             "s" if models > 1 else "", weights, tta, models * len(views))


def view_of(batches, view: str | None):
    """The batches' inputs, their images as `view` transforms them (None: as they are);
    features (--feature_columns) as they are."""
    transform = TTA_VIEWS[view] if view is not None else (lambda images: images)

    def inputs(x, labels):
        if isinstance(x, dict):
            return {**x, schema.IMAGE_KEY: transform(x[schema.IMAGE_KEY])}
        return transform(x)

    return batches.map(inputs)


def predict_split(workdir: str | Sequence[str], split: str = schema.TEST, *,
                  data_dir: str | None = None, weights: str = "final", batch_size: int = 256,
                  tta=None, fold: int | None = None) -> list[tuple[str, str]]:
    """[(image id, predicted class name)] for every record of `split`, in input order
    (ids: submission_ids)."""
    manifest, paths, probabilities = predict_probabilities(
        workdir, split, data_dir=data_dir, weights=weights, batch_size=batch_size, tta=tta,
        fold=fold)
    return predicted_rows(manifest, paths, probabilities, tags_threshold(
        manifest, workdir, weights))


def tags_threshold(manifest: schema.Manifest, workdir: str | Sequence[str],
                   weights: str) -> float | None:
    """A multi-label dataset's threshold for its tags (targets.ensemble_threshold); None for
    a class dataset."""
    if manifest.target_kind != schema.MULTI_LABEL:
        return None
    workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
    try:
        threshold = targets.ensemble_threshold(workdirs, weights)
    except ValueError as err:
        raise PredictError(str(err)) from None
    mean = f"; the mean of {len(workdirs)} runs' thresholds" if len(workdirs) > 1 else ""
    log.info("tags: the classes above %.3g, the threshold tuned on validation (%s weights%s)",
             threshold, weights, mean)
    return threshold


def predicted_rows(manifest: schema.Manifest, paths: Sequence[str], probabilities,
                   threshold: float | None = None) -> list[tuple[str, str]]:
    """[(image id, the most probable class's name)] (ids: submission_ids); with a
    `threshold`, the names of every class above it, space-joined (multi-label)."""
    ids = submission_ids(manifest, paths)
    if manifest.target_kind == schema.REGRESSION:  # the values, on the targets' scale
        return [(image_id, *(f"{value:.6g}" for value in row))
                for image_id, row in zip(ids, probabilities)]
    if threshold is not None:
        return [(image_id, targets.tags_of(manifest.classes, row, threshold))
                for image_id, row in zip(ids, probabilities)]
    return [(image_id, manifest.classes[index]) for image_id, index in
            zip(ids, np.argmax(probabilities, axis=1))]


def submission_ids(manifest: schema.Manifest, paths: Sequence[str]) -> list[str]:
    """Each record's id in a submission: its image path as written, or with the writer's
    --image_path template the CSV's own value the path was made from."""
    template = manifest.flags.get("image_path")
    if not template:
        return list(paths)
    return [schema.value_from_path(template, path) for path in paths]


def submission_header(manifest: schema.Manifest) -> tuple[str, ...]:
    """The submission's columns: the input CSV's image and label column names (a Kaggle
    sample submission's; a regression's target columns), HEADER for other inputs."""
    flags = manifest.flags
    if manifest.targets:
        return (flags.get("image_column") or HEADER[0], *manifest.targets)
    return (flags.get("image_column") or HEADER[0], flags.get("label_column") or HEADER[1])


def read_run(workdir: str) -> dict:
    run = run_files.read_run_file(workdir)
    if run is None:
        raise PredictError(f"{workdir} is not a training run (no {run_files.RUN_FILE}); train "
                           "first: python train.py --config=configs/smoke.gin")
    return run


def check_dataset(run: dict, data_dir: str, manifest: schema.Manifest, split: str) -> None:
    """Refuse a dataset the run was not trained for (other classes or image shape), and a
    split that has nothing to predict."""
    here = run_files.learned(manifest)
    if run_files.learns(run) != run_files.learns(here):
        raise PredictError(
            f"{data_dir} does not match the run it would be predicted with: the run trained "
            f"on {run_files.described(run)}, the dataset has {run_files.described(here)}. "
            "Predict with a run trained on this dataset's classes, or pass --data_dir of such "
            "a dataset")
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
        checkpoint = weights_files(workdir, weights)[1]
        if not os.path.exists(checkpoint):
            raise PredictError(f"no {checkpoint}: this run kept no {weights} weights; "
                               "predict with --weights=final (model.keras)")
        model.load_weights(checkpoint)
    return model


def weights_files(workdir: str, weights: str = "final") -> list[str]:
    """The files a run's model is loaded from: model.keras, then a checkpoint's weights."""
    model = os.path.join(workdir, run_files.MODEL_FILE)
    if weights == "final":
        return [model]
    return [model, os.path.join(workdir, run_files.CHECKPOINT_DIR, f"{weights}.weights.h5")]


def submission_csv(rows: Sequence[tuple[str, str]], header: Sequence[str] = HEADER) -> str:
    return csv_text(header, rows)


def probabilities_csv(classes: Sequence[str], ids: Sequence[str], probabilities,
                      id_header: str = HEADER[0]) -> str:
    """`image,<class>,<class>...`: one row per record, the probability of each class."""
    return csv_text((id_header, *classes), ((image_id, *(f"{p:.6g}" for p in row))
                                            for image_id, row in zip(ids, probabilities)))


def write_predictions(workdir: str | Sequence[str], split: str = schema.TEST, *,
                      data_dir: str | None = None, weights: str = "final",
                      batch_size: int = 256, output: str | None = None, tta=None,
                      probabilities: str | None = None,
                      fold: int | None = None) -> tuple[str, int]:
    """predict_split as a CSV at `output` (default: oof.default_output, a name no other kind
    of prediction shares), and with `probabilities` a CSV of every class's probability; each
    written atomically. The test split's CSV is the submission (a dataset written with
    one-hot --label_columns gets the probabilities as its submission); another split's has
    the truth beside each prediction, and each record's fold (oof.labeled_table). Returns
    (the CSV's path, rows)."""
    workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
    if output and probabilities and os.path.abspath(output) == os.path.abspath(probabilities):
        raise PredictError(f"--output and --probabilities both name {output}: name two files")
    manifest, paths, probs = predict_probabilities(
        workdirs, split, data_dir=data_dir, weights=weights, batch_size=batch_size, tta=tta,
        fold=fold)
    # One-hot class columns in, one probability per column out: that competition's format
    # (multi-label columns too: no tags, so no threshold). Other splits are scored by label.
    one_hot = bool(manifest.flags.get("label_columns")) and split == schema.TEST
    rows = predicted_rows(manifest, paths, probs,
                          None if one_hot else tags_threshold(manifest, workdirs, weights))
    header = submission_header(manifest)
    table = probabilities_csv(manifest.classes or manifest.targets,
                              [row[0] for row in rows], probs, header[0])
    if split != schema.TEST:  # scored or stacked without a join
        labels = dataset.split_labels(data_dir or read_run(workdirs[0])["data_dir"], split,
                                      manifest.fold)
        header, rows = oof.labeled_table(manifest, split, header, rows, labels)
    output = output or oof.default_output(workdirs, split, manifest.fold)
    oof.write_text(output, table if one_hot else submission_csv(rows, header))
    if probabilities:
        oof.write_text(probabilities, table)
    return output, len(rows)
