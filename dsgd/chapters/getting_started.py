"""Glue of the getting-started chapter (notebooks/getting_started.ipynb): its figures, the
table of its first runs and the schedule explorer."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from dsgd.schedules import schedule, weight_share

SCHEDULE_NAMES = ("linear", "cosine", "descending", "constant")


def gammas(name: str, tau: float, T: int = 100, **kw: Any) -> np.ndarray:
    """``gamma_t`` of a schedule at ``t = 0, 1, ..., T``."""
    g = schedule(name, tau=tau, **kw)
    return np.array([g(t, T) for t in range(T + 1)], dtype=float)


def schedules_figure(T: int = 100):
    """Two panels: the schedules at tau = 1, and the linear schedule for several tau."""
    import matplotlib.pyplot as plt

    x = np.arange(T + 1) / T
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for name, kw in [("linear", {}), ("cosine", {}), ("descending", {}), ("constant", {"value": 0.5})]:
        axes[0].plot(x, gammas(name, 1.0, T, **kw), label=name)
    for tau in (0.1, 0.3, 0.5, 1.0):
        axes[1].plot(x, gammas("linear", tau, T), label=f"linear, τ={tau}")
    axes[0].set(title="schedules (τ = 1)", xlabel="t / T", ylabel="γ_t")
    axes[1].set(title="the linear schedule for several τ", xlabel="t / T")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def outcome_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: method, seed, accuracy, balanced accuracy, verdict, s/step."""
    return pd.DataFrame([{"method": r["config"]["method"], "seed": r["config"]["seed"],
                          "accuracy": r["metrics"]["accuracy"],
                          "balanced accuracy": r["metrics"]["balanced_accuracy"],
                          "verdict": r["verdict"], "s/step": r["timings"]["s_per_step"]}
                         for r in records])


def seed_figure(table: pd.DataFrame, methods: Sequence[str], majority_rate: float):
    """Accuracy and balanced accuracy per seed, one column of dots per method, with the
    majority-class rate and chance as dashed lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for metric, ax in zip(["accuracy", "balanced accuracy"], axes):
        for i, m in enumerate(methods):
            v = table[table.method == m][metric]
            ax.scatter(np.full(len(v), i) + np.linspace(-0.1, 0.1, len(v)), v, label=m)
        plain = metric == "accuracy"
        ax.axhline(majority_rate if plain else 0.5, ls="--", c="gray",
                   label="majority class" if plain else "chance")
        ax.set_xticks(range(len(methods)), methods)
        ax.set(title=f"{metric} per seed", ylabel=metric)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def put_outcomes(R: Any, table: pd.DataFrame) -> None:
    """Glue the page's headline numbers: per method the mean accuracy and balanced
    accuracy and the number of successful runs; DSGD's balanced accuracy minus FFT's."""
    bal = {}
    for m, sub in table.groupby("method"):
        R.put(f"{m}_acc_mean", float(sub["accuracy"].mean()), ".3f")
        bal[m] = R.put(f"{m}_bal_mean", float(sub["balanced accuracy"].mean()), ".3f")
        R.put(f"{m}_n_success", int((sub["verdict"] == "success").sum()))
    R.put("n_seeds", int(table["seed"].nunique()))
    if {"fft", "dsgd"} <= set(bal):
        R.put("dsgd_minus_fft_bal", bal["dsgd"] - bal["fft"], "+.3f")


def history_figure(record: dict[str, Any]):
    """gamma_t, the share of the batch classified correctly and the share of the weight on
    those examples, per optimizer step of one DSGD run."""
    import matplotlib.pyplot as plt

    h = record["history"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(h["step"], h["gamma"], label="γ_t")
    ax.plot(h["step"], h["correct_share"], label="share of batch classified correctly")
    ax.plot(h["step"], h["correct_weight_share"], label="share of weight on correct examples")
    ax.set(xlabel="optimizer step", ylim=(0, 1.02), title=f"DSGD, seed {record['config']['seed']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_schedule(name: str = "linear", tau: float = 1.0, ax: Any = None, T: int = 100,
                  accuracies: Sequence[float] = (0.5, 0.8, 0.95)) -> Any:
    """gamma_t of one schedule and the correct examples' share of the weight
    (:func:`dsgd.schedules.weight_share`) at a few batch accuracies; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    x = np.arange(T + 1) / T
    g = gammas(name, tau, T)
    ax.plot(x, g, "k", lw=2, label="γ_t")
    for acc in accuracies:
        ax.plot(x, weight_share(g, acc), label=f"correct-weight share, acc {acc:.0%}")
    ax.set(xlabel="t / T", ylim=(0, 1.02), title=f"{name}, τ = {tau}")
    return ax


def schedule_panels(choices: Sequence[tuple[str, float]] = (("linear", 1.0), ("cosine", 1.0), ("linear", 0.3))):
    """:func:`plot_schedule` for a few (schedule, tau) choices side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(choices), figsize=(4 * len(choices), 3.2), sharey=True)
    for ax, (name, tau) in zip(np.atleast_1d(axes), choices):
        plot_schedule(name, tau, ax)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def schedule_widget():
    """An explorer of :func:`plot_schedule` (schedule and tau): controls above the figure."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from dsgd.chapters._common import figure_explorer

    def draw(name: str, tau: float) -> Any:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        plot_schedule(name, tau, ax)
        ax.legend(fontsize=7)
        return fig

    return figure_explorer(draw, {
        "name": widgets.Dropdown(options=list(SCHEDULE_NAMES), value="linear", description="schedule"),
        "tau": widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="τ")})


