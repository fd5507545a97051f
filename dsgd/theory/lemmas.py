"""Helpers for Lemmas 4.2 and 4.3: stationary points of ``L_W`` and ``L_C``.

Two identities do most of the work. For a set ``S`` of examples,

    <grad L_S(theta), theta> = sum_{i in S} (p_i . o_i - o_{i, y_i})           (*)

(``o_i`` the logits, ``p_i`` the softmax). For a *correctly* classified example
``o_{y}`` is the largest logit, so its term is ``sum_k p_k (o_k - o_y) < 0`` (unless all
logits tie); for a *misclassified* example with two classes the term is
``p_other (o_other - o_y) > 0``. Hence ``grad L_C != 0`` whenever ``C`` is non-empty (any
number of classes), and with two classes ``grad L_W != 0`` whenever ``W`` is non-empty
(ties are handled by the bias coordinate; see the chapter). With three or more classes the
term of a misclassified example can be negative (its label can be the runner-up), and a
stationary point of ``L_W`` with errors can exist: :func:`find_lw_counterexample` finds
one with a linear programme.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from dsgd.theory import model as lm
from dsgd.theory.optimum import minimize_ce

Array = np.ndarray

# The dataset ``find_lw_counterexample(K=3, d=1, seed=3)`` returns (a fixture for tests):
# seven points on a line whose cross-entropy minimiser misclassifies every one of them.
LW_COUNTEREXAMPLE_X = np.array([[1.5], [1.5], [0.5], [0.5], [-1.0], [2.0], [2.0]])
LW_COUNTEREXAMPLE_Y = np.array([0, 0, 1, 1, 2, 2, 2])


def grad_dot_theta(theta: Array, X: Array, y: Array, idx: Array | None = None) -> float:
    """Right-hand side of identity (*): ``sum_{i in S} (p_i . o_i - o_{i,y_i})``."""
    if idx is not None:
        idx = np.asarray(idx, dtype=int)
        X, y = X[idx], np.asarray(y)[idx]
    if len(y) == 0:
        return 0.0
    o = lm.logits(theta, X)
    p = lm.softmax(o)
    return float(np.sum((p * o).sum(axis=1) - o[np.arange(len(y)), y]))


def stationary_combination(theta: Array, X: Array, y: Array, tol: float = 1e-9) -> Array | None:
    """Weights ``c >= 0``, ``sum c = 1`` with ``sum_j c_j g_j / ||g_j|| = 0``, or None.

    ``g_j`` are the per-example gradients at ``theta``. If such ``c`` exists, ``theta`` is a
    stationary point of the loss of the examples with positive weight, each repeated in
    proportion to ``c_j / ||g_j||``. By Gordan's alternative, None means some direction
    decreases the loss of every example at once. Normalising the gradients keeps
    vanishing gradients (confidently correct examples) from satisfying the LP trivially.
    """
    G = lm.example_grads(theta, X, y).reshape(len(y), -1)
    nrm = np.linalg.norm(G, axis=1)
    keep = nrm > tol
    if not keep.any():
        return None
    A = np.vstack([(G[keep] / nrm[keep, None]).T, np.ones((1, keep.sum()))])
    b = np.r_[np.zeros(G.shape[1]), 1.0]
    res = linprog(np.zeros(keep.sum()), A_eq=A, b_eq=b, bounds=[(0, None)] * int(keep.sum()),
                  method="highs")
    if res.status != 0:
        return None
    c = np.zeros(len(y))
    c[keep] = res.x / nrm[keep]
    return c / c.sum()


def wrong_label_pool(theta: Array, X: Array) -> tuple[Array, Array]:
    """Every pair ``(x, y)`` with ``x`` in ``X`` and ``y`` a class ``theta`` does not predict."""
    pred = lm.predict(theta, X)
    K = theta.shape[0]
    Xs = np.concatenate([X[pred != k] for k in range(K)])
    ys = np.concatenate([np.full(int((pred != k).sum()), k) for k in range(K)])
    return Xs, ys


def lw_stationary_rate(K: int, d: int, n_theta: int, pool: int = 200, seed: int = 0,
                       group: str = "W") -> float:
    """Share of random parameters at which *some* weighted set of examples from a random
    pool, all misclassified (``group="W"``) or all correct (``"C"``), has zero gradient."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_theta):
        theta = 2.0 * rng.standard_normal((K, d + 1))
        Xp = 2.0 * rng.standard_normal((pool, d))
        if group == "W":
            Xs, ys = wrong_label_pool(theta, Xp)
        elif group == "C":
            Xs, ys = Xp, lm.predict(theta, Xp)
        else:
            raise ValueError("group must be 'W' or 'C'")
        hits += stationary_combination(theta, Xs, ys) is not None
    return hits / n_theta


