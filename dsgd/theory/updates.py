"""DSGD and SGD updates on the linear softmax model, and whole trajectories.

One step on a batch ``B`` of ``m`` examples (the paper's Eq. (1))::

    theta <- theta - eta_t / m * (G_W + gamma_t * G_C)

with ``W``/``C`` decided at the current ``theta`` (ties: lowest class index, see
:mod:`dsgd.theory.model`). SGD is the same step with ``gamma_t = 1``. Full-batch gradient
descent is a batch of all ``N`` examples (``batch_size=None``). ``rho_t = mean_i v_i`` with
``v_i = 1`` (wrong) or ``gamma_t`` (correct) is the factor by which DSGD's step bound shrinks
(Lemma C.2 of the paper).

The schedules are re-implemented here (independently of :mod:`dsgd.schedules`) so the
theory module can serve as a check of the library.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dsgd.theory import model as lm

Array = np.ndarray

SCHEDULE_NAMES = ("linear", "descending", "cosine", "constant")


def gamma_value(name: str, t: int, T: int, tau: float) -> float:
    """``gamma_t`` of a named schedule at iteration ``t`` of ``T`` (``t = 0 .. T``)."""
    if name == "linear":
        return tau * t / T
    if name == "descending":
        return tau * (1.0 - t / T)
    if name == "cosine":
        return tau / 2.0 * (1.0 - np.cos(np.pi * t / T))
    if name == "constant":
        return float(tau)
    raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULE_NAMES}")


def dsgd_direction(theta: Array, Xb: Array, yb: Array, gamma: float) -> tuple[Array, dict]:
    """``(G_W + gamma G_C) / m`` on a batch, with the quantities the checks need."""
    gw, gc, wrong = lm.split_grads(theta, Xb, yb)
    m = len(yb)
    v = np.where(wrong, 1.0, gamma)
    info = {
        "n_wrong": int(wrong.sum()),
        "n_correct": int(m - wrong.sum()),
        "rho": float(v.mean()),
        "gw_norm": float(np.linalg.norm(gw)),
        "gc_norm": float(np.linalg.norm(gc)),
        "gw_dot_gc": float(np.sum(gw * gc)),
        "wrong": wrong,
        "G_W": gw,
        "G_C": gc,
    }
    return (gw + gamma * gc) / m, info


def dsgd_step(theta: Array, Xb: Array, yb: Array, eta: float, gamma: float) -> Array:
    """One DSGD step ``theta - eta/m (G_W + gamma G_C)``; ``gamma=1`` is an SGD step."""
    d, _ = dsgd_direction(theta, Xb, yb, gamma)
    return theta - eta * d


def batch_order(N: int, batch_size: int | None, epochs: int, rng: np.random.Generator) -> list[Array]:
    """Index arrays of the batches: a fresh permutation per epoch, last partial batch dropped."""
    if batch_size is None or batch_size >= N:
        return [np.arange(N) for _ in range(epochs)]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    for _ in range(epochs):
        perm = rng.permutation(N)
        out += [perm[i:i + batch_size] for i in range(0, N - batch_size + 1, batch_size)]
    return out


@dataclass
class Trajectory:
    """Iterates ``thetas[t]`` (``t = 0..T``) and per-step records (arrays of length ``T``)."""

    thetas: Array
    batches: list[Array]
    gamma: Array
    eta: Array
    rho: Array
    n_wrong: Array
    n_correct: Array
    gw_norm: Array
    gc_norm: Array
    gw_dot_gc: Array
    wrong_masks: list[Array] = field(repr=False)

    @property
    def T(self) -> int:
        return len(self.gamma)

    @property
    def step_norms(self) -> Array:
        return np.linalg.norm((self.thetas[1:] - self.thetas[:-1]).reshape(self.T, -1), axis=1)


def run(
    theta0: Array,
    X: Array,
    y: Array,
    *,
    eta: float | Callable[[int, int], float],
    epochs: int = 1,
    batch_size: int | None = None,
    schedule: str = "linear",
    tau: float = 1.0,
    gamma_fn: Callable[[int, int], float] | None = None,
    order_seed: int = 0,
    batches: list[Array] | None = None,
) -> Trajectory:
    """Run DSGD (or SGD with ``schedule="constant", tau=1``) and record everything.

    ``eta``: a constant or ``eta(t, T)``. ``gamma_fn(t, T)`` overrides ``schedule``/``tau``.
    ``batches``: explicit batch index arrays (else drawn from ``order_seed``).
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1] (the paper's tau <= 1), got {tau}")
    y = np.asarray(y, dtype=int)
    if batches is None:
        batches = batch_order(len(y), batch_size, epochs, np.random.default_rng(order_seed))
    T = len(batches)
    if T == 0:
        raise ValueError("no batches: batch_size larger than the data with drop-last?")
    thetas = np.empty((T + 1,) + theta0.shape)
    thetas[0] = theta0
    rec = {k: np.empty(T) for k in ("gamma", "eta", "rho", "n_wrong", "n_correct",
                                     "gw_norm", "gc_norm", "gw_dot_gc")}
    masks = []
    theta = np.array(theta0, dtype=np.float64)
    for t, b in enumerate(batches):
        g = gamma_fn(t, T) if gamma_fn is not None else gamma_value(schedule, t, T, tau)
        e = eta(t, T) if callable(eta) else float(eta)
        d, info = dsgd_direction(theta, X[b], y[b], g)
        theta = theta - e * d
        thetas[t + 1] = theta
        rec["gamma"][t], rec["eta"][t] = g, e
        for k in ("rho", "n_wrong", "n_correct", "gw_norm", "gc_norm", "gw_dot_gc"):
            rec[k][t] = info[k]
        masks.append(info["wrong"])
    return Trajectory(thetas=thetas, batches=list(batches), wrong_masks=masks, **rec)


def run_sgd(theta0: Array, X: Array, y: Array, **kw) -> Trajectory:
    """Plain SGD / GD: DSGD with ``gamma_t = 1`` for every step."""
    kw = {k: v for k, v in kw.items() if k not in ("schedule", "tau", "gamma_fn")}
    return run(theta0, X, y, schedule="constant", tau=1.0, **kw)


def gd_on_group(
    theta0: Array,
    X: Array,
    y: Array,
    group: str,
    eta: float,
    steps: int,
    record_every: int = 1,
) -> dict[str, Array]:
    """Full-batch gradient descent on ``L_W`` or ``L_C`` alone (or ``L``), groups re-decided each step.

    ``group``: "W", "C" or "all". The step is ``theta - eta/N * grad L_group`` (the same
    ``1/N`` scaling as a full-batch DSGD step). Returns the recorded training error, group
    size, gradient norm and parameter norm, and the final ``theta``.
    """
    if group not in ("W", "C", "all"):
        raise ValueError(f"group must be 'W', 'C' or 'all', got {group!r}")
    N = len(y)
    theta = np.array(theta0, dtype=np.float64)
    hist: dict[str, list] = {"step": [], "errors": [], "grad_norm": [], "theta_norm": []}
    for t in range(steps + 1):
        W, C = lm.partition(theta, X, y)
        idx = {"W": W, "C": C, "all": None}[group]
        g = lm.group_grad(theta, X, y, idx)
        if t % record_every == 0 or t == steps:
            hist["step"].append(t)
            hist["errors"].append(len(W))
            hist["grad_norm"].append(float(np.linalg.norm(g)))
            hist["theta_norm"].append(float(np.linalg.norm(theta)))
        if t < steps:
            theta = theta - eta / N * g
    out = {k: np.asarray(v) for k, v in hist.items()}
    out["theta"] = theta
    return out
