"""Where DSGD's weighted loss rests while the features carry no class information.

Early in fine-tuning the encoder's features do not yet separate the classes, and the model
can only choose one probability ``p`` of the majority class for every example. Let ``π``
(> 1/2) be the majority share of the training set. Plain cross-entropy is minimised at the
class prior, ``p = π``: the model predicts the majority class with confidence π, the
familiar plateau that a run must leave to learn the task.

DSGD weights the currently wrong examples by 1 and the correct ones by ``γ``. With a
constant prediction, which examples are correct depends only on which side of 1/2 ``p``
lies:

* ``p > 1/2`` (majority predicted): the majority examples are correct, so
  ``L(p) = -(γ π ln p + (1 - π) ln(1 - p))``, minimised at ``p₊ = γπ / (γπ + 1 - π)``;
* ``p < 1/2`` (minority predicted): ``L(p) = -(π ln p + γ (1 - π) ln(1 - p))``, minimised at
  ``p₋ = π / (π + γ(1 - π))``, which is above 1/2 whenever ``γ < π / (1 - π)`` (always,
  for ``γ ≤ 1``): on this side the loss falls all the way up to the boundary.

So ``p₊`` is a genuine resting point only when it lies above 1/2, i.e. when
``γ > γ* = (1 - π) / π``. Below that threshold the loss has no minimum away from the
decision boundary: its infimum is approached as ``p → 1/2`` from the majority side (which
is lower than the minority side by ``(1 - γ)(2π - 1) ln 2``). A model in that regime is
pushed to sit *on* the decision boundary: every training loss term is close to ``ln 2``
and small fluctuations flip the predicted class of all examples at once. Once the schedule
lifts ``γ_t`` above ``γ*`` the resting point moves back to ``p₊`` and the model is where
plain fine-tuning started, with less of the budget (and, under a decaying learning rate,
smaller steps) left.

Predictions: on a balanced task ``γ* = 1``, and both plain fine-tuning and DSGD rest at
``p = 1/2``, so the harm should vanish; with a floor ``γ_0 > γ*`` DSGD never enters the
boundary regime.
"""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["threshold_gamma", "constant_loss", "resting_point", "crossing_step"]


def _check_pi(pi: float) -> float:
    pi = float(pi)
    if not 0.5 <= pi < 1.0:
        raise ValueError(f"the majority share pi must lie in [0.5, 1), got {pi}")
    return pi


def threshold_gamma(pi: float) -> float:
    """``γ* = (1 - π) / π``: below it DSGD's weighted loss rests on the decision boundary."""
    pi = _check_pi(pi)
    return (1.0 - pi) / pi


def constant_loss(p: float, pi: float, gamma: float) -> float:
    """DSGD's weighted loss per example, ``(Σ_W ℓ + γ Σ_C ℓ) / m``, when every example gets
    majority-class probability ``p`` (majority predicted for ``p > 1/2``, minority for
    ``p < 1/2``; ``p = 1/2`` counts as majority, the argmax tie rule of the first class
    being irrelevant here)."""
    pi = _check_pi(pi)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p >= 0.5:
        return -(gamma * pi * math.log(p) + (1.0 - pi) * math.log(1.0 - p))
    return -(pi * math.log(p) + gamma * (1.0 - pi) * math.log(1.0 - p))


def resting_point(pi: float, gamma: float) -> float:
    """The constant prediction DSGD's weighted loss settles at: ``γπ / (γπ + 1 - π)`` when
    ``γ > γ*``, else the decision boundary ``1/2`` (the infimum, approached from the
    majority side). ``γ = 1`` gives the class prior ``π`` (plain cross-entropy)."""
    pi = _check_pi(pi)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if gamma <= threshold_gamma(pi):
        return 0.5
    return gamma * pi / (gamma * pi + 1.0 - pi)


def crossing_step(gamma_of: Callable[[float, float], float], total_steps: int, pi: float) -> int | None:
    """First optimizer step ``t`` (0-based) with ``gamma_of(t, total_steps) > γ*``; ``None``
    when the schedule never crosses. ``gamma_of`` is a schedule as in :func:`dsgd.schedule`."""
    thr = threshold_gamma(pi)
    for t in range(int(total_steps)):
        if gamma_of(t, total_steps) > thr:
            return t
    return None
