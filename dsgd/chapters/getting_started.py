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
    """An ipywidgets explorer of :func:`plot_schedule` (schedule and tau)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(name: str, tau: float) -> None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        plot_schedule(name, tau, ax)
        ax.legend(fontsize=7)
        plt.show()

    return widgets.interact(show, name=widgets.Dropdown(options=list(SCHEDULE_NAMES), value="linear"),
                            tau=widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05))
