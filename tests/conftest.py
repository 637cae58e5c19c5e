"""Shared fixtures: small real image folders in the layouts users bring."""

import collections
import contextlib
import csv
import functools
import hashlib
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' own processes, and the scripts they start, with TensorFlow's INFO and WARNING
# off, as the commands start themselves (importing the library no longer sets it: see
# pipeline/startup.py). Tests of the commands' own default remove it from their env.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The smallest training run there is: one epoch of a 10-layer, 4-wide ResNet on 8x8 images.
TINY_RUN = dict(depth=10, width=4, stem="small", batch_size=3, warmup_epochs=0, epochs=1,
                verbose=0, augment=None)


def free_ports(n=1):
    """`n` distinct free loopback ports (held together while chosen, so never the same one)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]


def write_images(folder, count, *, classes=("cat", "dog", "owl"), size=(20, 14), fmt="png",
                 seed=0):
    """`folder/images/<i>.<fmt>` with random pixels; returns [(relative path, class name)]."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    rows = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        path = f"images/{i}.{fmt}"
        Image.fromarray(pixels).save(os.path.join(folder, path))
        rows.append((path, classes[i % len(classes)]))
    return rows


def train_tiny(data_dir, workdir, **settings):
    """train_and_evaluate with TINY_RUN (and `settings` over it); returns its metrics."""
    from pipeline import training

    return training.train_and_evaluate(data_dir=str(data_dir), workdir=str(workdir),
                                       **{**TINY_RUN, **settings})


# A two-epoch run of train.py that a kill and a rerun must end as if never stopped.
KILLED_RUN = dict(epochs=2, depth=10, width=4, stem="small", batch_size=8, warmup_epochs=0,
                  deterministic=True)
# Gin lines that SIGKILL a train.py run before global step `{step}` (train_hooks).
KILL_AT_STEP = ("import tests.training.train_hooks\n"
                "train_and_evaluate.extra_callbacks = [@SigkillAtStep()]\n"
                "SigkillAtStep.step = {step}\n")
# Gin lines that send a train.py run SIGINT, as Ctrl-C does, before global step `{step}`.
INTERRUPT_AT_STEP = ("import tests.training.train_hooks\n"
                     "train_and_evaluate.extra_callbacks = [@SigintAtStep()]\n"
                     "SigintAtStep.step = {step}\n")


def train_py(workdir, data_dir, extra="", **bindings):
    """`python train.py` in a subprocess, as a user runs it, into `workdir`: a gin file (beside
    it) of `extra` lines and train_and_evaluate's `bindings` on `data_dir`."""
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = f"{workdir}.gin"
    with open(config, "w", encoding="utf-8") as f:
        f.write(extra + "".join(f"train_and_evaluate.{key} = {value!r}\n" for key, value in
                                {"data_dir": str(data_dir), **bindings}.items()))
    return subprocess.run([sys.executable, "train.py", f"--config={config}",
                           f"--workdir={workdir}"], cwd=repo, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": repo,
                                            "TF_CPP_MIN_LOG_LEVEL": "2"})


# TensorFlow's C++ start-up lines (absl's notice, oneDNN's, the CPU's instructions), which the
# commands drop once the log level in force hides them (pipeline.startup).
TF_START_UP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|"
                         r"[IW]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\]|To enable the following)")


def console_lines(output: str) -> list[str]:
    """A command's output lines, TensorFlow's C++ start-up lines left out."""
    return [line for line in output.splitlines() if not TF_START_UP.match(line)]


def labels_by_id(data_dir, split, **options):
    """{file name without its extension: its labels as a list} of `split` (of
    options["fold"]'s view), read by make_dataset with `options`."""
    from pipeline import dataset

    batches = dataset.make_dataset(str(data_dir), split, batch_size=4, training=False,
                                   **options)
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in batches])
    ids = [os.path.splitext(os.path.basename(path))[0]
           for path in dataset.split_paths(str(data_dir), split, options.get("fold"))]
    return dict(zip(ids, labels.tolist()))


