"""What a training run leaves in its workdir, and the run.json that ties it to one dataset.

    run.json          the dataset this run trains on (where; which: dataset.json's sha256 and
                      the split sizes; classes, shape): a rerun must match it
    config.gin        the resolved configuration (train.py)
    checkpoints/      state.json and the step checkpoints a killed run continues from, exactly
                      (pipeline.training.checkpoints); last.weights.h5 (the last epoch end)
                      and best.weights.h5 (the best val_accuracy; val_f1 multi-label,
                      the lowest val_rmse in regression: pipeline.training.targets)
    tensorboard/      loss, accuracy, learning rate, images/s and input-wait fraction per epoch
    train_log.csv     the same, one row per epoch across resumed runs (rewritten whole)
    model.keras       the trained model (Keras format); export/ the SavedModel for serving
    metrics.json      val_accuracy (or the kind's metrics), val_loss, epochs, images/s,
                      input-wait fraction, seconds,
                      where the run resumed, what its checkpoints cost

Every file is written atomically (a temporary name, fsync, rename): a kill at any moment
leaves the previous whole version.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os

import tensorflow as tf

from pipeline.core import files, schema
from pipeline.training.settings import TrainingError

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
BACKUP_DIR = "backup"  # an older train.py's epoch-level state (refused)
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"  # in CHECKPOINT_DIR: what a killed run continues from
TENSORBOARD_DIR = "tensorboard"
CSV_LOG = "train_log.csv"
MODEL_FILE = "model.keras"
EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"


def write_train_log(workdir: str, rows) -> None:
    """train_log.csv from the epoch rows: `epoch` then the logged values, one row per epoch."""
    names = sorted({name for row in rows for name in row} - {"epoch"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["epoch", *names], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files.atomic_write_text(os.path.join(workdir, CSV_LOG), buffer.getvalue())


def read_run_file(workdir: str) -> dict | None:
    """The run.json of `workdir` (dataset, classes, image shape), or None before any run."""
    try:
        with open(os.path.join(workdir, RUN_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise not_a_workdir(workdir) from None


def not_a_workdir(workdir: str) -> TrainingError:
    return TrainingError(f"workdir {workdir!r} is a file, not a directory: give a training "
                         "run's directory (train.py --workdir)")


def run_record(data_dir: str, manifest: schema.Manifest) -> dict:
    """run.json: the dataset (where, and which: dataset_identity), its classes and image
    shape, and the fold held out (if any)."""
    fold = {} if manifest.fold is None else {"fold": manifest.fold}
    return {"data_dir": os.path.abspath(data_dir), **learned(manifest),
            "dataset": dataset_identity(data_dir, manifest), **fold}


def learned(manifest: schema.Manifest) -> dict:
    """run.json's fields that say what a model of `manifest` predicts (learns reads them):
    the classes and image shape, and the target kind, targets and features where there are
    any (a class run's run.json stays as it was)."""
    fields = {"classes": list(manifest.classes), "image_shape": list(manifest.image_shape)}
    if manifest.target_kind != schema.CLASS:
        fields.update(target_kind=manifest.target_kind, targets=list(manifest.targets))
    if manifest.features:
        fields["features"] = list(manifest.features)
    return fields


def learns(record: dict) -> tuple:
    """What a run.json's model predicts: (target kind, classes, targets, image shape); two
    runs or a run and a dataset must agree on it."""
    return (record.get("target_kind", schema.CLASS), record["classes"],
            record.get("targets", []), record["image_shape"], record.get("features", []))


def described(record: dict) -> str:
    """learns() in words: "3 classes ['cat', 'dog', 'owl'] at [3, 8, 8]", "the regression of
    ['Pawpularity'] at ...", "4 classes [...] (multi-label) at ..."."""
    kind, classes, targets, shape, features = learns(record)
    given = f" with the features {features}" if features else ""
    if kind == schema.REGRESSION:
        return f"the regression of {targets} at {shape}{given}"
    multi = " (multi-label)" if kind == schema.MULTI_LABEL else ""
    return f"{len(classes)} classes {classes}{multi} at {shape}{given}"


def dataset_identity(data_dir: str, manifest: schema.Manifest) -> dict:
    """What tells one dataset from another, wherever it lies: dataset.json's sha256 (which
    holds every shard's sha256) and the split sizes the run sees."""
    with tf.io.gfile.GFile(os.path.join(data_dir, schema.MANIFEST_NAME), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"manifest_sha256": digest,
            "splits": {name: split.count for name, split in manifest.splits.items()}}


def check_run_file(workdir: str, data_dir: str, manifest: schema.Manifest,
                   allow_other_data: bool = False) -> None:
    """On a rerun (resume), insist on the dataset, classes and image shape of the first run
    (another dataset only with `allow_other_data`); refuse a workdir an older trainer left
    (its epoch-level backup/ cannot continue exactly)."""
    previous = read_run_file(workdir)
    if previous is None:
        return
    current = run_record(data_dir, manifest)
    if learns(previous) != learns(current):
        raise TrainingError(
            f"{workdir} holds a run on {previous['data_dir']} ({described(previous)}), but "
            f"{data_dir} has {described(current)}: its checkpoints cannot continue here. Use "
            f"another --workdir, or remove {workdir}")
    _check_same_data(workdir, data_dir, previous, current, allow_other_data)
    older = (BACKUP_DIR, METRICS_FILE, os.path.join(CHECKPOINT_DIR, "last.weights.h5"))
    if not os.path.exists(os.path.join(workdir, CHECKPOINT_DIR, STATE_FILE)) and any(
            os.path.exists(os.path.join(workdir, name)) for name in older):
        raise TrainingError(
            f"{workdir} holds a run of an older version of train.py, which cannot continue "
            f"at its step; use another --workdir, or remove {workdir}")


def _check_same_data(workdir: str, data_dir: str, previous: dict, current: dict,
                     allow_other_data: bool) -> None:
    """TrainingError naming both datasets when a run would go on with other data (run.json
    written before datasets were identified has no "dataset": nothing to compare)."""
    before, now = previous.get("dataset"), current["dataset"]
    if before is None or before == now:
        return
    if allow_other_data:
        log.warning("%s trained on %s; going on with other data, %s (allow_other_data)",
                    workdir, previous["data_dir"], data_dir)
        return
    raise TrainingError(
        f"{workdir} holds a run on another dataset: {previous['data_dir']} "
        f"(dataset.json sha256 {before['manifest_sha256'][:12]}, splits {before['splits']}), "
        f"not {data_dir} (sha256 {now['manifest_sha256'][:12]}, splits {now['splits']}); "
        "resuming would continue its checkpoints on other data. Use another --workdir, or "
        "set train_and_evaluate.allow_other_data=True to go on training them on this data")


def write_run_file(workdir: str, data_dir: str, manifest: schema.Manifest) -> None:
    """run.json, before the first step of every run (the checks passed: the same dataset,
    perhaps moved, or other data allowed)."""
    files.atomic_write_text(os.path.join(workdir, RUN_FILE),
                            json.dumps(run_record(data_dir, manifest), indent=2) + "\n")
