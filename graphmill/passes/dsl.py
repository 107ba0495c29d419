"""The schedule DSL: ``.mill`` files and the inline command-line form, parsed with lark.

File form::

    # comments run to the end of the line
    include "cleanup.mill"
    schedule default {
        fold-constants(size_limit=1048576)
        fixpoint(max_iters=8) { simplify; cse; dce }
        fuse-conv-bn
        fuse-activation(emit="fused-conv", disable=[activation-into-concat])
    }

Inline form (the same grammar; separators are ``,`` ``;`` or new lines; a
pass's options may also be given in braces)::

    fold-constants,fixpoint{simplify,cse,dce},fuse-conv-bn{}

Option values: integers, floats, "strings", bare words (``conv-bn``), true,
false, and [lists]. A step naming a schedule runs that schedule: one defined in
the file or an included one first, then a built-in one (``cleanup``,
``default``, ``ort``: graphmill/passes/default.mill), then a pass of that name.
So a user's own ``schedule cleanup {...}`` shadows the built-in ``cleanup``
inside that file, and the built-in ``default`` keeps calling its own
``cleanup``.

Limits, so that a hostile or generated schedule fails in one line instead of
Python's recursion limit: steps nest at most ``MAX_NESTING`` (64) levels deep,
where each ``fixpoint``, ``repeat`` and call of a named schedule is a level, and
``include`` chains are at most as deep; ``repeat(N)`` counts and ``fixpoint``'s
``max_iters`` are at most ``MAX_ITERATIONS`` (10,000), and so is the product of
the repeat counts and fixpoint limits around any step (``repeat(100){repeat(1000){dce}}``
would run dce 100,000 times: refused; a fixpoint counts its ``max_iters``, which a
body that always changes something reaches), calls of named schedules included. Files are UTF-8 (a BOM is accepted).
Errors give file:line:column, the line and a caret (two columns for a wide character), and the nearest known
name. The keywords are whole words: ``repeated-cleanup`` and ``fixpoint-helpers`` are names.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from graphmill.ir import UserInputError
from graphmill.passes.base import pass_class
from graphmill.util.suggest import did_you_mean
from graphmill.passes.builtin_schedules import BUILTIN_SCHEDULES
from graphmill.passes.schedule import (KEYWORDS, MAX_ITERATIONS, MAX_NESTING, WORD, Call, Fixpoint, Repeat, Run,
                                       Schedule, SourceLoc, Step, most_runs, nesting_height)
from graphmill.util.files import TEXT_FILE_LIMIT, read_user_file




GRAMMAR = r"""
start: (_item _SEP?)*
_item: include | schedule_def | step
include: "include" STRING
schedule_def: "schedule" NAME "{" _body "}"
_body: (step _SEP?)*
?step: fixpoint | repeat | run
fixpoint: FIXPOINT args? "{" _body "}"
repeat: REPEAT args? "{" _body "}"
run: NAME (args | braced)?
args: "(" [arg ("," arg)*] ")"
braced: "{" [kwarg ("," kwarg)*] "}"
?arg: kwarg | value
kwarg: NAME "=" value
?value: NUMBER -> number
      | STRING -> string
      | NAME -> word
      | "[" [value ("," value)*] "]" -> list
