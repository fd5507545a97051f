"""Small synthetic classification problems for the theory chapter.

Class-conditional Gaussians ``x | y=k ~ N(mu_k, I)`` with equal covariances, so the Bayes
rule is linear and a linear softmax model is well specified. ``separable=True`` drops every
draw whose Bayes margin is below ``margin``: what is left is linearly separable by
construction (the Bayes rule separates it). ``class_probs`` makes the problem imbalanced.
:func:`is_separable` checks separability independently with a linear programme.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from dsgd.theory.model import augment

Array = np.ndarray


def class_means(K: int, d: int, separation: float) -> Array:
    """``(K, d)`` class means, every pair (K <= d) or neighbours (K > d) ``separation`` apart."""
    if d < 1 or K < 2:
        raise ValueError(f"need d >= 1 and K >= 2, got d={d}, K={K}")
    if K <= d:
        mu = np.eye(K, d) * separation / np.sqrt(2.0)
    elif d >= 2:
        ang = 2 * np.pi * np.arange(K) / K
        r = separation / (2 * np.sin(np.pi / K))
        mu = np.zeros((K, d))
        mu[:, 0], mu[:, 1] = r * np.cos(ang), r * np.sin(ang)
    else:  # d == 1: classes on a line
        mu = (np.arange(K) * separation)[:, None].astype(float)
    return mu - mu.mean(axis=0)


def bayes_logits(X: Array, mu: Array, class_probs: Array) -> Array:
    """Log-posterior (up to a constant) of the generating model: linear in ``x``."""
    return X @ mu.T - 0.5 * (mu**2).sum(axis=1) + np.log(class_probs)


def make_blobs(
    n: int,
    d: int = 2,
    K: int = 2,
    separation: float = 2.0,
    class_probs: list[float] | Array | None = None,
    separable: bool = False,
    margin: float = 0.25,
    seed: int = 0,
) -> tuple[Array, Array]:
    """``n`` examples ``(X, y)`` from the Gaussian mixture described in the module docstring."""
    if n < K:
        raise ValueError(f"n={n} is smaller than the number of classes K={K}")
    pi = np.full(K, 1.0 / K) if class_probs is None else np.asarray(class_probs, dtype=float)
    if pi.shape != (K,) or np.any(pi <= 0) or not np.isclose(pi.sum(), 1.0):
        raise ValueError(f"class_probs must be {K} positive numbers summing to 1, got {class_probs}")
    rng = np.random.default_rng(seed)
    mu = class_means(K, d, separation)
    Xs, ys, have = [], [], 0
    for _ in range(1000):
        m = max(2 * (n - have), 64)
        yb = rng.choice(K, size=m, p=pi)
        Xb = mu[yb] + rng.standard_normal((m, d))
        if separable:
            o = bayes_logits(Xb, mu, pi)
            oy = o[np.arange(m), yb]
            o[np.arange(m), yb] = -np.inf
            keep = oy - o.max(axis=1) >= margin
            Xb, yb = Xb[keep], yb[keep]
        Xs.append(Xb)
        ys.append(yb)
        have += len(yb)
        if have >= n:
            break
    else:
        raise RuntimeError("could not draw enough examples; lower `margin` or raise `separation`")
    X, y = np.concatenate(Xs)[:n], np.concatenate(ys)[:n]
    return X, y.astype(int)


def is_separable(X: Array, y: Array, K: int | None = None) -> bool:
    """Whether some ``theta`` classifies every example correctly with a positive margin.

    Solves the feasibility LP ``(theta_{y_i} - theta_k) . x~_i >= 1`` for all ``i`` and
    ``k != y_i`` (by scaling, equivalent to strict separability).
    """
    y = np.asarray(y, dtype=int)
    K = int(y.max()) + 1 if K is None else K
    Xa = augment(X)
    n, D = Xa.shape
    rows = []
    for i in range(n):
        for k in range(K):
            if k == y[i]:
                continue
            r = np.zeros((K, D))
            r[y[i]] -= Xa[i]
            r[k] += Xa[i]
            rows.append(r.ravel())
    A = np.array(rows)
    res = linprog(np.zeros(K * D), A_ub=A, b_ub=-np.ones(len(rows)),
                  bounds=[(None, None)] * (K * D), method="highs")
    return res.status == 0
