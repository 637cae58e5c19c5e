"""What training and prediction do per kind of target (schema.Manifest.target_kind).

    class        softmax cross-entropy; accuracy; the best epoch by val_accuracy; the argmax
    multi_label  a sigmoid per class, binary cross-entropy summed over the classes (timm's
                 and the Kaggle Planet and protein-atlas solutions' loss); micro F1 at a tuned
                 threshold, macro F1 there and mAP; the best epoch by val_f1; tags above the
                 tuned threshold
    regression   a linear output per target, fit to the standardised targets (z = (y - mean)
                 / std of the train split, dataset.json's target_stats) with mean squared
                 error; RMSE on the original scale; the best epoch by the lowest val_rmse;
                 predictions back on the original scale

Why standardised MSE for regression, not the min-max-scaled BCE some Pawpularity solutions
used: it serves any range and any number of targets with the learning rates tuned for
cross-entropy (a z-score's squared error is O(1), like a cross-entropy), and unlike BCE it does
not assume the target is bounded.

The threshold is tuned as the metric is counted: ThresholdF1 keeps true and false positives
and false negatives per class at each of THRESHOLDS, so every evaluation gives F1 at its best
threshold and the threshold itself (logged as `threshold`, `val_threshold`), without a second
pass over the validation split. The counts are sums, so a run resumed mid-epoch adds them up
like Keras' mean metrics (checkpoints.add_metric_state).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.core import schema
from pipeline.training import checkpoints, run_files

log = logging.getLogger(__name__)

# Probability thresholds at which F1 is counted; the best of them is the tuned threshold.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
# Points of each class's precision-recall curve for mAP (keras.metrics.AUC).
PR_POINTS = 50

# The metric that names a run's result and picks its best epoch; larger is better but for
# those in LOWER_IS_BETTER.
HEADLINE = {schema.CLASS: "accuracy", schema.MULTI_LABEL: "f1", schema.REGRESSION: "rmse"}
LOWER_IS_BETTER = ("rmse",)


def loss_and_metrics(manifest: schema.Manifest, label_smoothing: float):
    """(loss, metrics) to compile a model for the manifest's kind of target; labels come in
    as float32 [B, classes] rows (one-hot, mixed, or multi-hot), the model gives logits."""
    if manifest.target_kind == schema.REGRESSION:
        if label_smoothing:  # the default is 0.1: a regression config need not unset it
            log.info("label_smoothing=%g smooths class labels: not used for the regression "
                     "of %s", label_smoothing, ", ".join(manifest.targets))
        _, std = standardisation(manifest)
        return (keras.losses.MeanSquaredError(name="mean_squared_error"),
                [ScaledRMSE(std.tolist(), name="rmse")])
    if manifest.target_kind == schema.MULTI_LABEL:
        k = manifest.num_classes
        return (SummedBinaryCrossentropy(label_smoothing=label_smoothing),
                [ThresholdF1(k, "micro", name="f1"), ThresholdF1(k, "macro", name="macro_f1"),
                 ThresholdF1(k, "threshold", name="threshold"),
                 keras.metrics.AUC(num_thresholds=PR_POINTS, curve="PR", multi_label=True,
                                   num_labels=k, from_logits=True, name="map")])
    return (keras.losses.CategoricalCrossentropy(from_logits=True,
                                                 label_smoothing=label_smoothing),
            [keras.metrics.CategoricalAccuracy(name="accuracy")])


def monitor(manifest: schema.Manifest) -> str:
    """The logged value that picks the best epoch (best.weights.h5)."""
    return "val_" + HEADLINE[manifest.target_kind]


def lower_is_better(manifest: schema.Manifest) -> bool:
    return HEADLINE[manifest.target_kind] in LOWER_IS_BETTER


def standardisation(manifest: schema.Manifest):
    """(mean, std) float32 [targets] of a regression dataset's train split."""
    stats = [manifest.target_stats[name] for name in manifest.targets]
    return (np.array([s["mean"] for s in stats], np.float32),
            np.array([s["std"] for s in stats], np.float32))


def training_labels(manifest: schema.Manifest):
    """labels -> the float32 rows the loss takes (distribute.make_input): one-hot rows of
    class indices (soft rows as they are), multi-hot rows as they are, standardised
    regression targets."""
    if manifest.target_kind == schema.REGRESSION:
        mean, std = standardisation(manifest)
        return lambda labels: (tf.cast(labels, tf.float32) - mean) / std
    num_classes = manifest.num_classes

    def rows(labels):
        if labels.shape.rank == 2:  # multi-hot, or mixed by mixup / cutmix
            return tf.cast(labels, tf.float32)
        return tf.one_hot(labels, num_classes, dtype=tf.float32)

    return rows


def val_metrics(manifest: schema.Manifest, evaluation: dict[str, Any]) -> dict[str, float]:
    """metrics.json's validation figures for the kind: val_loss and val_<each metric>."""
    return {f"val_{name}": float(value) for name, value in evaluation.items()}


