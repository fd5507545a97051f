"""Glue of the theory chapter (notebooks/theory.ipynb): summaries over its Theorem-4.6
settings. The checks themselves are the library's :mod:`dsgd.theory`."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence


def worst_share(summaries: Sequence[dict[str, Any]], key: str, min_qualifying: int = 20) -> float:
    """The smallest ``summaries[i][key]`` over the settings with at least
    ``min_qualifying`` steps meeting every condition (``n_all``); NaN when none has
    that many (a share of very few steps is not quoted)."""
    values = [s[key] for s in summaries if s["n_all"] >= min_qualifying]
    return min(values) if values else math.nan


def extreme(summaries: Sequence[dict[str, Any]], names: Sequence[str], key: str,
            pick: Callable[..., Any] = min) -> tuple[Any, str]:
    """``(value, setting name)`` of the setting whose ``key`` is the ``pick`` (min or max)
    over all settings; the first such setting on a tie."""
    i = pick(range(len(summaries)), key=lambda j: summaries[j][key])
    return summaries[i][key], names[i]
