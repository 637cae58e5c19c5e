"""TensorFlow's start-up lines: C++ INFO and WARNING dropped from its import, the rest kept."""

import os
import subprocess
import sys

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


def _stderr_of_importing_tensorflow(env):
    result = subprocess.run([sys.executable, "-c", "import pipeline, tensorflow"],
                            cwd=REPO_ROOT, env={**env, "PYTHONPATH": REPO_ROOT},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def test_tensorflow_starts_quietly_unless_the_user_chose_a_level():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    assert _stderr_of_importing_tensorflow(env) == ""
    # A level the user set is theirs: TensorFlow prints what it prints at that level.
    chosen = _stderr_of_importing_tensorflow({**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "InitializeLog" in chosen, chosen
