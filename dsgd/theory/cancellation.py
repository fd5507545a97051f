"""Gradient cancellation: ``G_W + G_C = 0`` with both parts non-zero, and what DSGD does there.

On the full training set the loss ``L = L_W + L_C`` of the linear softmax model is convex,
so a point where the full gradient cancels is a *global minimiser* of ``L``. On data that
no linear rule separates that minimiser is finite and misclassifies some examples, so
``W`` and ``C`` are both non-empty and ``G_W = -G_C != 0``: a cancellation point, built
here with Newton's method (:func:`cancellation_point`). Gradient descent stays there;
DSGD moves along ``(1 - gamma_t) G_W / N`` and :func:`escape_run` follows it.
"""
from __future__ import annotations

import numpy as np

from dsgd.theory import model as lm
from dsgd.theory.optimum import minimize_ce
from dsgd.theory.updates import run, run_sgd

Array = np.ndarray


def cancellation_point(X: Array, y: Array) -> tuple[Array, dict]:
    """The minimiser of ``L`` on ``(X, y)`` and its split gradients.

    Raises ValueError if the data are separable (no finite minimiser) or if the minimiser
    classifies everything correctly (then ``G_W`` is empty and nothing cancels).
    """
    theta, info = minimize_ce(X, y)
    if not info["finite"]:
        raise ValueError("no finite minimiser: the data are linearly separable; use overlapping classes")
    gw, gc, wrong = lm.split_grads(theta, X, y)
    if not wrong.any() or wrong.all():
        raise ValueError("the minimiser has an empty W or C: no cancellation to study")
    return theta, {
        "gw_norm": float(np.linalg.norm(gw)),
        "gc_norm": float(np.linalg.norm(gc)),
        "sum_norm": float(np.linalg.norm(gw + gc)),
        "cos": float(np.sum(gw * gc) / (np.linalg.norm(gw) * np.linalg.norm(gc))),
        "n_wrong": int(wrong.sum()),
        "loss": lm.group_loss(theta, X, y),
    }


def escape_run(theta_star: Array, X: Array, y: Array, *, eta: float, steps: int,
               schedule: str = "linear", tau: float = 1.0, gamma_fn=None) -> dict[str, Array]:
    """Full-batch DSGD and GD from ``theta_star``; curves per iterate ``t = 0..steps``.

    Returns ``gamma`` (per step), and per iterate for DSGD: ``dist`` (``||theta_t -
    theta*||`` after centring the class rows), ``excess_loss`` (``L - L*``, summed),
    ``errors`` (training errors), ``loss_W`` (re-evaluated); and ``gd_dist`` for GD.
    """
    N = len(y)
    kw = dict(eta=eta, epochs=steps, batch_size=None)
    tr = run(theta_star, X, y, schedule=schedule, tau=tau, gamma_fn=gamma_fn, **kw)
    gd = run_sgd(theta_star, X, y, **kw)
    L0 = lm.group_loss(theta_star, X, y)
    cen = lambda th: th - th.mean(axis=-2, keepdims=True)
    star = cen(theta_star)
    dist = lambda ths: np.linalg.norm((cen(ths) - star).reshape(len(ths), -1), axis=1)
    return {
        "gamma": tr.gamma,
        "dist": dist(tr.thetas),
        "gd_dist": dist(gd.thetas),
        "excess_loss": np.array([lm.group_loss(th, X, y) - L0 for th in tr.thetas]),
        "errors": np.array([int(lm.misclassified(th, X, y).sum()) for th in tr.thetas]),
        "loss_W": np.array([lm.loss_W(th, X, y) for th in tr.thetas]),
        "n": N,
        "thetas": tr.thetas,
    }


def reweighted_fixed_point_gap(theta: Array, X: Array, y: Array, gamma: float) -> float:
    """Distance from ``theta`` to the minimiser of ``sum_i v_i l_i`` with ``v`` frozen at ``theta``.

    ``v_i = 1`` on the examples ``theta`` misclassifies and ``gamma`` on the others. Zero
    means ``theta`` is a fixed point of full-batch DSGD at constant ``gamma``: the minimiser
    of a re-weighted cross-entropy whose weights it reproduces. (Class rows centred.)
    """
    v = np.where(lm.misclassified(theta, X, y), 1.0, gamma)
    th_v, _ = minimize_ce(X, y, weights=v, theta0=theta, K=theta.shape[0])
    cen = theta - theta.mean(axis=0, keepdims=True)
    return float(np.linalg.norm(cen - th_v))


def escape_summary(r: dict[str, Array], frac: float = 0.5) -> dict[str, float]:
    """Headline numbers of an escape run.

    ``max_dist`` and the step ``t_max`` where it is reached (with ``gamma`` there);
    ``steps_away``: iterates farther than ``frac * max_dist``; ``final_dist`` and
    ``final_over_max``; training errors at the start, the fewest along the way, and at the
    end; the largest excess loss; GD's largest distance (zero up to round-off).
    """
    d = r["dist"]
    t_max = int(np.argmax(d))
    g = r["gamma"]
    return {
        "max_dist": float(d.max()),
        "t_max": t_max,
        "gamma_at_max": float(g[min(t_max, len(g) - 1)]),
        "steps_away": int(np.sum(d > frac * d.max())),
        "final_dist": float(d[-1]),
        "final_over_max": float(d[-1] / d.max()) if d.max() > 0 else 0.0,
        "errors_start": int(r["errors"][0]),
        "errors_min": int(r["errors"].min()),
        "errors_end": int(r["errors"][-1]),
        "max_excess_loss": float(r["excess_loss"].max()),
        "final_excess_loss": float(r["excess_loss"][-1]),
        "gd_max_dist": float(r["gd_dist"].max()),
    }
