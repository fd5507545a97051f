"""Theorem 4.6: its conditions along DSGD trajectories, and which ``L_W`` decreases.

For each step ``t`` of a trajectory (batch ``B_t`` of ``m`` examples) we record

* ``nonempty``: ``W_t`` and ``C_t`` (decided on the batch at ``theta_t``) both non-empty;
* ``cond1``: ``0 < gamma_t``, ``gamma_t != gamma_{t+1}`` and ``gamma_t <= tau``;
* ``cond2``: ``||G_W||^2 >= tau^2 ||G_C||^2`` (batch sums);
* ``cond3``: ``eta_t < m / M_t`` with ``M_t`` the smoothness constant of the batch's ``L_W``
  with ``W_t`` held fixed (:func:`dsgd.theory.model.smoothness_constant`);
* ``cond3_batch``: the same with ``M`` of the whole batch (valid for any ``W`` in it);

and three readings of "``L_W`` decreases", because the theorem does not say which ``L_W``:

* ``batch_fixed``: ``L_{W_t}`` on the batch, ``W_t`` held fixed, at ``theta_{t+1}`` vs ``theta_t``
  (the function the proof's descent lemma is applied to);
* ``full_fixed``: the training set's misclassified set at ``theta_t``, held fixed;
* ``reevaluated``: the training set's ``L_W`` with ``W`` re-decided at each parameter
  (what a monitor of "loss on misclassified examples" would show);

each over one step and (``*_2``) over two steps, as the theorem's "every 2 consecutive
iterations". ``guaranteed`` is the decrease the proof's inequality (22) promises for
``batch_fixed``: ``-(1/m)(eta/2 - M_t eta^2/(2m)) ||G_W + gamma_t G_C||^2``.
"""
from __future__ import annotations

import numpy as np

from dsgd.theory import model as lm
from dsgd.theory.updates import Trajectory, gamma_value

Array = np.ndarray


def _reeval_lw(theta: Array, X: Array, y: Array) -> float:
    return lm.group_loss(theta, X, y, lm.partition(theta, X, y)[0])


def step_conditions(traj: Trajectory, X: Array, y: Array, *, schedule: str, tau: float,
                    gamma_fn=None) -> dict[str, Array]:
    """Per-step conditions and ``L_W`` changes (see the module docstring).

    Steps whose ``t + 2`` iterate does not exist get NaN in the two-step columns.
    """
    y = np.asarray(y, dtype=int)
    T = traj.T
    out: dict[str, list] = {k: [] for k in (
        "nonempty", "cond1", "cond2", "cond3", "cond3_batch", "M", "eta_limit",
        "batch_fixed", "guaranteed", "full_fixed", "reevaluated", "full_fixed_2", "reevaluated_2")}
    reev = [_reeval_lw(th, X, y) for th in traj.thetas]
    for t in range(T):
        b = traj.batches[t]
        Xb, yb = X[b], y[b]
        m = len(b)
        wrong = traj.wrong_masks[t]
        Wb = np.flatnonzero(wrong)
        g_t = traj.gamma[t]
        g_next = gamma_fn(t + 1, T) if gamma_fn is not None else gamma_value(schedule, t + 1, T, tau)
        M = lm.smoothness_constant(Xb, Wb)
        Mb = lm.smoothness_constant(Xb)
        eta = traj.eta[t]
        th0, th1 = traj.thetas[t], traj.thetas[t + 1]
        out["nonempty"].append(0 < wrong.sum() < m)
        out["cond1"].append(0 < g_t <= tau and not np.isclose(g_t, g_next, rtol=0, atol=1e-15))
        out["cond2"].append(traj.gw_norm[t] ** 2 >= tau**2 * traj.gc_norm[t] ** 2)
        out["cond3"].append(M == 0 or eta < m / M)
        out["cond3_batch"].append(eta < m / Mb)
        out["M"].append(M)
        out["eta_limit"].append(m / M if M > 0 else np.inf)
        out["batch_fixed"].append(lm.group_loss(th1, Xb, yb, Wb) - lm.group_loss(th0, Xb, yb, Wb))
        # ||G_W + gamma G_C||^2 / m^2 = ||step||^2 / eta^2
        dnorm2 = float(np.sum((th1 - th0) ** 2)) / eta**2 * m**2
        out["guaranteed"].append(-(1 / m) * (eta / 2 - M * eta**2 / (2 * m)) * dnorm2)
        Wf = lm.partition(th0, X, y)[0]
        out["full_fixed"].append(lm.group_loss(th1, X, y, Wf) - lm.group_loss(th0, X, y, Wf))
        out["reevaluated"].append(reev[t + 1] - reev[t])
        if t + 2 <= T:
            out["full_fixed_2"].append(lm.group_loss(traj.thetas[t + 2], X, y, Wf)
                                       - lm.group_loss(th0, X, y, Wf))
            out["reevaluated_2"].append(reev[t + 2] - reev[t])
        else:
            out["full_fixed_2"].append(np.nan)
            out["reevaluated_2"].append(np.nan)
    res = {k: np.asarray(v) for k, v in out.items()}
    res["all"] = res["nonempty"] & res["cond1"] & res["cond2"] & res["cond3"]
    return res


MEASURES = ("batch_fixed", "full_fixed", "reevaluated", "full_fixed_2", "reevaluated_2")


def summarize_conditions(tables: list[dict[str, Array]]) -> dict[str, float]:
    """Pool step tables from several runs: condition frequencies and decrease rates.

    ``p_<cond>``: share of steps meeting a condition; ``runs_all_t``: share of runs in
    which every condition holds at every step after the first (the theorem asks "for all
    t"; with the linear schedule ``gamma_0 = 0`` breaks condition (1) at ``t = 0`` anyway);
    ``dec_<measure>_if_all`` / ``_if_not``: share of steps with a strict decrease among
    steps where all conditions hold / do not; ``n_all``: number of steps meeting them;
    ``bound_violations``: steps where ``batch_fixed`` exceeded the proof's guarantee.
    """
    cat = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    res: dict[str, float] = {}
    for c in ("nonempty", "cond1", "cond2", "cond3", "cond3_batch", "all"):
        res[f"p_{c}"] = float(cat[c].mean())
    res["runs_all_t"] = float(np.mean([bool(t["all"][1:].all()) for t in tables]))
    res["n_steps"] = int(cat["all"].size)
    res["n_all"] = int(cat["all"].sum())
    for k in MEASURES:
        v = cat[k]
        ok = np.isfinite(v)
        for name, sel in (("if_all", cat["all"] & ok), ("if_not", ~cat["all"] & ok)):
            res[f"dec_{k}_{name}"] = float(np.mean(v[sel] < 0)) if sel.any() else float("nan")
    sel = cat["all"]
    res["bound_violations"] = int(np.sum(cat["batch_fixed"][sel] > cat["guaranteed"][sel] + 1e-9))
    return res
