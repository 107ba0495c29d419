"""One way to answer a mistyped name with the nearest right one, for every layer's one-line errors.

A user who writes ``--strategy evolutoin``, ``optimze``, ``resnet_50`` or a pass name with a typo should see the
same kind of hint wherever the name was refused, chosen by the same rule: difflib's similarity ratio of at least
0.6 (its default), case ignored in the comparison (``SAMPLED`` finds ``sampled``) but never in the name shown.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

CUTOFF = 0.6


def closest(word: Any, names: Iterable[Any]) -> str | None:
    """The name of ``names`` nearest to ``word``, or None when none is similar enough. Of names equal but for
    case, the first is shown."""
    by_lower: dict[str, str] = {}
    for name in names:
        by_lower.setdefault(str(name).lower(), str(name))
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=CUTOFF)
    return by_lower[close[0]] if close else None


def did_you_mean(word: Any, names: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` to append to an error message, or an empty string."""
    close = closest(word, names)
    return f" (did you mean {close!r}?)" if close else ""
