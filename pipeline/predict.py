r"""Predict a split with a trained model and write a Kaggle-style `submission.csv`.

    python -m pipeline.predict --workdir=workspace/runs/smoke            # the test split
    python -m pipeline.predict --workdir=... --split=val --output=val_predictions.csv

Reads the model `train.py` saved in --workdir (`model.keras`, or the best checkpoint with
--weights=best) and the dataset named in its `run.json`. The CSV has one row per record,
`image,label`: the image path as given to `python -m pipeline.write` and the predicted class
name, in the input's order (pipeline.training.predict).

Exit codes: 0 written; 2 nothing to predict with or nothing to predict (no trained model in
--workdir, no such split, a damaged dataset).
"""

from __future__ import annotations

from typing import Sequence

from absl import flags, logging

from pipeline import cli
from pipeline.core import schema
from pipeline.training import predict

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "A training run's directory (train.py --workdir).",
                        required=True)
    flags.DEFINE_string("split", schema.TEST, "The manifest split to predict.")
    flags.DEFINE_string("data_dir", None, "The dataset (default: the one the run trained on).")
    flags.DEFINE_string("output", None, "The CSV to write (default: "
                        f"<workdir>/{predict.SUBMISSION_NAME}).")
    flags.DEFINE_enum("weights", "final", predict.WEIGHTS,
                      "final: model.keras as training ended; best: the epoch with the best "
                      "val_accuracy; last: the last checkpoint.")
    flags.DEFINE_integer("batch_size", 256, "Images per prediction batch.", lower_bound=1)


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    output, rows = predict.write_predictions(
        FLAGS.workdir, FLAGS.split, data_dir=FLAGS.data_dir, weights=FLAGS.weights,
        batch_size=FLAGS.batch_size, output=FLAGS.output)
    logging.info("%d predictions of %r -> %s", rows, FLAGS.split, output)


if __name__ == "__main__":
    cli.run(main, define_flags)
