"""The linear softmax classifier of the paper's Section 4, in float64 numpy.

Parameters are one matrix ``theta`` of shape ``(K, d + 1)``: row ``k`` holds class ``k``'s
weights and, in the last column, its bias. With the augmented input ``x~ = (x, 1)`` the
logits are ``o = theta @ x~`` and the per-example loss is cross-entropy
``l(theta, (x, y)) = -log softmax(o)_y``.

Conventions used everywhere in :mod:`dsgd.theory`:

* **Prediction and ties.** The predicted class is ``argmax_k o_k`` with ties broken towards
  the *lowest* class index (``numpy.argmax``). An example is *correctly classified* iff that
  class equals its label. At ``theta = 0`` every example is therefore predicted class 0.
* **Group losses are sums.** For a set ``S`` of examples, ``L_S(theta) = sum_{i in S} l_i``;
  ``L_W`` and ``L_C`` are ``L_S`` for the misclassified / correctly classified examples, so
  ``grad L_W = G_W`` and ``grad L_C = G_C`` are the *total* gradients of the paper's update
  ``theta - eta/m (G_W + gamma G_C)``. ``W`` and ``C`` are decided at a given parameter
  (``partition``); ``L_W`` with ``W`` held fixed is smooth, ``L_W`` with ``W`` re-decided at
  every point (``reevaluated_group_loss``) is not even continuous.
* **Gradient.** ``grad_theta l = (p - e_y) x~^T``, so ``||grad l|| = ||p - e_y|| ||x~||`` and
  ``||p - e_y||^2 = (1 - p_y)^2 + sum_{k != y} p_k^2 <= 2 (1 - p_y)^2 <= 2``: the loss is
  Lipschitz in ``theta`` with constant ``H = sqrt(2) max ||x~||`` over the examples it is
  evaluated on (:func:`lipschitz_constant`). The constant depends on the data norm: for
  inputs with unbounded support (Gaussian data) no finite ``H`` exists.
* **Hessian.** ``hess l = (diag(p) - p p^T) (x) x~ x~^T``; since
  ``diag(p) - p p^T <= (I - 11^T/K) / 2`` (Boehning's bound) and ``I - 11^T/K`` is a
  projection, ``L_S`` is ``M``-smooth with ``M = lambda_max(X~_S^T X~_S) / 2``
  (:func:`smoothness_constant`).
"""
from __future__ import annotations

import numpy as np

Array = np.ndarray


def augment(X: Array) -> Array:
    """Append a constant-1 column so the bias is the last column of ``theta``."""
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))])


def init_params(K: int, d: int, scale: float, rng: np.random.Generator) -> Array:
    """Gaussian initial parameters ``N(0, scale^2)`` of shape ``(K, d + 1)`` (bias included)."""
    return scale * rng.standard_normal((K, d + 1))


def logits(theta: Array, X: Array) -> Array:
    """``(n, K)`` logits ``X~ theta^T``."""
    return augment(X) @ theta.T


def softmax(o: Array) -> Array:
    o = o - o.max(axis=1, keepdims=True)
    e = np.exp(o)
    return e / e.sum(axis=1, keepdims=True)


def probs(theta: Array, X: Array) -> Array:
    return softmax(logits(theta, X))


def predict(theta: Array, X: Array) -> Array:
    """Predicted classes; ties go to the lowest class index."""
    return np.argmax(logits(theta, X), axis=1)


def misclassified(theta: Array, X: Array, y: Array) -> Array:
    """Boolean mask of the examples in ``W`` (wrongly classified at ``theta``)."""
    return predict(theta, X) != np.asarray(y)


def partition(theta: Array, X: Array, y: Array) -> tuple[Array, Array]:
    """Index arrays ``(W, C)`` of wrongly and correctly classified examples at ``theta``."""
    wrong = misclassified(theta, X, y)
    return np.flatnonzero(wrong), np.flatnonzero(~wrong)


def example_losses(theta: Array, X: Array, y: Array) -> Array:
    """Per-example cross-entropy ``-log p_y`` (computed stably with log-sum-exp)."""
    o = logits(theta, X)
    m = o.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(o - m).sum(axis=1, keepdims=True)))[:, 0]
    return lse - o[np.arange(len(y)), np.asarray(y)]


def group_loss(theta: Array, X: Array, y: Array, idx: Array | None = None) -> float:
    """``L_S = sum_{i in S} l_i`` for the index set ``idx`` (all examples when None)."""
    if idx is None:
        return float(example_losses(theta, X, y).sum())
    idx = np.asarray(idx, dtype=int)
    if idx.size == 0:
        return 0.0
    return float(example_losses(theta, X[idx], np.asarray(y)[idx]).sum())


def loss_W(theta: Array, X: Array, y: Array) -> float:
    """``L_W`` with ``W`` decided at ``theta`` itself (sum over the misclassified examples)."""
    return group_loss(theta, X, y, partition(theta, X, y)[0])


