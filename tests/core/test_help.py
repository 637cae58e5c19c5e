"""--help and --helpfull: the command's own flags first, grouped; absl's after; exit 0."""

import pytest

from conftest import command_help
from pipeline import cli, errors
from pipeline.writing import settings


def test_write_helpfull_lists_its_flags_by_group_before_absls():
    result = command_help("write", "--helpfull")
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    titles = [title for title, _ in settings.flag_groups()]
    positions = [text.index(f"\n{title}:\n") for title in titles]
    assert positions == sorted(positions)  # input, output, image, ... TFDS last
    assert titles[0].startswith("input") and titles[-1].startswith("TFDS")
    absl_start = text.index("\nabsl.logging:\n")
    for field in settings.fields(flag=True):
        flag = f"--[no]{field.name}:" if isinstance(field.default, bool) else f"--{field.name}:"
        assert text.count(f"  {flag}") == 1, field.name
        assert text.index(f"  {flag}") < absl_start, field.name
    # A group lists its flags in field order, not alphabetically: input before image_column.
    assert text.index("  --input:") < text.index("  --image_column:")
    assert "  --verbosity:" in text[absl_start:]
    # The exit codes, from the one table of them (pipeline.errors), before absl's flags.
    assert 0 < text.index(errors.exit_code_table()) < absl_start


@pytest.mark.parametrize("command", ["train.py", "profile"])
@pytest.mark.slow
def test_every_command_puts_its_flags_first_and_help_is_short(command):
    full = command_help(command, "--helpfull")
    short = command_help(command, "--help")
    assert full.returncode == 0 and short.returncode == 0, full.stderr[-2000:]
    first_own = "  --config:" if command == "train.py" else "  --data_dir:"
    assert full.stdout.index(first_own) < full.stdout.index("  --verbosity:")
    assert first_own in short.stdout and "  --verbosity:" not in short.stdout
    assert full.stderr == short.stderr == ""  # no TensorFlow start-up lines either


@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
@pytest.mark.slow
def test_train_py_help_lists_the_trainers_parameters_and_defaults(flag):
    import inspect

    from pipeline.training import train_and_evaluate

    result = command_help("train.py", flag)
    assert result.returncode == 0, result.stderr[-2000:]
    parameters = inspect.signature(train_and_evaluate).parameters
    assert len(parameters) > 40  # the wrapper (one trainer per workdir) shows the real ones
    for name, parameter in parameters.items():
        if name in ("workdir", "before_training"):  # train.py's own
            assert f"  {name} " not in result.stdout, name
        elif parameter.default is inspect.Parameter.empty:
            assert f"\n  {name} (required)\n" in result.stdout, name
        else:
            assert f"\n  {name} = {parameter.default!r}\n" in result.stdout, name
    assert '--gin_bindings="train_and_evaluate.NAME=VALUE"' in result.stdout
    assert result.stdout.index("  data_dir (required)") < result.stdout.index("  --config:")


def test_help_requests_stop_at_the_end_of_the_flags():
    assert cli.help_request(["--input=x", "--helpfull"]) == "--helpfull"
    assert cli.help_request(["-h"]) == "-h"
    assert cli.help_request(["--", "--help"]) is None
    assert cli.help_request(["--input=--help"]) is None
