"""What every command shares: running `main` under absl, argument checks, worker processes.

    if __name__ == "__main__":
        cli.run(main, define_flags)

`run` gives every command the same contract: a `PipelineError` (a user mistake, see
pipeline.errors) becomes one logged line and its exit code, Ctrl-C one line and
EXIT_INTERRUPTED, a flag that does not parse exits with EXIT_USAGE like any other unusable
input (absl's own parser would exit 1, which the writer and verify use for "the result is
bad"), a path that is a file where a directory goes (or the reverse) is one line and
EXIT_USAGE too, and any other exception is a bug and keeps its traceback.

Flags are defined by `define_flags`, called only when a module runs as a command, so that
importing a command module (tests, other tools) adds no flags to the importer's. `--help`
lists the command's own flags (grouped, for the writer) and the exit codes (the table in
pipeline.errors, which the commands' docstrings do not repeat), `--helpfull` then absl's;
both exit 0.

This module imports only absl and pipeline.errors: every stage may import it.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from typing import Callable, Sequence

from absl import app, flags, logging

from pipeline import errors

FLAGS = flags.FLAGS


# The help flags: --help and its aliases list the command's own flags, --helpfull adds absl's.
SHORT_HELP = ("--help", "-h", "-?", "--helpshort")
FULL_HELP = "--helpfull"
# A command's flag groups: [(title, [flag names])], in the order --help shows them.
FlagGroups = Sequence[tuple[str, Sequence[str]]]


def run(main: Callable[[list[str]], int | None],
        define_flags: Callable[[], None] | None = None, *,
        flag_groups: FlagGroups | None = None) -> None:
    """Define the flags, parse them, run `main(argv)` and exit with its code (see above).
    --help and --helpfull show the command's flags first, in `flag_groups` (see help_text)."""
    before = set(FLAGS)
    if define_flags is not None:
        define_flags()
    ours = [name for name in FLAGS if name not in before]
    wanted = help_request(sys.argv[1:])
    if wanted:
        sys.stdout.write(help_text(ours, flag_groups, full=wanted == FULL_HELP))
        sys.exit(errors.EXIT_OK)
    app.run(functools.partial(exit_code_of, main), flags_parser=parse_flags)


def help_request(args: Sequence[str]) -> str | None:
    """FULL_HELP, a SHORT_HELP flag, or None: which help the arguments ask for (before a
    `--`, which ends the flags)."""
    for arg in args:
        if arg == "--":
            return None
        if arg in (FULL_HELP, *SHORT_HELP):
            return arg
    return None


def help_text(ours: Sequence[str], groups: FlagGroups | None, *, full: bool) -> str:
    """The command's docstring, then its own flags (in `groups`, else in the order they were
    defined) and the exit codes, then with `full` absl's (logging, flag files). absl's own
    --helpfull sorts every module's flags by name and puts the command's after absl's when they
    live in a library module, so 27 writer flags came alphabetically after a page of absl's."""
    groups = list(groups or [("flags", ours)])
    grouped = {name for _, names in groups for name in names}
    ungrouped = [name for name in ours if name not in grouped]
    if ungrouped:
        groups.append(("other", ungrouped))
    main_doc = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()
    lines = [main_doc, ""] if main_doc else []
    for title, names in groups:
        lines += [f"{title}:", *(render_flag(FLAGS[name]) for name in names), ""]
    lines += ["exit codes (every command's):", errors.exit_code_table(), ""]
    lines.append(f"  {SHORT_HELP[0]}: these flags; {FULL_HELP}: these, then absl's own "
                 "(logging, flag files)")
    if full:
        lines += ["", *absl_flag_lines(set(ours))]
    return "\n".join(lines) + "\n"


def absl_flag_lines(ours: set[str]) -> list[str]:
    """absl's own flags, by module, each sorted by name (as absl lists them)."""
    lines = []
    for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
        theirs = sorted({flag.name: flag for flag in module_flags
                         if flag.name not in ours}.items())
        if theirs:
            lines += [f"{module}:", *(render_flag(flag) for _, flag in theirs), ""]
    return lines


