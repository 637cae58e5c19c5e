r"""Every setting of a write, defined once: the fields of `WriteConfig`.

    config = WriteConfig(output_dir="workspace/shards/leaves", input="data/leaves/train.csv")
    writer.write_dataset(config)  # or: python -m pipeline.write --input=data/leaves/train.csv

A field is a setting: its name is the flag's name, its type and default are the flag's, and
its `setting(...)` metadata holds the flag's help, the group it belongs to and whether
dataset.json records it. `define_flags`, `config_from_flags` and `manifest_flags` are made
from the fields, so adding a setting means adding one field here.

Fields are in the order dataset.json lists the recorded ones: the manifest's bytes must not
change when the code around them does.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing

from absl import flags

from pipeline.core import schema, workspace
from pipeline.writing import plan, tfds_source
from pipeline.writing.images import RESIZE_MODES
from pipeline.writing.sample import SAMPLE_NAME, sample_input

DEFAULT_TRAIN_SHARDS = 36
DEFAULT_IMAGE_SIZE = 224
# What each setting is about; a tfds setting applies only to a tfds: input. --help shows the
# groups in this order, the common ones first.
GROUPS = ("input", "output", "image", "splits", "speed", "multi-host", "tfds")
GROUP_TITLES = {"input": "input (what to read)", "output": "output (where and how it is kept)",
                "image": "image (size and resizing)", "splits": "splits (validation, test, folds)",
                "speed": "speed (workers, progress)", "multi-host": "multi-host (--num_tasks)",
                "tfds": "TFDS (only with --input=tfds:NAME)"}

FLAGS = flags.FLAGS


def setting(default, help: str, *, group: str, choices=None, flag: bool = True,
            recorded: bool = False):
    """A WriteConfig field. `flag`: it is a command-line flag; `recorded`: dataset.json's
    "flags" lists it (the settings that decide what was written, not how fast)."""
    if group not in GROUPS:
        raise ValueError(f"setting group {group!r} is not one of {GROUPS}")
    metadata = {"help": help, "group": group, "choices": choices, "flag": flag,
                "recorded": recorded}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class WriteConfig:
    """Everything a write needs; `writer.write_dataset(WriteConfig(...))` is the entry point."""

    output_dir: str = setting(
        dataclasses.MISSING, "Where shards and dataset.json go. Default: "
        "workspace/shards/<input name>.", group="output")
    input: str | None = setting(
        None, "A CSV with `image` (path relative to the CSV's folder) and `label` columns, a "
        "directory with one sub-folder per class, or a CSV without a label column (written as "
        "an unlabeled `test` split in file order); or tfds:NAME[/CONFIG][:SPLIT] (SPLIT default "
        "train), a TensorFlow Datasets split already prepared under --tfds_data_dir (never "
        "downloaded), with its ClassLabel's class names. Default: the bundled sample dataset "
        "(handwritten digits).", group="input", recorded=True)
    test_input: str | None = setting(
        None, "An unlabeled CSV (image column only) written as the `test` split beside a "
        "labeled --input, kept in file order for predictions; or a tfds: split (e.g. "
        "tfds:cifar10:test), kept in TFDS's order with its labels (same classes as --input) or "
        "unlabeled when all its labels are -1.", group="input", recorded=True)
    image_column: str = setting("image", "CSV column holding image paths (or, with "
                                "--image_path, the values its template makes them from).",
                                group="input", recorded=True)
    image_path: str | None = setting(
        None, "A template from the image column's value to the image's path, relative to the "
        "CSV's folder, with one {} for the value: --image_path='images/{}.jpg' reads "
        "images/Train_0.jpg for the value Train_0 (Plant Pathology's image_id, PetFinder's "
        "Id). It applies to --test_input too, and predict writes the column's own values "
        "(its name as the header), as a Kaggle submission wants them.", group="input",
        recorded=True)
    label_column: str = setting(
        "label", "CSV column holding class names; a CSV without it is unlabeled.",
        group="input", recorded=True)
    label_columns: str | None = setting(
        None, "Comma-separated one-hot class columns, instead of --label_column (Plant "
        "Pathology's healthy,multiple_diseases,rust,scab): each row holds 1 in exactly one of "
        "them and 0 in the others. The classes are these columns in this order, and predict "
        "writes one probability per column, the competition's submission. --input must have "
        "them; a --test_input without them is unlabeled.", group="input", recorded=True)
    multi_label: bool = setting(
        False, "Each --label_column cell lists any number of classes (tags), separated by "
        "--label_delimiter: Planet's `tags` (\"agriculture clear primary\"). The classes are "
        "the sorted union of the tags; an empty cell is an image with none. Batches then hold "
        "float32 multi-hot rows [B, classes], the trainer fits a sigmoid per class, and "
        "predict writes each image's tags above a threshold tuned on validation. Class "
        "columns (--label_columns) are multi-label without it as soon as a row has no 1 or "
        "several.", group="input", recorded=True)
    label_delimiter: str = setting(
        " ", "What separates the tags in a --multi_label cell (a space also takes runs of "
        "whitespace).", group="input", recorded=True)
    target_columns: str | None = setting(
        None, "Comma-separated numeric columns to predict, instead of classes (PetFinder's "
        "Pawpularity): a regression dataset. Each row needs a finite number in each; the "
        "train split's mean, std, min and max go into dataset.json, the val split and folds "
        "keep the share of each tenth of the first target's range, the trainer fits the "
        "standardised values (mean squared error; RMSE on the original scale), and predict "
        "writes the values under these columns' names.", group="input", recorded=True)
    feature_columns: str | None = setting(
        None, "Comma-separated numeric columns stored beside each image as float32 features "
        "(PetFinder's Eyes,Face,...,Blur): --input and --test_input must both have them, "
        "each cell a finite number. Batches are then ({'image': images, 'features': "
        "float32 [B, features]}, labels), and the trainer joins them to the image's "
        "embedding through a small MLP.", group="input", recorded=True)
    # True when --label_column was given: a CSV without that column is then a typo, not an
    # unlabeled CSV.
    label_column_required: bool = setting(
        False, "The CSV must have the label column.", group="input", flag=False)
    allow_outside_input: bool = setting(
        False, "Read image paths that lead outside the input: CSV rows with `..`, absolute "
        "paths elsewhere or symlinks out of the CSV's folder, class folders or images that "
        "are symlinks out of the tree. Refused by default (exit 2, the first rows named): a "
        "CSV from elsewhere must not make the writer read, and copy into shards, any file you "
        "can read. Only for a listing you trust.", group="input")
    shards: int = setting(
        DEFAULT_TRAIN_SHARDS, "Shards of the train split; other splits get proportionally "
        "fewer (at least 1) unless --val_shards / --test_shards say otherwise.",
        group="splits", recorded=True)
    val_shards: int = setting(0, "Shards of the val split (0: proportional to train).",
                              group="splits", recorded=True)
    test_shards: int = setting(0, "Shards of the test split (0: proportional to train).",
                               group="splits", recorded=True)
    image_size: int = setting(DEFAULT_IMAGE_SIZE, "Stored images are image_size^2 pixels.",
                              group="image", recorded=True)
    resize: str = setting(
        "squash", "squash: stretch to a square; center_crop: crop the central square; pad: "
        "fit inside a black square.", group="image", choices=list(RESIZE_MODES),
        recorded=True)
    val_fraction: float = setting(
        0.1, "Share of each class's labeled images in the val split (at least one of every "
        "class with two or more), chosen by a hash of each image's path: adding an image moves "
        "at most one other of its class. Not with --folds.", group="splits", recorded=True)
    folds: int = setting(
        0, "K-fold cross-validation from one copy: every labeled image in the train split, in "
        "K folds stratified by class, each fold in shards of its own; a run reads fold k as "
        "val and the others as train (make_dataset(fold=k), train_and_evaluate.fold=k). "
        "0: off, a val split from --val_fraction.", group="splits", recorded=True)
    seed: int = setting(0, "Seed of the record order across shards.", group="splits",
                        recorded=True)
    num_workers: int = setting(
        0, "Processes decoding and writing shards in parallel (0: one per CPU). Does not "
        "change the output.", group="speed")
    compression: str = setting(
        "NONE", "TFRecord compression; raw pixels compress poorly and decompressing costs CPU "
        "on every epoch, so NONE is usually right.", group="output",
        choices=sorted(schema.COMPRESSION_SUFFIXES), recorded=True)
    max_reject_fraction: float = setting(
        0.01, "Fail (exit 1) when more than this share of a split's images cannot be "
        "decoded (each split on its own: a small test split is not hidden by a large train "
        "split; the test split none, see --allow_missing_test), or when every image of a "
        "split is rejected. rejects.csv lists them all.", group="input", recorded=True)
    allow_missing_test: bool = setting(
        False, "Write a test split some of whose images cannot be read (up to "
        "--max_reject_fraction of it): dataset.json and rejects.csv list those rows, and "
        "predict gives each the training prior (class or tag frequencies, the targets' "
        "means), so the submission keeps every row. Default: exit 1 naming them.", group="input")
    # tfds: inputs only. None: TFDS's default data dir / the dataset's Image and ClassLabel.
    tfds_data_dir: str | None = setting(
        None, "With a tfds: input: the TFDS data dir holding <name>/[<config>/]<version>/ (the "
        "highest version is read). Default: TFDS's, $TFDS_DATA_DIR else ~/tensorflow_datasets.",
        group="tfds", recorded=True)
    tfds_image_key: str | None = setting(
        None, "With a tfds: input: the tfds.features.Image feature to store. Default: the "
        "dataset's only Image feature, or `image` among several.", group="tfds", recorded=True)
    tfds_label_key: str | None = setting(
        None, "With a tfds: input: the tfds.features.ClassLabel feature giving labels and class "
        "names. Default: the dataset's only ClassLabel, or `label` among several.",
        group="tfds", recorded=True)
    overwrite: bool = setting(
        False, "Replace this tool's files in a non-empty --output_dir written by another "
        "command.", group="output")
    # None: a progress bar when stderr is a terminal, else a log line every few seconds.
    show_progress: bool | None = setting(None, "Show a progress bar.", group="output",
                                         flag=False)
    # Several hosts writing one plan: task i writes the shards whose plan position p has
    # p % num_tasks == i and no manifest; one `finalize` run afterwards checks every shard and
    # writes dataset.json. Neither changes a byte of the output.
    num_tasks: int = setting(
        1, "Hosts writing this dataset together into one shared --output_dir, each running the "
        "same command with its own --task_index; then one --finalize run. Does not change the "
        "output.", group="multi-host")
    task_index: int = setting(
        0, "With --num_tasks: this host's task, 0-based. It writes every num_tasks-th shard of "
        "the plan.", group="multi-host")
    finalize: bool = setting(
        False, "After every task: check that every shard is written and write dataset.json "
        "(the same command without --task_index). Exit 2 naming the missing shards and their "
        "tasks otherwise.", group="multi-host")

    @property
    def label_column_names(self) -> tuple[str, ...]:
        return column_names(self.label_columns)

    @property
    def feature_column_names(self) -> tuple[str, ...]:
        return column_names(self.feature_columns)

    @property
    def target_column_names(self) -> tuple[str, ...]:
        return column_names(self.target_columns)

    @property
    def image_bytes(self) -> int:
        """Bytes of one written image (uint8 CHW)."""
        return schema.CHANNELS * self.image_size * self.image_size

    def output_settings(self) -> dict:
        """The settings that decide output bytes (with the plan: see plan.fingerprint; the
        plan adds the format_version, which follows the listing's kind of target)."""
        return {
            "image_size": self.image_size,
            "resize": self.resize,
            "compression": self.compression,
        }

    def tfds_settings(self) -> dict:
        """The tfds group's settings that are set (not None), by name."""
        return {field.name: getattr(self, field.name) for field in fields(group="tfds")
                if getattr(self, field.name) is not None}


def fields(*, group: str | None = None, flag: bool | None = None,
           recorded: bool | None = None) -> list[dataclasses.Field]:
    """WriteConfig's fields, in order, optionally only those with the given metadata."""
    wanted = {"group": group, "flag": flag, "recorded": recorded}
    return [field for field in dataclasses.fields(WriteConfig)
            if all(value is None or field.metadata[key] == value
                   for key, value in wanted.items())]


def check(config: WriteConfig) -> None:
    """Settings that cannot make a plan, each named with what would work (PlanError)."""
    if config.image_size < 1:
        raise plan.PlanError(f"--image_size={config.image_size} must be a positive number of "
                             "pixels")
    if config.resize not in RESIZE_MODES:
        raise plan.PlanError(f"--resize={config.resize!r}: use one of {list(RESIZE_MODES)}")
    if config.compression not in schema.COMPRESSION_SUFFIXES:
        raise plan.PlanError(f"--compression={config.compression!r}: use one of "
                             f"{sorted(schema.COMPRESSION_SUFFIXES)}")
    if config.shards < 1:
        raise plan.PlanError(f"--shards={config.shards} must be at least 1")
    if not 0.0 <= config.max_reject_fraction <= 1.0:
        raise plan.PlanError(
            f"--max_reject_fraction={config.max_reject_fraction} must be in [0, 1]")
    if config.num_tasks < 1 or not 0 <= config.task_index < config.num_tasks:
        raise plan.PlanError(
            f"--num_tasks={config.num_tasks} --task_index={config.task_index}: need "
            f"num_tasks >= 1 and 0 <= task_index < num_tasks")
    if config.image_path is not None and config.image_path.count(schema.IMAGE_PATH_SLOT) != 1:
        raise plan.PlanError(f"--image_path={config.image_path!r} needs exactly one "
                             f"{schema.IMAGE_PATH_SLOT} where the image column's value goes, e.g. "
                             "'images/{}.jpg'")
    check_label_columns(config)
    check_target_columns(config)
    check_column_list("--feature_columns", config.feature_columns, "numeric", "'Eyes,Face'")
    if config.label_delimiter != " " and not config.multi_label:
        raise plan.PlanError(f"--label_delimiter={config.label_delimiter!r} separates the tags "
                             "of a --multi_label column; add --multi_label, or drop it")
    if not config.label_delimiter:
        raise plan.PlanError("--label_delimiter is empty; give the character between tags, "
                             "e.g. --label_delimiter=' ' or ';'")
    if config.num_tasks > 1 and config.overwrite:
        raise plan.PlanError("--overwrite with --num_tasks > 1 would let one task delete the "
                             "others' shards; clear --output_dir once before starting the tasks")


def column_names(flag: str | None) -> tuple[str, ...]:
    """A comma-separated column flag (--label_columns, --target_columns, --feature_columns;
    as given or as dataset.json records it) as a tuple of names; empty when not given."""
    return () if flag is None else tuple(name.strip() for name in flag.split(","))


def check_column_list(flag: str, value: str | None, kind: str, example: str) -> None:
    """`value` of a column-list flag names distinct, non-empty columns (None: not given)."""
    names = column_names(value)
    if value is not None and (not names or any(not name for name in names)
                              or len(set(names)) != len(names)):
        raise plan.PlanError(f"{flag}={value!r}: name each {kind} column once, "
                             f"comma-separated, e.g. {example}")


def check_label_columns(config: WriteConfig) -> None:
    """--label_columns names distinct, non-empty columns, and replaces --label_column."""
    if config.label_columns is None:
        return
    check_column_list("--label_columns", config.label_columns, "one-hot",
                      "'healthy,rust,scab'")
    if config.label_column_required:
        raise plan.PlanError(f"--label_column={config.label_column} and --label_columns="
                             f"{config.label_columns}: give one (a class-name column, or "
                             "one-hot class columns)")


def check_target_columns(config: WriteConfig) -> None:
    """--target_columns names distinct, non-empty columns, and no classes beside them."""
    if config.target_columns is None:
        return
    check_column_list("--target_columns", config.target_columns, "numeric", "'Pawpularity'")
    given = [flag for flag, on in (("--label_columns", config.label_columns is not None),
                                   ("--multi_label", config.multi_label),
                                   ("--label_column", config.label_column_required)) if on]
    if given:
        raise plan.PlanError(f"--target_columns={config.target_columns} and {given[0]}: a "
                             "dataset has numbers to predict or classes, not both")


def manifest_flags(config: WriteConfig) -> dict:
    """The command's settings as dataset.json records them: the recorded ones, in field
    order; the tfds group only for a tfds: input; --image_path, --label_columns,
    --target_columns and --multi_label (with its delimiter) only when given, so other
    manifests stay as they were; an empty --input as the bundled sample's name."""
    reads_tfds = any(tfds_source.is_tfds_input(given)
                     for given in (config.input, config.test_input))
    recorded = {}
    for field in fields(recorded=True):
        if field.metadata["group"] == "tfds" and not reads_tfds:
            continue
        if field.name in ("image_path", "label_columns", "target_columns", "feature_columns") \
                and getattr(config, field.name) is None:
            continue  # recorded only where given: other manifests stay as they were
        if field.name in ("multi_label", "label_delimiter") and not config.multi_label:
            continue
        recorded[field.name] = getattr(config, field.name)
    if config.input is None:
        recorded["input"] = sample_input()
    return recorded


# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """One flag per WriteConfig field that is a flag, typed by the field."""
    hints = typing.get_type_hints(WriteConfig)
    for field in fields(flag=True):
        kind = _flag_type(hints[field.name])
        help_text = field.metadata["help"]
        default = None if field.default is dataclasses.MISSING else field.default
        if field.metadata["choices"] is not None:
            flags.DEFINE_enum(field.name, default, field.metadata["choices"], help_text,
                              flag_values=flag_values)
        else:
            _DEFINERS[kind](field.name, default, help_text, flag_values=flag_values)


def flag_groups() -> list[tuple[str, list[str]]]:
    """The flags by GROUPS, each in field order: what `python -m pipeline.write --help` lists."""
    return [(GROUP_TITLES[group], [field.name for field in fields(flag=True)
                                   if field.metadata["group"] == group]) for group in GROUPS]


_DEFINERS = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
             bool: flags.DEFINE_bool}


