"""Tables, statistics and figures over stored runs (a DataFrame from ``ResultStore.to_frame``).

Conventions used throughout (and stated in the book):

* **std** is the *sample* standard deviation over seeds (``ddof=1``, the n-1 divisor):
  the seeds are a sample of possible seeds, and this is what numpy-free tools
  (pandas ``.std()``, spreadsheets) report. A cell with one run has no std (NaN).
* **failed run** (Dodge et al. 2020, Mosbach et al. 2020): final accuracy <= the accuracy
  of the majority-class classifier on the same evaluation set. A row also counts as failed
  when its verdict is ``failed``, ``collapsed`` or ``diverged`` (a collapsed run predicts
  one class, so its accuracy can never beat the majority class). The failed count always
  uses accuracy, whatever metric the table shows.
* **Levene's test**: Mosbach et al. cite Levene (1960), whose statistic measures absolute
  deviations from each group's *mean*; we therefore default to ``center="mean"``
  (``scipy.stats.levene``'s own default is the median-centred Brown–Forsythe variant,
  available with ``center="median"``, more robust to the heavy tails failed runs create).
* **bootstrap CI**: percentile bootstrap of the mean over seeds, seeded, ``n_boot`` draws.
* Metrics are stored as fractions and shown multiplied by ``scale`` (100: percent).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

# The book's one vocabulary (dsgd.diagnostics.failure_kind): every verdict but "success" is a
# failed run; "collapsed" and "degenerate" (with the paper's "failed") are its kinds.
FAILED_VERDICTS = ("failed", "collapsed", "diverged", "degenerate")
METRIC_LABELS = {"accuracy": "ACC", "mcc": "MCC", "f1": "F1"}
VERDICT_COLOURS = {
    "success": "#2b8a3e",
    "degenerate": "#e8890c",
    "failed": "#c92a2a",
    "collapsed": "#212529",
    "diverged": "#7048e8",
}
ALL_COLLAPSED_MARK = "†"  # appended to a cell whose runs all collapsed


def _rows(rows: str | Sequence[str]) -> list[str]:
    return [rows] if isinstance(rows, str) else list(rows)


def _need(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"the results frame lacks column(s) {missing}; it has {list(df.columns)}")


def _ordered(values: Sequence[Any], order: Sequence[Any] | None) -> list[Any]:
    present = list(dict.fromkeys(values))
    if order is None:
        return present
    return [v for v in order if v in present] + [v for v in present if v not in order]


def is_failed(df: pd.DataFrame, tol: float = 1e-9) -> pd.Series:
    """Boolean per run: a failed run in the book's vocabulary (:func:`dsgd.diagnostics.failure_kind`:
    any verdict but "success"), or, for rows without a verdict, accuracy <= majority rate."""
    failed = pd.Series(False, index=df.index)
    if "verdict" in df:
        failed |= df["verdict"].isin(FAILED_VERDICTS)
    if "accuracy" in df and "majority_rate" in df:
        acc = pd.to_numeric(df["accuracy"], errors="coerce")
        maj = pd.to_numeric(df["majority_rate"], errors="coerce")
        failed |= (acc <= maj + tol).fillna(False)
    return failed


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than two values."""
    v = np.asarray(values, dtype=float)
    return float(np.std(v, ddof=1)) if v.size >= 2 else math.nan


