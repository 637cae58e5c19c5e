r"""Predict a split with a trained model: a Kaggle-style `submission.csv`, or a labeled split's
predictions beside the truth.

    python -m pipeline.predict --workdir=workspace/runs/smoke   # -> <workdir>/submission.csv
    python -m pipeline.predict --workdir=runs/smoke --split=val # -> <workdir>/predictions_val.csv
    python -m pipeline.predict --workdir=runs/fold2 --split=val # -> runs/fold2/oof_fold2.csv:
                                                 # fold 2's out-of-fold predictions
    python -m pipeline.predict --workdir=runs/fold0 --workdir=runs/fold1 --tta=flip \
        --probabilities=probabilities.csv        # an ensemble, flips averaged: ./submission.csv
    python -m pipeline.oof runs/fold*/oof_fold*.csv   # the folds' OOF rows, one scored table

Reads the model `train.py` saved in --workdir (`model.keras`, or the best checkpoint with
--weights=best) and the dataset named in its `run.json`. The test split's CSV has one row per
test CSV row, `image,label`: the image path as given to `python -m pipeline.write` and the
predicted class name, in the input's order (pipeline.training.predict); a row whose image was
missing (`write --allow_missing_test`) gets the training prior, and the log lists it. Another split's CSV adds the
truth (`true_class`, `true_tags` or `true_<target>`) and, in a dataset written with --folds,
each record's `fold` (pipeline.training.oof).

Where it goes without --output: one run's test split `<workdir>/submission.csv`; its val split
of a fold `<workdir>/oof_fold<k>.csv`; another split `<workdir>/predictions_<split>.csv`; an
ensemble (several --workdir) the same names in the current directory, never a member's
workdir. No two kinds of prediction share a default; the file at a path is replaced, and the
log says so. The log says how many models, which weight files and which TTA views it averaged.

Exit codes: the table in pipeline.errors, which --help shows.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags, logging

from pipeline import cli
from pipeline.core import schema
from pipeline.training import predict

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_multi_string("workdir", None, "A training run's directory (train.py "
                              "--workdir); several: an ensemble, their probabilities averaged.",
                              required=True)
    flags.DEFINE_string("split", schema.TEST, "The manifest split to predict.")
    flags.DEFINE_string("data_dir", None, "The dataset (default: the one the run trained on).")
    flags.DEFINE_string("output", None, "The CSV to write, replaced if there (default: "
                        f"<workdir>/{predict.SUBMISSION_NAME} for the test split, "
                        "<workdir>/oof_fold<k>.csv for a fold's val split, "
                        "<workdir>/predictions_<split>.csv for another; an ensemble's in the "
                        "current directory).")
    flags.DEFINE_enum("weights", "final", predict.WEIGHTS,
                      "final: model.keras as training ended; best: the epoch with the best "
                      "val_accuracy (val_f1 multi-label, lowest val_rmse in regression); "
                      "last: the last checkpoint.")
    flags.DEFINE_integer("batch_size", 256, "Images per prediction batch.", lower_bound=1)
    flags.DEFINE_string("tta", None, "Test-time views averaged with the original: 'flip' "
                        f"(= flip_lr) or a comma list of {', '.join(predict.TTA_VIEWS)}.")
    flags.DEFINE_string("probabilities", None, "Also write every class's probability per "
                        "image to this CSV (image,<class>,...).")
    flags.DEFINE_integer("fold", None, "A dataset written with --folds=K: the fold (0..K-1) "
                         "whose view to read (default: the one the run held out); --split=val "
                         "then predicts that fold's held-out images: out-of-fold predictions, "
                         "to <workdir>/oof_fold<k>.csv.", lower_bound=0)


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    output, rows = predict.write_predictions(
        FLAGS.workdir, FLAGS.split, data_dir=FLAGS.data_dir, weights=FLAGS.weights,
        batch_size=FLAGS.batch_size, output=FLAGS.output, tta=FLAGS.tta,
        probabilities=FLAGS.probabilities, fold=FLAGS.fold)
    logging.info("%d predictions of %r -> %s", rows, FLAGS.split, output)


if __name__ == "__main__":
    cli.run(main, define_flags)