def _flag_type(hint) -> type:
    """`int` for `int`, `str` for `str | None`: the type a flag parses its value into."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint not in _DEFINERS:
        raise TypeError(f"no flag type for a setting of type {hint!r}")
    return hint


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> WriteConfig:
    """The WriteConfig the parsed flags describe."""
    values = {field.name: flag_values[field.name].value for field in fields(flag=True)}
    # An explicit --label_column that the CSV lacks is a typo, not an unlabeled CSV.
    values["label_column_required"] = flag_values["label_column"].present
    config = WriteConfig(**{**values, "output_dir": ""})
    # The default output folder is named after the input, which the rest of the config says.
    return dataclasses.replace(config,
                               output_dir=values["output_dir"] or default_output_dir(config))


def default_output_dir(config: WriteConfig) -> str:
    """workspace/shards/<name>: the input folder's name, the TFDS dataset's, or the sample's."""
    if config.input is None:
        return workspace.shards_dir(SAMPLE_NAME)
    if tfds_source.is_tfds_input(config.input):
        return workspace.shards_dir(tfds_source.default_output_name(config.input))
    source = os.path.abspath(config.input)
    name = os.path.basename(source if os.path.isdir(source) else os.path.dirname(source))
    return workspace.shards_dir(name or "dataset")
