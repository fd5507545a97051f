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


# ------------------------------------------------------------------ findings page
def chapter_findings(v: dict[str, Any]) -> list[dict[str, Any]]:
    """The theory chapter's rows of the findings page, from its own results values ``v``.

    Verdicts: a formal statement that the numbers satisfy is "supported" (its caveats go
    into the measured text); the escape from cancellation counts as a benefit only if the
    run ends with fewer training errors than it started with.
    """
    setting = "linear softmax model in float64 (dsgd.theory), synthetic data"
    rows = []
    sep_ok = v.get("l42_sep_rate") == 0 and int(v.get("l42_sep_tried") or 0) > 0
    rows.append(dict(key="lemma42", source="paper",
                     claim="Lemma 4.2: a stationary point of the misclassified examples' loss L_W has no training errors.",
                     measured=str(v.get("l42_verdict", "")), setting=setting,
                     verdict="supported" if sep_ok else "contradicted", section="lemma-4-2-does-minimising-l-w-give-zero-training-error"))
    for key, name, claim in (("l43", "Lemma 4.3", "Lemma 4.3: minimising the correct examples' loss L_C alone can leave errors."),
                             ("t45", "Theorem 4.5", "Theorem 4.5: DSGD's seed-stability bound is tighter than SGD's."),
                             ("t46", "Theorem 4.6", "Theorem 4.6: under its conditions a DSGD step decreases L_W.")):
        text = str(v.get(f"{key}_verdict", ""))
        rows.append(dict(key=key, source="paper", claim=claim, measured=text, setting=setting,
                         verdict="supported" if text.startswith("holds") else
                         "not testable at this scale" if not text else "contradicted", section=""))
    start, end = v.get("gc_n_wrong"), v.get("gc_tau1_errors_end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        rows.append(dict(key="cancellation", source="paper",
                         claim="DSGD escapes gradient cancellation where gradient descent is stuck, to the model's benefit.",
                         measured=str(v.get("gc_verdict", "")), setting=setting,
                         verdict="supported" if end < start else "contradicted", section=""))
    return rows
