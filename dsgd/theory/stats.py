"""Confidence intervals for the chapter's seed studies (t intervals over independent pairs)."""
from __future__ import annotations

import numpy as np
from scipy import stats

Array = np.ndarray


def mean_ci(x: Array, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t interval for the mean of independent values."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise ValueError("need at least two values for an interval")
    m = float(x.mean())
    h = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - h, m + h


def paired_ci(a: Array, b: Array, level: float = 0.95) -> tuple[float, float, float]:
    """Interval for ``mean(a - b)`` over paired values (same seeds for ``a`` and ``b``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError("paired values must have the same shape")
    return mean_ci(a - b, level)


def ratio_ci(a: Array, b: Array, level: float = 0.95) -> tuple[float, float, float]:
    """Interval for the geometric-mean ratio ``a/b`` (t interval of ``log a - log b``)."""
    m, lo, hi = paired_ci(np.log(a), np.log(b), level)
    return float(np.exp(m)), float(np.exp(lo)), float(np.exp(hi))
