"""One base error type and one way out: every user error is a PipelineError with its exit code,
and every command turns it into one line and that code, flag errors included."""

import ast
import importlib
import os
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest
from absl import logging

from conftest import REPO_ROOT
from pipeline import cli, errors

PACKAGE = pathlib.Path(REPO_ROOT) / "pipeline"
# Exceptions that never reach a user: each is caught where it is raised and turned into a
# record of the outcome (a rejected image, a source that cannot be sized, a bad record).
INTERNAL_SIGNALS = {"RejectedImage", "SourceUnavailable", "_BadRecord", "DamagedRecord",
                    "_Located"}  # training.weights: where Keras would fetch from


def _classes_and_exit_constants():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                yield path, node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.startswith("EXIT_"):
                        yield path, target


def test_exit_codes_live_in_errors_only():
    defined = [f"{path.relative_to(PACKAGE)}: {node.id}"
               for path, node in _classes_and_exit_constants()
               if isinstance(node, ast.Name) and path.name != "errors.py"]
    assert not defined, defined


def _exit_constants():
    return {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}


def test_the_exit_code_table_is_the_constants():
    # One row per constant, in errors.py's docstring (which --help shows) and in the README.
    table = errors.exit_code_table()
    rows = re.findall(r"^    (\d+) +(EXIT_\w+) ", table, re.M)
    assert {name: int(code) for code, name in rows} == _exit_constants(), table
    assert len(rows) == len(_exit_constants())
    readme = (pathlib.Path(REPO_ROOT) / "README.md").read_text(encoding="utf-8")
    readme_rows = re.findall(r"^\| (\d+) \| `(EXIT_\w+)` \|", readme, re.M)
    assert {name: int(code) for code, name in readme_rows} == _exit_constants(), readme_rows
    assert len(readme_rows) == len(_exit_constants())


