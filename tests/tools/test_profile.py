"""pipeline.profile: traces TensorBoard's Profile tab opens, our input-bound verdict, and
TensorBoard's own verdict on the same training steps."""

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from conftest import REPO_ROOT, write_labeled_dataset
from pipeline import augment, errors
from pipeline.tools import profiling
from pipeline.training import timing

SLOW_OP = "test_slow"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_labeled_dataset(tmp_path_factory.mktemp("profile"), 24, "shards", shards=2,
                                 val_fraction=0.0)


@pytest.fixture
def slow_augmentation():
    """An augmentation op that waits 0.3 s per batch, one batch at a time (as on one slow
    disk): an input pipeline far slower than the model, even on a loaded machine (at 0.1 s,
    a run beside another test's training measured 21%, TensorBoard 17%: "moderately"). One at a time, because tf.data's
    autotuning runs independent waits side by side until the input keeps up (one CI run
    measured 9% instead of 55%); waiting, not computing, because work that holds Python's
    lock or takes the model's cores is charged by TensorBoard to the step, not its input."""
    one_at_a_time = threading.Lock()

    def slow_read():
        with one_at_a_time:
            time.sleep(0.3)
        return 0

    @augment.register(SLOW_OP, xla=False)
    def get_slow():
        def _slow(images, labels, seed):
            done = tf.py_function(slow_read, [], tf.int32)
            with tf.control_dependencies([done]):
                return tf.identity(images), labels
        return _slow

    yield SLOW_OP
    augment.OPS.pop(SLOW_OP)
    augment.NO_XLA_OPS.discard(SLOW_OP)


@pytest.mark.slow
def test_reader_trace_is_its_own_run_with_no_training_steps(data_dir, tmp_path):
    result = profiling.profile_input(data_dir, str(tmp_path / "logs"), steps=3, batch_size=4)
    assert len(result.trace_files) == 1
    trace = result.trace_files[0]
    assert trace.endswith(".xplane.pb") and os.path.getsize(trace) > 0
    assert os.path.relpath(trace, tmp_path / "logs").startswith(
        os.path.join(profiling.READER_RUN, "plugins", "profile"))
    assert result.reader_images_per_second > 0 and result.input_wait_fraction is None
    # Reader batches are not steps: TensorBoard draws no (misleading) input-bound verdict.
    seen = profiling.tensorboard_verdict(result.trace_files)
    assert seen.category is None and "No step time measured" in seen.conclusion


@pytest.mark.parametrize("case", ["input-bound", "not input-bound"])
@pytest.mark.slow
def test_tensorboard_reads_the_training_steps_and_agrees_with_our_verdict(
        case, tmp_path, slow_augmentation):
    if case == "input-bound":  # tiny images and model, a slow augmentation
        data = write_labeled_dataset(tmp_path, 16, "shards", shards=2, val_fraction=0.0)
        options = dict(batch_size=4, depth=10, augment=slow_augmentation, cache=None)
    else:  # batches from memory into a ResNet-18 at 32x32
        data = write_labeled_dataset(tmp_path, 32, "shards", side=32, shards=2,
                                     val_fraction=0.0)
        options = dict(batch_size=16, depth=18, augment=None, cache="memory")
    result = profiling.profile_input(data, str(tmp_path / "logs"), steps=2, train_steps=10,
                                     **options)
    training = [path for path in result.trace_files
                if os.path.relpath(path, tmp_path / "logs").startswith(profiling.TRAINING_RUN)]
    assert len(training) == 1 and len(result.trace_files) == 2
    ours = timing.input_category(result.input_wait_fraction)
    theirs = profiling.tensorboard_verdict(training)
    assert theirs == result.tensorboard
    expected = timing.HIGHLY_BOUND if case == "input-bound" else timing.NOT_BOUND
    assert (ours, theirs.category) == (expected, expected), (
        result.input_wait_fraction, theirs.conclusion)
    assert result.verdict.startswith(f"{expected} input-bound")
    # The Overview page, the first a user sees, says the same.
    assert _overview_conclusion(training) == theirs.conclusion


def _overview_conclusion(trace_files):
    from xprof.convert import raw_to_tool_data
    data, _ = raw_to_tool_data.xspace_to_tool_data(trace_files, "overview_page", {})
    return next(table["p"]["input_conclusion"] for table in json.loads(data)
                if "input_conclusion" in (table.get("p") or {}))


def test_verdict_names_the_next_knob_in_tensorboards_words():
    assert timing.input_verdict(0.01).startswith("not input-bound")
    assert timing.input_verdict(0.1).startswith("moderately input-bound")
    bound = timing.input_verdict(0.6)
    assert bound.startswith("highly input-bound") and "augment_on_device=True" in bound
    assert "not measured" in timing.input_verdict(None)
    assert [timing.input_category(share) for share in (0.049, 0.05, 0.199, 0.2)] == [
        "not", "moderately", "moderately", "highly"]


def test_tensorboards_sentences_are_read_into_categories():
    def read(sentence):
        seen = profiling.verdict_of(f"Your program {sentence} of the total step time sampled")
        return seen.category, seen.input_percent
    assert read("is HIGHLY input-bound because 82.1%") == ("highly", 82.1)
    assert read("is MODERATELY input-bound because 7.0%") == ("moderately", 7.0)
    assert read("is NOT input-bound because only 0.2%") == ("not", 0.2)
    # Its number is the 'All Others' share, not the input's.
    assert read("is POTENTIALLY input-bound because 8.4%") == ("potentially", None)
    assert profiling.verdict_of("No step time measured. Therefore ...").category is None


def test_workspace_names_only_profile_tools_the_plugin_has(data_dir, tmp_path):
    result = profiling.profile_input(data_dir, str(tmp_path / "logs"), steps=2, batch_size=4)
    from xprof.convert import raw_to_tool_data
    tools = {name.rstrip("@^") for name in
             raw_to_tool_data.xspace_to_tool_names(list(result.trace_files))}
    with open(os.path.join(REPO_ROOT, "WORKSPACE.md"), encoding="utf-8") as f:
        text = f.read()
    named = set(re.findall(r"`(\w+_(?:viewer|page|analyzer|analysis|stats|profile))`", text))
    assert {"trace_viewer", "overview_page", "input_pipeline_analyzer"} <= named
    assert named <= tools, named - tools


@pytest.mark.slow
def test_cli_prints_the_trace_and_fails_clearly_without_a_dataset(data_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ok = subprocess.run([sys.executable, "-m", "pipeline.profile", f"--data_dir={data_dir}",
                         f"--logdir={tmp_path / 'cli'}", "--steps=2", "--batch_size=4"],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "img/s" in ok.stdout and ".xplane.pb" in ok.stdout
    assert "reader alone: 2 batches of 4" in ok.stderr  # the phase says what it does
    missing = subprocess.run([sys.executable, "-m", "pipeline.profile",
                              f"--data_dir={tmp_path / 'none'}", f"--logdir={tmp_path / 'x'}"],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == errors.EXIT_USAGE and "pipeline.write" in missing.stderr