@keras.saving.register_keras_serializable(package="pipeline")
class SummedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy of logits, summed over the classes, averaged over the batch.

    Summed, not Keras's mean over the classes: its gradient per image is then on the scale of
    softmax cross-entropy's, which the learning rates here are tuned for (the mean divides it
    by the number of classes). `make demo-tags`, smoke config, 10 epochs: val F1 0.990
    summed, 0.835 with the mean.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "binary_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(y_true, "float32")
        y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        each = ops.binary_crossentropy(y_true, ops.cast(y_pred, "float32"), from_logits=True)
        return ops.sum(each, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="pipeline")
class ScaledRMSE(keras.metrics.Metric):
    """Root mean squared error on the original scale of standardised targets: each target's
    error times its `std`, squared, averaged over the records and targets. Sums, like the
    other metrics' (a mid-epoch resume adds them up)."""

    def __init__(self, std, **kwargs):
        super().__init__(**kwargs)
        self.std = [float(value) for value in std]
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        error = (ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")) * ops.array(
            self.std, "float32")
        self.total.assign_add(ops.sum(error * error))
        self.count.assign_add(ops.cast(ops.size(error), "float32"))

    def result(self):
        return keras.ops.sqrt(self.total / keras.ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "std": self.std}


@keras.saving.register_keras_serializable(package="pipeline")
class ThresholdF1(keras.metrics.Metric):
    """F1 of multi-label logits at the best of THRESHOLDS (the best micro F1): the micro F1
    there (`report="micro"`), the mean of the classes' F1 there ("macro"), or the threshold
    ("threshold"). Labels above 0.5 count as the class (mixed labels too)."""

    REPORTS = ("micro", "macro", "threshold")

    def __init__(self, num_classes: int, report: str = "micro", **kwargs):
        super().__init__(**kwargs)
        if report not in self.REPORTS:
            raise ValueError(f"report={report!r}: one of {self.REPORTS}")
        self.num_classes, self.report = num_classes, report
        shape = (len(THRESHOLDS), num_classes)
        self.counts = [self.add_variable(shape=shape, initializer="zeros", name=name)
                       for name in ("true_positives", "false_positives", "false_negatives")]

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        truth = ops.cast(ops.convert_to_tensor(y_true) > 0.5, "float32")[None]  # [1, B, K]
        probability = ops.sigmoid(ops.cast(y_pred, "float32"))[None]
        said = ops.cast(probability > ops.reshape(ops.array(THRESHOLDS, "float32"),
                                                  (-1, 1, 1)), "float32")  # [T, B, K]
        for variable, hits in zip(self.counts, (said * truth, said * (1 - truth),
                                                (1 - said) * truth)):
            variable.assign_add(ops.sum(hits, axis=1))

    def result(self):
        ops = keras.ops
        tp, fp, fn = self.counts
        micro = _f1(ops.sum(tp, axis=1), ops.sum(fp, axis=1), ops.sum(fn, axis=1))
        best = ops.argmax(micro)
        if self.report == "micro":
            return micro[best]
        if self.report == "threshold":
            return ops.take(ops.array(THRESHOLDS, "float32"), best)
        return ops.mean(_f1(tp[best], fp[best], fn[best]))

    def reset_state(self):
        for variable in self.counts:
            variable.assign(keras.ops.zeros(variable.shape))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "report": self.report}


def _f1(tp, fp, fn):
    """2TP / (2TP + FP + FN), 0 where there is nothing to count."""
    ops = keras.ops
    denominator = 2 * tp + fp + fn
    return ops.where(denominator > 0, 2 * tp / ops.maximum(denominator, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------


def probabilities(manifest: schema.Manifest, logits):
    """float64 probabilities of logits: a softmax over the classes, or a sigmoid per class;
    a regression model's outputs back on the targets' scale."""
    if manifest.target_kind == schema.REGRESSION:
        mean, std = standardisation(manifest)
        return np.asarray(logits, np.float64) * std.astype(np.float64) + mean
    logits = tf.cast(logits, tf.float64)
    if manifest.target_kind == schema.MULTI_LABEL:
        return tf.sigmoid(logits).numpy()
    return tf.nn.softmax(logits).numpy()


def run_threshold(workdir: str, weights: str) -> float:
    """The threshold tuned on the run's validation split for the `weights` predict uses:
    final (metrics.json), best (the best epoch's) or last (the last epoch's)."""
    if weights == "final":
        with open(os.path.join(workdir, run_files.METRICS_FILE), encoding="utf-8") as f:
            found = json.load(f).get("val_threshold")
    else:
        state = checkpoints.read_state(workdir)
        rows = state.rows if state else []
        epoch = (state.best or {}).get("epoch") if weights == "best" and state else None
        row = next((row for row in rows if row["epoch"] == epoch), None) if epoch is not None \
            else (rows[-1] if rows else None)
        found = row.get("val_threshold") if row else None
    if found is None:
        raise ValueError(f"{workdir} has no tuned threshold for its {weights} weights: it was "
                         "not trained on a multi-label dataset with a validation split")
    return float(found)


def ensemble_threshold(workdirs, weights: str) -> float:
    """The mean of the runs' tuned thresholds (a fold ensemble's)."""
    return sum(run_threshold(workdir, weights) for workdir in workdirs) / len(workdirs)


def tags_of(classes, probabilities_row, threshold: float) -> str:
    """The classes whose probability is above `threshold`, space-joined, in class order."""
    return " ".join(name for name, p in zip(classes, probabilities_row) if p > threshold)
