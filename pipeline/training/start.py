"""A run checked before anything is built: the dataset (its fold), the workdir, the seed,
the precision, the devices, the batch and the image sizes."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from pipeline.core import schema
from pipeline.dataset import batches_per_epoch, read_manifest
from pipeline.training import distribute, run_files
from pipeline.training.resolution import Resolution, make_resolution
from pipeline.training.settings import TrainingError

# make_resolution's arguments for a run at the stored size.
NATIVE_SIZES = dict(image_size=None, eval_image_size=None, eval_crop=1.0,
                    progressive_resizing=None)


@dataclasses.dataclass(frozen=True)
class Run:
    """What a run is, checked before anything is built."""

    data_dir: str
    workdir: str
    manifest: schema.Manifest
    train_split: str
    val_split: str
    batch_size: int
    epochs: int
    strategy: tf.distribute.Strategy
    policy: str  # the Keras dtype policy: "float32" or "mixed_float16"
    steps_per_epoch: int  # from the manifest's count (the schedule's unit)
    freeze_epochs: int = 0  # a keras.applications backbone's, frozen first
    resolution: Resolution | None = None  # the image sizes: training's, per epoch, and eval's


def start_run(data_dir: str, workdir: str, *, train_split: str, val_split: str,
              batch_size: int, epochs: int, seed: int, mixed_precision: str | bool,
              freeze_epochs: int = 0, fold: int | None = None,
              sizes: dict | None = None, allow_other_data: bool = False) -> Run:
    """Check the dataset and the workdir, seed everything, pick the precision and devices.
    `sizes`: make_resolution's arguments."""
    manifest = read_manifest(data_dir, fold)
    if val_split not in manifest.splits:
        how = (f"it is in {len(manifest.folds)} folds: pass fold=0..{len(manifest.folds) - 1}"
               if manifest.folds else "write it with `python -m pipeline.write "
               "--val_fraction=0.1` or pass val_split")
        raise TrainingError(f"{data_dir} has no {val_split!r} split (it has "
                            f"{sorted(manifest.splits)}); {how}")
    # Reads only: a refused run writes nothing.
    run_files.check_run_file(workdir, data_dir, manifest, allow_other_data)
    keras.utils.set_random_seed(seed)
    policy = resolve_mixed_precision(mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    strategy = distribute.choose_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TrainingError(f"batch_size={batch_size} must be a multiple of the {replicas} "
                            "replicas")
    train_count = manifest.split(train_split).count
    steps_per_epoch = batches_per_epoch(train_count, batch_size, training=True)
    if steps_per_epoch == 0:
        raise TrainingError(f"split {train_split!r} has {train_count} records, fewer than "
                            f"batch_size={batch_size}; use batch_size<={train_count}")
    if not isinstance(freeze_epochs, int) or isinstance(freeze_epochs, bool) or not (
            0 <= freeze_epochs < max(epochs, 1)):
        raise TrainingError(f"freeze_epochs={freeze_epochs!r}: a number of epochs from 0 to "
                            f"epochs-1={epochs - 1} (the backbone trains after them)")
    resolution = make_resolution(manifest.image_shape, **(sizes or NATIVE_SIZES))
    return Run(data_dir, workdir, manifest, train_split, val_split, batch_size, epochs,
               strategy, policy, steps_per_epoch, freeze_epochs, resolution)


def resolve_mixed_precision(mixed_precision: str | bool) -> str:
    if mixed_precision == "auto":
        mixed_precision = bool(tf.config.list_physical_devices("GPU"))
    if not isinstance(mixed_precision, bool):
        raise TrainingError(f"mixed_precision={mixed_precision!r}: use 'auto', True or False")
    return "mixed_float16" if mixed_precision else "float32"