# ------------------------------------------------------------------ what we found
def _flags(records: Sequence[dict[str, Any]], method: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(failed, accuracy, balanced accuracy) of one method's runs, indexed by seed."""
    from dsgd.diagnostics import failure_kind

    rs = [r for r in records if r["config"]["method"] == method]
    idx = [r["config"]["seed"] for r in rs]
    return (pd.Series([failure_kind(r.get("verdict")) is not None for r in rs], index=idx, dtype=bool),
            pd.Series([r["metrics"]["accuracy"] for r in rs], index=idx, dtype=float),
            pd.Series([r["metrics"]["balanced_accuracy"] for r in rs], index=idx, dtype=float))


def weight_shares(records: Sequence[dict[str, Any]], part: float = 0.1) -> dict[str, tuple[float, float, float]]:
    """Over the DSGD runs, the mean (with a t interval over runs) of the share of the
    update's weight carried by correctly classified examples (``early``: the first
    ``part`` of each run's steps, ``late``: the last ``part``) and of the share of the
    batch classified correctly in the late part (``late_correct``)."""
    from dsgd.stats import mean_ci

    early, late, late_acc = [], [], []
    for r in records:
        h = r.get("history") or {}
        w = np.asarray(h.get("correct_weight_share") or [], dtype=float)
        if r["config"]["method"] != "dsgd" or not w.size:
            continue
        k = max(1, int(round(part * w.size)))
        acc = np.asarray(h["correct_share"], dtype=float)
        early.append(float(w[:k].mean()))
        late.append(float(w[-k:].mean()))
        late_acc.append(float(acc[-k:].mean()))
    def share_ci(x: list[float]) -> tuple[float, float, float]:  # a mean share lies in [0, 1]
        return mean_ci(x, bounds=(0.0, 1.0))

    return {"early": share_ci(early), "late": share_ci(late), "late_correct": share_ci(late_acc),
            "n": len(early)}


def what_we_found(records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The closing bullets, computed from this page's runs: failures of plain training and
    DSGD with exact intervals and the exact McNemar test; their accuracy and balanced
    accuracy compared seed by seed (paired t interval, Wilcoxon); and how DSGD's weight on
    the correctly classified examples changed over training."""
    from dsgd.chapters._common import failure_text, failures_sentence, values_sentence

    methods = {r["config"]["method"] for r in records}
    if not {"fft", "dsgd"} <= methods:
        missing = "the plain run (fft)" if "fft" not in methods else "DSGD (dsgd)"
        text = f"not measured: this profile does not run {missing}."
        return {k: text for k in ("wwf_failures", "wwf_accuracy", "wwf_balanced", "wwf_weight")}
    f_fail, f_acc, f_bal = _flags(records, "fft")
    d_fail, d_acc, d_bal = _flags(records, "dsgd")
    majority = float(np.mean([r["majority_rate"] for r in records]))
    out = {"wwf_failures": (f"Failed runs (collapsed or degenerate: no better than always predicting the majority class): "
                            f"plain training "
                            f"{failure_text(f_fail)}, DSGD {failure_text(d_fail)}. "
                            + failures_sentence("DSGD", d_fail, "plain training", f_fail))}
    out["wwf_accuracy"] = (f"Accuracy: plain training {100 * f_acc.mean():.1f} %, DSGD {100 * d_acc.mean():.1f} % "
                           f"(the majority class alone scores {100 * majority:.1f} %). "
                           + values_sentence("DSGD", d_acc, "plain training", f_acc))
    out["wwf_balanced"] = (f"Balanced accuracy (the mean of the two classes' recalls, 50 % for a one-class "
                           f"model): plain training {100 * f_bal.mean():.1f} %, DSGD {100 * d_bal.mean():.1f} %. "
                           + values_sentence("DSGD", d_bal, "plain training", f_bal, what="balanced accuracy"))
    w = weight_shares(records)
    if w["n"] >= 2:
        (e, elo, ehi), (l, llo, lhi), (a, _, _) = w["early"], w["late"], w["late_correct"]
        move = "rose" if llo > ehi else "fell" if lhi < elo else "did not change clearly"
        out["wwf_weight"] = (f"Inside the {w['n']} DSGD runs, the correctly classified examples carried "
                             f"{100 * e:.0f} % of the update's weight in the first tenth of training (95 % CI "
                             f"{100 * elo:.0f}–{100 * ehi:.0f} % over runs) and {100 * l:.0f} % in the last tenth "
                             f"(CI {100 * llo:.0f}–{100 * lhi:.0f} %), when they were {100 * a:.0f} % of the "
                             f"batch: their weight {move} as γ_t rose.")
    else:
        out["wwf_weight"] = "Fewer than two DSGD runs with a history: the weight over training is not summarised."
    return out
