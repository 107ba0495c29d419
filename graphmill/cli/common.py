"""What several commands share: JSON output, number formatting, --dim parsing, safe output paths, warnings."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import warnings
from typing import IO, Iterator, NoReturn, Sequence

from graphmill import api
from graphmill.errors import ModelWarning, SearchWarning, SimulationWarning, TracingWarning, UserInputError
from graphmill.util.files import atomic_write_text, check_output_paths
from graphmill.util.limits import max_elements
from graphmill.util.suggest import closest


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other graphmill error.

    argparse prints the whole usage block (8 lines for scale-search) before the message; graphmill's
    rule is one line on stderr and exit status 2, so the usage is left to ``--help``. Subparsers made by
    ``add_subparsers`` use the parent's class, so setting it on the top parser covers every command.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's; the arguments are kept for ``error``'s advice (a command's parser gets its own)."""
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but arguments left over after a command are that command's error
        (``graphmill inspect: error: unrecognized arguments: ...``), not the top parser's."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            target = self._command_parser(ns)  # the innermost: `supernet train`, not `supernet`
            self._one_line_exit(target.prog, f"unrecognized arguments: {' '.join(extras)}"
                                             f"{self._nearest(target, extras)}")
        return ns

    def _command_parser(self, ns: argparse.Namespace) -> argparse.ArgumentParser:
        """The parser of the (sub)command ``ns`` ran, following nested subcommands (``chip place``)."""
        target: argparse.ArgumentParser = self
        while True:
            subs = [a for a in target._actions if isinstance(a, argparse._SubParsersAction)]
            name = getattr(ns, subs[0].dest, None) if subs else None
            if name not in (subs[0].choices if subs else {}):
                return target
            target = subs[0].choices[name]

    def _nearest(self, target: argparse.ArgumentParser, extras: list[str]) -> str:
        """`` (did you mean --option?)`` for the first unknown ``--flag`` close to one the command takes."""
        flags = [e.split("=", 1)[0] for e in extras if e.startswith("--")]
        close = closest(flags[0], list(target._option_string_actions)) if flags else None
        return f" (did you mean {close}?)" if close else ""

    def error(self, message: str) -> NoReturn:
        # argparse's "argument COMMAND: invalid choice: 'optimze' (choose from 'inspect', ...)": the nearest
        # choice first, as for an unknown flag, pass, model or strategy
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", str(message))
        close = closest(m.group(1), re.findall(r"'([^']*)'", m.group(2))) if m else None
        if close:
            message = f"{message} (did you mean {close!r}?)"
        message = f"{message}{self._negative_value_advice(str(message))}"
        self._one_line_exit(self.prog, message)

    def _negative_value_advice(self, message: str) -> str:
        """``--memory-cap -5GB``: argparse takes -5GB for a flag and says only "expected one argument"; say how
        to write it, for the flag as given (``-s``, an abbreviation such as ``--memory``)."""
        m = re.search(r"argument (\S+): expected one argument", message)
        if not m:
            return ""
        spellings = m.group(1).split("/")
        given = getattr(self, "_given", [])
        for k, tok in enumerate(given[:-1]):
            flag = tok.split("=", 1)[0]
            if flag in spellings or (flag.startswith("--") and len(flag) > 2
                                     and any(f.startswith(flag) for f in spellings if f.startswith("--"))):
                value = given[k + 1]
                if re.match(r"-[\d.]", value):  # a negative number or size, not the next flag
                    return f" (a value that starts with '-' is written {flag}={value})"
        return ""

    def _one_line_exit(self, prog: str, message: str) -> NoReturn:
        text = " ".join(str(message).split())
        self.exit(2, f"{prog}: error: {text} (see {prog} --help)\n")


