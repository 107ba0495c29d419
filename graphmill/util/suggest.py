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
    """The name of ``names`` nearest to ``word``, or None when none is similar enough, or when several are equally
    near (``gpuO`` among gpu0 to gpu3 was answered "did you mean 'gpu3'?", difflib's pick among equals: an outside
    check). Of names equal but for case, the first is shown."""
    by_lower: dict[str, str] = {}
    for name in names:
        by_lower.setdefault(str(name).lower(), str(name))
    key = str(word).lower()
    close = difflib.get_close_matches(key, list(by_lower), n=2, cutoff=CUTOFF)
    if len(close) == 2 and _ratio(key, close[0]) == _ratio(key, close[1]):
        return None
    return by_lower[close[0]] if close else None


def _ratio(a: str, b: str) -> float:
    m = difflib.SequenceMatcher()
    m.set_seqs(b, a)  # as get_close_matches scores them
    return m.ratio()


def did_you_mean(word: Any, names: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` to append to an error message, or an empty string."""
    close = closest(word, names)
    return f" (did you mean {close!r}?)" if close else ""
