"""Figures of the theory chapter (matplotlib; each function returns the figure)."""
from __future__ import annotations

import numpy as np

from dsgd.theory import model as lm

COLORS = {"W": "tab:red", "C": "tab:blue", "all": "black",
          "dsgd": "tab:orange", "sgd": "tab:blue", "sgd_matched": "tab:green"}
LABELS = {"W": "GD on $L_W$", "C": "GD on $L_C$", "all": "GD on $L$",
          "dsgd": "DSGD", "sgd": "SGD (same $\\eta$)", "sgd_matched": "SGD (matched $\\eta$)"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def group_descent(results: dict[str, dict], n: dict[str, int]):
    """Training errors along GD on L_W, L_C and L, one panel per dataset."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(3.3 * len(results), 2.8), sharey=False)
    for ax, (name, res) in zip(np.atleast_1d(axes), results.items()):
        for g in ("W", "C", "all"):
            c = res[g]["curve"]
            ax.plot(c["step"], 100 * c["errors"] / n[name], color=COLORS[g], label=LABELS[g], lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("step (log scale after 10)")
    np.atleast_1d(axes)[0].set_ylabel("training error (%)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def line_counterexample(X, y, theta, title=""):
    """1-D data with the logit lines of ``theta``; markers at each point show label vs prediction."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = np.linspace(X.min() - 1, X.max() + 1, 200)[:, None]
    o = lm.logits(theta, xs)
    cols = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k in range(theta.shape[0]):
        ax.plot(xs[:, 0], o[:, k], color=cols[k], label=f"logit of class {k}")
    pred = lm.predict(theta, X)
    ox = lm.logits(theta, X)
    ux, counts = np.unique(np.c_[X[:, 0], y], axis=0, return_counts=True)
    for (x, lab), c in zip(ux, counts):
        lab = int(lab)
        p = int(pred[np.flatnonzero((X[:, 0] == x) & (y == lab))[0]])
        ax.scatter([x], [ox[np.flatnonzero(X[:, 0] == x)[0], lab]], color=cols[lab], s=40 + 25 * c,
                   edgecolor="k", zorder=3)
        ax.annotate(f"y={lab} (x{c}), pred {p}", (x, ox[np.flatnonzero(X[:, 0] == x)[0], lab]),
                    textcoords="offset points", xytext=(4, -12), fontsize=7)
    ax.set_xlabel("x")
    ax.set_ylabel("logit")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def lc_stall(curve, n):
    """Training errors and gradient norm along GD on L_C (log-log)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.8))
    s = np.maximum(curve["step"], 1)
    ax.loglog(s, curve["grad_norm"], color="tab:blue", label="$\\|\\nabla L_C\\|$")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    ax2 = ax.twinx()
    ax2.semilogx(s, curve["errors"], color="tab:red", label="training errors")
    ax2.set_ylim(-0.1, n + 0.1)
    ax2.set_ylabel("training errors", color="tab:red")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def seed_bounds(studies: dict[str, "object"]):
    """Bounds and measured divergence along training, one panel per learning rate."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(studies), figsize=(4.3 * len(studies), 3.4), squeeze=False)
    for ax, (name, st) in zip(axes[0], studies.items()):
        t = st.checkpoints
        for key, ls, lab in (("eps_sgd", "-", "$\\epsilon'$ (SGD bound)"), ("eps", "--", "$\\epsilon$ (DSGD bound)"),
                             ("path", "-.", "path-length bound"), ("lip", ":", "$H\\|\\theta_t-\\tilde\\theta_t\\|$"),
                             ("lip_c", (0, (1, 3)), "same, centred")):
            ax.plot(t, st.__dict__[key]["dsgd"].mean(0), ls=ls, color="gray", label=lab)
        for m in ("dsgd", "sgd", "sgd_matched"):
            if m in st.div:
                ax.plot(t, st.div[m].mean(0), color=COLORS[m], lw=2, label=f"measured, {LABELS[m]}")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_title(name, fontsize=9)
    axes[0, 0].set_ylabel("bound / $E_z|L(\\theta_t,z)-L(\\tilde\\theta_t,z)|$")
    h, l = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, l, fontsize=7, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def divergence_ci(rows: list[tuple[str, str, tuple[float, float, float]]]):
    """Measured final divergence with 95% intervals: rows of (setting, method, (m, lo, hi))."""
    plt = _plt()
    settings = list(dict.fromkeys(r[0] for r in rows))
    methods = list(dict.fromkeys(r[1] for r in rows))
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    w = 0.8 / len(methods)
    for j, m in enumerate(methods):
        for i, s in enumerate(settings):
            for r in rows:
                if r[0] == s and r[1] == m:
                    mu, lo, hi = r[2]
                    ax.errorbar(i + (j - (len(methods) - 1) / 2) * w, mu, yerr=[[mu - lo], [hi - mu]],
                                fmt="o", color=COLORS.get(m), capsize=3,
                                label=LABELS.get(m, m) if i == 0 else None)
    ax.set_xticks(range(len(settings)), settings, fontsize=8)
    ax.set_ylabel("final divergence")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def condition_bars(summaries: dict[str, dict]):
    """Left: how often each condition holds; right: share of qualifying steps where L_W decreases."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    conds = [("p_nonempty", "W, C non-empty"), ("p_cond1", "(1) schedule"), ("p_cond2", "(2) $\\|G_W\\|\\geq\\tau\\|G_C\\|$"),
             ("p_cond3", "(3) $\\eta<m/M$"), ("p_all", "all")]
    meas = [("dec_batch_fixed_if_all", "batch, W fixed"), ("dec_full_fixed_if_all", "full data, W fixed"),
            ("dec_reevaluated_if_all", "full data, W re-decided"),
            ("dec_full_fixed_2_if_all", "2 steps, W fixed"), ("dec_reevaluated_2_if_all", "2 steps, re-decided")]
    w = 0.8 / len(summaries)
    for j, (name, s) in enumerate(summaries.items()):
        off = (j - (len(summaries) - 1) / 2) * w
        axes[0].bar(np.arange(len(conds)) + off, [s[k] for k, _ in conds], w, label=name)
        axes[1].bar(np.arange(len(meas)) + off, [s[k] for k, _ in meas], w, label=name)
    axes[0].set_xticks(range(len(conds)), [l for _, l in conds], fontsize=7, rotation=15)
    axes[1].set_xticks(range(len(meas)), [l for _, l in meas], fontsize=7, rotation=15)
    axes[0].set_ylabel("share of steps")
    axes[1].set_ylabel("share of qualifying steps\nwhere $L_W$ decreases")
    h, l = axes[0].get_legend_handles_labels()
    fig.legend(h, l, fontsize=7, loc="lower center", ncol=len(summaries), bbox_to_anchor=(0.5, -0.01))
    for ax in axes:
        ax.set_ylim(0, 1.05)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def escape(runs: dict[str, dict]):
    """Distance to the cancellation point, excess loss and training errors along DSGD."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.9))
    for name, r in runs.items():
        t = np.arange(len(r["dist"]))
        axes[0].plot(t, r["dist"], label=name)
        axes[1].plot(t, r["excess_loss"], label=name)
        axes[2].step(t, r["errors"], label=name, lw=0.7, where="post")
    axes[0].plot(t, r["gd_dist"], color="k", ls=":", label="GD")
    axes[0].set_ylabel("$\\|\\theta_t-\\theta^*\\|$")
    axes[1].set_ylabel("$L(\\theta_t) - L(\\theta^*)$")
    axes[2].set_ylabel("training errors")
    for ax in axes:
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def collapse_regions(X, y, thetas: dict[str, np.ndarray]):
    """2-D data with the decision boundary of each parameter (binary or multi-class)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(thetas), figsize=(3.6 * len(thetas), 3.2), squeeze=False)
    xx, yy = np.meshgrid(np.linspace(X[:, 0].min() - .5, X[:, 0].max() + .5, 200),
                         np.linspace(X[:, 1].min() - .5, X[:, 1].max() + .5, 200))
    G = np.c_[xx.ravel(), yy.ravel()]
    for ax, (name, th) in zip(axes[0], thetas.items()):
        P = lm.predict(th, G).reshape(xx.shape)
        ax.contourf(xx, yy, P, levels=np.arange(-0.5, th.shape[0]), alpha=0.2, cmap="coolwarm")
        for k in np.unique(y):
            ax.scatter(*X[y == k].T, s=6 if k == 0 else 14, label=f"class {k} ({np.sum(y == k)})")
        pred = lm.predict(th, X)
        ax.set_title(f"{name}: predicts {len(np.unique(pred))} class(es) on train", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
