"""Time to leave the majority-class plateau, as survival data.

A run that fine-tunes a pretrained encoder on an imbalanced task first learns the class
prior: it predicts the majority class for every example and its training accuracy sits at
the majority share π. Some runs leave this plateau within the budget, some do not. Treating
the exit step as a survival time (runs that never leave are *censored* at the budget)
separates two readings of a failed run: a *late escape* (the run would have left the
plateau with a longer budget) and a *dead end*.

Which signal. The held-out accuracy is recorded only at epoch ends (two to six points per
run here), too coarse to time an exit. The training-batch accuracy ``correct_share`` is
recorded at every optimizer step (forward pass of the training step, dropout on). One
batch of 8 is noisy (standard error ≈ 0.17 at π = 0.6), so :func:`plateau_exit` uses the
mean over a trailing window of ``window`` steps (default 30: standard error ≈ 0.03) and
calls the run *out* at the first step where that mean exceeds ``π + margin`` (default
margin 0.1, three standard errors). The regimes chapter checks the definition against
the stored runs: how often a run whose held-out predictions collapsed to one class is
nevertheless called out of the plateau.

Kaplan–Meier curves and log-rank tests come from statsmodels
(:class:`statsmodels.duration.survfunc.SurvfuncRight`, :func:`~statsmodels.duration.survfunc.survdiff`);
lifelines, the other maintained option, needs pandas < 3, which this project does not pin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["Exit", "plateau_exit", "record_exit", "kaplan_meier", "logrank", "exit_table"]

DEFAULT_WINDOW = 30
DEFAULT_MARGIN = 0.1


@dataclass(frozen=True)
class Exit:
    """``step``: first optimizer step (0-based) at which the run is out of the plateau, or
    the budget when it never left (then ``observed`` is False: censored)."""

    step: int
    observed: bool
    budget: int

    @property
    def fraction(self) -> float:
        """Exit step as a share of the budget (1.0 for a censored run)."""
        return self.step / self.budget if self.budget else math.nan


def plateau_exit(correct_share: Sequence[float], majority_share: float, *,
                 window: int = DEFAULT_WINDOW, margin: float = DEFAULT_MARGIN) -> Exit:
    """First step ``t`` whose trailing mean of ``correct_share[t-window+1 .. t]`` exceeds
    ``majority_share + margin``; censored at ``len(correct_share)`` when none does."""
    x = np.asarray(correct_share, dtype=float)
    if x.ndim != 1:
        raise ValueError("correct_share must be one-dimensional (one value per step)")
    if not 0 < majority_share < 1:
        raise ValueError(f"majority_share must lie in (0, 1), got {majority_share}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = x.size
    if n >= window:
        means = np.convolve(x, np.ones(window) / window, mode="valid")  # means[j] ends at j+window-1
        above = np.flatnonzero(means > majority_share + margin)
        if above.size:
            return Exit(int(above[0] + window - 1), True, n)
    return Exit(n, False, n)


def record_exit(record: Mapping[str, Any], majority_share: float, **kw: Any) -> Exit | None:
    """:func:`plateau_exit` of a stored run record (``None`` when it has no history)."""
    hist = record.get("history") or {}
    cs = hist.get("correct_share")
    if not cs:
        return None
    return plateau_exit(cs, majority_share, **kw)


def kaplan_meier(steps: Sequence[float], observed: Sequence[bool]) -> pd.DataFrame:
    """Kaplan–Meier estimate of P(still on the plateau after step t), with its 95 % band.

    Returns columns ``step, on_plateau, lo, hi`` starting at ``(0, 1, 1, 1)``; a step
    function that drops at each observed exit (statsmodels' ``SurvfuncRight``, Greenwood
    standard errors, log-log band).
    """
    t = np.asarray(steps, dtype=float)
    e = np.asarray(observed, dtype=bool)
    if t.size == 0:
        return pd.DataFrame({"step": [0.0], "on_plateau": [1.0], "lo": [1.0], "hi": [1.0]})
    rows = [{"step": 0.0, "on_plateau": 1.0, "lo": 1.0, "hi": 1.0}]
    if e.any():
        from statsmodels.duration.survfunc import SurvfuncRight

        sf = SurvfuncRight(t, e.astype(int))
        with np.errstate(all="ignore"):
            lo, hi = _pointwise_band(sf)
        for s, p, a, b in zip(sf.surv_times, sf.surv_prob, lo, hi):
            rows.append({"step": float(s), "on_plateau": float(p), "lo": float(a), "hi": float(b)})
    return pd.DataFrame(rows)


def _pointwise_band(sf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Log-log 95 % pointwise band; at S = 0 or 1 the band collapses to the estimate."""
    p = np.asarray(sf.surv_prob, dtype=float)
    se = np.asarray(sf.surv_prob_se, dtype=float)
    lo, hi = p.copy(), p.copy()
    ok = (p > 0) & (p < 1) & (se > 0)
    z = 1.959963984540054
    ll = np.log(-np.log(p[ok]))
    half = z * se[ok] / (p[ok] * np.abs(np.log(p[ok])))
    lo[ok] = np.exp(-np.exp(ll + half))
    hi[ok] = np.exp(-np.exp(ll - half))
    return lo, hi


def logrank(steps: Sequence[float], observed: Sequence[bool], groups: Sequence[Any]) -> dict[str, float]:
    """Log-rank test that the groups share one exit-time distribution (statsmodels'
    ``survdiff``). With no observed exit in any group there is nothing to compare and the
    p-value is 1."""
    t = np.asarray(steps, dtype=float)
    e = np.asarray(observed, dtype=bool)
    g = np.asarray(groups)
    if not (t.size == e.size == g.size):
        raise ValueError("steps, observed and groups must have the same length")
    if np.unique(g).size < 2:
        raise ValueError("logrank needs at least two groups")
    if not e.any():
        return {"statistic": 0.0, "p_value": 1.0, "df": int(np.unique(g).size - 1)}
    from statsmodels.duration.survfunc import survdiff

    stat, p = survdiff(t, e.astype(int), g)
    return {"statistic": float(stat), "p_value": float(p), "df": int(np.unique(g).size - 1)}


def exit_table(records: Sequence[Mapping[str, Any]], majority_share: float, *,
               keys: Sequence[str] = ("method", "seed"), **kw: Any) -> pd.DataFrame:
    """One row per record with a history: the config ``keys``, the budget, the exit step,
    whether it was observed, and the run's verdict."""
    rows = []
    for r in records:
        ex = record_exit(r, majority_share, **kw)
        if ex is None:
            continue
        cfg = r.get("config") or {}
        rows.append({**{k: cfg.get(k) for k in keys}, "budget": ex.budget, "exit_step": ex.step,
                     "exited": ex.observed, "exit_fraction": ex.fraction,
                     "verdict": r.get("verdict"), "run_id": r.get("run_id")})
    return pd.DataFrame(rows)