def loss_C(theta: Array, X: Array, y: Array) -> float:
    """``L_C`` with ``C`` decided at ``theta`` itself."""
    return group_loss(theta, X, y, partition(theta, X, y)[1])


def example_grads(theta: Array, X: Array, y: Array) -> Array:
    """``(n, K, d + 1)`` per-example gradients ``(p_i - e_{y_i}) x~_i^T``."""
    y = np.asarray(y)
    r = probs(theta, X)
    r[np.arange(len(y)), y] -= 1.0
    return r[:, :, None] * augment(X)[:, None, :]


def group_grad(theta: Array, X: Array, y: Array, idx: Array | None = None) -> Array:
    """Total gradient ``sum_{i in S} grad l_i`` over ``idx`` (all examples when None)."""
    y = np.asarray(y)
    if idx is not None:
        idx = np.asarray(idx, dtype=int)
        if idx.size == 0:
            return np.zeros_like(theta)
        X, y = X[idx], y[idx]
    r = probs(theta, X)
    r[np.arange(len(y)), y] -= 1.0
    return r.T @ augment(X)


def split_grads(theta: Array, X: Array, y: Array) -> tuple[Array, Array, Array]:
    """``(G_W, G_C, wrong_mask)`` for a batch, with ``W``/``C`` decided at ``theta``."""
    wrong = misclassified(theta, X, y)
    g = example_grads(theta, X, y)
    return g[wrong].sum(axis=0), g[~wrong].sum(axis=0), wrong


def hessian(theta: Array, X: Array, y: Array | None = None, idx: Array | None = None) -> Array:
    """Hessian of ``L_S`` w.r.t. ``theta.ravel()``: ``sum_i (diag p_i - p_i p_i^T) (x) x~_i x~_i^T``.

    It is singular along adding the same vector to every class row (softmax is invariant
    to it); use a least-squares solve with it.
    """
    if idx is not None:
        X = X[np.asarray(idx, dtype=int)]
    P = probs(theta, X)
    Xa = augment(X)
    K, D = P.shape[1], Xa.shape[1]
    Hm = np.zeros((K, D, K, D))
    for k in range(K):
        for j in range(K):
            w = (P[:, k] * ((k == j) - P[:, j]))
            Hm[k, :, j, :] = (Xa * w[:, None]).T @ Xa
    return Hm.reshape(K * D, K * D)


def lipschitz_constant(*Xs: Array) -> float:
    """``H = sqrt(2) max ||(x, 1)||`` over all rows of the given inputs.

    Every per-example cross-entropy gradient on these inputs has norm at most ``H``
    (see the module docstring), so ``|l(theta, z) - l(theta', z)| <= H ||theta - theta'||``.
    The factor sqrt(2) is the supremum over ``theta`` (a confident wrong prediction).
    """
    return float(np.sqrt(2.0) * max(np.linalg.norm(augment(X), axis=1).max() for X in Xs))


def smoothness_constant(X: Array, idx: Array | None = None) -> float:
    """``M = lambda_max(X~_S^T X~_S) / 2``: a global smoothness constant of ``L_S`` (a sum)."""
    if idx is not None:
        idx = np.asarray(idx, dtype=int)
        if idx.size == 0:
            return 0.0
        X = X[idx]
    Xa = augment(X)
    return float(0.5 * np.linalg.eigvalsh(Xa.T @ Xa)[-1])


def accuracy(theta: Array, X: Array, y: Array) -> float:
    return float(np.mean(predict(theta, X) == np.asarray(y)))


def margins(theta: Array, X: Array, y: Array) -> Array:
    """``o_y - max_{k != y} o_k``: positive iff correctly classified (up to ties)."""
    o = logits(theta, X)
    y = np.asarray(y)
    oy = o[np.arange(len(y)), y]
    o2 = o.copy()
    o2[np.arange(len(y)), y] = -np.inf
    return oy - o2.max(axis=1)


def grad_ratio_sup(K: int, d: int, n: int = 2000, scale: float = 10.0, seed: int = 0) -> float:
    """Largest ``||grad l|| / ||x~||`` over random parameters and examples (approaches sqrt 2).

    Large random parameters make confident predictions; the ratio ``||p - e_y||`` reaches
    its supremum sqrt(2) when all mass sits on one wrong class.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, K, n)
    theta = scale * rng.standard_normal((K, d + 1))
    g = example_grads(theta, X, y).reshape(n, -1)
    return float((np.linalg.norm(g, axis=1) / np.linalg.norm(augment(X), axis=1)).max())


def finite_difference_error(theta: Array, X: Array, y: Array, h: float = 1e-6) -> float:
    """Largest relative gap between :func:`group_grad` and central finite differences of ``L``."""
    g = group_grad(theta, X, y)
    fd = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        e = np.zeros_like(theta)
        e[idx] = h
        fd[idx] = (group_loss(theta + e, X, y) - group_loss(theta - e, X, y)) / (2 * h)
    return float(np.abs(fd - g).max() / max(np.abs(g).max(), 1e-12))
