"""What a training run leaves in its workdir, and the run.json that ties it to one dataset.

    run.json          the dataset this run trains on (classes, shape); a rerun must match it
    backup/           BackupAndRestore's state: a killed run started again resumes at the
                      epoch it was in, not from scratch; removed when training finishes
    checkpoints/      last.weights.h5 (every epoch) and best.weights.h5 (best val_accuracy)
    tensorboard/      loss, accuracy, learning rate, images/s and input-wait fraction per epoch
    train_log.csv     the same per epoch, appended across resumed runs
    model.keras       the trained model (Keras format); export/ the SavedModel for serving
    metrics.json      val_accuracy, val_loss, epochs, images/s, input-wait fraction, seconds
"""

from __future__ import annotations

import json
import os

from pipeline.core import files, schema
from pipeline.training.settings import TrainingError

RUN_FILE = "run.json"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CSV_LOG = "train_log.csv"
MODEL_FILE = "model.keras"
EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"


def read_run_file(workdir: str) -> dict | None:
    """The run.json of `workdir` (dataset, classes, image shape), or None before any run."""
    try:
        with open(os.path.join(workdir, RUN_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def check_run_file(workdir: str, data_dir: str, manifest: schema.Manifest) -> None:
    """Write run.json on the first run; on later runs (resume) insist on the same classes."""
    current = {"data_dir": os.path.abspath(data_dir), "classes": list(manifest.classes),
               "image_shape": list(manifest.image_shape)}
    previous = read_run_file(workdir)
    if previous is not None:
        if (previous["classes"], previous["image_shape"]) != (current["classes"],
                                                             current["image_shape"]):
            raise TrainingError(
                f"{workdir} holds a run on {previous['data_dir']} ({len(previous['classes'])} "
                f"classes, images {previous['image_shape']}), but {data_dir} has "
                f"{manifest.num_classes} classes, images {list(manifest.image_shape)}: its "
                f"checkpoints cannot continue here. Use another --workdir, or remove {workdir}")
        return
    files.atomic_write_text(os.path.join(workdir, RUN_FILE), json.dumps(current, indent=2) + "\n")
