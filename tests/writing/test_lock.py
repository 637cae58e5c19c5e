"""One writer per output directory: a second writer is refused at once, naming the holder;
two writers released at one instant (other commands, or the same one) never mix their shards;
a dead writer's lock never blocks; tasks of one multi-task write run side by side."""

import functools
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, write_config, write_csv, write_images
from pipeline.core import integrity, schema
from pipeline.writing import lock
from pipeline.writing.writer import write_dataset

# Imports first, then waits for the same wall-clock instant as its twin, then writes.
RACER = ("import sys, time; from pipeline import cli, write; at = float(sys.argv.pop(1)); "
         "time.sleep(max(0.0, at - time.time())); cli.run(write.main, write.define_flags)")


@pytest.fixture
def source(tmp_path):
    rows = write_images(str(tmp_path / "src"), 24, size=(12, 12))
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows)
    return str(tmp_path / "src" / "train.csv")


_config = functools.partial(write_config, image_size=8, shards=4)


def test_a_held_directory_refuses_a_second_writer_naming_the_holder(source, tmp_path):
    out = tmp_path / "out"
    with lock.locked_output_dir(str(out)):
        lock.record_holder(str(out))
        with pytest.raises(lock.DirectoryLocked, match=f"being written by another writer "
                                                       f"\\(pid {os.getpid()} on "):
            write_dataset(_config(source, out))
    summary = write_dataset(_config(source, out))  # released: the write goes ahead
    assert summary.manifest.split("train").count > 0
    assert not os.path.exists(out / ".progress")  # nothing of the lock is left behind


def test_a_dead_writers_lock_never_blocks(source, tmp_path):
    out = tmp_path / "out"
    script = ("import sys, time; from pipeline.writing import lock\n"
              "with lock.locked_output_dir(sys.argv[1]):\n"
              "    lock.record_holder(sys.argv[1]); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": REPO_ROOT})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.DirectoryLocked, match=f"pid {holder.pid} "):
            write_dataset(_config(source, out))
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert write_dataset(_config(source, out)).manifest.split("train").count > 0


def _race(source, out, *flag_sets):
    """Start one `python -m pipeline.write` per flag set, all writing at one instant."""
    at = time.time() + 8  # after every racer's imports
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(at), f"--input={source}",
                                f"--output_dir={out}", "--shards=4", "--num_workers=1",
                                *flags], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE,
                               text=True) for flags in flag_sets]
    return [(racer.wait(timeout=300), racer.stderr.read()) for racer in racers]


@pytest.mark.slow
def test_two_writers_at_one_instant_never_mix_two_commands(source, tmp_path):
    out = tmp_path / "race"
    results = _race(source, out, ["--image_size=8"], ["--image_size=12"])
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert "being written by another writer" in refusal or "is not empty" in refusal, refusal
    assert "Traceback" not in refusal
    assert not integrity.verify_dataset(str(out), num_workers=1).problems
    winner = [code for code, _ in results].index(0)
    assert schema.read_manifest(str(out)).image_shape[1] == (8, 12)[winner]  # its command's


@pytest.mark.slow
def test_the_same_command_twice_at_once_writes_one_dataset(source, tmp_path):
    out = tmp_path / "twice"
    results = _race(source, out, ["--image_size=8"], ["--image_size=8"])
    assert 0 in [code for code, _ in results], results
    for code, err in results:
        assert code in (0, 2) and "Traceback" not in err, err
    assert not integrity.verify_dataset(str(out), num_workers=1).problems


def test_the_tasks_of_one_write_share_the_directory_but_not_a_task(source, tmp_path):
    out = tmp_path / "tasks"
    tasks = dict(num_tasks=2, shards=4)
    with lock.locked_output_dir(str(out), shared=True), lock.locked_task(str(out), 0, 2):
        write_dataset(_config(source, out, task_index=1, **tasks))  # beside task 0
        with pytest.raises(lock.DirectoryLocked, match="task 0 of 2 is already being written"):
            write_dataset(_config(source, out, task_index=0, **tasks))
        with pytest.raises(lock.DirectoryLocked, match="being written by another writer"):
            write_dataset(_config(source, out, finalize=True, **tasks))  # a task still runs
    write_dataset(_config(source, out, task_index=0, **tasks))
    summary = write_dataset(_config(source, out, finalize=True, **tasks))
    assert summary.manifest.split("train").count > 0


def test_an_output_dir_that_is_a_file_says_so(source, tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    with pytest.raises(lock.OutputDirError, match="is a file; name a directory"):
        write_dataset(_config(source, path))
