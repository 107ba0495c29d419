"""The ``graphmill`` command. Thin: one module per command parses its arguments and calls ``graphmill.api``.

Every failure the user can fix is a ``GraphmillError``: one line on stderr and
exit status 2. Nothing is written unless the command succeeds, and an input
model is never overwritten unless ``--force`` says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from graphmill import __version__
from graphmill.cli import demo, inspect, optimize, passes, roundtrip, scale, scale_search, search, simulate, zoo
from graphmill.cli import partition
from graphmill.cli import place
from graphmill.cli import train_policy
from graphmill.cli import chip
from graphmill.cli import train
from graphmill.cli import supernet
from graphmill.cli.common import OneLineParser, WarningLines, escaped_controls, json_stdout_only
from graphmill.errors import GraphmillError
from graphmill.util.files import folder_locks
from graphmill.util.interrupts import INTERRUPTS, TerminateAsInterrupt, is_interrupt

# the order `graphmill --help` lists them: the model in and out, then the passes, then the backends and searches
#: what rerunning does, for commands whose checkpoint is written as they go (Ctrl-C twice skipped their own line)
RERUN = {"search": "run the same command again to resume from the last checkpoint (a finished evaluation is "
                   "not repeated)"}

COMMANDS = (demo, inspect, roundtrip, zoo, optimize, passes, scale, scale_search, simulate, partition, place,
            train, search, supernet, train_policy, chip)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="graphmill",  # usage errors in one line, subcommands' too (their class is this)
                           description="A compiler-style graph optimizer for neural networks.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"graphmill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        # -v is accepted after the command too; its own dest, since a subparser's default would reset the top one's
        command.register(sub).add_argument("-v", "--verbose", dest="command_verbose", action="count", default=0,
                                           help="log progress (-vv for debug)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a command's own handling: the parsers are built (argparse asks the terminal's
        # size for each argument), ~1 s; a traceback and death by SIGINT there (an outside check)
        print("graphmill: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = args.verbose + args.command_verbose
    # "graphmill chip place: error: ..." as argparse says it for a nested command's usage errors
    name = " ".join(n for n in (args.command, getattr(args, f"{args.command}_command", None)) if n)
    json_on_stdout = getattr(args, "json", None) in (True, "-")
    with escaped_controls():  # log lines too: the handler takes the stream set up here
        logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), format="%(name)s: %(message)s")
        with TerminateAsInterrupt() as term, WarningLines(name) as warned, json_stdout_only(json_on_stdout), \
                folder_locks():  # an --out folder one command writes is refused to another
            code = _run(args, name, term)  # TerminateAsInterrupt: `kill PID` cleans up as Ctrl-C does
        if code != 2:  # a failure's error is its one line
            warned.print()
    return 143 if term.terminated else code  # 128 + SIGTERM


def _run(args: argparse.Namespace, name: str, term: TerminateAsInterrupt) -> int:
    try:
        return args.func(args)
    except GraphmillError as e:
        print(f"graphmill {name}: error: {e}", file=sys.stderr)
        return e.exit_code
    except INTERRUPTS as e:  # a second Ctrl-C while the command was stopping cleanly: say what a rerun does
        # (numba's SystemError around a Ctrl-C is one too: a traceback and exit 1 for about 1 in 10 interrupts of a
        # long `simulate`, an outside check)
        if not is_interrupt(e):
            raise
        again = RERUN.get(name)
        print(f"graphmill {name}: {'terminated' if term.terminated else 'interrupted'}" +
              (f"; {again}" if again else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `graphmill inspect m.onnx | head`: stopped as a Unix tool killed by SIGPIPE is;
        # exit 0 told a script that a `search ... | head -2` cut off after 3 of 20 trials had finished (an outside
        # check), and a resumable command says how to go on
        try:
            sys.stdout = open(os.devnull, "w")  # the interpreter's own flush at exit would raise again
        except OSError:
            pass
        again = RERUN.get(name)
        try:  # stderr may be the same closed pipe (`2>&1 | head`)
            if again:
                print(f"graphmill {name}: stopped: the pipe its output went to was closed; {again}", file=sys.stderr)
        except OSError:
            sys.stderr = open(os.devnull, "w")
        return 141  # 128 + SIGPIPE
    except MemoryError as e:  # numpy's _ArrayMemoryError included: a size no budget anticipated
        detail = str(e).splitlines()[0] if str(e) else "an allocation failed"
        print(f"graphmill {name}: error: out of memory ({detail}); the model or its inputs are too "
              "large for this machine's memory (see the size limits in README.md)", file=sys.stderr)
        return 2
    except OSError as e:  # a file-system refusal we did not anticipate: still one line, still exit 2
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"graphmill {name}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
