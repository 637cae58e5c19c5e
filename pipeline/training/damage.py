"""What training says about a damaged shard: the record or shard named, and the ways on."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from pipeline.core import integrity, record_index
from pipeline.dataset import damaged
from pipeline.training.settings import TrainingError


def named_damage(data_dir: str, splits: Sequence[str], err: tf.errors.OpError) -> Exception:
    """A TrainingError naming the damaged record or shard, or `err` when it is not damage."""
    named = damaged.damage_named(err.message)
    if named is not None and record_index.MISMATCH in named:
        return TrainingError(named)  # not damage: on_corrupt="skip" does not apply
    if named is not None and damaged.UNREAD_AFTER_DAMAGE not in named:
        return TrainingError(f"{named} (in a gin config: train_and_evaluate.on_corrupt="
                             "'skip')")
    if named is not None or isinstance(err, tf.errors.DataLossError):
        return TrainingError(damaged_shards_message(data_dir, splits, err))
    return err


def damaged_shards_message(data_dir: str, splits: Sequence[str], err: Exception) -> str:
    """Name the damaged shards (pipeline.core.integrity) and the ways on, where the error
    does not: TensorFlow's DataLossError ("corrupted record at <offset>", e.g. from a cache
    file), or a stream that names a record after the damaged one (damaged.UNREAD_AFTER_DAMAGE)."""
    report = integrity.verify_dataset(data_dir, splits=list(splits))
    named = "\n  ".join(str(problem) for problem in report.problems) or (
        f"none found now (TensorFlow said: {err.message if hasattr(err, 'message') else err})")
    return (f"a shard of {data_dir} is damaged:\n  {named}\nRewrite the dataset with "
            "`python -m pipeline.write`, or train on without the damaged records with "
            "train_and_evaluate.on_corrupt='skip'")
