"""The tree is the architecture: stages import only the stages before them, modules and
functions stay small, and every documented command starts (its --helpfull) from any folder.

The import rules are the ones pipeline/__init__.py's docstring states; this test reads every
module's imports (module-level and inside functions) and checks them against ALLOWED, so a
stage that reaches into a later one fails here rather than in a review.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, command_help

PACKAGE = pathlib.Path(REPO_ROOT) / "pipeline"
# Stage -> the stages (and shared modules) its modules may import.
BASE = {"errors", "cli"}
ALLOWED = {
    "errors": set(),
    "cli": {"errors"},
    "startup": set(),  # how TensorFlow starts (each command module calls it first)
    "core": BASE | {"core"},
    "writing": BASE | {"core", "writing"},
    "augment": BASE | {"augment"},
    "dataset": BASE | {"core", "augment", "dataset"},
    "training": BASE | {"core", "augment", "dataset", "training"},
    "tools": BASE | {"core", "writing", "augment", "dataset", "training", "tools"},
    "command": BASE | {"core", "writing", "augment", "dataset", "training", "tools",
                       "startup"},
    "root": set(),  # importing the package changes nothing (pipeline/startup.py)
}
COMMANDS = ("write", "verify", "inspect", "profile", "predict", "oof", "service",
            "bench")
# Stages whose modules must not import TensorFlow (or Keras) when they are imported: the
# writer's worker processes, and the checks verify and on_corrupt="skip" run in workers.
NO_TENSORFLOW_AT_IMPORT = ("core", "writing")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The two edges users and gin call with flat keyword arguments, one documented line each: their
# signatures and docstrings may run long, their bodies (checked below) may not.
LONG_SIGNATURES = {("dataset/reader.py", "make_dataset"),
                   ("training/loop.py", "train_and_evaluate")}


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def stage_of(dotted: str) -> str:
    """pipeline.core.schema -> core; pipeline.write -> command; pipeline -> root."""
    parts = dotted.split(".")
    if parts[0] != "pipeline":
        raise ValueError(dotted)
    if len(parts) == 1:
        return "root"
    if parts[1] in ALLOWED and parts[1] not in ("command", "root"):
        return parts[1]
    if parts[1] in COMMANDS:
        return "command"
    raise AssertionError(f"{dotted} is in no stage: add it to a stage package or to COMMANDS")


def dotted_name(path: pathlib.Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, top_level_only: bool = False):
    """The pipeline (and other) modules a module imports: `from pipeline import x` counts as
    pipeline.x, `from pipeline.core import schema` as pipeline.core.schema."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield f"{node.module}.{alias.name}" if node.module == "pipeline" else node.module


def test_stages_import_only_the_stages_before_them():
    wrong = []
    for path in modules():
        importer = dotted_name(path)
        stage = stage_of(importer)
        for target in imported_modules(ast.parse(path.read_text())):
            if not target.startswith("pipeline"):
                continue
            target_stage = stage_of(target)
            if target_stage == "command":
                if target != importer:
                    wrong.append(f"{importer} imports the command module {target}")
            elif target_stage != stage and target_stage not in ALLOWED[stage]:
                wrong.append(f"{importer} ({stage}) imports {target} ({target_stage})")
    assert not wrong, "\n".join(wrong)


def test_the_writer_and_the_format_never_import_tensorflow_when_imported():
    heavy = []
    for path in modules():
        if stage_of(dotted_name(path)) not in NO_TENSORFLOW_AT_IMPORT:
            continue
        for target in imported_modules(ast.parse(path.read_text()), top_level_only=True):
            if target.split(".")[0] in ("tensorflow", "keras", "tensorflow_datasets"):
                heavy.append(f"{dotted_name(path)} imports {target}")
    assert not heavy, "\n".join(heavy)


def test_every_package_docstring_names_each_of_its_modules():
    """A package's docstring is its map (what each module owns): a module it does not name is
    one a reader cannot find from there."""
    unnamed = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        text = ast.get_docstring(ast.parse(init.read_text())) or ""
        for child in sorted(init.parent.iterdir()):
            name = child.stem if child.suffix == ".py" else child.name
            is_module = child.suffix == ".py" or (child / "__init__.py").exists()
            if is_module and name != "__init__" and not re.search(rf"\b{name}\b", text):
                unnamed.append(f"{init.parent.relative_to(PACKAGE.parent)}: {child.name}")
    assert not unnamed, "\n".join(unnamed)


def test_modules_and_functions_stay_small():
    too_long = []
    for path in modules():
        source = path.read_text()
        name = path.relative_to(PACKAGE).as_posix()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = node.end_lineno - node.lineno + 1
            if (name, node.name) in LONG_SIGNATURES:
                lines = _body_lines(node)
            if lines > MAX_FUNCTION_LINES:
                too_long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


def _body_lines(function: ast.FunctionDef) -> int:
    """The lines of a function's body, its signature and docstring left out."""
    body = function.body
    if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and len(body) > 1):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1


def _outside_the_repository(tmp_path):
    """An environment as a user's shell has it: no PYTHONPATH, a folder of its own."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PIPELINE_WORKSPACE"] = str(tmp_path / "workspace")
    return env


@pytest.mark.parametrize("command", [*COMMANDS, "train.py"])
@pytest.mark.slow
def test_every_documented_command_runs_from_any_folder(command):
    result = command_help(command)  # from a folder of its own, no PYTHONPATH
    # An import failure would exit 1 with a traceback instead of the help.
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    usage = "python train.py" if command == "train.py" else f"python -m pipeline.{command}"
    assert usage in result.stdout, result.stdout[:2000]


def test_the_writer_verify_and_inspect_start_without_tensorflow(tmp_path):
    probe = ("import sys; import pipeline.write, pipeline.verify, pipeline.inspect; "
             "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path,
                            env=_outside_the_repository(tmp_path), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
