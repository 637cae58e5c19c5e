"""TensorFlow's start-up lines kept off the console whenever the log level hides them.

TensorFlow 2.21 logs through Abseil's C++ logging. TF_CPP_MIN_LOG_LEVEL silences most of it,
but not what its libraries log while they load, before `absl::InitializeLog()`: that goes to
stderr whatever the level says (here: "oneDNN custom operations are on ..." twice, each after
"WARNING: All log messages before absl::InitializeLog() is called ..."), 4 lines before any
command says a word. So the first `import tensorflow` runs with file descriptor 2 pointed at a
temporary file, and afterwards every captured line that is not a C++ INFO or WARNING message
is written to stderr as it came: an error stays visible.

`quiet_tensorflow_start` decides, once per process (each command module calls it first, through
`quiet_command(__name__)`; importing the package never does): an unset
TF_CPP_MIN_LOG_LEVEL becomes 2 (INFO and WARNING off), and whenever the level in force is 2 or
more, whether the user set it (a common line in Kaggle notebooks) or this did, the start-up
lines that level hides are dropped too. A level under 2 (or one TensorFlow would not read as
a number) is the user's: TensorFlow prints what it prints. A process that imported
TensorFlow first is left as it is.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# Abseil's C++ line prefix for INFO and WARNING ("I0000 00:00:1796226886.190520  17903
# port.cc:153] ..."), and its notice that logging is not initialised yet.
QUIET_LINE = re.compile(rb"([IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [^ ]+:\d+\] |"
                        rb"WARNING: All log messages before absl::InitializeLog\(\))")


LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# TensorFlow's C++ levels: 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL; "2" shows errors only.
DEFAULT_LEVEL = "2"
HIDES_INFO_AND_WARNING = 2


def quiet_command(name: str) -> None:
    """What a command module calls first with its `__name__`: run as a command (`python -m
    pipeline.predict`, `python train.py`), TensorFlow's start is quieted; imported (a test, a
    notebook), nothing changes."""
    if name == "__main__":
        quiet_tensorflow_start()


def quiet_tensorflow_start(environ=os.environ) -> bool:
    """Set the default level when none is set, and drop the start-up lines the level in force
    hides; whether they will be dropped."""
    environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)
    if not hides_info_and_warnings(environ[LEVEL_VARIABLE]):
        return False
    if "tensorflow" not in sys.modules:
        quiet_import_of("tensorflow")
    return True


def hides_info_and_warnings(level: str) -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL=`level` hides C++ INFO and WARNING messages."""
    try:
        return int(level.strip()) >= HIDES_INFO_AND_WARNING
    except ValueError:  # not a level TensorFlow reads: the user's to keep
        return False


def quiet_import_of(module_name: str) -> None:
    """The next import of `module_name` (a top-level package) runs with its C++ INFO and
    WARNING lines dropped (see the module doc); once, however often it is asked."""
    if not any(isinstance(finder, _QuietFinder) and finder.module_name == module_name
               for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder(module_name))


class _QuietFinder(importlib.abc.MetaPathFinder):
    def __init__(self, module_name: str):
        self.module_name = module_name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)  # once: finding the real spec must not come back here
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """The module's own loader, its execution under `filtered_stderr`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # is_package, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


@contextlib.contextmanager
def filtered_stderr():
    """File descriptor 2 into a temporary file for the block; then its lines, less the
    QUIET_LINE ones, onto the real stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if not QUIET_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))