# =========================================================================== Table 1
def table1(
    df: pd.DataFrame,
    metric: str = "accuracy",
    group_by: str = "task",
    rows: str | Sequence[str] = "method",
    order: Sequence[Any] | None = None,
    columns: Sequence[Any] | None = None,
    scale: float = 100.0,
) -> pd.DataFrame:
    """The paper's Table-1 layout as numbers.

    One row per method (``rows``; several columns such as ``["model", "method"]`` give a
    MultiIndex). Columns are a MultiIndex: for each value of ``group_by`` (task)
    ``(task, "mean")``, ``(task, "std")``, ``(task, "n")``, ``(task, "all_collapsed")``;
    then ``("average", "mean")`` and ``("average", "std")`` — the mean over tasks of the
    per-task means and of the per-task stds (NaN when a task is missing for that row, so
    a partial sweep cannot pass for a complete one) — and ``("runs", "failed")``,
    ``("runs", "n")``. Runs with a NaN metric (e.g. diverged) are left out of mean/std/n
    but still counted in ``runs``/``failed``.
    """
    rcols = _rows(rows)
    _need(df, rcols + [group_by, metric])
    d = df.copy()
    d["_value"] = pd.to_numeric(d[metric], errors="coerce") * scale
    d["_failed"] = is_failed(d)
    d["_collapsed"] = d["verdict"].eq("collapsed") if "verdict" in d else False
    tasks = _ordered(d[group_by].tolist(), columns)
    keys = _ordered([tuple(k) if len(rcols) > 1 else k for k in
                     (d[rcols].itertuples(index=False, name=None) if len(rcols) > 1 else d[rcols[0]])],
                    order)
    out: dict[tuple[str, str], list[Any]] = {}
    for t in tasks:
        for stat in ("mean", "std", "n", "all_collapsed"):
            out[(t, stat)] = []
    for stat in (("average", "mean"), ("average", "std"), ("runs", "failed"), ("runs", "n")):
        out[stat] = []
    for key in keys:
        sel = np.ones(len(d), dtype=bool)
        kk = key if len(rcols) > 1 else (key,)
        for c, v in zip(rcols, kk):
            sel &= (d[c] == v).to_numpy()
        sub = d[sel]
        means, stds = [], []
        for t in tasks:
            cell = sub[sub[group_by] == t]
            vals = cell["_value"].dropna().to_numpy()
            m = float(vals.mean()) if vals.size else math.nan
            s = sample_std(vals)
            out[(t, "mean")].append(m)
            out[(t, "std")].append(s)
            out[(t, "n")].append(int(vals.size))
            out[(t, "all_collapsed")].append(bool(len(cell)) and bool(cell["_collapsed"].all()))
            means.append(m)
            stds.append(s)
        out[("average", "mean")].append(float(np.mean(means)) if means else math.nan)
        out[("average", "std")].append(float(np.mean(stds)) if stds else math.nan)
        out[("runs", "failed")].append(int(sub["_failed"].sum()))
        out[("runs", "n")].append(int(len(sub)))
    index = (pd.MultiIndex.from_tuples(keys, names=rcols) if len(rcols) > 1
             else pd.Index(keys, name=rcols[0]))
    table = pd.DataFrame(out, index=index)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.attrs["metric"] = metric
    table.attrs["scale"] = scale
    return table


def format_table1(table: pd.DataFrame, digits: int = 2, labels: dict[Any, str] | None = None) -> pd.DataFrame:
    """Strings as printed: per task ``"mean ± std"`` (just the mean for a single run;
    ``†`` when every run collapsed),
    then ``ACC`` (or ``MCC``/``F1``), ``STD`` and ``failed`` (``"failed/runs"``)."""
    metric = table.attrs.get("metric", "accuracy")
    lab = METRIC_LABELS.get(metric, metric.upper())
    tasks = [t for t in dict.fromkeys(table.columns.get_level_values(0)) if t not in ("average", "runs")]

    def f(x: float) -> str:
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    data: dict[str, list[str]] = {}
    for t in tasks:
        cells = []
        for m, s, n, allc in zip(table[(t, "mean")], table[(t, "std")], table[(t, "n")],
                                 table[(t, "all_collapsed")]):
            if n == 0:
                cells.append("–")
                continue
            body = f(m) if n == 1 else f"{f(m)} ± {f(s)}"  # one run: no std to show
            cells.append(body + (ALL_COLLAPSED_MARK if allc else ""))
        data[str(t)] = cells
    data[lab] = [f(x) for x in table[("average", "mean")]]
    data["STD"] = [f(x) for x in table[("average", "std")]]
    data["failed"] = [f"{a}/{b}" for a, b in zip(table[("runs", "failed")], table[("runs", "n")])]
    out = pd.DataFrame(data, index=table.index)
    if labels:
        out = out.rename(index=labels)
    return out


