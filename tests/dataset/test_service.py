"""tf.data service on loopback: dispatcher + 2 workers deliver every record once, training goes
on when a worker is killed, and the command starts, refuses (port in use, no dispatcher) and
stops cleanly on SIGTERM."""

import collections
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO_ROOT, count_read_plans, free_ports, write_labeled_dataset
from pipeline import dataset, errors, training
from pipeline.dataset import service

STARTUP_S = 60  # a server process imports TensorFlow first
# gRPC retries a lost connection with exponential backoff of up to 120 s (plus jitter): a
# reader finds a restarted worker at the next retry, later the longer the worker was gone.
RECONNECT_S = 180


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """60 labeled 8x8 images: 6 train shards, 3 val shards."""
    return write_labeled_dataset(tmp_path_factory.mktemp("service"), 60, "shards", shards=6,
                                 val_shards=3, val_fraction=0.25)


def _in_process_cluster(num_workers):
    """(dispatcher, workers) in this process, on free loopback ports; stopped at the end."""
    dispatcher = service.start_dispatcher(0)
    address = dispatcher.target.split("://")[1]
    workers = [service.start_worker(address) for _ in range(num_workers)]
    yield dispatcher, workers
    _release_readers()
    for server in workers + [dispatcher]:
        server._stop()


@pytest.fixture(scope="module")
def cluster():
    yield from _in_process_cluster(2)


@pytest.fixture
def lone_worker():
    """A cluster of its own with one worker: its tasks and its order are the test's alone."""
    yield from _in_process_cluster(1)


def _release_readers():
    """Destroy unreferenced tf.data service readers while their dispatcher still runs: each one
    tells the dispatcher it is done, and against a stopped dispatcher that call retries for
    seconds (a suite's worth of them added a minute)."""
    gc.collect()


def _records(ds):
    return collections.Counter(x.tobytes() for batch, _ in ds for x in batch.numpy())


def test_distributed_epoch_delivers_every_record_once(data_dir, cluster, info_logs):
    dispatcher, _ = cluster
    local = _records(dataset.make_dataset(data_dir, "val", batch_size=4, training=False))
    remote = _records(dataset.make_dataset(data_dir, "val", batch_size=4, training=False,
                                           service=dispatcher.target))
    assert remote == local and set(remote.values()) == {1}
    # The workers run the pipeline's graph: the service streams, and says so.
    assert "split 'val': stream (a tf.data service runs the pipeline on its workers" in (
        info_logs.text)
    with pytest.raises(dataset.DatasetError, match="access='random' cannot read this split"):
        dataset.make_dataset(data_dir, "train", service=dispatcher.target, access="random")


def test_a_dataset_on_the_service_is_planned_once(data_dir, cluster, monkeypatch):
    dispatcher, _ = cluster
    planned = count_read_plans(monkeypatch)
    dataset.make_dataset(data_dir, "train", batch_size=4, service=dispatcher.target)
    assert planned == {"train": 1}


def test_channels_last_batches_come_from_the_workers(data_dir, cluster):
    dispatcher, _ = cluster
    local = dataset.make_dataset(data_dir, "val", batch_size=4, training=False)
    remote = dataset.make_dataset(data_dir, "val", batch_size=4, training=False,
                                  service=dispatcher.target, data_format="channels_last")
    assert remote.element_spec[0].shape.as_list() == [None, 8, 8, 3]
    transposed = collections.Counter(x.transpose(1, 2, 0).tobytes() for batch, _ in local
                                     for x in batch.numpy())
    assert _records(remote) == transposed


def test_parallel_epochs_gives_an_epoch_per_worker(data_dir, cluster):
    dispatcher, workers = cluster
    remote = _records(dataset.make_dataset(data_dir, "val", batch_size=4, training=False,
                                           service=dispatcher.target,
                                           processing_mode="parallel_epochs"))
    assert set(remote.values()) == {len(workers)}


def test_training_batches_with_augmentation_run_remotely_and_repeat(data_dir, cluster):
    dispatcher, _ = cluster
    ds = dataset.make_dataset(data_dir, "train", batch_size=4, seed=0,
                              service=dispatcher.target)
    per_epoch = dataset.batches_per_epoch(45, 4, training=True)
    batches = [images for images, _ in ds.take(3 * per_epoch)]
    # One job for the whole run: the stream goes on past the first pass over the split.
    assert len(batches) == 3 * per_epoch
    # Static batches: each worker drops its own remainder.
    assert {tuple(b.shape) for b in batches} == {(4, 3, 8, 8)}


def test_each_pass_through_the_service_has_a_new_order(data_dir, lone_worker):
    # One worker and deterministic=True: any difference between passes is the reshuffle.
    dispatcher, _ = lone_worker
    per_pass = dataset.batches_per_epoch(45, 4, training=True)
    ds = dataset.make_dataset(data_dir, "train", batch_size=4, seed=0, augment=None,
                              deterministic=True, service=dispatcher.target)
    batches = [images.numpy().tobytes() for images, _ in ds.take(2 * per_pass)]
    assert len(batches) == 2 * per_pass
    assert batches[:per_pass] != batches[per_pass:]


def test_parallel_epochs_workers_read_in_their_own_order(data_dir, cluster):
    dispatcher, _ = cluster
    ds = dataset.make_dataset(data_dir, "train", batch_size=4, seed=0, augment=None,
                              service=dispatcher.target, processing_mode="parallel_epochs")
    batches = [images.numpy().tobytes() for images, _ in ds.take(20)]
    # The same seed on both workers would give each batch twice, side by side.
    assert len(set(batches)) == len(batches)


