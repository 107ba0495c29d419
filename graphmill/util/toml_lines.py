"""Where a key of a TOML file is written, for messages that name the line and column.

``tomllib`` gives positions for syntax errors only; a value of the wrong kind or range is found in the parsed
dict, without a position. ``key_position`` finds the line that assigns a dotted key (``array.rows``) by
reading the file's table headers (``[array]``) and assignments (``rows = ...``, or ``array.rows = ...``): the
subset of TOML that configuration files are written in. Inside a multi-line string or an inline table it may
miss, and then says nothing rather than a wrong line.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r'^\s*\[\s*([A-Za-z0-9_.\-" ]+?)\s*\]\s*(#.*)?$')
_ASSIGN = re.compile(r'^(\s*)("?[A-Za-z0-9_\-]+"?(?:\s*\.\s*"?[A-Za-z0-9_\-]+"?)*)\s*=')


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip('"') for p in dotted.split(".")]


def key_position(text: str, dotted: str) -> tuple[int, int] | None:
    """(line, column), both from 1, of the assignment of ``dotted`` (or of its table's header when ``dotted``
    names a table), or None when it is not written plainly."""
    want = _parts(dotted)
    table: list[str] = []
    open_quote: str | None = None  # the delimiter of the multi-line string the line is in, if any
    for number, line in enumerate(text.splitlines(), 1):
        inside = open_quote is not None
        open_quote = _string_state(line, open_quote)
        if inside:
            continue
        h = _HEADER.match(line)
        if h:
            table = _parts(h.group(1))
            if table == want:
                return number, line.index("[") + 1
            continue
        a = _ASSIGN.match(line)
        if a and (table + _parts(a.group(2)))[:len(want)] == want:  # foo.bar = 1 in [memory]: memory.foo too
            return number, len(a.group(1)) + 1
    return None


def _string_state(line: str, open_quote: str | None) -> str | None:
    """The multi-line string delimiter still open at the end of ``line``, given the one open at its start: one-line
    strings ("..." with escapes, '...'), comments and escaped quotes in a basic multi-line string are skipped."""
    i, n = 0, len(line)
    while i < n:
        if open_quote is not None:
            if open_quote == '"""' and line[i] == "\\":
                i += 2
                continue
            if line.startswith(open_quote, i):
                i += 3
                open_quote = None
                continue
            i += 1
            continue
        c = line[i]
        if line.startswith('"""', i) or line.startswith("'''", i):
            open_quote = line[i:i + 3]
            i += 3
        elif c == '"':  # a basic string: to the next unescaped quote
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        elif c == "'":  # a literal string: no escapes
            end = line.find("'", i + 1)
            i = n if end < 0 else end + 1
        elif c == "#":
            break
        else:
            i += 1
    return open_quote


def locate(path: str, text: str, dotted: str | None) -> str:
    """``path:line:col`` for ``dotted`` in ``text``, or ``path`` alone."""
    pos = key_position(text, dotted) if dotted else None
    return f"{path}:{pos[0]}:{pos[1]}" if pos else path
