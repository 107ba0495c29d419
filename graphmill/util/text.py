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
    (a bound or an offset of thousands of digits made a one-line error thousands of characters long); past
    Python's 4,300-digit conversion limit, its approximate length alone (str() raised there)."""
    if not isinstance(v, int) or isinstance(v, bool):
        try:
            text = repr(v)
        except ValueError:  # a Fraction or Decimal past the same limit
            return f"a {type(v).__name__} of thousands of digits"
        return text if len(text) <= 40 else f"{text[:12]}... ({len(text)} characters)"
    try:
        text = str(v)
    except ValueError:  # sys.get_int_max_str_digits()
        return f"{'a negative' if v < 0 else 'an'} integer of about {int(v.bit_length() * 0.30103):,} digits"
    return f"{text[:12]}... ({len(text)} digits)" if len(text) > 20 else text


__all__ = ["one_line", "short_number"]
