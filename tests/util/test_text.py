"""How messages quote a user's names and numbers (graphmill/util/text.py).

References: Python's own decimal text of each number (its digit count), and its 4,300-digit conversion limit
(``sys.get_int_max_str_digits``), past which ``str()`` raises.
"""

from __future__ import annotations

import sys

import pytest

from graphmill import search
from graphmill.errors import UserInputError
from graphmill.util.text import one_line, short_number


def test_short_number_keeps_short_values_and_shortens_long_integers():
    assert [short_number(v) for v in (5, -3, None, 1.5, True, 10 ** 20 - 1)] == \
        ["5", "-3", "None", "1.5", "True", str(10 ** 20 - 1)]
    assert short_number(10 ** 30) == "100000000000... (31 digits)"
    assert short_number(-(10 ** 30)) == "-10000000000... (32 digits)"


def test_short_number_past_pythons_conversion_limit_gives_the_length_alone():
    """str() of a 5,000-digit integer raises ValueError (Exceeds the limit), so a bound of 10**5000 given to
    search.Int ended in a traceback (an outside check)."""
    big = 10 ** 5000
    with pytest.raises(ValueError):
        str(big)
    assert sys.get_int_max_str_digits() < 5000
    assert short_number(big) == "an integer of about 5,000 digits"
    assert short_number(-big) == "a negative integer of about 5,000 digits"
    with pytest.raises(UserInputError, match=r"^Int: high=an integer of about 5,000 digits must be a finite number$"):
        search.Int(0, big)


def test_short_number_of_a_huge_fraction_is_one_line():
    """repr() of a Fraction past the limit raises too (search.Int(0, Fraction(10**5000, 3)) ended in a traceback; an
    outside check)."""
    from fractions import Fraction

    assert short_number(Fraction(10 ** 5000, 3)) == "a Fraction of thousands of digits"
    with pytest.raises(UserInputError, match=r"^Int: high=a Fraction of thousands of digits must be a finite number$"):
        search.Int(0, Fraction(10 ** 5000, 3))


def test_one_line_escapes_line_breaks():
    assert one_line("x\nINJECT\u2028y") == "x\\nINJECT\\u2028y"