def fmt_count(n: int) -> str:
    """``1234567`` -> ``1,234,567 (1.23 M)``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n:,} ({n / scale:.2f} {unit})"
    return f"{n:,}"


#: terminal control characters (C0 but tab and newline; DEL; C1) -> a visible \\xNN (no output of graphmill's
#: uses a carriage return, and one in a name rewrote the line before it)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))}


class _EscapingStream:
    """A text stream that writes control characters as ``\\xNN``; everything else is the stream's own."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text.translate(_CONTROLS))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def escaped_controls() -> Iterator[None]:
    """While active, what the command prints on stdout and stderr shows control characters as ``\\x1b`` and
    the like. Names come from the model file (an op type, a value, a node): one holding an escape sequence
    retitled or cleared the user's terminal when ``inspect`` printed it (an outside check). JSON escapes them
    already."""
    out, err = _EscapingStream(sys.stdout), _EscapingStream(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:  # each back to what it wrapped, unless someone has set another stream meanwhile
        if sys.stdout is out:
            sys.stdout = out.stream
        if sys.stderr is err:
            sys.stderr = err.stream


_json_stdout: list = []  # the real stdout while a command's --json goes there (json_stdout_only)


@contextlib.contextmanager
def json_stdout_only(on: bool) -> Iterator[None]:
    """While active (``on``: the command prints its JSON on stdout), stdout carries the JSON alone: whatever
    else is printed meanwhile (a ``--load-passes`` plugin, a library, a search's worker processes) goes to
    stderr, and ``emit_json`` writes to the real stdout. A plugin's ``print`` came before the JSON and made it
    unreadable. When ``sys.stdout`` is file descriptor 1 the switch is made on the descriptors too, so worker
    processes (which start with the parent's descriptor 1) and C code follow it."""
    if not on:
        yield
        return
    real = _detach_stdout_fd()
    _json_stdout.append(real if real is not None else sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stdout.pop()
        if real is not None:
            _reattach_stdout_fd(real)


def _detach_stdout_fd() -> IO[str] | None:
    """A stream on a copy of descriptor 1, which then points where descriptor 2 does; None where ``sys.stdout``
    is not descriptor 1 (a test's captured stream, an embedding program's)."""
    try:
        if sys.stdout.fileno() != 1 or sys.stderr.fileno() != 2:
            return None
        sys.stdout.flush()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    saved = os.dup(1)  # not inherited by child processes (os.dup's default)
    os.dup2(2, 1)
    return open(saved, "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors, closefd=True)


def _reattach_stdout_fd(real: IO[str]) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os.dup2(real.fileno(), 1)
    try:
        real.close()
    except OSError:  # `| head` closed it (the command has already returned), or a full disk or file-size limit:
        # emit_json flushes, so that write failed first and was said in one line; the close's retry of the same
        # bytes raised past it as a traceback, exit 1 (`inspect m.onnx --json > /dev/full`, an outside check)
        pass


def emit_json(data: dict, dest: str | None = None) -> None:
    """Print ``data`` as JSON (``dest`` None or ``-``), or write it atomically to the file ``dest``."""
    text = json.dumps(data, indent=2, default=str)
    if dest in (None, "-"):
        print(text, file=_json_stdout[-1] if _json_stdout else sys.stdout, flush=True)
    else:
        atomic_write_text(dest, text + "\n")


def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """``["N=8", "seq=128"]`` -> ``{"N": 8, "seq": 128}``."""
    dims: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        name = name.strip()
        if name in dims:
            raise UserInputError(f"--dim {name} given twice ({dims[name]} and {value.strip()}); give each size once")
        try:
            dims[name] = int(value)
            if dims[name] < 0 or not name:
                raise ValueError
        except ValueError:
            raise UserInputError(f"--dim {item!r}: expected NAME=SIZE with a non-negative integer size") from None
        if dims[name] > max_elements():  # a size no tensor may have (the per-tensor limit bounds every dimension)
            raise UserInputError(f"--dim {item!r}: more than the limit of {max_elements():,} elements per tensor, "
                                 "and so per dimension (GRAPHMILL_MAX_ELEMENTS)")
    return dims


def check_output_path(out: str, inputs: Sequence[str], force: bool) -> None:
    """Refuse to overwrite an input model (or a weights file it reads) unless the user asked for it."""
    if force or not out or not os.path.exists(out):
        return
    for src in inputs:
        if os.path.exists(src) and os.path.samefile(src, out):
            what = "the input model" if src == inputs[0] else f"{src}, which the input model reads its weights from"
            raise UserInputError(f"{out}: refusing to overwrite {what}; pick another -o or pass --force")


def _weights_location(graph, args: argparse.Namespace) -> str | None:
    """The output's weights file name: ``--external-data``, or OUT.data when the input had external data."""
    location = getattr(args, "external_data", None)
    if location is None and api.external_data_files(graph):
        location = os.path.basename(args.output) + ".data"
    return location


def check_outputs_against_weights(graph, args: argparse.Namespace, others: dict[str, str | None],
                                  inputs: dict[str, str | None] | None = None) -> None:
    """Right after the model is read, before any work: no output lands on a weights file the input model reads
    (known only once it is read), and the output's own weights file is none of the other outputs, nor the input
    model or another file the command reads (``inputs``: flag -> path).
    ``optimize -o o.onnx --json ok.bin`` replaced the input's ok.bin with the report (the input no longer
    loaded), and ``--json o.onnx.data`` or ``--external-data r.json --json r.json`` the output's weights, exit 0;
    ``--external-data in.onnx`` (or an input named like the automatic ``OUT.data``) replaced the input model with
    weights, and ``--external-data edge.toml`` the accelerator file, exit 0.
    ``--force`` lets ``-o`` and its weights replace the input's (in place); never a report or a plot, and never
    the weights the input model itself."""
    external = sorted(api.external_data_files(graph))
    reads = {f"{args.model}'s weights" + (f" #{i + 1}" if len(external) > 1 else ""): f
             for i, f in enumerate(external)}
    location = _weights_location(graph, args)
    weights = os.path.join(os.path.dirname(os.path.abspath(args.output)), location) if location else None
    weights_flag = "--external-data" if getattr(args, "external_data", None) else "the output's weights"
    model_outputs = {"-o": args.output, weights_flag: weights}
    check_output_paths(reads, others)
    check_output_paths({"MODEL": args.model, **(inputs or {})}, {weights_flag: weights})
    if not args.force:
        try:
            check_output_paths(reads, model_outputs)
        except UserInputError as e:  # --force helps only where an output lands on an input, not a missing folder
            hint = " (or --force to replace the input's)" if ": is the input " in str(e) else ""
            raise UserInputError(f"{e}{hint}") from None
    check_output_paths({}, {**model_outputs, **others})


def save_output(graph, args: argparse.Namespace) -> None:
    """Save with the input's layout: weights go to an external file when the input had one. The paths were
    checked before any work (``check_output_path`` for ``-o``, ``check_outputs_against_weights`` once the model
    was read); ``api.save`` itself refuses a file the graph reads its weights from unless ``--force``."""
    api.save(graph, args.output, external_data=_weights_location(graph, args), force=args.force)


def output_file(text: str) -> str:
    """The type of every ``-o``: a file name. ``-`` means standard output for ``--json``, but a model, a placement
    or a policy is not written there, and taking it as a name left a file called ``-``."""
    if text == "-":
        raise argparse.ArgumentTypeError("'-': give a file name (only --json reports go to standard output)")
    return text


#: the suffixes of the other files graphmill reads or writes: an ONNX model named with one is a slip
#: (``partition ... -o pp.plc`` wrote a model into a placement's name, exit 0)
OTHER_FORMATS = (".plc", ".json", ".jsonl", ".png", ".toml", ".mill", ".npz", ".csv", ".cfg", ".py", ".pt", ".txt")


#: suffixes of files that hold something other than a report: a --json REPORT named with one is a slip
#: (``optimize ... --json victim.onnx`` replaced a model with the report, exit 0)
NOT_REPORTS = (".onnx", ".plc", ".png", ".toml", ".mill", ".npz", ".csv", ".cfg", ".py", ".pt", ".pb", ".gz")


def report_file(text: str) -> str:
    """The type of every ``--json REPORT``: ``-`` (standard output) or a file name without another format's
    suffix (a report needs no .json suffix: ``report``, ``r.txt`` are fine)."""
    suffix = os.path.splitext(text)[1].lower()
    if text != "-" and suffix in NOT_REPORTS:
        raise argparse.ArgumentTypeError(f"{text!r}: the name of a {suffix} file, for a JSON report; name it "
                                         "without another format's suffix, e.g. report.json (or '-' for stdout)")
    return text


def model_output_file(text: str) -> str:
    """The type of every ``-o`` that writes an ONNX model: ``output_file``, and no other format's suffix."""
    text = output_file(text)
    suffix = os.path.splitext(text)[1].lower()
    if suffix in OTHER_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: the name of a {suffix} file, for an ONNX model; give it a "
                                         ".onnx name")
    return text


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--force`` and ``--external-data``, shared by the commands that write a model."""
    p.add_argument("--force", action="store_true", help="allow -o to overwrite the input model or its weights")
    p.add_argument("--external-data", metavar="NAME",
                   help="write weights to NAME next to the output (default: only when the input had external data)")


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


class WarningLines:
    """While active, graphmill's own warnings (a node no cost model can cost, a tracer's frozen branch) are
    gathered, each once, and ``print()`` says them as ``graphmill CMD: warning: ...`` lines. Python's default
    printed each as two lines (``file:line: Category: ...`` and the source line), and before the error line
    that a failing command prints as its only line; the command prints them only when it did not fail. Other
    libraries' warnings are shown as Python shows them."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.messages: list[str] = []
        self._original = None

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, (ModelWarning, SearchWarning, SimulationWarning, TracingWarning)):
            text = " ".join(str(message).split())
            if text not in self.messages:
                self.messages.append(text)
        else:
            self._original(message, category, filename, lineno, file, line)

    def __enter__(self) -> "WarningLines":
        self._original = warnings.showwarning
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc) -> None:
        warnings.showwarning = self._original

    def print(self) -> None:
        for text in self.messages:
            print(f"graphmill {self.command}: warning: {text}", file=sys.stderr)


