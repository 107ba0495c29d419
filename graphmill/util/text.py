"""Names and numbers from a user's file, shown in a line of text.

A value, node or accelerator name may hold any character. The CLI escapes control characters on its streams
(``cli/common.escaped_controls``) but must let line breaks through, since its own lines end with them: a name
holding one printed a line of its own under a report (``x\\nINJECT`` showed ``INJECT`` as if it were an input),
so the text reports write names through ``one_line``.
"""

from __future__ import annotations

from typing import Any

#: the characters that end a line in a terminal or in str.splitlines() and that the CLI's streams let through
_LINE_BREAKS = {0x0A: "\\n", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: Any) -> str:
    """``text`` with its line breaks written as escapes (``\\n``), so that it stays on the line it is printed in."""
    return str(text).translate(_LINE_BREAKS)


def short_number(v: Any) -> str:
    """``v`` as a message quotes it: an integer of more than 20 digits shortened to its first 12 and its length
    (a bound or an offset of thousands of digits made a one-line error thousands of characters long)."""
    digits = len(str(v)) if isinstance(v, int) and not isinstance(v, bool) else 0
    return f"{str(v)[:12]}... ({digits} digits)" if digits > 20 else repr(v)


__all__ = ["one_line", "short_number"]
