r"""Run tf.data service servers: more CPUs for the input pipeline without rewriting it.

    python -m pipeline.service --mode=dispatcher --port=5050 [--work_dir=/shared/tfdata]
    python -m pipeline.service --mode=worker --dispatcher=HOST:5050 --port=5051
    # then, in training: make_dataset(..., service="grpc://HOST:5050")

The dispatcher hands out work; each worker runs `make_dataset`'s pipeline on its own CPUs and
streams finished batches to the trainer (pipeline.dataset.service says what happens when a
worker dies). Both servers stop cleanly on SIGTERM or Ctrl-C.

Both servers listen on every network interface of the machine: TensorFlow's servers take a
port and no address to bind (DispatcherConfig and WorkerConfig have none), and anyone who
can reach the port can read the data or send work. Run them on a private network or behind a
firewall; each says so when it starts.

Exit codes: the table in pipeline.errors, which --help shows.
"""

from __future__ import annotations

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

from typing import Sequence

from absl import flags, logging

from pipeline import cli
from pipeline.dataset import service

MODES = ("dispatcher", "worker")
EXPOSED = ("the {mode} listens on every network interface (TensorFlow's servers take a port, "
           "not an address to bind): anyone who reaches this machine's port can use it; run it "
           "on a private network or behind a firewall")
FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("mode", None, MODES, "Which server to run.", required=True)
    flags.DEFINE_integer("port", 0, "Port to serve on (0: any free port, printed at start), on "
                         "every network interface: TensorFlow's servers bind no single "
                         "address, so run them on a private network or behind a firewall.",
                         lower_bound=0)
    flags.DEFINE_string("work_dir", None, "Dispatcher only: a directory (shared storage for a "
                        "restartable dispatcher) where it journals its state; enables "
                        "fault-tolerant mode.")
    flags.DEFINE_string("dispatcher", None, "Worker only: the dispatcher's HOST:PORT.")
    flags.DEFINE_string("worker_address", None, "Worker only: the HOST:PORT the trainer reaches "
                        "this worker at (default localhost:<port>; set it across machines).")


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    if FLAGS.mode == "dispatcher":
        server = service.start_dispatcher(FLAGS.port, FLAGS.work_dir)
        print(f"dispatcher serving at {server.target}", flush=True)
    else:
        if not FLAGS.dispatcher:
            raise service.ServiceError("--mode=worker needs --dispatcher=HOST:PORT")
        server = service.start_worker(FLAGS.dispatcher, FLAGS.port, FLAGS.worker_address)
        print(f"worker registered with {FLAGS.dispatcher}", flush=True)
    print(EXPOSED.format(mode=FLAGS.mode), flush=True)
    service.serve_until_signal(server)
    logging.info("%s stopped", FLAGS.mode)


if __name__ == "__main__":
    cli.run(main, define_flags)