def stopped_word(command: str) -> str:
    """How ``graphmill COMMAND`` stopped before its end begins its last line: ``graphmill COMMAND: terminated``
    after a SIGTERM (``kill``), else ``... interrupted``; the prefix every other line of the command carries (this
    line alone lacked it, so a script following several commands' stderr could not tell whose it was)."""
    from graphmill.util.interrupts import sigterm_received

    return f"graphmill {command}: {'terminated' if sigterm_received() else 'interrupted'}"


def report_interrupted(report: dict, command: str, *, resume_flag: str | None = None,
                       nothing: str = "no checkpoint was reached, nothing to resume") -> int:
    """After Ctrl-C in a resumable command: one line saying where it stopped, what the checkpoint holds and
    the command that resumes it (this process's own argv, ``resume_flag`` added once); exit status 130."""
    import shlex

    argv = [a for a in sys.argv[1:] if a != resume_flag] if sys.argv and command in sys.argv else []
    tail = f" {resume_flag}" if resume_flag else ""
    again = ("graphmill " + " ".join(shlex.quote(a) for a in argv) + tail) if argv else \
        "the same command" + (f" with {resume_flag}" if resume_flag else "")
    held = report["checkpoint_step"]
    stderr(f"{stopped_word(command)} at step {report['steps']}/{report['total_steps']}; "
           + (f"{report['files']['checkpoint']} holds step {held}; resume: {again}" if held else nothing))
    return 130
