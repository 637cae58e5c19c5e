r"""tf.data service servers: more CPUs for the input pipeline without rewriting it.

    dispatcher = start_dispatcher(5050)                       # python -m pipeline.service
    worker = start_worker("HOST:5050", port=5051)             #   --mode=dispatcher / worker
    # then, in training: make_dataset(..., service="grpc://HOST:5050")

The dispatcher hands out work; each worker runs `make_dataset`'s pipeline (reading, shuffling,
parsing, augmentation) on its own CPUs and streams finished batches to the trainer. With
--work_dir the dispatcher journals its state there and a restarted dispatcher resumes its jobs
(fault-tolerant mode). Both servers stop cleanly on SIGTERM or Ctrl-C.

When a worker dies, readers skip it and go on with the others (a training dataset on a service
repeats, so it never waits for the lost worker's share). TensorFlow never drops a lost worker's
tasks, though: a finite (evaluation) pass ends only once a worker is back at the same
--port, and that worker starts its tasks again. Restart lost workers with the same flags; a
reader finds a restarted worker at its next gRPC reconnect (backoff of up to two minutes).
"""

from __future__ import annotations

import signal
import socket
import threading

from pipeline import errors

# How long a worker tries to reach its dispatcher before giving up with exit 2 (seconds).
CONNECT_TIMEOUT_S = 10.0
# How often the main thread looks for a stop signal while the servers run (seconds).
POLL_S = 0.2
# How often a worker reports to the dispatcher: a new or restarted worker gets its share of
# running jobs within this time.
WORKER_HEARTBEAT_S = 1.0


class ServiceError(errors.PipelineError, RuntimeError):
    """A server cannot start as asked."""


def check_port_free(port: int, host: str = "") -> None:
    """Raise ServiceError when `port` is taken: TensorFlow's servers would otherwise fail deep
    inside gRPC (or, for port 0, pick a free port, which is fine)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like gRPC's own listener: connections a killed server left in TIME_WAIT do not make
        # the port busy (a worker restarted at its old port must start), a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ServiceError(f"port {port} is in use ({err.strerror}); choose another --port "
                               "or stop the process holding it") from err


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ServiceError unless a TCP connection to HOST:PORT opens within `timeout_s`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ServiceError(f"--dispatcher={address!r}: use HOST:PORT, e.g. localhost:5050")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ServiceError(
            f"cannot reach the dispatcher at {address} ({err}); start it first with `python -m "
            f"pipeline.service --mode=dispatcher --port={port}`") from err


def start_dispatcher(port: int, work_dir: str | None = None):
    """A started tf.data service dispatcher; fault-tolerant (journaled) when `work_dir`."""
    import tensorflow as tf

    check_port_free(port)
    # worker_timeout_ms is left at TensorFlow's default: in TF 2.21 a timed-out worker is only
    # logged (and dropped from snapshots); its tasks stay, so a shorter timeout changes nothing.
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, worker_address: str | None = None):
    """A started tf.data service worker registered with `dispatcher` (HOST:PORT)."""
    import tensorflow as tf

    check_reachable(dispatcher)
    check_port_free(port)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port,
        worker_address=worker_address or "localhost:%port%",
        heartbeat_interval_ms=int(WORKER_HEARTBEAT_S * 1000))
    return tf.data.experimental.service.WorkerServer(config)


def serve_until_signal(server, stop: threading.Event | None = None) -> None:
    """Block until SIGTERM/SIGINT (or `stop` is set), then stop `server`.

    The servers' own join() blocks inside TensorFlow, where Python cannot run a signal
    handler; waiting on an Event in short steps keeps the handler responsive.
    """
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(POLL_S):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server._stop()  # the public API has no stop; tf.data's own tests use this
