"""The trainer's settings objects and train_and_evaluate's flat arguments they are built from:
one name and one default per option, whichever side a change is made on."""

import dataclasses
import inspect

import pytest

from pipeline.training import train_and_evaluate
from pipeline.training.settings import ModelSettings, OptimizerSettings, from_arguments

# Fields the run computes rather than takes from the argument of their name: the augmentation
# the model runs (only with augment_on_device), and what the image sizes make of the model.
DERIVED = {ModelSettings: {"augment", "any_size", "eval_resize"}, OptimizerSettings: set()}


@pytest.mark.parametrize("settings_type", list(DERIVED), ids=lambda t: t.__name__)
def test_every_settings_field_is_a_trainer_parameter_with_the_same_default(settings_type):
    parameters = inspect.signature(train_and_evaluate).parameters
    drifted = []
    for field in dataclasses.fields(settings_type):
        if field.name in DERIVED[settings_type]:
            continue
        if field.name not in parameters:
            drifted.append(f"{field.name}: no train_and_evaluate parameter of that name")
        elif parameters[field.name].default != field.default:
            drifted.append(f"{field.name}: {field.default!r} here, "
                           f"{parameters[field.name].default!r} in train_and_evaluate")
    assert not drifted, "\n".join(drifted)


def test_from_arguments_takes_the_fields_by_name_and_derived_values_win():
    arguments = dict(depth=18, width=8, seed=3, augment="flip_lr", epochs=5, data_dir="x")
    network = from_arguments(ModelSettings, arguments, augment=None, any_size=True)
    assert network == ModelSettings(depth=18, width=8, seed=3, augment=None, any_size=True)
    assert from_arguments(OptimizerSettings, arguments) == OptimizerSettings()
