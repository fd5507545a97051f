"""DSGD's scale schedules gamma_t = zeta(t, T, tau).

A schedule is a pure function ``gamma(t, T) -> float`` of the optimizer step ``t``
(0 <= t <= T) and the total number of optimizer steps ``T``. The paper's default is the
linear ascending schedule ``gamma_t = tau * t / T``: early in training correctly
classified examples carry almost no weight, by the end they count fully (if tau = 1).

Beyond the paper (sensitivity chapter) two variants aimed at the failure modes seen in
this book are offered as options of every schedule:

* ``floor=g0`` — never go below ``g0``: ``gamma = g0 + (1 - g0/tau) * base`` keeps the
  end point ``tau`` and lifts the start to ``g0``;
* ``delay=d`` — plain fine-tuning (gamma = tau) for the first fraction ``d`` of
  training, then the schedule run over the remaining steps.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Union

Schedule = Callable[[float, float], float]
ScheduleLike = Union[str, Schedule, float, int]


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not (0.0 <= tau <= 1.0) or math.isnan(tau):
        raise ValueError(f"tau must lie in [0, 1] (the paper requires tau <= 1), got {tau}")
    return tau


def _frac(t: float, T: float) -> float:
    if T <= 0:
        raise ValueError(f"T (total optimizer steps) must be positive, got {T}")
    return min(max(float(t) / float(T), 0.0), 1.0)


def linear(tau: float = 1.0) -> Schedule:
    """Ascending: gamma_t = tau * t / T (the paper's default)."""
    return lambda t, T: tau * _frac(t, T)


def descending(tau: float = 1.0) -> Schedule:
    """Descending: gamma_t = tau * (1 - t / T)."""
    return lambda t, T: tau * (1.0 - _frac(t, T))


def cosine(tau: float = 1.0) -> Schedule:
    """Cosine ascent: gamma_t = tau / 2 * (1 - cos(pi t / T))."""
    return lambda t, T: 0.5 * tau * (1.0 - math.cos(math.pi * _frac(t, T)))


def constant(tau: float = 1.0, value: float | None = None) -> Schedule:
    """Static gamma: ``value`` (defaults to tau). gamma = 1 is plain fine-tuning."""
    v = tau if value is None else float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"constant gamma must lie in [0, 1], got {v}")
    return lambda t, T: v


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "linear": linear,
    "ascending": linear,
    "descending": descending,
    "cosine": cosine,
    "constant": constant,
}


def schedule(
    name: ScheduleLike = "linear",
    tau: float = 1.0,
    *,
    floor: float = 0.0,
    delay: float = 0.0,
    **kw: float,
) -> Schedule:
    """Return ``gamma(t, T)`` for a named schedule, a number (static) or a callable.

    name: "linear" (default, ascending), "descending", "cosine", "constant"
      (``value=...``), a float (static gamma), or any callable ``gamma(t, T)``.
    tau: the schedule's maximum, in [0, 1].
    floor: lower bound g0 in [0, tau]; the schedule is affinely lifted to [g0, tau].
    delay: fraction of training in [0, 1) spent with gamma = tau (plain fine-tuning)
      before the schedule starts; it then runs over the remaining steps.
    """
    tau = _check_tau(tau)
    if callable(name):
        base = name
    elif isinstance(name, (int, float)) and not isinstance(name, bool):
        base = constant(tau, value=float(name))
    elif isinstance(name, str):
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)} "
                             "or pass a callable gamma(t, T)")
        base = SCHEDULES[name](tau, **kw)
    else:
        raise TypeError(f"schedule name must be a str, number or callable, got {type(name)}")
    if not 0.0 <= floor <= max(tau, 0.0) or (floor > 0 and tau == 0):
        raise ValueError(f"floor must lie in [0, tau={tau}], got {floor}")
    if not 0.0 <= delay < 1.0:
        raise ValueError(f"delay must lie in [0, 1), got {delay}")
    if floor == 0.0 and delay == 0.0:
        return base
    return _modified(base, tau, floor, delay)


def _modified(base: Schedule, tau: float, floor: float, delay: float) -> Schedule:
    def gamma(t: float, T: float) -> float:
        f = _frac(t, T)
        if delay > 0.0:
            if f < delay:
                return tau
            # restart the base schedule over the remaining (1 - delay) of training
            t, T = (f - delay), (1.0 - delay)
        g = base(t, T)
        if floor > 0.0:
            g = floor + (1.0 - floor / tau) * g
        return g

    return gamma


# ---------------------------------------------------------------- what a gamma means
def weight_share(gamma: Any, acc: Any) -> Any:
    """Share of a batch's gradient weight carried by its correctly classified examples
    under hard DSGD weights: ``gamma a / (1 - a + gamma a)`` for batch accuracy ``a``
    (0 when the batch has no weight at all)."""
    import numpy as np

    g = np.asarray(gamma, dtype=float)
    a = np.asarray(acc, dtype=float)
    den = 1.0 - a + g * a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, g * a / np.where(den > 0, den, 1.0), 0.0)


def effective_fraction(gamma: Any, acc: Any) -> Any:
    """Total weight of a batch divided by its size: ``1 - a + gamma a``. It is 1 for plain
    fine-tuning and ``1 - a`` (only the wrong examples count) for gamma = 0."""
    import numpy as np

    g = np.asarray(gamma, dtype=float)
    a = np.asarray(acc, dtype=float)
    return 1.0 - a + g * a
