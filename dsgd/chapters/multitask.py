"""Glue of the multitask chapter (notebooks/multitask.ipynb): its grid, its Table-6
layout, the paper's Table 6 as reported, and the chapter's small tables.

The multitask model, its heads and its run function live in the library
(:mod:`dsgd.multitask`); this module only arranges runs and results for the page.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from dsgd.chapters._common import method_variants
from dsgd.config import RunConfig
from dsgd.multitask import parse_tasks


# ============================================================================= grids
def multitask_grid(pairs: Sequence[str], methods: Sequence[str], seeds: Sequence[int],
                   base: dict[str, Any], method_kwargs: dict[str, dict[str, Any]] | None = None) -> list[RunConfig]:
    """Run configs for every (pair, method, seed), in that order; ``pairs`` are task names
    such as ``"mrpc+rte"``, ``base`` the shared RunConfig fields, ``method_kwargs`` each
    method's settings (e.g. ``{"swa": {"window": 3}}``)."""
    from dsgd.sweep import expand_grid

    for p in pairs:
        parse_tasks(p)
    variants = method_variants(methods, method_kwargs)
    return expand_grid(dict(base), task=list(pairs), variants=variants, seed=list(seeds))


def chapter_grid(P: dict[str, Any]) -> list[RunConfig]:
    """The runs of the multitask chapter from its parameters (the notebook's
    ``parameters`` cell or a profile such as ``notebooks/params/multitask/paper.yaml``):
    ``pairs, methods, seeds, model, model_kwargs, task_kwargs, lr, epochs, batch_size,
    grad_accum, max_length, train_size, eval_size, swa_window`` and, when given,
    ``warmup_ratio``, ``swa_span`` (SWA's snapshots spread over that last fraction of the
    steps instead of one per epoch: :class:`dsgd.methods.swa.SWA`) and ``eval_each_epoch``
    (off, a run skips its evaluations before the last: the chapter reads only the final
    one, and such a run trains exactly as the stored run with them, see
    :meth:`dsgd.config.RunConfig.training_id`)."""
    base = {"model": P["model"], "model_kwargs": dict(P.get("model_kwargs") or {}),
            "task_kwargs": dict(P.get("task_kwargs") or {}), "lr": float(P["lr"]),
            "epochs": float(P["epochs"]), "batch_size": int(P["batch_size"]),
            "grad_accum": int(P.get("grad_accum", 1)), "max_length": int(P["max_length"]),
            "train_size": P.get("train_size"), "eval_size": P.get("eval_size")}
    if P.get("warmup_ratio") is not None:
        base["warmup_ratio"] = float(P["warmup_ratio"])
    if P.get("eval_each_epoch") is not None:
        base["eval_each_epoch"] = bool(P["eval_each_epoch"])
    swa = {"window": int(P.get("swa_window", 3))}
    if P.get("swa_span") is not None:
        swa["span"] = float(P["swa_span"])
    mk = {"swa": swa}
    return multitask_grid(P["pairs"], P["methods"], P["seeds"], base, method_kwargs=mk)


