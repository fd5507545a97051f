"""Collapse on an imbalanced problem: is "always the majority class" stuck or optimal?

The cross-entropy ``L`` of the linear softmax model is convex, so every stationary point
is a global minimiser and gradient descent with a small enough step reaches it from any
start. If that minimiser predicts one class for every training example, the collapsed
classifier *is* the optimum of cross-entropy, not a trap. :func:`collapse_study` checks
this on data from :func:`dsgd.theory.data.make_blobs` and compares the end points of
DSGD, and the Bayes rule of the generating model.
"""
from __future__ import annotations

import numpy as np

from dsgd.theory import model as lm
from dsgd.theory.data import bayes_logits, class_means
from dsgd.theory.optimum import minimize_ce
from dsgd.theory.updates import run, run_sgd

Array = np.ndarray


def prediction_profile(pred: Array, y: Array, K: int) -> dict[str, float]:
    """Accuracy, balanced accuracy, number of distinct predicted classes, minority recall."""
    y = np.asarray(y)
    counts = np.bincount(y, minlength=K)
    recalls = np.array([np.mean(pred[y == k] == k) if counts[k] else np.nan for k in range(K)])
    minority = int(np.argmin(np.where(counts > 0, counts, np.inf)))
    return {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.nanmean(recalls)),
        "n_predicted_classes": int(len(np.unique(pred))),
        "minority_recall": float(recalls[minority]),
        "majority_share": float(counts.max() / counts.sum()),
    }


def collapse_study(
    X: Array,
    y: Array,
    X_test: Array,
    y_test: Array,
    *,
    class_probs: Array,
    separation: float,
    n_inits: int = 5,
    init_scale: float = 1.0,
    eta: float = 1.0,
    steps: int = 2000,
    taus: tuple[float, ...] = (1.0, 0.5),
    seed: int = 0,
) -> dict:
    """Minimiser, GD from several starts, DSGD (linear schedule, each ``tau``), Bayes rule.

    Returns ``{"optimum": {...}, "gd": [...], "dsgd": {tau: {...}}, "bayes": {...}}``;
    each entry holds ``prediction_profile`` on train and test, and GD entries the final
    distance to the minimiser (class rows centred). Full batch throughout.
    """
    y = np.asarray(y, dtype=int)
    K, d = len(class_probs), X.shape[1]
    theta_star, info = minimize_ce(X, y, K=K)
    if not info["finite"]:
        raise ValueError("the data are separable: no finite minimiser; lower `separation`")
    cen = lambda th: th - th.mean(axis=0, keepdims=True)
    prof = lambda th: {"train": prediction_profile(lm.predict(th, X), y, K),
                       "test": prediction_profile(lm.predict(th, X_test), y_test, K)}
    out: dict = {"optimum": {**prof(theta_star), "grad_norm": info["grad_norm"],
                             "min_eig_hessian": float(np.linalg.eigvalsh(
                                 lm.hessian(theta_star, X))[d + 1]),
                             "theta": theta_star}}
    rng = np.random.default_rng(seed)
    out["gd"] = []
    for _ in range(n_inits):
        th0 = lm.init_params(K, d, init_scale, rng)
        tr = run_sgd(th0, X, y, eta=eta, epochs=steps, batch_size=None)
        th = tr.thetas[-1]
        out["gd"].append({**prof(th), "dist": float(np.linalg.norm(cen(th) - theta_star)),
                          "start": prof(th0)})
    out["dsgd"] = {}
    th0 = lm.init_params(K, d, init_scale, np.random.default_rng(seed + 1))
    for tau in taus:
        tr = run(th0, X, y, eta=eta, epochs=steps, batch_size=None, schedule="linear", tau=tau)
        out["dsgd"][tau] = {**prof(tr.thetas[-1]),
                            "dist": float(np.linalg.norm(cen(tr.thetas[-1]) - theta_star))}
    mu = class_means(K, d, separation)
    pi = np.asarray(class_probs, dtype=float)
    out["bayes"] = {"train": prediction_profile(np.argmax(bayes_logits(X, mu, pi), axis=1), y, K),
                    "test": prediction_profile(np.argmax(bayes_logits(X_test, mu, pi), axis=1), y_test, K)}
    return out
