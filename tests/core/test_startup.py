"""TensorFlow's start-up lines: C++ INFO and WARNING dropped from its import whenever the level
in force hides them (the user's TF_CPP_MIN_LOG_LEVEL>=2 or the commands' default), the rest kept."""

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


IMPORT = ("-c", "import pipeline, tensorflow")
# A command that imports TensorFlow and stops at once: predict without its --workdir (exit 2,
# absl's two lines naming the flag).
PREDICT_WITHOUT_FLAGS = ("-m", "pipeline.predict")
CONSOLE_BUDGET = 2


@pytest.mark.parametrize("level", [None, "2", "3"])
def test_a_level_that_hides_info_and_warnings_hides_the_start_up_lines_too(level):
    """Unset (the commands set 2) or set by the user, as Kaggle notebooks often do: the
    loading notices TensorFlow prints whatever the level are dropped as well."""
    code, err = _stderr_of(IMPORT, level)
    assert (code, err) == (0, "")
    code, err = _stderr_of(PREDICT_WITHOUT_FLAGS, level)
    assert code == 2 and "--workdir" in err, err
    assert "InitializeLog" not in err and "oneDNN" not in err, err
    assert len(err.splitlines()) <= CONSOLE_BUDGET, err


@pytest.mark.parametrize("level", ["0", "1", "verbose"])
def test_a_level_that_shows_warnings_is_the_users(level):
    """A level that shows WARNING lines (or one TensorFlow cannot read): TensorFlow prints
    what it prints at that level."""
    code, err = _stderr_of(IMPORT, level)
    assert code == 0 and "InitializeLog" in err, err


def test_the_level_in_force_decides():
    assert [startup.hides_info_and_warnings(level) for level in
            ("0", "1", "2", " 3", "10", "", "two")] == [False, False, True, True, True,
                                                        False, False]
    environ = {}
    assert startup.quiet_tensorflow_start(environ) and environ == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    assert not startup.quiet_tensorflow_start(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "1"}  # the user's choice is kept
