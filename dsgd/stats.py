"""Statistics for seed studies: exact intervals and tests that suit ten or twenty seeds.

A seed study yields, per method, a handful of accuracies and a count of failed runs. With
so few runs, normal approximations mislead, so every function here is exact or a standard
small-sample method, computed by a maintained library (scipy, statsmodels):

* :func:`rate_ci` — Clopper–Pearson ("exact") interval of a failure rate ``k / n``;
* :func:`mcnemar_exact` — exact McNemar test for two methods run on the *same* seeds
  (only the seeds on which the two disagree carry information);
* :func:`fisher_exact` — Fisher's exact test for two *unpaired* sets of runs;
* :func:`holm` — Holm's step-down adjustment across a chapter's comparisons;
* :func:`mean_ci` — Student-t interval of a mean, and :func:`paired_difference` — the mean
  paired difference on shared seeds with a t interval and the exact Wilcoxon signed-rank
  p-value;
* :func:`std_ci` — a bootstrap (BCa) interval of the seed standard deviation;
* :func:`is_constant` — a group whose runs all ended at one value has no spread to test:
  callers say so instead of reporting a variance test.

Survival curves (time to leave the majority-class plateau) are in :mod:`dsgd.survival`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Rate", "rate_ci", "mcnemar_exact", "fisher_exact", "holm", "mean_ci",
           "paired_difference", "std_ci", "is_constant", "format_rate", "format_p", "p_text"]


@dataclass(frozen=True)
class Rate:
    """``k`` events in ``n`` runs with an exact interval ``[lo, hi]`` at ``level``."""

    k: int
    n: int
    lo: float
    hi: float
    level: float = 0.95

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def __str__(self) -> str:  # "5/10 = 0.50 [0.19, 0.81]"
        return format_rate(self)


def rate_ci(k: int, n: int, level: float = 0.95) -> Rate:
    """Clopper–Pearson interval of ``k`` successes (here: failed runs) out of ``n``.

    The interval inverts two one-sided binomial tests, so it covers the true rate at least
    ``level`` of the time for every ``n``; for ``k = 0`` the lower end is 0 and for
    ``k = n`` the upper end is 1.
    """
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n == 0:
        return Rate(0, 0, math.nan, math.nan, level)
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=1 - level, method="beta")
    lo = 0.0 if k == 0 else float(lo)
    hi = 1.0 if k == n else float(hi)
    return Rate(k, n, lo, hi, level)


def _bools(x: Sequence[bool] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional")
    if a.dtype != bool:
        if not np.isin(a, [0, 1]).all():
            raise ValueError(f"{what} must hold booleans (or 0/1)")
        a = a.astype(bool)
    return a


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    """Exact McNemar test of two methods' outcomes on the same seeds.

    ``a[i]`` and ``b[i]`` say whether seed ``i`` failed under method A and method B. Only
    the discordant seeds count: ``n10`` (A failed, B did not) and ``n01`` (B failed, A did
    not). Under the null hypothesis each discordant seed is a fair coin, so the two-sided
    p-value is the binomial tail ``min(1, 2 P[X <= min(n10, n01)])`` with
    ``X ~ Bin(n10 + n01, 1/2)`` (statsmodels' exact McNemar). With no discordant seed the
    p-value is 1.
    """
    a, b = _bools(a, "a"), _bools(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must cover the same seeds, got {a.size} and {b.size}")
    n10 = int(np.sum(a & ~b))
    n01 = int(np.sum(~a & b))
    if n10 + n01 == 0:
        p = 1.0
    else:
        from statsmodels.stats.contingency_tables import mcnemar

        table = [[int(np.sum(a & b)), n10], [n01, int(np.sum(~a & ~b))]]
        p = float(mcnemar(table, exact=True).pvalue)
    return {"n": int(a.size), "n10": n10, "n01": n01, "p_value": min(1.0, p)}


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact p-value for ``k1/n1`` against ``k2/n2`` (unpaired runs)."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"need 0 <= k <= n, got {k1}/{n1} and {k2}/{n2}")
    from scipy.stats import fisher_exact as _fisher

    return float(_fisher([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), NaNs passed through."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


def is_constant(values: Sequence[float], tol: float = 1e-12) -> bool:
    """True when every value equals the first (a group that collapsed to one value)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return v.size > 0 and bool(np.all(np.abs(v - v[0]) <= tol))


def mean_ci(values: Sequence[float], level: float = 0.95,
            bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean and Student-t interval ``(mean, lo, hi)``; a constant group gets ``lo = hi = mean``
    (no spread to estimate), fewer than two values get NaN bounds. ``bounds``: the range the
    quantity lives in (an accuracy in [0, 100]); the interval is cut there, because a t
    interval of a skewed bounded sample (nine runs near 100 %, one at 65 %) can reach past it."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if v.size < 2:
        return (m, math.nan, math.nan)
    if is_constant(v):
        return (float(v[0]),) * 3
    from scipy import stats

    half = float(stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return (m, lo, hi)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over shared seeds, its t interval and the Wilcoxon signed-rank p.

    The Wilcoxon p-value is exact for small samples without ties (scipy's default); when
    every difference is 0 there is nothing to test and the p-value is 1. Differences are
    rounded to 12 decimals first, so that equal differences count as ties whatever the
    floating-point noise of the subtraction (and whatever the scale of the values).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"a and b must cover the same seeds, got {x.size} and {y.size}")
    # differences equal up to floating-point noise (0.875 - 0.86 against 0.86 - 0.845) are ties,
    # as they are on the held-out set; rounding keeps the Wilcoxon ranks from splitting them
    d = np.round(x - y, 12)
    mean, lo, hi = mean_ci(d, level)
    if d.size == 0 or np.allclose(d, 0):
        p = 1.0
    else:
        from scipy.stats import wilcoxon

        p = float(wilcoxon(d[d != 0]).pvalue) if np.count_nonzero(d) >= 1 else 1.0
    return {"n": int(d.size), "mean": mean, "lo": lo, "hi": hi, "p_value": p}


def std_ci(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval (scipy's BCa, resampling the seeds, 5,000 resamples) of the sample
    standard deviation; NaNs with fewer than 3 values or when they are all equal (no spread
    to resample)."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 3 or np.ptp(v) == 0:
        return (math.nan, math.nan)
    res = bootstrap((v,), lambda x, axis=-1: np.std(x, ddof=1, axis=axis), confidence_level=level,
                    n_resamples=5000, method="BCa", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def format_rate(r: Rate, digits: int = 2) -> str:
    """``"5/10 (0.50, 95 % CI 0.19–0.81)"``-style text for a :class:`Rate`."""
    if r.n == 0:
        return "no runs"
    return (f"{r.k}/{r.n} ({r.rate:.{digits}f}, {round(100 * r.level)} % CI "
            f"{r.lo:.{digits}f}–{r.hi:.{digits}f})")


def format_p(p: float) -> str:
    """p-values as text: three significant digits, ``< 0.001`` below a thousandth."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "not tested"
    return "< 0.001" if p < 1e-3 else f"{p:.3g}"


def p_text(p: float, name: str = "p") -> str:
    """``"p = 0.0625"`` or ``"p < 0.001"``: a p-value ready for a sentence."""
    f = format_p(p)
    return f"{name} {f}" if f.startswith("<") else f"{name} = {f}"
