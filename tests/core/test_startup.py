"""TensorFlow's start-up lines: C++ INFO and WARNING dropped from its import whenever the level
in force hides them (the user's TF_CPP_MIN_LOG_LEVEL>=2 or the commands' default), the rest kept."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from pipeline import startup

LOADING = (b"WARNING: All log messages before absl::InitializeLog() is called are written to "
           b"STDERR\n"
           b"I0000 00:00:1796226886.190520   17903 port.cc:153] oneDNN custom operations are on.\n"
           b"W0000 00:00:1796226886.190521   17903 gpu_device.cc:2341] Cannot dlopen some GPU.\n"
           b"E0000 00:00:1796226886.190522   17903 cuda_dnn.cc:8310] Unable to register cuDNN.\n"
           b"a Python warning printed while importing\n")


def test_the_import_keeps_errors_and_drops_info_and_warnings(capfd):
    with startup.filtered_stderr():
        os.write(2, LOADING)
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "E0000 00:00:1796226886.190522   17903 cuda_dnn.cc:8310] Unable to register cuDNN.",
        "a Python warning printed while importing"]


def _stderr_of(command, level):
    """stderr of `python <command>` from the repository, TF_CPP_MIN_LOG_LEVEL=`level` (None:
    unset)."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    result = subprocess.run([sys.executable, *command], cwd=REPO_ROOT,
                            env={**env, "PYTHONPATH": REPO_ROOT}, capture_output=True,
                            text=True, timeout=120)
    return result.returncode, result.stderr


# A command that imports TensorFlow and stops at once: predict without its --workdir (exit 2,
# absl's two lines naming the flag).
PREDICT_WITHOUT_FLAGS = ("-m", "pipeline.predict")
CONSOLE_BUDGET = 2


@pytest.mark.parametrize("level", [None, "2", "3"])
@pytest.mark.slow
def test_a_level_that_hides_info_and_warnings_hides_the_start_up_lines_too(level):
    """Unset (the commands set 2) or set by the user, as Kaggle notebooks often do: the
    loading notices TensorFlow prints whatever the level are dropped as well."""
    code, err = _stderr_of(PREDICT_WITHOUT_FLAGS, level)
    assert code == 2 and "--workdir" in err, err
    assert "InitializeLog" not in err and "oneDNN" not in err, err
    assert len(err.splitlines()) <= CONSOLE_BUDGET, err


@pytest.mark.parametrize("level", ["0", "1", "verbose"])
@pytest.mark.slow
def test_a_level_that_shows_warnings_is_the_users(level):
    """A level that shows WARNING lines (or one TensorFlow cannot read): TensorFlow prints
    what it prints at that level."""
    code, err = _stderr_of(PREDICT_WITHOUT_FLAGS, level)
    assert code == 2 and "InitializeLog" in err, err


# What an import changes: environment variables added or altered, the import hooks after it,
# and whether file descriptor 2 is still the file it was.
IMPORT_PROBE = """
import json, os, sys
before, stderr = dict(os.environ), os.fstat(2).st_ino
import {module}
print(json.dumps({{
    "environ": {{k: v for k, v in os.environ.items() if before.get(k) != v}},
    "meta_path": [type(f).__module__ + "." + type(f).__qualname__ for f in sys.meta_path],
    "stderr": os.fstat(2).st_ino == stderr}}))
"""


@pytest.mark.slow
def test_importing_the_library_changes_the_process_as_tensorflow_alone_does():
    """A notebook's `from pipeline.dataset import make_dataset` sets no environment variable
    and leaves no import hook or redirected stderr: TensorFlow's own warnings (a missing
    GPU) stay visible there. Quieting them is the commands' business."""
    seen = {}
    for module in ("tensorflow", "pipeline.dataset", "pipeline.training"):
        code, out = _stdout_of(("-c", IMPORT_PROBE.format(module=module)))
        assert code == 0, out
        seen[module] = json.loads(out.strip().splitlines()[-1])
    assert seen["pipeline.dataset"] == seen["pipeline.training"] == seen["tensorflow"]
    assert "TF_CPP_MIN_LOG_LEVEL" not in seen["pipeline.dataset"]["environ"]
    assert seen["tensorflow"]["stderr"]


def _stdout_of(command):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, *command], cwd=REPO_ROOT,
                            env={**env, "PYTHONPATH": REPO_ROOT}, capture_output=True,
                            text=True, timeout=120)
    return result.returncode, result.stdout if result.returncode == 0 else result.stderr


def test_the_level_in_force_decides():
    assert [startup.hides_info_and_warnings(level) for level in
            ("0", "1", "2", " 3", "10", "", "two")] == [False, False, True, True, True,
                                                        False, False]
    environ = {}
    assert startup.quiet_tensorflow_start(environ) and environ == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    assert not startup.quiet_tensorflow_start(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "1"}  # the user's choice is kept