# ============================================================================= tables
def table6(frame: pd.DataFrame, order: Sequence[str] | None = None, digits: int = 2,
           columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's Table-6 layout: per (pair, task) column ``mean ± std`` of accuracy over
    seeds (percent), then ``ACC`` (mean of the column means) and ``STD`` (mean of the
    column standard deviations, sample std). Returns ``(numbers, formatted)`` from
    :func:`dsgd.report.table1` / :func:`dsgd.report.format_table1`."""
    from dsgd.report import format_table1, table1

    t = table1(frame, metric="accuracy", group_by="column", rows="method", order=order,
               columns=columns)
    return t, format_table1(t, digits=digits)


# The paper's Table 6 (reported by the paper): RoBERTa-large, mean ± std accuracy (%)
# over 10 seeds; columns (pair, task).
PAPER_TABLE6_COLUMNS = [("mrpc+rte", "mrpc"), ("mrpc+rte", "rte"), ("mrpc+cola", "mrpc"),
                        ("mrpc+cola", "cola"), ("rte+cola", "rte"), ("rte+cola", "cola")]
PAPER_TABLE6: dict[str, list[tuple[float, float]]] = {
    "fft": [(85.22, 8.91), (76.03, 12.41), (77.33, 10.64), (77.30, 8.63), (68.30, 16.05), (80.51, 7.88)],
    "pcgrad": [(88.63, 0.67), (83.25, 1.99), (76.67, 10.70), (75.66, 8.44), (80.94, 10.10), (83.99, 5.26)],
    "lnsr": [(81.18, 11.03), (69.75, 14.69), (88.01, 6.93), (83.74, 5.17), (79.24, 11.54), (83.59, 5.12)],
    "noisytune": [(84.78, 8.87), (75.02, 12.68), (70.80, 6.76), (71.74, 5.46), (68.16, 14.94), (81.14, 6.86)],
    "swa": [(79.68, 9.97), (65.56, 14.62), (79.63, 10.86), (79.01, 8.54), (76.79, 12.55), (85.54, 1.04)],
    "dsgd": [(88.14, 1.20), (81.73, 1.56), (88.95, 0.80), (85.21, 0.57), (83.10, 2.56), (85.35, 0.47)],
}
PAPER_TABLE6_AVERAGE = {"fft": (77.44, 10.75), "pcgrad": (81.52, 6.19), "lnsr": (80.91, 9.08),
                        "noisytune": (75.27, 9.26), "swa": (77.68, 9.59), "dsgd": (85.41, 1.19)}


def paper_table6() -> pd.DataFrame:
    """The paper's Table 6 as printed (strings ``mean ± std``, then ACC and STD), labelled
    as reported by the paper."""
    data = {}
    for (pair, task) in PAPER_TABLE6_COLUMNS:
        data[f"{pair}: {task}"] = []
    data["ACC"], data["STD"] = [], []
    for m, cells in PAPER_TABLE6.items():
        for (pair, task), (mu, sd) in zip(PAPER_TABLE6_COLUMNS, cells):
            data[f"{pair}: {task}"].append(f"{mu:.2f} ± {sd:.2f}")
        data["ACC"].append(f"{PAPER_TABLE6_AVERAGE[m][0]:.2f}")
        data["STD"].append(f"{PAPER_TABLE6_AVERAGE[m][1]:.2f}")
    df = pd.DataFrame(data, index=pd.Index(list(PAPER_TABLE6), name="method"))
    df.attrs["source"] = "reported by the paper (Table 6, RoBERTa-large, 10 seeds)"
    return df


def paper_table6_check() -> pd.DataFrame:
    """The paper's ACC/STD columns against the mean of its six column means / stds
    (a consistency check of the printed table)."""
    rows = []
    for m, cells in PAPER_TABLE6.items():
        rows.append({"method": m, "ACC (printed)": PAPER_TABLE6_AVERAGE[m][0],
                     "mean of column means": round(float(np.mean([c[0] for c in cells])), 2),
                     "STD (printed)": PAPER_TABLE6_AVERAGE[m][1],
                     "mean of column stds": round(float(np.mean([c[1] for c in cells])), 2)})
    return pd.DataFrame(rows).set_index("method")


def _failed(frame: pd.DataFrame) -> pd.Series:
    """Per row: did that task fail, in the book's one vocabulary (:func:`dsgd.diagnostics.failure_kind`)."""
    from dsgd.diagnostics import failure_kind

    return frame["verdict"].map(lambda v: failure_kind(v) is not None).astype(bool)


def failed_counts(frame: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per method (rows, in ``order``) and column: ``"failed/runs"``, failed in the book's
    vocabulary (collapsed, degenerate or diverged on that task)."""
    bad = _failed(frame)
    g = frame.assign(bad=bad).groupby(["method", "column"], sort=False)["bad"]
    out = (g.sum().astype(int).astype(str) + "/" + g.size().astype(str)).unstack("column")
    out = out[list(dict.fromkeys(frame["column"]))]
    if order is not None:
        out = out.reindex([m for m in order if m in out.index] + [m for m in out.index if m not in order])
    return out



def interval_table(frame: pd.DataFrame, order: Sequence[str] | None = None,
                   columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 6 with its uncertainty, one row per (task column, method): the seeds, the mean
    accuracy (%) with its Student-t 95 % interval (cut to [0, 100]), the seed STD (points) with its bootstrap
    (BCa) 95 % interval, and the failed runs on that task with their exact (Clopper–Pearson)
    interval. A group whose runs all ended at one accuracy has no spread to resample: its
    STD interval is left empty and the row says so."""
    from dsgd import stats

    cols = list(columns) if columns is not None else list(dict.fromkeys(frame["column"]))
    methods = [m for m in (order or METHOD_ORDER) if m in set(frame["method"])]
    methods += [m for m in dict.fromkeys(frame["method"]) if m not in methods]
    bad = _failed(frame)
    rows = []
    for c in cols:
        for m in methods:
            sel = (frame["column"] == c) & (frame["method"] == m)
            if not sel.any():
                continue
            acc = 100 * frame.loc[sel, "accuracy"].to_numpy(float)
            mean, lo, hi = stats.mean_ci(acc, bounds=(0.0, 100.0))  # an accuracy lies in [0, 100]
            slo, shi = stats.std_ci(acc)
            rate = stats.rate_ci(int(bad[sel].sum()), int(sel.sum()))
            one_value = stats.is_constant(acc)
            rows.append({"task": c, "method": METHOD_NAMES.get(m, m), "seeds": int(sel.sum()),
                         "accuracy (%)": round(mean, 2),
                         "95 % interval": f"[{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else "–",
                         "STD (points)": round(float(np.std(acc, ddof=1)), 2) if acc.size > 1 else float("nan"),
                         "STD 95 % interval": ("all runs at one value" if one_value else
                                               f"[{slo:.1f}, {shi:.1f}]" if np.isfinite(slo) else "–"),
                         "failed": f"{rate.k}/{rate.n}",
                         "failure rate 95 % interval": f"[{rate.lo:.2f}, {rate.hi:.2f}]"})
    return pd.DataFrame(rows).set_index(["task", "method"])


def cost_by_method(records: Sequence[dict[str, Any]], source: str) -> pd.DataFrame:
    """Median seconds per step and per run of each method's records, the time per step
    relative to FFT's, and ``source`` (where the records come from)."""
    c = pd.DataFrame([{"method": r["config"]["method"], "s_per_step": r["timings"]["s_per_step"],
                       "total_s": r["timings"]["total_s"]} for r in records]).groupby("method").median()
    c["relative to FFT"] = c["s_per_step"] / c.loc["fft", "s_per_step"]
    c["source"] = source
    return c


def two_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its ``"pair: task"`` column titles split over two lines (for plots)."""
    return frame.assign(column=frame["column"].str.replace(": ", ":\n", regex=False))


METHOD_ORDER = ["fft", "focal", "pcgrad", "lnsr", "noisytune", "swa", "dsgd"]  # rows of the tables


def put_numbers(R: Any, prefix: str, frame: pd.DataFrame, table: pd.DataFrame, columns: Sequence[str]) -> None:
    """Glue one result set's headline numbers, keyed by the column's position ``j`` in
    ``columns`` (so the text reads the same for every profile): FFT's and DSGD's mean
    and std per column (``<prefix>_c<j>_<method>_acc|std``; a dash for the std of a single
    seed), their ACC and STD, and the number of (run, task) rows and of failed ones."""
    for j, c in enumerate(columns):
        for m in ("fft", "dsgd"):
            R.put(f"{prefix}_c{j}_{m}_acc", table.loc[m, (c, "mean")], ".2f")
            R.put_number(f"{prefix}_c{j}_{m}_std", float(table.loc[m, (c, "std")]), ".2f")  # one seed: no std
    for m in ("fft", "dsgd"):
        R.put(f"{prefix}_{m}_ACC", table.loc[m, ("average", "mean")], ".2f")
        R.put_number(f"{prefix}_{m}_STD", float(table.loc[m, ("average", "std")]), ".2f")
    bad = _failed(frame)
    R.put(f"{prefix}_n_task_runs", len(frame))
    R.put(f"{prefix}_n_task_failed", int(bad.sum()))


# ------------------------------------------------------------------ findings page
def chapter_findings(stored: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The multitask chapter's rows of the findings page from the stored per-task frame
    (:func:`dsgd.multitask.multitask_frame`): DSGD − FFT of ACC (mean over tasks per seed)
    on shared seeds, and per-task failures — a task no method learns cannot show failures
    that depend on the seed."""
    from dsgd import stats
    from dsgd.diagnostics import failure_kind

    if stored is None or not len(stored):
        return []
    per_seed = stored.groupby(["method", "seed"])["accuracy"].mean()
    f = per_seed.get("fft", pd.Series(dtype=float))
    d = per_seed.get("dsgd", pd.Series(dtype=float))
    seeds = sorted(set(f.index) & set(d.index))
    pairs = ", ".join(dict.fromkeys(stored["pair"]))
    setting = f"MiniLM-L6, one encoder with one head per task, on {pairs}, stored runs, {len(seeds)} shared seeds"
    rows = []
    if len(seeds) >= 2:
        res = stats.paired_difference(100 * d.loc[seeds].to_numpy(), 100 * f.loc[seeds].to_numpy())
        sig = res["p_value"] < 0.05
        rows.append(dict(key="table6_acc", source="paper",
                         claim="Table 6: DSGD raises the multitask accuracy (ACC) over FFT.",
                         measured=(f"ACC DSGD − FFT {res['mean']:+.2f} points [{res['lo']:+.2f}, {res['hi']:+.2f}] "
                                   f"(Wilcoxon {stats.p_text(res['p_value'])})."),
                         setting=setting, verdict=("not resolved" if not sig else
                                                   "supported" if res["mean"] > 0 else "contradicted"),
                         section=""))
    learned, testable, tests = [], [], []
    for t in dict.fromkeys(stored["task"]):
        g = stored[stored["task"] == t]
        k = int(sum(failure_kind(v) is not None for v in g["verdict"]))
        learned.append(f"{t}: {k} of {len(g)} per-task results failed")
        ff = g[g["method"] == "fft"].set_index("seed")["verdict"].map(lambda v: failure_kind(v) is not None)
        if 0 < ff.sum() < len(ff):  # FFT fails on some seeds of this task and succeeds on others
            testable.append(t)
            dd = g[g["method"] == "dsgd"].set_index("seed")["verdict"].map(lambda v: failure_kind(v) is not None)
            sh = sorted(set(ff.index) & set(dd.index))
            if sh:
                res = stats.mcnemar_exact(dd.loc[sh].to_numpy(bool), ff.loc[sh].to_numpy(bool))
                tests.append((t, int(dd.loc[sh].sum()), int(ff.loc[sh].sum()), res["p_value"]))
    if tests:
        sig = [x for x in tests if x[3] < 0.05]
        verdict = ("not resolved" if not sig else "supported" if all(a < b for _, a, b, _ in sig)
                   else "contradicted")
        extra = " ".join(f"{t}: DSGD failed on {a}, FFT on {b} shared seeds ({stats.p_text(p)})."
                         for t, a, b, p in tests)
    else:
        verdict, extra = "not testable at this scale", ("No task has FFT failing on some seeds and "
                                                        "succeeding on others.")
    rows.append(dict(key="table6_failures", source="paper",
                     claim="Multitask fine-tuning fails on some seeds, and DSGD reduces those failures.",
                     measured="; ".join(learned) + ". " + extra, setting=setting, verdict=verdict, section=""))
    return rows


# ------------------------------------------------------------------ the page's top and bottom
METHOD_NAMES = {"fft": "FFT", "dsgd": "DSGD", "pcgrad": "PCGrad", "lnsr": "LNSR", "noisytune": "NoisyTune",
                "swa": "SWA", "focal": "focal loss"}


def headline_figure(stored_set: str, order: Sequence[str] | None = None):
    """The page's headline: every run of the stored set, one dot per seed and method on each
    task of each pair, coloured by that task's verdict, with the task's majority-class rate.
    Returns the figure, or None (printing why) without a stored set."""
    from dsgd.chapters._common import in_order, stored_records_or_note
    from dsgd.multitask import multitask_frame
    from dsgd.report import strip_plot

    records = stored_records_or_note(stored_set)
    if not records:
        return None
    df = multitask_frame(records)
    methods = in_order(df["method"], order or METHOD_ORDER)
    cols = list(dict.fromkeys(df["column"]))
    fig = strip_plot(two_lines(df), group_by="column", order=methods, columns=[c.replace(": ", ":\n") for c in cols],
                     ncols=len(cols), figsize_per=(4.6, 3.6))
    fig.suptitle(f"Accuracy per task of every stored run ({df['seed'].nunique()} seeds per method)", y=1.04)
    return fig


def search_sentence(table: pd.DataFrame | None, task: str) -> str:
    """What the recorded search for a failure-prone multitask setting found, in words chosen
    from :func:`dsgd.chapters._common.search_table` (``lead="mixed"``, read on ``task``):
    how many candidates had both failed and successful runs of ``task``, and which."""
    if table is None or not len(table):
        return "No search runs are stored in this checkout."
    seeds = (f"{int(table['seeds'].max())} seeds each" if table["seeds"].nunique() == 1
             else f"{int(table['seeds'].min())}-{int(table['seeds'].max())} seeds each")
    leads = [c for c in table.index if table.loc[c, "lead"]]
    all_failed = [c for c in table.index if table.loc[c, "failed"] == table.loc[c, "seeds"]]
    text = (f"Of {len(table)} candidate settings (FFT, {seeds}), {len(leads)} had both failed and "
            f"successful {task} runs")
    if leads:
        text += ": " + "; ".join(f"{c} ({int(table.loc[c, 'failed'])} of {int(table.loc[c, 'seeds'])} failed)"
                                 for c in leads)
    if all_failed:
        text += f". In {len(all_failed)} of them every {task} run failed"
    return text + "."


def what_we_found(frame: pd.DataFrame | None, source: str) -> dict[str, str]:
    """The closing bullets from one per-task result set (:func:`dsgd.multitask.multitask_frame`
    of the stored set, or of the build's runs): DSGD against FFT in ACC (the mean over the
    tasks, per seed) and on each task (paired, t interval, Wilcoxon); each task's failures
    in the book's vocabulary (collapsed or degenerate) with exact intervals and the exact
    McNemar test, and whether any method beats the task's majority class on average; the
    spread per task (Levene, not run for a group that ended at one value); the method with
    the highest ACC."""
    from dsgd import stats
    from dsgd.chapters._common import failure_text, failures_sentence, spread_sentence, values_sentence
    from dsgd.diagnostics import failure_kind

    keys = ("wwf_acc", "wwf_tasks", "wwf_failures", "wwf_spread", "wwf_best", "wwf_baselines")
    if frame is None or not len(frame) or not {"fft", "dsgd"} <= set(frame["method"]):
        return {"wwf_source": source, **{k: "Not measured: no FFT and DSGD runs in this profile." for k in keys}}
    one_pair = frame["pair"].nunique() == 1
    label = (lambda c: c.split(": ", 1)[1]) if one_pair else (lambda c: c)  # noqa: E731
    columns = list(dict.fromkeys(frame["column"]))

    def by_seed(m: str, col: str | None, what: str = "accuracy") -> pd.Series:
        g = frame[frame["method"] == m]
        if col is None:  # ACC: the mean over the tasks, per seed
            return g.groupby("seed")["accuracy"].mean()
        g = g[g["column"] == col]
        vals = g[what] if what != "failed" else g["verdict"].map(lambda v: failure_kind(v) is not None)
        return pd.Series(vals.to_numpy(), index=g["seed"].to_numpy())

    out = {"wwf_source": source,
           "wwf_acc": (f"ACC (the mean accuracy over the tasks): FFT {100 * by_seed('fft', None).mean():.1f} %, DSGD "
                       f"{100 * by_seed('dsgd', None).mean():.1f} %. "
                       + values_sentence("DSGD", by_seed("dsgd", None), "FFT", by_seed("fft", None), what="ACC"))}
    out["wwf_tasks"] = " ".join(
        f"{label(c)}: " + values_sentence("DSGD", by_seed("dsgd", c), "FFT", by_seed("fft", c)) for c in columns)
    fails = []
    for c in columns:
        g = frame[frame["column"] == c]
        maj = float(g["majority_rate"].mean())
        means = g.groupby("method")["accuracy"].mean()
        above = [METHOD_NAMES.get(m, m) for m in means.index if means[m] > maj + 1e-12]
        f_fail, d_fail = by_seed("fft", c, "failed").astype(bool), by_seed("dsgd", c, "failed").astype(bool)
        fails.append(f"{label(c)} (majority class {100 * maj:.1f} %): FFT failed on {failure_text(f_fail)}, DSGD on "
                     f"{failure_text(d_fail)}. " + failures_sentence("DSGD", d_fail, "FFT", f_fail)
                     + (f" No method's mean accuracy is above the majority share ({100 * means.min():.1f}–"
                        f"{100 * means.max():.1f} %): the task is not learnt at this scale, so its failures say "
                        "little about seed-induced instability." if not above else ""))
    out["wwf_failures"] = " ".join(fails)
    spread = []
    for c in columns:
        f = 100 * by_seed("fft", c).dropna().to_numpy(float)
        d = 100 * by_seed("dsgd", c).dropna().to_numpy(float)
        sentence = spread_sentence(label(c), d, f)
        stuck = [METHOD_NAMES[m] for m in ("dsgd", "fft") if len(by_seed(m, c, "failed"))
                 and by_seed(m, c, "failed").astype(bool).all()]
        if stuck:  # a small spread of runs that all failed is the spread of the majority-class plateau
            sentence += (f" (every {' and every '.join(stuck)} run failed on {label(c)}, so "
                         f"{'that' if len(stuck) == 1 else 'their'} small spread is that of runs resting at "
                         "the majority class, not stability)")
        spread.append(sentence)
    out["wwf_spread"] = "; ".join(spread) + "."
    acc = frame.groupby(["method", "seed"])["accuracy"].mean().groupby("method").mean()
    best = "fft" if acc["fft"] >= acc.max() - 1e-12 else str(acc.idxmax())  # a tie with FFT is no gain
    name = METHOD_NAMES.get(best, best)
    out["wwf_best"] = (f"Highest ACC: {name} ({100 * acc[best]:.1f} %"
                       + (f", FFT {100 * acc['fft']:.1f} %)" if best != "fft" else ")")
                       + (". " + values_sentence(name, by_seed(best, None), "FFT", by_seed("fft", None), what="ACC")
                          if best not in ("fft", "dsgd") else "; DSGD against FFT is the first point above." if best == "dsgd" else "."))
    out["wwf_baselines"] = baselines_sentence(frame, by_seed, label)
    return out


def baselines_sentence(frame: pd.DataFrame, by_seed: Any, label: Any) -> str:
    """The single-learner baselines' failures against FFT's on each task where FFT failed at
    least once: exact intervals, exact McNemar on the shared seeds, Holm-adjusted over every
    baseline x task test of the sentence. ``by_seed(method, column, what)`` and ``label(column)``
    are :func:`what_we_found`'s accessors."""
    from dsgd import stats
    from dsgd.chapters._common import compare_failures, failure_text

    others = [m for m in METHOD_ORDER if m in set(frame["method"]) and m not in ("fft", "dsgd")]
    columns = [c for c in dict.fromkeys(frame["column"]) if by_seed("fft", c, "failed").astype(bool).any()]
    if not others or not columns:
        return ("No baseline beside FFT and DSGD in this set." if not others else
                "FFT never failed on a task here, so the baselines cannot show fewer failures.")
    tests = [(c, m, compare_failures(by_seed(m, c, "failed").astype(bool), by_seed("fft", c, "failed").astype(bool)))
             for c in columns for m in others]
    adj = stats.holm([t[2]["p"] for t in tests])
    parts = []
    for c in columns:
        items = []
        for (cc, m, r), q in zip(tests, adj):
            if cc != c:
                continue
            sig = "significant" if q < 0.05 else "not significant"
            how = "as often as FFT" if r["direction"] == "as often" else f"{r['direction']} than FFT"
            items.append(f"{METHOD_NAMES.get(m, m)} {failure_text(by_seed(m, c, 'failed').astype(bool))}, "
                         f"{how} on the {r['n']} shared seeds ({r['k_a']} vs {r['k_b']}; exact "
                         f"McNemar {stats.p_text(r['p'])}, Holm-adjusted {stats.p_text(q)}, {sig})")
        fft = failure_text(by_seed("fft", c, "failed").astype(bool))
        parts.append(f"{label(c)}, where FFT failed on {fft}: " + "; ".join(items))
    return " ".join(p + "." for p in parts)
