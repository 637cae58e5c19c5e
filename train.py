r"""Train a ResNet on shards written by `python -m pipeline.write`.

    python train.py --config=configs/smoke.gin
    python train.py --config=configs/resnet50.gin \
        --gin_bindings="train_and_evaluate.data_dir='workspace/shards/leaves'" \
        --workdir=workspace/runs/leaves-r50

This file is intentionally short: flags, gin, then one call into
`pipeline.training.train_and_evaluate`, which knows nothing of gin. Gin configures only that
function (its keyword arguments, which --help lists with their defaults); the resolved
configuration is saved as `config.gin` in the workdir, named in one log line (logged in full
with --verbosity=1). Running the same command again after a crash, a kill or Ctrl-C continues
at the last checkpointed step (pipeline.training.legs).

Exit codes: the table in pipeline.errors, which --help shows.
"""

from pipeline import startup

startup.quiet_command(__name__)  # first, before anything imports TensorFlow (startup.py)

import inspect
import logging as std_logging
import os
import shlex
import sys
import textwrap
import tokenize

import gin
from absl import flags, logging

from pipeline import cli, errors
from pipeline.core import files, workspace
from pipeline.training import train_and_evaluate

FLAGS = flags.FLAGS
# Set by this command itself, never bound in gin.
NOT_BOUND = ("workdir", "before_training")


def trainer_parameters() -> str:
    """train_and_evaluate's parameters and their defaults, as --help lists them after this
    docstring: what a gin file or --gin_bindings can set."""
    lines = ["", "", *textwrap.wrap(
        "train_and_evaluate's parameters and defaults: bind them in a gin file or with "
        "--gin_bindings=\"train_and_evaluate.NAME=VALUE\" (`python -m pydoc "
        "pipeline.training.loop` says what each does):", width=95)]
    for name, parameter in inspect.signature(train_and_evaluate).parameters.items():
        if name in NOT_BOUND:
            continue
        default = ("(required)" if parameter.default is inspect.Parameter.empty
                   else f"= {parameter.default!r}")
        lines.append(f"  {name} {default}")
    return "\n".join(lines)


__doc__ += trainer_parameters()


def define_flags() -> None:
    flags.DEFINE_multi_string("config", None, "Gin config file(s), applied in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings that override the files, e.g. "
                              "\"train_and_evaluate.epochs=10\".")
    flags.DEFINE_string("workdir", None, "Where checkpoints, logs, the model and metrics go. "
                        "Default: <workspace>/runs/<config file name>.")


class QuietGinSearch(std_logging.Filter):
    """Drops gin's ERROR "Path not found: resnet50.gin": gin first looks for an included file
    as a Python package resource, logs that error when it is not one, and then finds it on the
    search path. Harmless, and the only red line of a good run."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return not (record.module == "resource_reader"
                    and record.getMessage().startswith("Path not found"))


def parse_gin(configs, bindings) -> None:
    """Parse the gin files and bindings, or ConfigError with gin's message."""
    std_logging.getLogger().addFilter(QuietGinSearch())  # gin logs through the root logger
    for config in configs:  # `include 'resnet50.gin'` finds files beside the config
        if os.path.isdir(config):
            raise errors.UsageError(f"--config={config} is a directory; give a gin file, e.g. "
                                    "--config=configs/smoke.gin")
        gin.add_config_file_search_path(os.path.dirname(os.path.abspath(config)))
    try:
        gin.parse_config_files_and_bindings(configs, bindings)
    # An unknown configurable or parameter (ValueError), a file not found (OSError), a syntax
    # error (SyntaxError, or TokenError for an unclosed bracket).
    except (ValueError, OSError, SyntaxError, tokenize.TokenError) as err:
        raise errors.ConfigError(f"gin configuration: {err}") from err


def main(argv) -> None:
    cli.no_arguments(argv)
    if not FLAGS.config:
        raise errors.UsageError("--config is required, e.g. --config=configs/smoke.gin")
    train = gin.configurable("train_and_evaluate")(train_and_evaluate)
    parse_gin(FLAGS.config, FLAGS.gin_bindings)
    name = os.path.splitext(os.path.basename(FLAGS.config[-1]))[0]
    workdir = FLAGS.workdir or os.path.join(workspace.root(), "runs", name)
    config_text = gin.config_str()
    logging.vlog(1, "configuration:\n%s", config_text)
    # Written once the run has passed its checks: a refused run leaves the workdir as it was.
    try:
        train(workdir=workdir, before_training=lambda: save_config(workdir, config_text))
    except errors.PipelineError as err:
        raise without_gin_context(err) from None


def save_config(workdir: str, config_text: str) -> None:
    """The resolved configuration into `workdir/config.gin`, and one line naming it."""
    path = os.path.join(workdir, "config.gin")
    files.atomic_write_text(path, config_text)
    logging.info("configuration: %s (%d lines; --verbosity=1 logs it)", path,
                 len(config_text.splitlines()))


# gin re-raises whatever a configurable raises as a copy whose message gains this and the
# configurable's name on a second line; a user error stays one line.
GIN_CONTEXT = "\n  In call to configurable"


def without_gin_context(err: errors.PipelineError) -> errors.PipelineError:
    """`err` as one line, with its exit code; an interrupted run's with the command that
    resumes it."""
    line = str(err).split(GIN_CONTEXT)[0]
    if err.exit_code == errors.EXIT_INTERRUPTED:
        line += ": " + shlex.join(["python", *sys.argv])
    plain = errors.PipelineError(line)
    plain.exit_code = err.exit_code
    return plain


if __name__ == "__main__":
    cli.run(main, define_flags)