FIXPOINT.2: /fixpoint(?![A-Za-z0-9_.\-])/
REPEAT.2: /repeat(?![A-Za-z0-9_.\-])/
NAME: /@WORD@/
NUMBER: /[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?/
STRING: /"([^"\\]|\\.)*"/
_SEP: "," | ";"
COMMENT: /#[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
"""

GRAMMAR = GRAMMAR.replace("@WORD@", WORD)  # one definition of a bare word, which the printer shares (schedule.py)

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "EQUAL": "'='", "COMMA": "','",
    "_SEP": "',' or ';'", "SEMICOLON": "';'", "FIXPOINT": "'fixpoint'", "REPEAT": "'repeat'",
    "SCHEDULE": "'schedule'", "INCLUDE": "'include'", "$END": "end of input",
}


class ScheduleError(UserInputError):
    """A located error in a schedule: ``file:line:col: message``, the line, and a caret."""

    def __init__(self, message: str, loc: SourceLoc | None) -> None:
        self.loc = loc
        self.bare = message
        if loc is None:
            super().__init__(message)
            return
        text = f"{loc}: {message}"
        if loc.text:
            shown, column = loc.text, loc.column
            if len(shown) > 100:  # a generated one-line schedule: show the part around the column
                start = max(0, column - 60)
                shown = ("..." if start else "") + shown[start:start + 100] + ("..." if start + 100 < len(shown) else "")
                column = column - start + (3 if start else 0)
            # control characters (a NUL, an escape) would be written to the terminal raw: one '?' each, one column
            # (C1 controls and the Unicode line and paragraph separators too: a consumer splitting lines split there)
            shown = "".join("?" if (ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160 or c in "\u2028\u2029" else c
                            for c in shown)
            # the line's own tabs before the column, so that the caret lands under it however tabs are shown
            # and two columns for a wide character (CJK, emoji), as a terminal shows it (gcc and rustc do the same)
            pad = "".join(c if c == "\t" else "  " if unicodedata.east_asian_width(c) in "WF" else " "
                          for c in shown[:column - 1])
            text += f"\n    {shown}\n    {pad}^"
        super().__init__(text)


@dataclass
class _Def:
    name: str
    tree: Tree
    loc: SourceLoc


def _loc(source: str, lines: list[str], line: int, column: int) -> SourceLoc:
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return SourceLoc(source, line, column, text.rstrip("\n"))


#: the escapes a string may hold; any other backslash is refused (``"\\xff"`` became ``xff``, silently)
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(s: str) -> str:
    body = s[1:-1]
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(ESCAPES[body[i + 1]])  # _check_escapes refused the others before
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _check_escapes(tree: Tree, source: str, lines: list[str]) -> None:
    """Refuse a string whose backslash starts no known escape (``ESCAPES``), at its line and column."""
    for tok in tree.scan_values(lambda t: isinstance(t, Token) and t.type == "STRING"):
        body, i = str(tok), 1
        while i < len(body) - 1:
            if body[i] == "\\":
                c = body[i + 1]
                if c not in ESCAPES:
                    before = body[:i]  # a string may span lines: the backslash's own line and column
                    line = tok.line + before.count("\n")
                    column = i - before.rfind("\n") if "\n" in before else tok.column + i
                    shown = "\\" + c if c.isprintable() else f"\\ then {c!r}"
                    raise ScheduleError(f"unknown escape {shown} in a string; a string knows \\n, \\r, \\t, \\\" and "
                                        "\\\\", _loc(source, lines, line, column))
                i += 2
            else:
                i += 1


def _check_numbers(tree: Tree, source: str, lines: list[str]) -> None:
    """Refuse an integer longer than Python converts (4,300 digits), at its line and column: a
    ``size_limit=999...`` of 5,000 digits was a ValueError traceback."""
    for tok in tree.scan_values(lambda t: isinstance(t, Token) and t.type == "NUMBER"):
        digits = sum(c.isdigit() for c in str(tok))
        if digits > MAX_NUMBER_DIGITS and not any(c in str(tok) for c in ".eE"):
            raise ScheduleError(f"an integer of {digits:,} digits; options take at most {MAX_NUMBER_DIGITS:,}",
                                _loc(source, lines, tok.line, tok.column))


MAX_NUMBER_DIGITS = 4000  # under Python's int() limit of 4,300; no option takes a number near 10^4000


class _Values(Transformer):
    """Turns the option-value subtrees of a parse into Python values (int, float, str, bool, list)."""

    @v_args(inline=True)
    def number(self, tok: Token):
        s = str(tok)
        return float(s) if any(c in s for c in ".eE") else int(s)

    @v_args(inline=True)
    def string(self, tok: Token):
        return _unquote(str(tok))

    @v_args(inline=True)
    def word(self, tok: Token):
        s = str(tok)
        return {"true": True, "false": False}.get(s, s)

    def list(self, items):
        return list(items)


def _scan_brackets(text: str, stop: int | None = None) -> tuple[list[tuple[str, int, int, int]], tuple[int, int] | None]:
    """Brackets ``{([`` still open at ``stop`` (char, line, column, offset), ignoring comments and strings,
    and where steps first nest deeper than ``MAX_NESTING`` (``None`` if nowhere): the fixpoint or repeat whose body
    is one level too many, where the parser's own check would point (it named the bracket at which a count of all
    brackets gave up, two levels further in: an outside check), or failing that (bodies the keyword search below
    does not see, such as one after a comment) the first bracket nested deeper than the parser may recurse."""
    stack: list[tuple[str, int, int, int]] = []
    bodies: list[bool] = []  # per open bracket: a fixpoint's or repeat's body
    too_deep: tuple[int, int] | None = None
    line, col, i = 1, 0, 0
    end = len(text) if stop is None else min(stop, len(text))
    in_str = in_comment = False
    while i < end:
        c = text[i]
        col += 1
        if c == "\n":
            line, col, in_comment = line + 1, 0, False
        elif in_comment:
            pass
        elif in_str:
            if c == "\\":
                i += 1
                col += 1
            elif c == '"':
                in_str = False
        elif c == "#":
            in_comment = True
        elif c == '"':
            in_str = True
        elif c in "{([":
            stack.append((c, line, col, i))
            keyword = _BODY_KEYWORD.search(text, max(0, i - 256), i) if c == "{" else None
            bodies.append(keyword is not None)
            if keyword is not None and too_deep is None and sum(bodies) > MAX_NESTING:
                k = keyword.start(1)
                too_deep = (line - text.count("\n", k, i), k - text.rfind("\n", 0, k))
            # MAX_NESTING levels of steps, plus a schedule block, an option list and a list inside it
            if len(stack) > MAX_NESTING + 3 and too_deep is None:
                too_deep = (line, col)
        elif c in "})]" and stack:
            stack.pop()
            bodies.pop()
        i += 1
    return stack, too_deep


_BODY_KEYWORD = re.compile(r"(?<![A-Za-z0-9_.\-])(fixpoint|repeat)\s*(\([^()]*\))?\s*$")


def _needs_body(before: str) -> str | None:
    """'fixpoint needs a body ...' when ``before`` ends with a fixpoint or repeat that has none yet."""
    m = _BODY_KEYWORD.search(before)
    if m is None:
        return None
    kw = m.group(1)
    return f"'{kw}' needs a body: {kw}({'max_iters=N' if kw == 'fixpoint' else 'N'}) {{ steps }}"


def _construct_hint(text: str, pos: int | None, open_here: list, expected,
                    token: str) -> tuple[str, int | None] | None:
    """A message naming the construct a syntax error is in, and where it starts (None: the error's place), for
    the mistakes whose bare token message misleads: a step inside a pass's option braces (``dce{cse}``), a
    fixpoint's options in braces (``fixpoint{max_iters=3}{dce}``), a fixpoint or repeat without a body, a
    schedule defined inside another. Before, some said "there is no matching opening bracket" of balanced text
    (an outside check)."""
    if pos is None:
        return None
    before = text[:pos]
    if "LBRACE" in expected and (body := _needs_body(before)):
        return body, None
    # ``cse,,dce``: a step left out (accepted silently before), or a leading separator; where a step may begin
    # (the parser expects 'fixpoint'), not inside a pass's options
    if token in (",", ";") and "FIXPOINT" in expected:
        prev = re.sub(r"#[^\n]*", "", before).rstrip()
        if not prev or prev[-1] in ",;{":
            return f"an empty step before this {token!r} (a step left out?)", None
    braces = [b for b in open_here if b[0] == "{"]
    if braces:
        head = text[:braces[-1][3]]
        nested = re.search(rf"(?<![A-Za-z0-9_.\-])schedule\s+({WORD})\s*$", head)
        if nested and len(braces) > 1:
            return (f"schedule {nested.group(1)!r} is defined inside another; define schedules at the top level and "
                    "name them as steps", nested.start())
        owner = re.search(rf"(?<![A-Za-z0-9_.\-])({WORD})\s*$", head)
        word = owner.group(1) if owner else None
        if word in ("fixpoint", "repeat") and ("EQUAL" in expected or token == "="):
            return (f"'{word}' takes its options in parentheses and its steps in braces: "
                    f"{word}({'max_iters=N' if word == 'fixpoint' else 'N'}) {{ steps }}", None)
        if word is not None and "EQUAL" in expected:
            return (f"options in braces after a pass are name=value ({word}{{name=value}}); steps in braces belong "
                    "to fixpoint or repeat", None)
    return None


def _unbalanced_hint(text: str) -> tuple[int, int] | None:
    """Line/column of the first '{' or '(' never closed, ignoring comments and strings."""
    stack, _ = _scan_brackets(text)
    return (stack[0][1], stack[0][2]) if stack else None


def _nesting_error(loc: SourceLoc) -> ScheduleError:
    return ScheduleError(f"steps nest deeper than {MAX_NESTING} levels (the limit; each fixpoint, repeat and "
                         f"call of a named schedule is a level)", loc)


def read_schedule_text(path: str, *, included_from: SourceLoc | None = None) -> str:
    """The text of a ``.mill`` file, which must be UTF-8 (a leading BOM is dropped).

    Anything else is refused in one line naming the file, the line and column, the byte offset and the
    byte (and the include line that named the file), instead of a UnicodeDecodeError traceback.
    """
    try:
        data = read_user_file(path, TEXT_FILE_LIMIT, "a schedule file (.mill)")
    except (UserInputError, OSError) as e:  # not a regular file, too large, a folder, unreadable
        message = str(e) if isinstance(e, UserInputError) else f"{path}: cannot read ({e.strerror or e})"
        if included_from is None:
            raise UserInputError(message) from None
        raise ScheduleError(f"{message} (included from here)", included_from) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        via = f" (included from {included_from})" if included_from is not None else ""
        raise ScheduleError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}{via}; "
                            f"schedule files are UTF-8", SourceLoc(path, line, column)) from None
    return text[1:] if text.startswith("\ufeff") else text


class _Parser:
    def __init__(self) -> None:
        self.defs: dict[str, _Def] = {}
        self.built: dict[str, Schedule] = {}
        self.building: list[str] = []
        self.include_stack: list[str] = []
        self.included: set[str] = set()  # files read already (real paths), each once however often included
        self.lines: dict[str, list[str]] = {}
        self.option_locs: dict[tuple[int, str], SourceLoc] = {}
        self.depth = 0  # levels of fixpoint/repeat/call around the step being built
        self.heights: dict[int, int] = {}
        self.runs: dict[int, int] = {}
        self.builtins: dict[str, Schedule] = {}

    # -- parsing ------------------------------------------------------------------
    def parse_text(self, text: str, source: str) -> list[Tree]:
        # line ends as Python's universal newlines read them (CRLF and a lone CR are "\n"): a file of lone CRs was
        # one line, its first comment running to the end of the file, so the steps after it never ran (a review)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        # lines as the parser counts them, by "\n" alone: splitlines() also splits at U+2028 and form feeds, so
        # the line quoted under an error was another one (an outside check)
        lines = text.split("\n")
        self.lines[source] = lines
        _, too_deep = _scan_brackets(text)
        if too_deep is not None:  # before lark, whose tree transformer recurses once per level
            raise _nesting_error(_loc(source, lines, *too_deep))
        try:
            parsed = _PARSER.parse(text)
        except UnexpectedInput as e:
            raise self._syntax_error(e, text, source, lines) from None
        _check_escapes(parsed, source, lines)
        _check_numbers(parsed, source, lines)
        tree = _Values().transform(parsed)  # option values become Python values
        top_steps = []
        for child in tree.children:
            if child.data == "include":
                self._include(child, source, lines)
            elif child.data == "schedule_def":
                name = str(child.children[0])
                loc = _loc(source, lines, child.meta.line, child.meta.column)
                if name in KEYWORDS:  # Schedule refused it later, without file, line or column (an outside check)
                    token = child.children[0]
                    at = _loc(source, lines, getattr(token, "line", None) or child.meta.line,
                              getattr(token, "column", None) or child.meta.column)
                    raise ScheduleError(f"a schedule cannot be named {name!r}: {', '.join(KEYWORDS[:-1])} and "
                                        f"{KEYWORDS[-1]} are keywords of the schedule language", at)
                if name in self.defs:
                    raise ScheduleError(f"schedule {name!r} is defined twice (first at {self.defs[name].loc})", loc)
                self.defs[name] = _Def(name, child, loc)
                self._annotate(child, source, lines)
            else:
                self._annotate(child, source, lines)
                top_steps.append(child)
        return top_steps

    def _annotate(self, tree: Tree, source: str, lines: list[str]) -> None:
        for sub in tree.iter_subtrees():
            if sub.data in ("run", "fixpoint", "repeat", "schedule_def") and not hasattr(sub, "gm_loc"):
                sub.gm_loc = _loc(source, lines, sub.meta.line, sub.meta.column)  # type: ignore[attr-defined]

    def _include(self, node: Tree, source: str, lines: list[str]) -> None:
        loc = _loc(source, lines, node.meta.line, node.meta.column)
        rel = _unquote(str(node.children[0]))
        base = os.path.dirname(os.path.abspath(source)) if os.path.exists(source) else os.getcwd()
        path = os.path.normpath(os.path.join(base, rel))
        real = os.path.realpath(path)  # the file itself, whatever links name it
        # else a shared schedule could echo a line of any file into an error (a CI log); a link's target counts
        if not path.endswith(".mill") or not real.endswith(".mill"):
            raise ScheduleError(f"include {rel!r}: an included file is a schedule, named *.mill", loc)
        # cycles by the files themselves: a cycle spelled through a link is one too, which the read-once rule
        # below would otherwise swallow
        if real in {os.path.realpath(f) for f in self.include_stack}:
            raise ScheduleError(f"include cycle: {' -> '.join(self.include_stack + [path])}", loc)
        if real in self.included:  # a diamond (a and b both include common.mill): read once
            return
        if len(self.include_stack) > MAX_NESTING:
            raise ScheduleError(f"includes nest deeper than {MAX_NESTING} files (the limit)", loc)
        if not os.path.exists(path):  # a folder or device is refused by read_schedule_text, naming it
            raise ScheduleError(f"cannot include {rel!r}: no such file ({path})", loc)
        self.include_stack.append(path)
        self.included.add(real)
        try:
            steps = self.parse_text(read_schedule_text(path, included_from=loc), path)
            if steps:
                first = steps[0].gm_loc  # type: ignore[attr-defined]
                raise ScheduleError("an included file may only define schedules, not run steps", first)
        finally:
            self.include_stack.pop()

    def _syntax_error(self, e: UnexpectedInput, text: str, source: str, lines: list[str]) -> ScheduleError:
        if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
            hint = _unbalanced_hint(text)
            if hint:
                ch = lines[hint[0] - 1][hint[1] - 1]
                closing = {"{": "}", "(": ")", "[": "]"}[ch]
                return ScheduleError(f"'{ch}' is never closed (expected '{closing}' before the end)",
                                     _loc(source, lines, *hint))
            line = max(len(lines), 1)
            end = _loc(source, lines, line, len(lines[-1]) + 1 if lines else 1)
            return ScheduleError(_needs_body(text) or "unexpected end of input", end)
        misspelled = self._unknown_word_before_block(text, e.pos_in_stream, source, lines)
        if misspelled is not None:
            return misspelled
        loc = _loc(source, lines, e.line, e.column)
        if isinstance(e, UnexpectedCharacters):
            ch = text[e.pos_in_stream] if e.pos_in_stream is not None and e.pos_in_stream < len(text) else "?"
            if ch == '"':  # a whole string is one token: the lexer stops at a quote only when nothing closes it
                return ScheduleError('unterminated string: no closing \" after this one (\\" is an escaped quote)',
                                     loc)
            return ScheduleError(f"unexpected character {ch!r}", loc)
        if isinstance(e, UnexpectedToken):
            got = repr(str(e.token)) if e.token.type != "$END" else "end of input"
            closing = {"{": "}", "(": ")", "[": "]"}
            open_here = _scan_brackets(text, e.pos_in_stream)[0] if e.pos_in_stream is not None else []
            if str(e.token) in ("}", ")", "]") and open_here and closing[open_here[-1][0]] != str(e.token):
                ch, line, column, _ = open_here[-1]  # '{disable=[a}}' closed the '[' with a '}'
                return ScheduleError(f"unexpected {got}: the '{ch}' at line {line}, column {column} is not closed yet "
                                     f"(expected '{closing[ch]}' first)", loc)
            if str(e.token) in ("}", ")", "]") and not open_here:
                return ScheduleError(f"unexpected {got}: there is no matching opening bracket", loc)
            hint = _construct_hint(text, e.pos_in_stream, open_here, e.expected, str(e.token))
            if hint is not None:
                message, offset = hint
                if offset is not None:
                    at = text.count("\n", 0, offset) + 1
                    loc = _loc(source, lines, at, offset - (text.rfind("\n", 0, offset) + 1) + 1)
                return ScheduleError(message, loc)
            expected = sorted({_TOKEN_WORDS.get(t, t) for t in e.expected if not t.startswith("__")})
            if open_here:  # only the innermost open bracket may close here ('repeat(2 {' offered ']' and '}')
                wrong = {f"'{c}'" for c in closing.values()} - {f"'{closing[open_here[-1][0]]}'"}
                expected = [x for x in expected if x not in wrong] or expected
            return ScheduleError(f"unexpected {got}; expected {' or '.join(expected[:5])}", loc)
        return ScheduleError(str(e), loc)

    def _unknown_word_before_block(self, text: str, pos: int | None, source: str,
                                   lines: list[str]) -> ScheduleError | None:
        """A syntax error inside ``WORD {`` where WORD (or the word before it) is no pass, schedule or keyword.

        ``schedul a {`` parses as the steps ``schedul`` and ``a{...}``, a pass with options in braces, and
        the grammar only fails at the block's first step, lines later; the misspelt word is the error.
        """
        if pos is None:
            return None
        stack, _ = _scan_brackets(text, pos)
        braces = [b for b in stack if b[0] == "{"]
        if not braces:
            return None
        offset = braces[-1][3]
        m = re.search(rf"(?:(?<![A-Za-z0-9_.\-])({WORD})[ \t]+)?(?<![A-Za-z0-9_.\-])({WORD})\s*$", text[:offset])
        if m is None:
            return None
        known = set(_known_passes()) | set(BUILTIN_SCHEDULES) | set(KEYWORDS) | set(
            re.findall(rf"\bschedule\s+({WORD})", text))
        first, second = m.group(1), m.group(2)
        if second in known or (first is not None and first == "schedule"):
            return None
        bad, start = (first, m.start(1)) if first is not None and first not in known else (second, m.start(2))
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        return ScheduleError(f"unknown pass or schedule {bad!r}{did_you_mean(bad, sorted(known))}",
                             _loc(source, lines, line, column))

    # -- building -----------------------------------------------------------------
    def schedule(self, name: str, loc: SourceLoc | None = None) -> Schedule:
        if name in self.built:
            return self.built[name]
        if name in self.building:
            raise ScheduleError(f"schedule {name!r} calls itself ({' -> '.join(self.building + [name])})", loc)
        d = self.defs[name]
        self.building.append(name)
        try:
            sched = Schedule(name, self.steps(d.tree.children[1:]))
        finally:
            self.building.pop()
        self.built[name] = sched
        return sched

    def steps(self, trees: list) -> list[Step]:
        return [self.step(t) for t in trees if isinstance(t, Tree)]

    def _args(self, tree: Tree | None, loc: SourceLoc | None) -> tuple[list, dict]:
        positional, named = [], {}
        if tree is None:
            return positional, named
        for a in tree.children:
            if isinstance(a, Tree) and a.data == "kwarg":
                k = str(a.children[0])
                if loc is not None:
                    self.option_locs[(id(tree), k)] = SourceLoc(loc.file, a.meta.line, a.meta.column,
                                                               self.lines[loc.file][a.meta.line - 1])
                if k in named:
                    raise ScheduleError(f"option {k!r} is given twice", self.option_locs.get((id(tree), k), loc))
                named[k] = a.children[1]
            else:
                positional.append(a)
        return positional, named

    def _enter(self, loc: SourceLoc | None, below: int = 0) -> None:
        """One more level of nesting (``below``: levels the step brings with it), within MAX_NESTING."""
        if self.depth + 1 + below > MAX_NESTING:
            raise _nesting_error(loc)

    def _call(self, callee: Schedule, loc: SourceLoc | None) -> Call:
        self._enter(loc, nesting_height(callee.body, self.heights))
        return Call(callee, loc)

    def step(self, tree: Tree) -> Step:
        loc = tree.gm_loc  # type: ignore[attr-defined]
        kids = tree.children
        if tree.data in ("fixpoint", "repeat"):
            args = next((k for k in kids if isinstance(k, Tree) and k.data == "args"), None)
            body = [k for k in kids if isinstance(k, Tree) and k.data != "args"]
            pos, named = self._args(args, loc)
            self._enter(loc)
            self.depth += 1
            try:
                inner = self.steps(body)
            finally:
                self.depth -= 1
            if tree.data == "fixpoint":
                unknown = sorted(set(named) - {"max_iters"})
                if pos or unknown:
                    where = self.option_locs.get((id(args), unknown[0]), loc) if unknown else loc
                    hint = did_you_mean(unknown[0], ["max_iters"]) if unknown else ""
                    raise ScheduleError(f"fixpoint takes only max_iters=N{hint}", where)
                n = named.get("max_iters", 8)
                n_loc = self.option_locs.get((id(args), "max_iters"), loc)
                if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ITERATIONS:
                    raise ScheduleError(f"fixpoint: option 'max_iters' must be an integer from 1 to "
                                        f"{MAX_ITERATIONS:,}, got {n!r}", n_loc)
                inside = most_runs(inner, self.runs)
                if n * inside > MAX_ITERATIONS:
                    raise ScheduleError(f"fixpoint(max_iters={n}) around steps already repeated {inside:,} times "
                                        f"could run them {n * inside:,} times (at most {MAX_ITERATIONS:,})", n_loc)
                return Fixpoint(inner, n, loc)
            count = named.pop("count", pos[0] if pos else None)
            if named or len(pos) > 1 or count is None:
                raise ScheduleError("repeat takes one count: repeat(N) { ... }", loc)
            count_loc = self.option_locs.get((id(args), "count"), loc)
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_ITERATIONS:
                raise ScheduleError(f"repeat: count must be an integer from 0 to {MAX_ITERATIONS:,}, got {count!r}",
                                    count_loc)
            inside = most_runs(inner, self.runs)
            if count * inside > MAX_ITERATIONS:
                raise ScheduleError(f"repeat({count}) around steps already repeated {inside:,} times would run them "
                                    f"{count * inside:,} times (at most {MAX_ITERATIONS:,})", count_loc)
            return Repeat(inner, count, loc)
        name = str(kids[0])
        opt_tree = kids[1] if len(kids) > 1 else None
        pos, named = self._args(opt_tree, loc)
        if pos:
            raise ScheduleError(f"{name}: options must be named (name=value)", loc)
        if name in self.defs or name in BUILTIN_SCHEDULES:
            if named:
                raise ScheduleError(f"schedule {name!r} takes no options", loc)
            if name not in self.defs:  # a built-in schedule, unless the file defines one of that name
                return self._call(self._builtin(name), loc)
            self._enter(loc)
            self.depth += 1
            try:
                callee = self.schedule(name, loc)
            finally:
                self.depth -= 1
            return self._call(callee, loc)
        try:
            cls = pass_class(name)
        except UserInputError:
            # not the schedules being built: calling one from inside itself is a cycle, never the fix
            callable_names = [n for n in list(_known_passes()) + list(self.defs) + list(BUILTIN_SCHEDULES)
                              + list(KEYWORDS) if n not in self.building]
            hint = did_you_mean(name, callable_names) or (
                " (a pass of your own? load its file with --load-passes FILE.py; Python: graphmill.api.load_passes)")
            raise ScheduleError(f"unknown pass or schedule {name!r}{hint}", loc) from None
        known = {o.name: o for o in cls.options}
        for k, v in named.items():  # validate option names, types and ranges now, not mid-run
            kloc = self.option_locs.get((id(opt_tree), k), loc)
            if k not in known:
                listing = f"; its options: {', '.join(known)}" if known else "; it takes no options"
                raise ScheduleError(f"pass {name!r} has no option {k!r}{did_you_mean(k, known)}{listing}", kloc)
            try:
                known[k].coerce(v, f"pass {name!r}")
            except UserInputError as e:
                raise ScheduleError(str(e), kloc) from None
        return Run(name, named, loc)

    def _builtin(self, name: str) -> Schedule:
        if name not in self.builtins:
            from graphmill.passes.builtin_schedules import builtin_schedule

            self.builtins[name] = builtin_schedule(name)
        return self.builtins[name]


def _known_passes() -> list[str]:
    from graphmill.passes.base import registered_passes

    return list(registered_passes())


def parse_schedule(text: str, *, source: str = "<inline>", entry: str | None = None) -> Schedule:
    """Parse a schedule from text (file or inline form). ``entry`` picks a named schedule.

    The entry is: ``entry`` if given; else the steps written outside any ``schedule`` block;
    else, of the schedules the text itself defines (not those of included files), the one named
    ``default``, else the only one that none of the others calls (helpers first, then the schedule
    that uses them). Several such and none named ``default`` is an error listing them, so that
    which one runs is never a guess.
    """
    p = _Parser()
    if os.path.isfile(source):
        p.include_stack.append(os.path.normpath(os.path.abspath(source)))  # a file including itself is a cycle
        p.included.add(os.path.realpath(source))
    top = p.parse_text(text, source)
    for name in list(p.defs):  # every schedule is checked, not only the one that runs
        p.schedule(name)
    sources = tuple(f for f in p.lines if os.path.isfile(f))
    chosen = _entry(p, top, source, entry)
    chosen.sources = sources
    return chosen


def _entry(p: "_Parser", top: list[Tree], source: str, entry: str | None) -> Schedule:
    """The schedule ``parse_schedule`` returns (its docstring says which)."""
    if entry is not None:
        if entry not in p.defs:
            near = did_you_mean(entry, p.defs)  # else the names there are (it named none; an outside check)
            there = near or (f" (it defines {', '.join(sorted(p.defs))})" if p.defs else " (it defines none)")
            raise ScheduleError(f"no schedule named {entry!r} in {source}{there}", None)
        return p.schedule(entry)
    if top:
        return Schedule("main", p.steps(top))
    own = [d.name for d in p.defs.values() if d.loc.file == source]
    if "default" in own:
        return p.schedule("default")
    if not own:
        raise ScheduleError(f"{source}: defines no schedule and no steps", None)
    called = {id(c) for name in own for c in p.schedule(name).callees()}
    roots = [name for name in own if id(p.schedule(name)) not in called]
    if len(roots) == 1:
        return p.schedule(roots[0])
    how = f"{source}:NAME" if source != "<inline>" else "entry=NAME"
    raise ScheduleError(f"{source} defines {len(roots)} schedules that no other one calls ({', '.join(roots)}) "
                        f"and none is named 'default': say which one to run ({how})", None)


def load_schedule(path: str, *, entry: str | None = None) -> Schedule:
    """Parse a ``.mill`` file (``path`` may end in ``:name`` to pick a schedule)."""
    if entry is None and ":" in os.path.basename(path) and not os.path.exists(path):
        path, entry = path.rsplit(":", 1)
    if not os.path.exists(path):  # a folder or device is refused by read_schedule_text, naming it
        raise UserInputError(f"{path}: no such schedule file")
    # named as an include must be: a file of passes given to -s was parsed, "1:1: unexpected '\"\"'" (a device or
    # FIFO is refused as not a regular file by read_schedule_text)
    if os.path.isfile(path) and not path.endswith(".mill"):
        hint = {".py": " (a file of passes is loaded with --load-passes FILE, its passes then named in the schedule)",
                ".onnx": " (this is a model)"}.get(os.path.splitext(path)[1].lower(), "")
        raise UserInputError(f"{path}: a schedule file is named *.mill{hint}")
    return parse_schedule(read_schedule_text(path), source=path, entry=entry)