def to_markdown(df: pd.DataFrame, index: bool = True) -> str:
    """A GitHub/MyST pipe table (no optional dependency)."""
    cols = [str(c) for c in df.columns]
    rows = [[str(v) for v in r] for r in df.itertuples(index=False, name=None)]
    if index:
        names = [n for n in (df.index.names or []) if n is not None]
        cols = [" / ".join(names) if names else ""] + cols
        idx = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in df.index]
        rows = [[i] + r for i, r in zip(idx, rows)]
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# =========================================================================== statistics
def levene_table(
    df: pd.DataFrame,
    reference: str = "fft",
    metric: str = "accuracy",
    group_by: str = "task",
    rows: str = "method",
    center: str = "mean",
    scale: float = 100.0,
) -> pd.DataFrame:
    """Levene's test of equal variances: each method's per-seed metric against the
    reference method's, per task. ``center="mean"`` is Levene (1960), as cited by
    Mosbach et al.; ``"median"`` is Brown–Forsythe. Columns: ``task, method, n, n_ref,
    std, std_ref, statistic, p_value`` (NaN where a group has < 2 runs or both groups
    are constant)."""
    from scipy import stats

    _need(df, [group_by, rows, metric])
    if center not in ("mean", "median", "trimmed"):
        raise ValueError(f"center must be 'mean', 'median' or 'trimmed', got {center!r}")
    out = []
    for t in _ordered(df[group_by].tolist(), None):
        sub = df[df[group_by] == t]
        ref = pd.to_numeric(sub.loc[sub[rows] == reference, metric], errors="coerce").dropna().to_numpy() * scale
        for m in _ordered(sub[rows].tolist(), None):
            if m == reference:
                continue
            x = pd.to_numeric(sub.loc[sub[rows] == m, metric], errors="coerce").dropna().to_numpy() * scale
            stat = p = math.nan
            if x.size >= 2 and ref.size >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = stats.levene(x, ref, center=center)
                stat, p = float(res.statistic), float(res.pvalue)
            out.append({group_by: t, rows: m, "n": int(x.size), "n_ref": int(ref.size),
                        "std": sample_std(x), "std_ref": sample_std(ref),
                        "statistic": stat, "p_value": p})
    return pd.DataFrame(out, columns=[group_by, rows, "n", "n_ref", "std", "std_ref",
                                      "statistic", "p_value"])


def bootstrap_ci(values: Sequence[float], n_boot: int = 10_000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: resample the values with replacement
    ``n_boot`` times (``numpy.random.default_rng(seed)``), take the ``(1-level)/2`` and
    ``(1+level)/2`` quantiles of the resampled means."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if v.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_table(df: pd.DataFrame, metric: str = "accuracy", group_by: str = "task",
                    rows: str = "method", n_boot: int = 10_000, level: float = 0.95,
                    seed: int = 0, scale: float = 100.0) -> pd.DataFrame:
    """Mean and bootstrap CI per (task, method): columns ``task, method, n, mean, lo, hi``."""
    _need(df, [group_by, rows, metric])
    out = []
    for t in _ordered(df[group_by].tolist(), None):
        sub = df[df[group_by] == t]
        for m in _ordered(sub[rows].tolist(), None):
            v = pd.to_numeric(sub.loc[sub[rows] == m, metric], errors="coerce").dropna().to_numpy() * scale
            lo, hi = bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed)
            out.append({group_by: t, rows: m, "n": int(v.size),
                        "mean": float(v.mean()) if v.size else math.nan, "lo": lo, "hi": hi})
    return pd.DataFrame(out, columns=[group_by, rows, "n", "mean", "lo", "hi"])


# =========================================================================== cost
def cost_table(df: pd.DataFrame, reference: str = "fft", rows: str = "method",
               group_by: str | None = None) -> pd.DataFrame:
    """Mean seconds per optimizer step and per epoch per method, and their ratio to the
    reference method (1.0 = as fast as FFT; 2.0 = twice as slow). With ``group_by``
    (e.g. ``"task"``) the ratios are taken within each group."""
    cols = ["timings.s_per_step", "timings.s_per_epoch"]
    _need(df, [rows] + cols)
    keys = [group_by, rows] if group_by else [rows]
    g = df.groupby(keys, sort=False)[cols].mean().reset_index()
    g = g.rename(columns={"timings.s_per_step": "s_per_step", "timings.s_per_epoch": "s_per_epoch"})
    for c in ("s_per_step", "s_per_epoch"):
        if group_by:
            ref = g[g[rows] == reference].set_index(group_by)[c]
            g[f"{c}_rel"] = g[c] / g[group_by].map(ref)
        else:
            refv = g.loc[g[rows] == reference, c]
            g[f"{c}_rel"] = g[c] / (float(refv.iloc[0]) if len(refv) else math.nan)
    return g


# =========================================================================== figures
def _jitter(n: int, width: float = 0.25, seed: int = 0) -> np.ndarray:
    if n <= 1:
        return np.zeros(n)
    return np.random.default_rng(seed).uniform(-width, width, n)


