"""`.progress/` (progress_dir): what an unfinished write keeps, read back as it was written, and
removed only when it should be."""

import os

from pipeline.core import locks
from pipeline.writing import progress_dir


def test_the_plan_and_shard_records_read_back_as_written(tmp_path):
    out = str(tmp_path)
    assert progress_dir.read_plan_fingerprint(out) is None
    assert progress_dir.read_shard_record(out, "train-00000-of-00001.tfrecord") is None
    progress_dir.write_plan_fingerprint(out, "abc")
    progress_dir.write_shard_record(out, "train-00000-of-00001.tfrecord", '{"count": 3}')
    assert progress_dir.read_plan_fingerprint(out) == "abc"
    assert progress_dir.read_shard_record(out, "train-00000-of-00001.tfrecord") == '{"count": 3}'
    assert sorted(os.listdir(progress_dir.path(out))) == [
        "plan.json", "train-00000-of-00001.tfrecord.json"]
    progress_dir.remove_shard_record(out, "train-00000-of-00001.tfrecord")
    assert progress_dir.read_shard_record(out, "train-00000-of-00001.tfrecord") is None


def test_an_unreadable_plan_names_no_owner(tmp_path):
    os.makedirs(progress_dir.path(str(tmp_path)))
    (tmp_path / progress_dir.NAME / progress_dir.PLAN_NAME).write_text("{not json")
    assert progress_dir.read_plan_fingerprint(str(tmp_path)) is None


def test_remove_if_empty_keeps_another_task_s_lock_and_remove_drops_all(tmp_path):
    out = str(tmp_path)
    progress_dir.make(out)
    open(progress_dir.task_lock_path(out, 1, 2), "w").close()  # another task's
    progress_dir.remove_if_empty(out)
    assert os.listdir(progress_dir.path(out)) == ["task-1-of-2.lock"]
    progress_dir.remove(out)
    assert not os.path.exists(progress_dir.path(out))
    progress_dir.remove_if_empty(out)  # already gone: nothing to do
    progress_dir.remove(out)


def test_a_live_writer_s_note_names_it(tmp_path):
    out = str(tmp_path)
    assert progress_dir.live_holders(out) == "one that has just started"
    locks.write_holder_note(progress_dir.holder_path(out, os.getpid()))
    assert progress_dir.live_holders(out).startswith(f"pid {os.getpid()} on ")