def assert_same_batches(got, expected):
    """Two lists of (images, labels) batches, equal batch for batch, byte for byte."""
    assert len(got) == len(expected)
    for (images, labels), (want_images, want_labels) in zip(got, expected):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_labeled_dataset(root, count, output, *, side=8, test_count=0, **config):
    """`count` random side x side images in `root/src` (a labeled train.csv; with `test_count`,
    that many more in an unlabeled test.csv), written by the real writer (one worker, no
    progress bar) into `root/<output>` with `config`; returns that dir."""
    from pipeline.writing.settings import WriteConfig
    from pipeline.writing.writer import write_dataset

    rows = write_images(str(root / "src"), count + test_count, size=(side, side))
    write_csv(root / "src" / "train.csv", ["image", "label"], rows[:count])
    if test_count:
        write_csv(root / "src" / "test.csv", ["image"], [(path,) for path, _ in rows[count:]])
        config["test_input"] = str(root / "src" / "test.csv")
    write_dataset(WriteConfig(
        output_dir=str(root / output), input=str(root / "src" / "train.csv"), image_size=side,
        num_workers=1, show_progress=False, **config))
    return str(root / output)



def write_config(source, output_dir, **overrides):
    """A WriteConfig as the writer's tests build one: `source` (a CSV, a folder tree or a tfds:
    spec) into `output_dir`, one worker and no progress bar (the output never depends on
    either), `overrides` over these and the writer's defaults. A test module binds its own
    settings once: `_config = functools.partial(write_config, image_size=6, shards=1)`."""
    from pipeline.writing.settings import WriteConfig

    return WriteConfig(**{**dict(output_dir=str(output_dir), input=str(source), num_workers=1,
                                 show_progress=False), **overrides})


def folder_config(folder, output_dir=None, *, test=True, **overrides):
    """write_config of a Kaggle-style `folder`: its train.csv and (with `test`) its test.csv,
    into `output_dir` (default: `folder`/out)."""
    if test:
        overrides = {"test_input": str(folder / "test.csv"), **overrides}
    return write_config(folder / "train.csv", folder / "out" if output_dir is None
                        else output_dir, **overrides)

@pytest.fixture
def kaggle_folder(tmp_path):
    """A classify-leaves style folder: images/, train.csv (image,label), test.csv (image)."""
    folder = tmp_path / "leaves"
    rows = write_images(str(folder), 48)
    train, test = rows[:40], rows[40:]
    write_csv(folder / "train.csv", ["image", "label"], train)
    write_csv(folder / "test.csv", ["image"], [(p,) for p, _ in test])
    return folder


def pytest_collection_modifyitems(items):
    """The modules with the most slow tests first, each module's tests together and in their
    order. `make test` hands a module at a time to each of its processes (pytest-xdist's
    loadscope, so a module's fixtures are built once): the long modules start first and the
    short ones fill the end, and the processes finish together. In file order, one process
    waited 87 s of a 693 s run for the other's last trainings."""
    slow = collections.Counter(item.module.__name__ for item in items
                               if item.get_closest_marker("slow"))
    first = {}
    for position, item in enumerate(items):
        first.setdefault(item.module.__name__, position)
    items.sort(key=lambda item: (-slow[item.module.__name__], first[item.module.__name__]))


@pytest.fixture(autouse=True)
def op_determinism_off_after():
    """train_and_evaluate(deterministic=True) turns TensorFlow's op determinism on for its
    whole process, as a train.py run wants. In a test process it would stay on for the tests
    after it, where an unseeded random op (a TFDS shuffle) raises "Random ops require a seed":
    whether a test failed depended on which tests had shared its process before it."""
    yield
    framework_config = sys.modules.get("tensorflow.python.framework.config")
    if framework_config is not None and framework_config.is_op_determinism_enabled():
        framework_config.disable_op_determinism()


@pytest.fixture(autouse=True)
def isolated_workspace(tmp_path, monkeypatch):
    """Nothing a test writes by default lands in the repository's workspace/."""
    monkeypatch.setenv("PIPELINE_WORKSPACE", str(tmp_path / "workspace"))


def tree_digest(folder):
    """{relative path: sha256} of every file under `folder` (hidden ones included)."""
    digests = {}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


@pytest.fixture
def info_logs(caplog):
    """caplog with absl's INFO lines in it: a command run earlier in the session (absl's app)
    may have raised absl's verbosity, which drops them before logging sees them."""
    from absl import logging as absl_logging

    before = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    with caplog.at_level(logging.INFO):
        yield caplog
    absl_logging.set_verbosity(before)


