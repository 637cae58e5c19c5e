"""Every example in a docstring of pipeline/ and train.py runs, so that none can lie.

An example is an indented block after a blank line in a module's, class's or function's
docstring. Each is one of:

    doctest  `>>>` lines, run by doctest in their module's namespace
    python   code, run in its module's namespace, in a folder holding what the examples name
             (data/train.csv, workspace/shards/digits, a 3-fold workspace/shards/leaves), with
             GIVENS for the names the prose around an example supplies (a manifest, a batch)
             and STAND_INS for the few calls no test can make in seconds (weights from the
             network, servers on fixed ports, a training run): their arguments must bind to
             the real signature, and nothing else of them runs
    command  `python -m pipeline.X ...` or `python train.py ...` lines: every flag is one the
             command defines (its --helpfull lists it)
    text     anything that is no code: a table, a file layout, a command's output

A block that starts like code (an import, a call, an assignment) but does not parse fails, so
an example written in a form this test does not run fails too, rather than going unchecked.
"""

import ast
import dataclasses
import doctest
import importlib
import inspect
import pathlib
import re
import shlex
import shutil
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest

from conftest import REPO_ROOT, command_help, write_config, write_csv, write_images

SOURCES = sorted((pathlib.Path(REPO_ROOT) / "pipeline").rglob("*.py")) + [
    pathlib.Path(REPO_ROOT) / "train.py"]
# The first line of a block that is meant as code: an import, a decorator, `a, b = ...`, a
# call, a `with` or `for` statement.
LOOKS_LIKE_CODE = re.compile(r"^(from |import |@|with |for |[A-Za-z_][\w.]*(, [\w.]+)* = |"
                             r"[A-Za-z_][\w.]*\()")
# Lines that run one of our commands; `tensorboard` is not ours, and is left to TensorBoard.
COMMAND = re.compile(r"^python (-m (pipeline\.\w+)|train\.py)\b")
OTHER_PROGRAMS = ("tensorboard ",)
# Calls an example may show but a test cannot make in seconds, and why.
STAND_INS = {
    "pipeline.dataset.service.start_dispatcher": "a server on a fixed port",
    "pipeline.dataset.service.start_worker": "a server, and a dispatcher at HOST",
    "pipeline.training.loop.train_and_evaluate": "a training run (tests/training run it small)",
    "pipeline.training.backbones.build_application": "ImageNet weights from the network",
    "pipeline.training.weights.check_starting_weights": "ImageNet weights from the network",
    "pipeline.tools.profiling.profile_input": "a profiler trace of a ResNet's steps",
    "pipeline.training.predict.predict_split": "a trained run",
    "pipeline.writing.tfds_staging.load_tfds_listing": "a prepared TFDS dataset (cifar10)",
}


@dataclasses.dataclass(frozen=True)
class Example:
    path: pathlib.Path
    owner: str  # the module, class or function whose docstring holds it
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.owner}"

    @property
    def module(self) -> str:
        relative = self.path.relative_to(REPO_ROOT).with_suffix("")
        parts = [part for part in relative.parts if part != "__init__"]
        return ".".join(parts)


def docstring_blocks(doc: str) -> list[str]:
    """The indented blocks of a (cleaned) docstring, each dedented."""
    blocks, block, previous_blank = [], None, True
    for line in doc.splitlines() + [""]:
        if line.startswith("    ") and (block is not None or previous_blank):
            block = (block or []) + [line]
        elif block is not None:  # a blank line, or prose, ends it
            blocks.append(textwrap.dedent("\n".join(block)))
            block = None
        previous_blank = not line.strip()
    return blocks


def examples() -> list[Example]:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node, clean=True)
            owner = getattr(node, "name", "<module>")
            found += [Example(path, owner, block) for block in docstring_blocks(doc or "")]
    return found


def command_lines(text: str) -> list[str]:
    """The logical lines of a block (backslash continuations joined), comments left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def kind_of(text: str) -> str:
    if ">>>" in text:
        return "doctest"
    lines = command_lines(text)
    if lines and all(COMMAND.match(line) or line.startswith(OTHER_PROGRAMS) for line in lines):
        return "command"
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return "broken" if LOOKS_LIKE_CODE.match(lines[0] if lines else "") else "text"
    runs = (ast.Call, ast.Import, ast.ImportFrom, ast.Assign, ast.With, ast.FunctionDef)
    return "python" if any(isinstance(node, runs) for node in ast.walk(tree)) else "text"


ALL = examples()
RUN = [example for example in ALL if kind_of(example.text) in ("python", "doctest")]
COMMANDS = [example for example in ALL if kind_of(example.text) == "command"]


def test_every_example_is_in_a_form_this_test_runs():
    kinds = {example.where + ": " + example.text.splitlines()[0]: kind_of(example.text)
             for example in ALL}
    broken = [where for where, kind in kinds.items() if kind == "broken"]
    assert not broken, ("these look like code but do not parse; make them run (or make them "
                        f"`>>>` doctests): {broken}")
    # Found at all: the examples the docs are known to hold.
    assert len(RUN) >= 20 and len(COMMANDS) >= 10, kinds


def test_an_example_that_does_not_parse_is_caught():
    assert kind_of("metrics = train_and_evaluate(data_dir='d', epochs=3)") == "python"
    assert kind_of("metrics = train_and_evaluate(depth=10, ...)") == "broken"
    assert kind_of("format_bytes(27_100_000)   -> '25.8 MiB'") == "broken"
    assert kind_of(">>> format_bytes(27_100_000)\n'25.8 MiB'") == "doctest"
    assert kind_of("schema.py      what a dataset is") == "text"
    assert kind_of("python -m pipeline.verify DIR  # all\\\n    --split=x") == "command"
    assert kind_of("python -m pipeline.verify DIR\nls DIR") == "text"


@pytest.fixture(scope="session")
def example_folder(tmp_path_factory):
    """What the examples name: data/train.csv (and data/leaves/), a dataset at
    workspace/shards/digits and a 3-fold one at workspace/shards/leaves, all small. The CSVs
    hold 48 images: the writer's examples keep its defaults, 36 train shards among them."""
    root = tmp_path_factory.mktemp("examples")
    for folder in (root / "data", root / "data" / "leaves"):
        rows = write_images(str(folder), 48, size=(8, 8))
        write_csv(folder / "train.csv", ["image", "label"], rows)
    from pipeline.writing.writer import write_dataset

    shards = root / "workspace" / "shards"
    # digits: batches of 256 in the reader's example, so 300 images (8x8: still a blink).
    digits = root / "digits-source"
    write_csv(digits / "train.csv", ["image", "label"],
              write_images(str(digits), 300, size=(8, 8)))
    write_dataset(write_config(digits / "train.csv", shards / "digits", image_size=8,
                               shards=2, val_fraction=0.1))
    write_dataset(write_config(root / "data" / "train.csv", shards / "leaves", image_size=8,
                               shards=3, folds=3))
    return root