def _literal_exits(path):
    """Where `path` exits with a number instead of an EXIT_ constant: sys.exit(2),
    SystemExit(1), os._exit(3), `exit_code = 2`, or `return 1` from a `main`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "sys.exit", "exit", "SystemExit", "os._exit", "quit"):
            values = node.args
        elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "exit_code"
                for target in node.targets):
            values = [node.value]
        elif isinstance(node, ast.FunctionDef) and node.name == "main":
            values = [inner.value for inner in ast.walk(node)
                      if isinstance(inner, ast.Return) and inner.value is not None]
        else:
            continue
        for value in values:
            if isinstance(value, ast.Constant) and isinstance(value.value, int):
                yield f"{path.relative_to(REPO_ROOT)}:{value.lineno}: {ast.unparse(node)[:60]}"


def test_every_exit_uses_the_constants():
    sources = [*sorted(PACKAGE.rglob("*.py")), pathlib.Path(REPO_ROOT) / "train.py"]
    literal = [line for path in sources if path.name != "errors.py"
               for line in _literal_exits(path)]
    assert not literal, literal


def test_every_error_class_derives_from_pipeline_error():
    defined = {}
    for module_info in pkgutil.walk_packages([str(PACKAGE)], prefix="pipeline."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, Exception)
                    and value.__module__ == module.__name__):
                defined[name] = value
    assert len(defined) >= 15, sorted(defined)  # every module was found and imported
    for name, cls in sorted(defined.items()):
        if name in INTERNAL_SIGNALS:
            assert not issubclass(cls, errors.PipelineError), name
            continue
        assert issubclass(cls, errors.PipelineError), f"{cls.__module__}.{name}"
        assert cls.exit_code in (errors.EXIT_FAILED, errors.EXIT_USAGE, errors.EXIT_IO,
                                 errors.EXIT_INTERRUPTED), cls


def test_exit_code_of_maps_errors_and_keeps_bugs(caplog):
    class Refused(errors.PipelineError):
        exit_code = errors.EXIT_FAILED

    def refuse():
        raise Refused("--shards=36 but only 20 images; use --shards<=20")

    with caplog.at_level(logging.ERROR):
        assert cli.exit_code_of(refuse) == errors.EXIT_FAILED
    assert caplog.text.count("use --shards<=20") == 1
    assert cli.exit_code_of(lambda: None) == errors.EXIT_OK
    assert cli.exit_code_of(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli.exit_code_of(lambda: 1 / 0)


def test_ctrl_c_is_one_line_and_exit_130(caplog):
    def interrupted():
        raise KeyboardInterrupt

    with caplog.at_level(logging.ERROR):
        assert cli.exit_code_of(interrupted) == errors.EXIT_INTERRUPTED == 130
    assert [record.getMessage() for record in caplog.records] == [
        "interrupted (Ctrl-C) before the command finished"]


def test_argument_checks_name_the_fix():
    cli.no_arguments(["prog"])
    with pytest.raises(errors.UsageError, match=r"unexpected arguments \['extra'\]"):
        cli.no_arguments(["prog", "extra"])
    assert cli.one_argument(["prog", "dir"], "DATA_DIR", "prog DIR") == "dir"
    with pytest.raises(errors.UsageError, match="give exactly one DATA_DIR, got \\[\\]: prog DIR"):
        cli.one_argument(["prog"], "DATA_DIR", "prog DIR")
    # --data_dir, the name train.py, predict and profile use, works where DIR is positional.
    assert cli.one_argument(["prog"], "DATA_DIR", "prog DIR", ("data_dir", "d")) == "d"
    assert cli.one_argument(["prog", "d"], "DATA_DIR", "prog DIR", ("data_dir", None)) == "d"
    with pytest.raises(errors.UsageError, match="as an argument or as --data_dir"):
        cli.one_argument(["prog", "e"], "DATA_DIR", "prog DIR", ("data_dir", "d"))


def _write(tmp_path, *args):
    env = dict(os.environ, PIPELINE_WORKSPACE=str(tmp_path / "workspace"))
    return subprocess.run([sys.executable, "-m", "pipeline.write", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, says", [
    (["--shards=abc"], "Flags parsing error"),  # absl's own parser would exit 1
    (["stray_word"], "unexpected arguments ['stray_word']"),
    (["--input=no/such.csv"], "does not exist"),
])
def test_a_user_error_is_one_line_and_exit_2(tmp_path, args, says):
    result = _write(tmp_path, *args)
    assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
    assert says in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_importing_a_command_defines_no_flags():
    # In a process of its own: the bench's tests define its flags in this one.
    probe = ("from absl import flags\n"
             "import pipeline.write, pipeline.verify, pipeline.inspect, pipeline.profile\n"
             "import pipeline.predict, pipeline.oof, pipeline.service, pipeline.bench\n"
             "print([m for m in flags.FLAGS.flags_by_module_dict() if 'pipeline' in m])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_a_file_where_a_directory_goes_is_one_line_naming_it(tmp_path, caplog):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")

    def open_below_it():
        open(a_file / "dataset.json")

    with caplog.at_level(logging.ERROR):
        assert cli.exit_code_of(open_below_it) == errors.EXIT_USAGE
    assert f"{a_file} is a file, where a directory is expected" in caplog.text


# Every command, given a file where its directory goes (or a directory for its file).
WRONG_KIND = [
    (["-m", "pipeline.write", "--output_dir={file}"], "is a file"),
    (["-m", "pipeline.write", "--output_dir={file}/sub"], "is a file, where a directory"),
    (["-m", "pipeline.verify", "{file}"], "is a file, not a dataset directory"),
    (["-m", "pipeline.inspect", "{file}"], "is a file, not a dataset directory"),
    (["-m", "pipeline.predict", "--workdir={file}"], "is a file, not a directory"),
    (["train.py", "--config=configs/smoke.gin", "--workdir={file}"], "is a file, not a dir"),
    (["train.py", "--config=configs"], "--config=configs is a directory"),
]


@pytest.mark.slow
def test_every_command_says_a_path_is_of_the_wrong_kind_in_one_line(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    env = dict(os.environ, PIPELINE_WORKSPACE=str(tmp_path / "workspace"),
               TF_CPP_MIN_LOG_LEVEL="3")
    running = [subprocess.Popen([sys.executable, *(a.format(file=a_file) for a in args)],
                                cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
               for args, _ in WRONG_KIND]
    for process, (args, says) in zip(running, WRONG_KIND):
        stderr = process.communicate(timeout=300)[1]
        assert process.returncode == errors.EXIT_USAGE, (args, stderr[-2000:])
        assert says in stderr and "Traceback" not in stderr, (args, stderr[-2000:])
        assert "In call to configurable" not in stderr, (args, stderr[-2000:])