@pytest.mark.slow
def test_the_trainer_reads_its_training_batches_through_the_service(data_dir, lone_worker,
                                                                    tmp_path):
    # Its own cluster: a shared worker drops the tasks of other tests' finished jobs at times
    # of the dispatcher's choosing, so a count there could not be compared.
    dispatcher, (worker,) = lone_worker
    metrics = training.train_and_evaluate(
        data_dir=data_dir, workdir=str(tmp_path / "run"), depth=10, width=4, stem="small",
        epochs=2, batch_size=4, warmup_epochs=0, augment="flip_lr", cache="auto", verbose=0,
        service=dispatcher.target)
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["images_per_second"] > 0
    # One job for both epochs (one task on the worker); validation read locally.
    assert worker._num_tasks() == 1


def test_service_refuses_the_memory_cache_and_unknown_modes(data_dir, cluster):
    dispatcher, _ = cluster
    with pytest.raises(dataset.DatasetError, match="cache='memory'"):
        dataset.make_dataset(data_dir, cache="memory", service=dispatcher.target)
    with pytest.raises(dataset.DatasetError, match="processing_mode='one_epoch'"):
        dataset.make_dataset(data_dir, service=dispatcher.target, processing_mode="one_epoch")


def _records_until(iterator, limit, deadline_s):
    """Up to `limit` batches' records from `iterator` (None: to the end), read in a thread:
    a reader stuck on a lost worker fails the test at `deadline_s` instead of hanging it."""
    got = collections.Counter()
    finished = threading.Event()

    def read():
        for n, (images, _) in enumerate(iterator, 1):
            got.update(x.tobytes() for x in images.numpy())
            if n == limit:
                break
        finished.set()

    threading.Thread(target=read, daemon=True).start()
    assert finished.wait(deadline_s), f"reader waited more than {deadline_s} s"
    return got


@pytest.mark.parametrize("mode", ["distributed_epoch", "parallel_epochs"])
@pytest.mark.slow
def test_a_killed_worker_neither_stops_training_nor_loses_the_job(data_dir, mode):
    dispatcher = service.start_dispatcher(0)
    address = dispatcher.target.split("://")[1]
    ports = free_ports(2)
    workers = {}

    def start_worker(port):
        workers[port] = _start(["--mode=worker", f"--dispatcher={address}", f"--port={port}"])
        _wait_for_line(workers[port], "worker registered")

    try:
        for port in ports:
            start_worker(port)
        train = iter(dataset.make_dataset(data_dir, "train", batch_size=4, seed=0,
                                          service=dispatcher.target, processing_mode=mode))
        val = iter(dataset.make_dataset(data_dir, "val", batch_size=1, training=False,
                                        service=dispatcher.target, processing_mode=mode))
        _records_until(train, 3, STARTUP_S)
        seen = _records_until(val, 3, STARTUP_S)
        workers[ports[0]].kill()
        workers[ports[0]].wait()

        # Training reads on from the surviving worker: three more epochs' worth of batches.
        more = _records_until(train, 3 * dataset.batches_per_epoch(45, 4, training=True), 30)
        assert sum(more.values()) == 3 * 11 * 4

        # A finite pass ends once a worker is back at the lost one's address.
        start_worker(ports[0])
        seen += _records_until(val, None, RECONNECT_S)
        local = _records(dataset.make_dataset(data_dir, "val", batch_size=4, training=False))
        assert set(seen) <= set(local)
        if mode == "distributed_epoch":
            # At most once: the files the killed worker was reading are lost for this pass.
            assert set(seen.values()) == {1}
        else:
            assert set(seen) == set(local)  # the surviving worker read the whole split
    finally:
        train = val = None
        _release_readers()
        for process in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        dispatcher._stop()


def _start(args):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.service", *args], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(process, text):
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return
        assert process.poll() is None, process.stderr.read()[-2000:]
    raise AssertionError(f"no {text!r} within {STARTUP_S} s")


@pytest.mark.slow
def test_command_line_servers_serve_refuse_and_stop_cleanly(data_dir, tmp_path):
    (port,) = free_ports()
    processes = []
    try:
        dispatcher = _start(["--mode=dispatcher", f"--port={port}",
                             f"--work_dir={tmp_path / 'journal'}"])
        processes.append(dispatcher)
        _wait_for_line(dispatcher, "dispatcher serving")
        _wait_for_line(dispatcher, "the dispatcher listens on every network interface")
        taken = subprocess.run([sys.executable, "-m", "pipeline.service", "--mode=dispatcher",
                                f"--port={port}"], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=STARTUP_S,
                               env={**os.environ, "PYTHONPATH": REPO_ROOT})
        assert taken.returncode == errors.EXIT_USAGE and "in use" in taken.stderr
        workers = [_start(["--mode=worker", f"--dispatcher=localhost:{port}"]) for _ in range(2)]
        processes += workers
        for worker in workers:
            _wait_for_line(worker, "worker registered")
            _wait_for_line(worker, "the worker listens on every network interface")
        target = f"grpc://localhost:{port}"
        local = _records(dataset.make_dataset(data_dir, "train", batch_size=1, training=False))
        remote = _records(dataset.make_dataset(data_dir, "train", batch_size=1, training=False,
                                               service=target))
        assert remote == local

        for process in (*workers, dispatcher):
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    unreachable = subprocess.run(
        [sys.executable, "-m", "pipeline.service", "--mode=worker",
         f"--dispatcher=localhost:{free_ports()[0]}"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=STARTUP_S, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert unreachable.returncode == errors.EXIT_USAGE
    assert "cannot reach the dispatcher" in unreachable.stderr