def givens(example_folder) -> dict:
    """The names examples take from their surrounding prose."""
    import tensorflow as tf

    from pipeline import augment
    from pipeline.core import files, schema
    from pipeline.training import interrupt, weights
    from pipeline.writing import writer

    rng = np.random.default_rng(0)
    return dict(
        manifest=schema.read_manifest(str(example_folder / "workspace" / "shards" / "digits")),
        images=tf.constant(rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)),
        labels=tf.constant([0, 1], tf.int64), seed=tf.constant([0, 7], tf.int64), g=0,
        path="submission.csv", augment=augment, files=files, interrupt=interrupt,
        weights=weights, writer=writer,
        # interrupt's example: what surrounds model.fit in the trainer.
        saver=mock.Mock(), model=mock.Mock(), dataset=mock.Mock(), run_callbacks=[])


def _stand_in(dotted: str):
    module_name, name = dotted.rsplit(".", 1)
    real = getattr(importlib.import_module(module_name), name)

    def check_arguments(*args, **kwargs):
        inspect.signature(real).bind(*args, **kwargs)  # TypeError when the example is wrong
        return mock.MagicMock(name=f"{name}(...)")

    return real, check_arguments


@pytest.fixture
def stand_ins(monkeypatch):
    """STAND_INS replaced wherever a pipeline module holds them (`from x import f` too)."""
    for dotted in STAND_INS:
        real, check = _stand_in(dotted)
        for module in [m for n, m in sys.modules.items() if n.startswith("pipeline")]:
            for attribute, value in list(vars(module).items()):
                if value is real:
                    monkeypatch.setattr(module, attribute, check)


@pytest.mark.parametrize("example", RUN, ids=[example.where for example in RUN])
def test_the_example_runs(example, example_folder, tmp_path, monkeypatch, stand_ins):
    folder = tmp_path / "cwd"
    shutil.copytree(example_folder, folder)
    if "write_dataset" in example.text:  # it writes workspace/shards/leaves itself
        shutil.rmtree(folder / "workspace" / "shards" / "leaves")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PIPELINE_WORKSPACE", str(folder / "workspace"))
    from pipeline.augment import registry

    for table in ("OPS", "LABEL_OPS", "NO_XLA_OPS"):  # an example may register an op
        monkeypatch.setattr(registry, table, type(getattr(registry, table))(
            getattr(registry, table)))
    module = importlib.import_module(example.module)
    namespace = {**givens(example_folder), **vars(module), "__name__": "docstring_example"}
    if kind_of(example.text) == "doctest":
        test = doctest.DocTestParser().get_doctest(example.text, namespace, example.where,
                                                   str(example.path), 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.failures == 0, example.text
    else:
        exec(compile(example.text, example.where, "exec"), namespace)  # noqa: S102


def _flags_of(command: str) -> set[str]:
    """The flags `python -m <command>` (or train.py) defines, from its --helpfull."""
    result = command_help(command.removeprefix("pipeline."))
    assert result.returncode == 0, result.stderr[-2000:]
    names = set(re.findall(r"^ +--(?:\[no\])?(\w+):", result.stdout, re.M))
    booleans = set(re.findall(r"^ +--\[no\](\w+):", result.stdout, re.M))
    return names | {f"no{name}" for name in booleans} | {"help", "helpfull"}


@pytest.mark.slow
def test_every_example_command_uses_flags_its_command_defines():
    wanted = {}
    for example in COMMANDS:
        for line in command_lines(example.text):
            match = COMMAND.match(line)
            if match:
                command = match.group(2) or "train.py"
                wanted.setdefault(command, []).append((example.where, line))
    unknown = []
    for command, lines in sorted(wanted.items()):
        defined = _flags_of(command)
        for where, line in lines:
            for word in shlex.split(line, comments=True):
                flag = re.match(r"^\[?--(\w+)", word)
                if flag and flag.group(1) not in defined:
                    unknown.append(f"{where}: {line}: --{flag.group(1)}")
    assert not unknown, "\n".join(unknown)