def separable_stationary_rate(X: Array, y: Array, n_theta: int, seed: int = 0,
                              scale: float = 2.0) -> tuple[float, int]:
    """On one data set, the share of random parameters with at least one misclassified
    example at which some weighted set of the misclassified examples has zero gradient,
    and how many such parameters were tried.

    Lemma 4.2 under the paper's assumption: on linearly separable data a separating
    parameter ``theta*`` gives, for every example, ``<grad l_i(theta), theta*> =
    sum_k p_ik o*_ik - o*_iy < 0`` (the p-weighted mean of logits that the true class
    strictly beats), a direction that lowers every example's loss at once; by Gordan's
    alternative no combination of misclassified gradients can vanish, so the rate is 0.
    """
    rng = np.random.default_rng(seed)
    K, d = int(y.max()) + 1, X.shape[1]
    hits = tried = 0
    for _ in range(n_theta):
        theta = scale * rng.standard_normal((K, d + 1))
        wrong = lm.misclassified(theta, X, y)
        if not wrong.any():
            continue
        tried += 1
        hits += stationary_combination(theta, X[wrong], y[wrong]) is not None
    return (hits / tried if tried else float("nan")), tried


def find_lw_counterexample(
    K: int = 3,
    d: int = 1,
    max_points: int = 12,
    min_margin: float = 0.1,
    max_trials: int = 1000,
    seed: int = 0,
) -> dict | None:
    """Search for a small dataset whose cross-entropy minimiser misclassifies *every* point.

    At such a minimiser ``W`` is the whole dataset, so ``L_W = L`` there and the point is
    a stationary point of ``L_W`` with 100% training error. Recipe per trial: a random
    ``theta`` (1-decimal entries), a grid of inputs, the LP of
    :func:`stationary_combination` over all wrong labels, integer multiplicities rounded
    from its solution, then an exact Newton minimisation of the resulting dataset's loss;
    accept when every point is still misclassified by at least ``min_margin``. Of the
    accepted datasets the smallest (then the one with the widest margin) is returned, as
    ``{"X", "y", "theta", "grad_norm", "margin", "trial", "found"}``, or None.
    """
    best: dict | None = None
    found = 0
    grid = np.linspace(-3, 3, 13)[:, None] if d == 1 else None
    for trial in range(max_trials):
        rng = np.random.default_rng(seed * 100003 + trial)
        theta = np.round(2.0 * rng.standard_normal((K, d + 1)), 1)
        Xp = grid if grid is not None else np.round(rng.uniform(-3, 3, (40, d)) * 2) / 2
        Xs, ys = wrong_label_pool(theta, Xp)
        c = stationary_combination(theta, Xs, ys)
        if c is None:
            continue
        for total in range(3, 4 * max_points):
            cnt = np.round(c * total).astype(int)
            n = int(cnt.sum())
            if n == 0 or n > max_points or len(set(ys[cnt > 0])) < 2:
                continue
            X, y = np.repeat(Xs, cnt, axis=0), np.repeat(ys, cnt)
            th, info = minimize_ce(X, y, theta0=theta, K=K)
            if not info["finite"]:
                continue
            m = lm.margins(th, X, y)
            if np.all(m < -min_margin):
                found += 1
                key = (n, m.max())
                if best is None or key < (len(best["y"]), -best["margin"]):
                    order = np.lexsort((X[:, 0], y))
                    best = {"X": X[order], "y": y[order], "theta": th,
                            "grad_norm": info["grad_norm"], "margin": float(-m.max()),
                            "trial": trial}
                break
    if best is not None:
        best["found"] = found
    return best


def lemma43_example() -> tuple[Array, Array, Array]:
    """Three points on a line, separable, and a start that misclassifies the middle one.

    ``x = -2 (class 0), 0.5 (class 0), 2 (class 1)``; ``theta0`` puts the boundary at 0.
    ``C = {-2, 2}`` is symmetric about 0, so gradient descent on ``L_C`` only scales
    ``theta`` up: the boundary stays at 0 and ``x = 0.5`` stays misclassified forever,
    while ``grad L_C -> 0``. (A threshold at 1 would classify all three correctly.)
    """
    X = np.array([[-2.0], [0.5], [2.0]])
    y = np.array([0, 0, 1])
    theta0 = np.array([[0.0, 0.0], [1.0, 0.0]])
    return X, y, theta0


def gd_group_summary(
    X: Array, y: Array, X_test: Array, y_test: Array, theta0: Array, *,
    eta: float, steps: int, record_every: int = 10,
) -> dict[str, dict]:
    """Full-batch gradient descent on ``L_W`` alone, ``L_C`` alone and ``L``, from ``theta0``.

    Per objective: training errors at the end, the fewest and most over the second half
    of the run (a converged run has the two equal), the final gradient norm of that
    objective (exactly 0 once ``W`` is empty for ``L_W``), the smallest training margin
    at the end (how close to the boundary it stopped), the test accuracy, and the curve.
    """
    from dsgd.theory.updates import gd_on_group

    out = {}
    for group in ("W", "C", "all"):
        h = gd_on_group(theta0, X, y, group, eta=eta, steps=steps, record_every=record_every)
        half = h["step"] >= steps // 2
        th = h["theta"]
        out[group] = {
            "errors_end": int(h["errors"][-1]),
            "errors_min_late": int(h["errors"][half].min()),
            "errors_max_late": int(h["errors"][half].max()),
            "grad_norm_end": float(h["grad_norm"][-1]),
            "min_margin_end": float(lm.margins(th, X, y).min()),
            "test_accuracy": lm.accuracy(th, X_test, y_test),
            "curve": h,
        }
    return out