@contextlib.contextmanager
def small_tmpfs(folder, size: str):
    """A tmpfs of `size` (mount's syntax: "1m", "150k") mounted at `folder` (created), root
    only (the test is skipped otherwise), unmounted after."""
    os.makedirs(folder, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def read_records(output_dir, split):
    """[(CHW uint8 array, label, path)] of a split, shards in manifest order (any compression):
    the records as TensorFlow parses them, not as our reader does."""
    import tensorflow as tf

    from pipeline.core import schema

    manifest = schema.read_manifest(str(output_dir))
    dataset = tf.data.TFRecordDataset(
        manifest.shard_paths(str(output_dir), split),
        compression_type=schema.tf_compression_type(manifest.compression))
    records = []
    for serialized in dataset:
        parsed = tf.io.parse_single_example(serialized, schema.tf_feature_spec())
        image = np.frombuffer(parsed["image"].numpy(), np.uint8).reshape(manifest.image_shape)
        records.append((image, int(parsed["label"]), parsed["path"].numpy().decode()))
    return records


# The trainer's tests: a ResNet-10 of 4-32 channels on 8x8 images, seconds per run.
TRAIN_CLASSES = ("cat", "dog", "owl")
TINY_GIN = dict(depth=10, width=4, stem="small", batch_size=4, base_learning_rate=0.1,
                warmup_epochs=0, cache=None, augment="flip_lr")


def write_train_dataset(root):
    """40 labeled 8x8 images (2 train shards, 1 val) and 6 unlabeled test images."""
    from pipeline.writing.settings import WriteConfig
    from pipeline.writing.writer import write_dataset

    rows = write_images(str(root / "src"), 46, size=(8, 8), classes=TRAIN_CLASSES)
    write_csv(root / "src" / "train.csv", ["image", "label"], rows[:40])
    # The test CSV lists images out of numeric order: predictions must keep the CSV's order.
    test_rows = [(path,) for path, _ in reversed(rows[40:])]
    write_csv(root / "src" / "test.csv", ["image"], test_rows)
    write_dataset(WriteConfig(
        output_dir=str(root / "shards"), input=str(root / "src" / "train.csv"),
        test_input=str(root / "src" / "test.csv"), image_size=8, shards=2, val_shards=1,
        test_shards=1, val_fraction=0.25, num_workers=1, show_progress=False))
    return str(root / "shards")


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory):
    """write_train_dataset's dataset, written once per test run (per worker process): for
    the trainer tests, which only read it (each run gets its own workdir)."""
    return write_train_dataset(tmp_path_factory.mktemp("train"))


@functools.cache
def command_help(command: str, flag: str = "--helpfull") -> subprocess.CompletedProcess:
    """`python -m pipeline.<command> <flag>` (`train.py <flag>` for "train.py"), run as a
    user's shell runs it: from a folder of its own, without PYTHONPATH or a TensorFlow log
    level. Once per test process: several tests read one command's help (its flags, its
    usage, its layout), and each run of a trainer command imports TensorFlow (~4 s)."""
    args = [os.path.join(REPO_ROOT, "train.py")] if command == "train.py" else [
        "-m", f"pipeline.{command}"]
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    with tempfile.TemporaryDirectory(prefix="help-") as folder:
        env["PIPELINE_WORKSPACE"] = os.path.join(folder, "workspace")
        return subprocess.run([sys.executable, *args, flag], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=300)


def run_in_repo(command, **kwargs):
    """`command` in the repository; `env` adds to the environment (a None value removes)."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
           **kwargs.pop("env", {})}
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 600), env=env, **kwargs)


def tiny_gin_file(path, data_dir, epochs, extra=""):
    """A gin file of a TINY_GIN run of `epochs` on `data_dir`, `extra` lines first."""
    bindings = "\n".join(f"train_and_evaluate.{key} = {value!r}"
                         for key, value in TINY_GIN.items())
    path.write_text(f"{extra}\ntrain_and_evaluate.data_dir = {data_dir!r}\n"
                    f"train_and_evaluate.epochs = {epochs}\n{bindings}\n")
    return str(path)


def count_read_plans(monkeypatch):
    """A Counter of pipeline.dataset's plan_read calls by split, counted through every module
    a caller looks it up in (the spy replaces the name in each module that holds it)."""
    import sys

    planned = collections.Counter()
    for module in [module for name, module in sys.modules.items()
                   if name.split(".")[0] == "pipeline" and module is not None]:
        original = getattr(module, "plan_read", None)
        if not callable(original):
            continue

        def counted(data_dir, split, *args, _original=original, **kwargs):
            planned[split] += 1
            return _original(data_dir, split, *args, **kwargs)

        monkeypatch.setattr(module, "plan_read", counted)
    return planned
