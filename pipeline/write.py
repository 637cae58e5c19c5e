r"""Convert an image dataset into sharded raw uint8 CHW TFRecords plus `dataset.json`.

    python -m pipeline.write                      # the bundled sample (digits), offline
    python -m pipeline.write --input=data/train.csv --test_input=data/test.csv --shards=36
    python -m pipeline.write --input=data/flowers/ --image_size=160 --resize=center_crop
    python -m pipeline.write --input=tfds:cifar10 --test_input=tfds:cifar10:test \
        --tfds_data_dir=/data/tensorflow_datasets   # a TFDS dataset prepared there, offline
    python -m pipeline.write --helpfull           # every flag, documented

An input is a CSV, a class-folder tree, or a TensorFlow Datasets split that is already prepared
locally (`tfds:NAME[/CONFIG][:SPLIT]`: its images are staged once as files, its ClassLabel
names are the class names; nothing is downloaded). Interrupting the writer at any moment (even
SIGKILL) is safe: the same command run again keeps the complete shards and writes the rest.
How a write works is in pipeline.writing.writer; every flag is a field of
pipeline.writing.settings.WriteConfig.

Exit codes: the table in pipeline.errors, which --help shows.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags

from pipeline import cli
from pipeline.writing import settings, writer


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    settings.define_flags(flag_values)
    # The flags are defined in pipeline.writing.settings; --help lists the main module's.
    flags.adopt_module_key_flags(settings, flag_values)


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    writer.write_dataset(settings.config_from_flags())


if __name__ == "__main__":
    cli.run(main, define_flags, flag_groups=settings.flag_groups())
