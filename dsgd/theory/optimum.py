"""Exact minimisers of (weighted) cross-entropy on the linear softmax model.

The loss ``L_S`` is convex in ``theta``; on data that no linear rule separates it has a
finite minimiser, unique up to adding one vector to every class row (which changes no
prediction). We find it with damped Newton steps (least-squares solves, because the
Hessian is singular along that shift) and report the final gradient norm so a caller can
see how stationary the point is.
"""
from __future__ import annotations

import numpy as np

from dsgd.theory import model as lm

Array = np.ndarray


def weighted_loss(theta: Array, X: Array, y: Array, w: Array | None) -> float:
    l = lm.example_losses(theta, X, y)
    return float(l.sum() if w is None else l @ w)


def weighted_grad(theta: Array, X: Array, y: Array, w: Array | None) -> Array:
    g = lm.example_grads(theta, X, y)
    return g.sum(axis=0) if w is None else np.tensordot(w, g, axes=1)


def weighted_hessian(theta: Array, X: Array, w: Array | None) -> Array:
    if w is None:
        return lm.hessian(theta, X)
    P = lm.probs(theta, X)
    Xa = lm.augment(X)
    K, D = P.shape[1], Xa.shape[1]
    Hm = np.zeros((K, D, K, D))
    for k in range(K):
        for j in range(K):
            c = w * P[:, k] * ((k == j) - P[:, j])
            Hm[k, :, j, :] = (Xa * c[:, None]).T @ Xa
    return Hm.reshape(K * D, K * D)


def minimize_ce(
    X: Array,
    y: Array,
    weights: Array | None = None,
    theta0: Array | None = None,
    K: int | None = None,
    tol: float = 1e-11,
    max_iter: int = 200,
    max_norm: float = 1e6,
) -> tuple[Array, dict]:
    """Newton's method on ``sum_i w_i l_i`` (``w = 1`` when ``weights`` is None).

    Returns ``(theta, info)`` with ``info = {"grad_norm", "iterations", "finite"}``;
    ``finite`` is False when the iterates ran off (separable data: no finite minimiser).
    The result is centred (class rows sum to zero) so it is a canonical representative.
    """
    y = np.asarray(y, dtype=int)
    K = int(y.max()) + 1 if K is None else K
    theta = np.zeros((K, X.shape[1] + 1)) if theta0 is None else np.array(theta0, float)
    w = None if weights is None else np.asarray(weights, dtype=float)
    it = 0
    for it in range(max_iter):
        g = weighted_grad(theta, X, y, w)
        if np.linalg.norm(g) < tol:
            break
        Hm = weighted_hessian(theta, X, w)
        step = np.linalg.lstsq(Hm, g.ravel(), rcond=None)[0].reshape(theta.shape)
        f0, a = weighted_loss(theta, X, y, w), 1.0
        slope = float(np.sum(g * step))
        while a > 1e-12 and weighted_loss(theta - a * step, X, y, w) > f0 - 1e-4 * a * slope:
            a /= 2
        theta = theta - a * step
        if np.linalg.norm(theta) > max_norm:
            break
    theta = theta - theta.mean(axis=0, keepdims=True)
    gn = float(np.linalg.norm(weighted_grad(theta, X, y, w)))
    return theta, {"grad_norm": gn, "iterations": it, "finite": bool(np.linalg.norm(theta) < max_norm and gn < 1e-6)}
