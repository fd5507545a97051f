"""Theorem 4.5: the paper's seed-stability bounds against measured seed divergence.

A *seed pair* is two runs that differ in everything a seed controls here: the initial
parameters and the mini-batch order. For each pair we run DSGD and SGD from the same two
initialisations with the same two batch orders (the paper's ``theta_0 = psi_0``) and
measure the divergence ``E_z |l(theta_t, z) - l(theta~_t, z)|`` on a held-out sample ``z``
from the data distribution. Along the way we evaluate four upper bounds, from loosest to
tightest, which isolate where the slack enters:

* ``eps_sgd``  ``H D_0 + 2 H^2 sum_s eta_s``             (the paper's eps', SGD)
* ``eps``      ``H D_0 + H^2 sum_s (rho_s + rho~_s) eta_s`` (the paper's eps, DSGD; for SGD
  runs ``rho = 1`` and it equals ``eps_sgd``)
* ``path``     ``H (D_0 + sum_s ||step_s|| + ||step~_s||)``   (same triangle inequality,
  actual step lengths instead of the worst case ``rho eta H``)
* ``lip``      ``H ||theta_t - theta~_t||``                 (Lipschitz only; the first
  inequality of the paper's proof)
* ``lip_c``    ``H ||P(theta_t - theta~_t)||`` with ``P`` centring the class rows: softmax
  ignores adding one vector to every row, and gradients never change that component, so
  the part of the initial difference along it never shrinks yet moves no loss

with ``D_0 = ||theta_0 - theta~_0||`` and ``H`` from :func:`dsgd.theory.model.lipschitz_constant`
over the training and evaluation inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dsgd.theory import model as lm
from dsgd.theory.updates import Trajectory, batch_order, run

Array = np.ndarray


@dataclass
class SeedStudy:
    """Per-pair curves at ``checkpoints`` for each method (arrays ``(n_pairs, n_ckpt)``)."""

    checkpoints: Array
    H: float
    d0: Array
    div: dict[str, Array] = field(default_factory=dict)
    eps: dict[str, Array] = field(default_factory=dict)
    eps_sgd: dict[str, Array] = field(default_factory=dict)
    path: dict[str, Array] = field(default_factory=dict)
    lip: dict[str, Array] = field(default_factory=dict)
    lip_c: dict[str, Array] = field(default_factory=dict)
    rho_mean: dict[str, Array] = field(default_factory=dict)
    eta: dict[str, float] = field(default_factory=dict)

    def final(self, what: str, method: str) -> Array:
        return getattr(self, what)[method][:, -1]


def pair_divergence(ta: Trajectory, tb: Trajectory, X_eval: Array, y_eval: Array,
                    checkpoints: Array) -> Array:
    """``mean_z |l(theta_t, z) - l(theta~_t, z)|`` at each checkpoint ``t``."""
    return np.array([
        np.mean(np.abs(lm.example_losses(ta.thetas[t], X_eval, y_eval)
                       - lm.example_losses(tb.thetas[t], X_eval, y_eval)))
        for t in checkpoints
    ])


def pair_bounds(ta: Trajectory, tb: Trajectory, H: float, checkpoints: Array) -> dict[str, Array]:
    """The four bounds of the module docstring at each checkpoint."""
    d0 = float(np.linalg.norm(ta.thetas[0] - tb.thetas[0]))
    cum = lambda a: np.r_[0.0, np.cumsum(a)][checkpoints]
    diff = ta.thetas[checkpoints] - tb.thetas[checkpoints]
    diff_c = diff - diff.mean(axis=1, keepdims=True)
    return {
        "eps": H * d0 + H**2 * cum((ta.rho + tb.rho) * ta.eta),
        "eps_sgd": H * d0 + 2 * H**2 * cum(ta.eta),
        "path": H * (d0 + cum(ta.step_norms + tb.step_norms)),
        "lip": H * np.linalg.norm(diff.reshape(len(checkpoints), -1), axis=1),
        "lip_c": H * np.linalg.norm(diff_c.reshape(len(checkpoints), -1), axis=1),
    }


def seed_study(
    X: Array,
    y: Array,
    X_eval: Array,
    y_eval: Array,
    *,
    n_pairs: int,
    eta: float,
    epochs: int,
    batch_size: int,
    schedule: str = "linear",
    tau: float = 1.0,
    init_scale: float = 0.5,
    n_checkpoints: int = 21,
    seed: int = 0,
    matched: bool = True,
) -> SeedStudy:
    """Run DSGD, SGD and (``matched``) SGD at DSGD's mean effective step over seed pairs.

    Pair ``j`` uses initialisations drawn from seeds ``(seed, j, 0)`` / ``(seed, j, 1)``
    and batch orders from ``(seed, j, 2)`` / ``(seed, j, 3)``; every method sees the same
    ones (paired design). The matched SGD step is ``eta * mean(rho)`` over all DSGD steps
    of all pairs, so it moves as far per step, on average, as DSGD's worst-case bound.
    """
    if n_pairs < 2:
        raise ValueError("n_pairs must be at least 2 for a confidence interval")
    y = np.asarray(y, dtype=int)
    K, d = int(max(y.max(), np.max(y_eval))) + 1, X.shape[1]
    H = lm.lipschitz_constant(X, X_eval)
    setups = []
    for j in range(n_pairs):
        rngs = [np.random.default_rng([seed, j, k]) for k in range(4)]
        th_a, th_b = lm.init_params(K, d, init_scale, rngs[0]), lm.init_params(K, d, init_scale, rngs[1])
        b_a = batch_order(len(y), batch_size, epochs, rngs[2])
        b_b = batch_order(len(y), batch_size, epochs, rngs[3])
        setups.append((th_a, th_b, b_a, b_b))
    T = len(setups[0][2])
    ckpt = np.unique(np.linspace(0, T, n_checkpoints).round().astype(int))
    study = SeedStudy(checkpoints=ckpt, H=H,
                      d0=np.array([np.linalg.norm(s[0] - s[1]) for s in setups]))

    def one(method: str, kw: dict) -> None:
        rows: dict[str, list] = {k: [] for k in ("div", "eps", "eps_sgd", "path", "lip", "lip_c")}
        rhos = []
        for th_a, th_b, b_a, b_b in setups:
            ta = run(th_a, X, y, batches=b_a, **kw)
            tb = run(th_b, X, y, batches=b_b, **kw)
            rows["div"].append(pair_divergence(ta, tb, X_eval, y_eval, ckpt))
            for k, v in pair_bounds(ta, tb, H, ckpt).items():
                rows[k].append(v)
            rhos.append(0.5 * (ta.rho.mean() + tb.rho.mean()))
        for k, v in rows.items():
            getattr(study, k)[method] = np.array(v)
        study.rho_mean[method] = np.array(rhos)
        study.eta[method] = kw["eta"]

    one("dsgd", dict(eta=eta, schedule=schedule, tau=tau))
    one("sgd", dict(eta=eta, schedule="constant", tau=1.0))
    if matched:
        eta_m = float(eta * study.rho_mean["dsgd"].mean())
        one("sgd_matched", dict(eta=eta_m, schedule="constant", tau=1.0))
    return study