def render_flag(flag: flags.Flag) -> str:
    """One flag as absl shows it: `--[no]name: help`, then its default and its syntax."""
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = flags.text_wrap(f"{name}: {flag.help or ''}", indent="    ", firstline_indent="  ")
    if flag.default_as_str:
        text += "\n" + flags.text_wrap(f"(default: {flag.default_as_str})", indent="    ")
    if flag.parser.syntactic_help:
        text += "\n" + flags.text_wrap(f"({flag.parser.syntactic_help})", indent="    ")
    return text


def exit_code_of(function: Callable[..., int | None], *args, **kwargs) -> int:
    """`function(*args, **kwargs)` as a command: its return value (None: EXIT_OK), or the
    exit code of the PipelineError it raised, logged as one line."""
    try:
        result = function(*args, **kwargs)
    except errors.PipelineError as err:
        logging.error("%s", err)
        return err.exit_code
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a bug: one line, no traceback. (A training run
        # takes SIGINT itself, to stop at a saved step: pipeline.training.interrupt.)
        logging.error("interrupted (Ctrl-C) before the command finished")
        return errors.EXIT_INTERRUPTED
    except (NotADirectoryError, IsADirectoryError) as err:
        # A path flag naming a file where a directory goes (or the reverse): whichever command
        # and whichever of its paths, it is the user's path, never a bug.
        logging.error("%s", wrong_kind_message(err))
        return errors.EXIT_USAGE
    except Exception as err:  # noqa: BLE001 - re-raised unless the disk failed a write
        message = errors.disk_failure(err)
        if message is None:
            raise
        logging.error("%s", message)
        return errors.EXIT_IO
    return errors.EXIT_OK if result is None else result


def wrong_kind_message(err: NotADirectoryError | IsADirectoryError) -> str:
    """One line for a file given where a directory is expected, or the reverse."""
    path = os.fsdecode(err.filename or "")
    if isinstance(err, IsADirectoryError):
        return f"{path} is a directory, where a file is expected: give a file"
    blocker = path
    while blocker and not os.path.exists(blocker) and os.path.dirname(blocker) != blocker:
        blocker = os.path.dirname(blocker)  # the part of the path that is a file
    reached = f" (on the way to {path})" if blocker != path else ""
    return f"{blocker} is a file, where a directory is expected{reached}: give a directory"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, but a bad flag exits with EXIT_USAGE."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        sys.stderr.write(f"FATAL Flags parsing error: {err}\n"
                         "Pass --helpfull to see the command's flags.\n")
        sys.exit(errors.EXIT_USAGE)


def no_arguments(argv: Sequence[str]) -> None:
    """Commands configured by flags alone: a stray word is a typo, not an input."""
    if len(argv) > 1:
        raise errors.UsageError(f"unexpected arguments {list(argv[1:])}; every option is a "
                                "--flag")


def one_argument(argv: Sequence[str], what: str, example: str,
                 flag: tuple[str, str | None] | None = None) -> str:
    """The single positional argument of a command like `inspect DATA_DIR`; or, with `flag`
    (its name and value), that flag instead: `--data_dir=DIR`, the name train.py, predict and
    profile use for the same folder, works where it is positional too."""
    name, value = flag or (None, None)
    if value is not None:
        if len(argv) != 1:
            raise errors.UsageError(f"give the {what} once, as an argument or as --{name}, got "
                                    f"--{name}={value} and {list(argv[1:])}: {example}")
        return value
    if len(argv) != 2:
        raise errors.UsageError(f"give exactly one {what}, got {list(argv[1:])}: {example}")
    return argv[1]


def define_data_dir_flag(flag_values) -> None:
    """--data_dir for a command whose dataset is its argument (see one_argument)."""
    flags.DEFINE_string("data_dir", None, "The dataset (a folder holding dataset.json), as "
                        "the command's argument can give it.", flag_values=flag_values)


def worker_context(preload: Sequence[str]):
    """A multiprocessing context whose workers start fast and safely.

    Workers are forked from a `forkserver` that has imported only `preload` (the modules the
    workers run), so each starts in milliseconds and never inherits a parent's threads: a
    process that imported TensorFlow must not be forked. Without a forkserver (not Linux or
    macOS), workers are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The default preload would re-import the caller's __main__ (a whole command, pandas
    # included) into the server.
    context.set_forkserver_preload(list(preload))
    return context