def strip_plot(df: pd.DataFrame, metric: str = "accuracy", group_by: str = "task",
               rows: str = "method", order: Sequence[Any] | None = None,
               columns: Sequence[Any] | None = None, scale: float = 100.0,
               ncols: int = 3, figsize_per: tuple[float, float] = (3.6, 3.0)):
    """Per-seed metric per method, one panel per task (the paper's Figures 9–11):
    dots coloured by verdict, a dashed line at the majority-class rate. Returns a Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    _need(df, [group_by, rows, metric])
    tasks = _ordered(df[group_by].tolist(), columns)
    methods = _ordered(df[rows].tolist(), order)
    nc = min(ncols, len(tasks)) or 1
    nr = math.ceil(len(tasks) / nc) or 1
    fig, axes = plt.subplots(nr, nc, figsize=(figsize_per[0] * nc, figsize_per[1] * nr),
                             squeeze=False, sharey=False)
    for ax, t in zip(axes.flat, tasks):
        sub = df[df[group_by] == t]
        for i, m in enumerate(methods):
            cell = sub[sub[rows] == m]
            y = pd.to_numeric(cell[metric], errors="coerce").to_numpy() * scale
            colours = [VERDICT_COLOURS.get(v, "#868e96") for v in
                       (cell["verdict"] if "verdict" in cell else [None] * len(cell))]
            ax.scatter(i + _jitter(len(y), seed=i), y, c=colours, s=22, alpha=0.85,
                       edgecolors="white", linewidths=0.4, zorder=3)
        if "majority_rate" in sub and metric == "accuracy":
            maj = pd.to_numeric(sub["majority_rate"], errors="coerce").mean() * scale
            if not math.isnan(maj):
                ax.axhline(maj, ls="--", lw=1, color="#495057", zorder=1)
        ax.set_title(str(t))
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([str(m) for m in methods], rotation=45, ha="right")
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel(f"{METRIC_LABELS.get(metric, metric)}" + (" (%)" if scale == 100 else ""))
    present = [v for v in VERDICT_COLOURS if "verdict" in df and (df["verdict"] == v).any()]
    handles = [Line2D([], [], marker="o", ls="", color=VERDICT_COLOURS[v], label=v) for v in present]
    handles.append(Line2D([], [], ls="--", color="#495057", label="majority class"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def cost_points(df: pd.DataFrame, metric: str, rows: str, time: str, scale: float = 100.0,
                order: Sequence[Any] | None = None) -> list[tuple[Any, float, float, float, int]]:
    """The points of a Figure-3 plot: per row ``(label, mean time, mean metric * scale,
    sample std of metric * scale, number of runs)``, rows in ``order`` (else first
    appearance); rows without a finite metric or time are left out."""
    out = []
    for m in _ordered(df[rows].tolist(), order):
        cell = df[df[rows] == m]
        y = pd.to_numeric(cell[metric], errors="coerce").dropna().to_numpy() * scale
        x = pd.to_numeric(cell[time], errors="coerce").dropna().to_numpy()
        if y.size and x.size:
            out.append((m, float(x.mean()), float(y.mean()), sample_std(y), int(y.size)))
    return out


def cost_plot(df: pd.DataFrame, metric: str = "accuracy", rows: str = "method",
              time: str = "timings.s_per_epoch", scale: float = 100.0,
              size_per_std: float = 40.0, min_size: float = 20.0, ax=None):
    """Accuracy against training time per method (the paper's Figure 3): x = mean
    ``time`` (seconds per epoch), y = mean metric, dot area grows with the std over
    seeds (``min_size + size_per_std * std``). Pass one task's runs. Returns a Figure."""
    import matplotlib.pyplot as plt

    _need(df, [rows, metric, time])
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
    else:
        fig = ax.figure
    for m, x, y, s, _ in cost_points(df, metric, rows, time, scale):
        size = min_size + size_per_std * (0.0 if math.isnan(s) else s)
        ax.scatter([x], [y], s=size, alpha=0.6, edgecolors="black", linewidths=0.6)
        ax.annotate(f"{m}\n±{s:.1f}" if not math.isnan(s) else str(m), (x, y),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("seconds per epoch" if time.endswith("s_per_epoch") else time)
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)}" + (" (%)" if scale == 100 else ""))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
