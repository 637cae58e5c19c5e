"""Every setting of a write is defined once (a WriteConfig field): the flags, the config made from
them and what dataset.json records all follow from it."""

import dataclasses

import pytest
from absl import flags

from pipeline.writing import settings
from pipeline.writing.settings import WriteConfig

NOT_FLAGS = {"label_column_required", "show_progress"}
# dataset.json's "flags", in this order, as every manifest written so far has them.
RECORDED = ["input", "test_input", "image_column", "label_column", "shards", "val_shards",
            "test_shards", "image_size", "resize", "val_fraction", "folds", "seed",
            "compression", "max_reject_fraction"]
TFDS_RECORDED = ["tfds_data_dir", "tfds_image_key", "tfds_label_key"]


@pytest.fixture
def defined():
    flag_values = flags.FlagValues()
    settings.define_flags(flag_values)
    return flag_values


def test_every_field_but_two_is_a_flag_with_its_default_type_and_help(defined):
    fields = {field.name: field for field in dataclasses.fields(WriteConfig)}
    assert set(defined) == set(fields) - NOT_FLAGS
    for name in defined:
        flag, field = defined[name], fields[name]
        default = None if field.default is dataclasses.MISSING else field.default
        assert flag.default == default, name
        assert flag.help.endswith(field.metadata["help"]), name  # enums prefix their values
        if default is not None:
            assert type(flag.value) is type(default), name
    assert defined["resize"].parser.enum_values == ["squash", "center_crop", "pad"]
    assert defined["compression"].parser.enum_values == ["GZIP", "NONE", "ZLIB"]


def test_a_command_line_becomes_the_config_it_says(defined, tmp_path):
    defined(["write", "--input=data/leaves/train.csv", "--shards=8", "--val_fraction=0.2",
             "--resize=pad", "--overwrite", "--label_column=species", "--seed=3"])
    config = settings.config_from_flags(defined)
    assert config == WriteConfig(
        output_dir=config.output_dir, input="data/leaves/train.csv", shards=8,
        val_fraction=0.2, resize="pad", overwrite=True, label_column="species",
        label_column_required=True, seed=3)
    # No --output_dir: workspace/shards/<the input's folder>.
    assert config.output_dir.endswith("shards/leaves")
    defined(["write", f"--output_dir={tmp_path}"])
    assert settings.config_from_flags(defined).output_dir == str(tmp_path)


def test_label_column_is_required_only_when_given(defined):
    defined(["write"])
    assert not settings.config_from_flags(defined).label_column_required


def test_dataset_json_records_the_output_settings_in_their_order():
    recorded = settings.manifest_flags(WriteConfig(output_dir="out", input="a/train.csv"))
    assert list(recorded) == RECORDED
    assert recorded["input"] == "a/train.csv" and recorded["shards"] == 36
    # The bundled sample is recorded by name; a tfds: input adds its own settings.
    assert settings.manifest_flags(WriteConfig(output_dir="out"))["input"] == "sample:digits"
    tfds = settings.manifest_flags(WriteConfig(output_dir="out", input="tfds:cifar10",
                                               tfds_data_dir="/data"))
    assert list(tfds) == RECORDED + TFDS_RECORDED and tfds["tfds_data_dir"] == "/data"


def test_tfds_settings_lists_only_those_given():
    config = WriteConfig(output_dir="out", tfds_image_key="img")
    assert config.tfds_settings() == {"tfds_image_key": "img"}
