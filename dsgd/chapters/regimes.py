"""Glue of the chapter "When does DSGD help?" (notebooks/regimes.ipynb).

The chapter reads a stored result set that holds several *settings* (task × optimiser ×
budget) and several *arms* (FFT, DSGD, DSGD with a floor, PCGrad, ...) on shared seeds,
and answers, setting by setting, whether DSGD fails less often than plain fine-tuning —
with exact intervals, paired exact tests, Holm's adjustment, time-to-escape curves, and
the analytic mechanism of :mod:`dsgd.theory.resting` checked against the per-step records.
Everything here is computed from records; no outcome is typed.
"""
from __future__ import annotations

import math
import random
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dsgd import stats
from dsgd.chapters._common import budget_steps, failure_direction
from dsgd.config import RunConfig
from dsgd.diagnostics import failure_kind
from dsgd.survival import kaplan_meier, logrank, record_exit

LN2 = math.log(2.0)
ARM_ORDER = ["FFT", "DSGD", "DSGD, floor 0.5", "DSGD, floor 0.75", "PCGrad", "class-balanced",
             "DSGD, group-balanced", "PCGrad, head only"]
ARM_COLOURS = {"FFT": "#212529", "DSGD": "#e8590c", "DSGD, floor 0.5": "#1c7ed6",
               "DSGD, floor 0.75": "#7048e8", "PCGrad": "#2b8a3e", "class-balanced": "#f08c00",
               "DSGD, group-balanced": "#c2255c", "PCGrad, head only": "#0c8599"}
METHOD_NAMES = {"fft": "FFT", "fft-nobc": "FFT", "dsgd": "DSGD", "pcgrad": "PCGrad",
                "balanced": "class-balanced", "dsgd-balanced": "DSGD, group-balanced",
                "pcgrad-head": "PCGrad, head only"}
CANDIDATES = ["class-balanced", "DSGD, group-balanced", "PCGrad, head only"]


# ------------------------------------------------------------------------ naming
def arm_label(cfg: dict[str, Any]) -> str:
    """A short name for a run's method and its settings ("DSGD, floor 0.5", ...)."""
    m = cfg.get("method")
    sk = cfg.get("schedule_kwargs") or {}
    mk = cfg.get("method_kwargs") or {}
    name = METHOD_NAMES.get(m, str(m))
    parts = [name]
    if m == "dsgd":
        if cfg.get("schedule", "linear") != "linear" or float(cfg.get("tau", 1.0)) != 1.0:
            parts.append(f"{cfg.get('schedule')} τ={cfg.get('tau')}")
        for k in ("floor", "delay"):
            if sk.get(k):
                parts.append(f"{k} {sk[k]:g}")
    if m == "pcgrad" and mk.get("variant") == "paper":
        mk = {k: v for k, v in mk.items() if k != "variant"}
        parts.append("paper's Algorithm 1")
    if mk:
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(mk.items())))
    if cfg.get("correct_from") == "eval":
        parts.append("correct from eval pass")
    return ", ".join(parts)


def task_label(cfg: dict[str, Any]) -> str:
    """The task as the chapter names it: "epistemic_reasoning", or "epistemic_reasoning
    (class-balanced)" for a run with ``task_kwargs={"class_balance": ...}``
    (:mod:`dsgd.data.balance`), which is a different setting with its own majority share."""
    tk = cfg.get("task_kwargs") or {}
    return f"{cfg['task']} (class-balanced)" if tk.get("class_balance") else str(cfg["task"])


def optimiser_label(cfg: dict[str, Any]) -> str:
    """"AdamW" (with bias correction) or "Adam w/o bias corr." (fft-nobc or the switch)."""
    nobc = cfg.get("method") == "fft-nobc" or cfg.get("adam_bias_correction") is False
    return "AdamW w/o bias corr." if nobc else "AdamW"


def setting_label(task: str, optimiser: str, steps: int, lr: float) -> str:
    extra = "" if optimiser == "AdamW" else f", {optimiser}"
    return f"{task}, {steps} steps{extra}" + ("" if abs(lr - 1e-4) < 1e-12 else f", lr {lr:g}")


# ------------------------------------------------------------------------ frames
def run_frame(records: Iterable[dict[str, Any]], majority_share: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per finished run: setting, arm, seed, budget, accuracy, verdict, outcome
    (the library's vocabulary: failed = not a success; kind = collapsed / degenerate /
    diverged), the paper's strict test (accuracy ≤ majority rate) and the plateau exit
    (when ``majority_share`` gives the task's training-set majority share)."""
    rows = []
    for r in records:
        if r.get("status") not in ("ok", "diverged"):
            continue
        cfg = r["config"]
        steps = budget_steps(r)
        m = r.get("metrics") or {}
        acc = float(m.get("accuracy", math.nan))
        maj = float(r.get("majority_rate", m.get("majority_rate", math.nan)))
        kind = failure_kind(r.get("verdict"))
        row = {
            "task": task_label(cfg), "optimiser": optimiser_label(cfg), "steps": steps,
            "lr": float(cfg.get("lr", math.nan)),
            "arm": arm_label(cfg), "seed": int(cfg["seed"]), "accuracy": acc,
            "balanced_accuracy": float(m.get("balanced_accuracy", math.nan)),
            "majority_rate": maj, "verdict": r.get("verdict"),
            "failed": kind is not None, "kind": kind or "",
            "below_majority": bool(acc <= maj + 1e-9),
            "run_id": r["run_id"],
        }
        row["setting"] = setting_label(row["task"], row["optimiser"], steps, row["lr"])
        if majority_share and row["task"] in majority_share:
            ex = record_exit(r, majority_share[row["task"]])
            row["exit_step"] = ex.step if ex else math.nan
            row["exited"] = bool(ex.observed) if ex else False
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["task", "optimiser", "steps", "arm", "seed"], kind="stable").reset_index(drop=True)
    return df


def setting_order(df: pd.DataFrame) -> list[str]:
    """Settings of the main task first, then by task, optimiser and budget."""
    if not len(df):
        return []
    first = df["task"].value_counts().idxmax()
    keys = df.drop_duplicates("setting")[["setting", "task", "optimiser", "steps"]]
    keys = keys.assign(main=keys["task"] != first).sort_values(["main", "task", "optimiser", "steps"])
    return keys["setting"].tolist()


def arm_order(arms: Iterable[str]) -> list[str]:
    arms = list(dict.fromkeys(arms))
    return [a for a in ARM_ORDER if a in arms] + sorted(a for a in arms if a not in ARM_ORDER)


# ----------------------------------------------------------------------- tables
def failure_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per setting and arm: runs, failures with a Clopper–Pearson 95 % interval, their
    kinds, the paper's strict count (accuracy ≤ majority rate), the mean accuracy with a t
    interval cut to [0, 100] — or a note when every run ended at one value (no spread to estimate) — and the
    mean balanced accuracy beside it (the main task's majority share is about 0.6)."""
    out = []
    for s in setting_order(df):
        sub = df[df["setting"] == s]
        for a in arm_order(sub["arm"]):
            g = sub[sub["arm"] == a]
            r = stats.rate_ci(int(g["failed"].sum()), len(g))
            acc = 100 * g["accuracy"].to_numpy()
            mean, lo, hi = stats.mean_ci(acc, bounds=(0.0, 100.0))
            const = stats.is_constant(acc)
            out.append({
                "setting": s, "arm": a, "seeds": len(g), "failed": r.k,
                "failure rate": r.rate, "CI low": r.lo, "CI high": r.hi,
                "collapsed": int((g["kind"] == "collapsed").sum()),
                "degenerate": int((g["kind"] == "degenerate").sum()),
                "acc ≤ majority": int(g["below_majority"].sum()),
                "accuracy %": mean,
                "accuracy 95% CI": (f"all runs {mean:.1f}: no spread" if const and len(g) > 1
                                    else f"{lo:.1f}–{hi:.1f}" if len(g) > 1 else "one run"),
                "balanced accuracy %": float(100 * g["balanced_accuracy"].mean()),
            })
    return pd.DataFrame(out)


def paired_comparisons(df: pd.DataFrame, reference: str = "FFT") -> pd.DataFrame:
    """Every arm against ``reference`` within each setting, on the seeds both ran: exact
    McNemar on the failure indicators, Holm-adjusted over all rows of the table. The
    direction word is chosen from the counts."""
    rows = []
    for s in setting_order(df):
        sub = df[df["setting"] == s]
        ref = sub[sub["arm"] == reference].set_index("seed")
        for a in arm_order(sub["arm"]):
            if a == reference or not len(ref):
                continue
            g = sub[sub["arm"] == a].set_index("seed")
            seeds = sorted(set(g.index) & set(ref.index))
            if not seeds:
                continue
            fa, fr = g.loc[seeds, "failed"].to_numpy(bool), ref.loc[seeds, "failed"].to_numpy(bool)
            res = stats.mcnemar_exact(fa, fr)
            rows.append({"setting": s, "arm": a, "reference": reference, "shared seeds": len(seeds),
                         "arm failed": int(fa.sum()), "reference failed": int(fr.sum()),
                         "only arm failed": res["n10"], "only reference failed": res["n01"],
                         "p": res["p_value"]})
    out = pd.DataFrame(rows)
    if len(out):
        out["p (Holm)"] = stats.holm(out["p"].tolist())
        out["direction"] = [failure_direction(r["arm failed"], r["reference failed"]) for _, r in out.iterrows()]
        out["significant"] = out["p (Holm)"] < 0.05
    return out


def comparison_sentence(row: pd.Series) -> str:
    """One sentence for one paired comparison, its words chosen from the numbers."""
    sig = ("significant after Holm's adjustment" if row["significant"]
           else "not significant after Holm's adjustment")
    if row["direction"] == "as often":
        return (f"{row['arm']} failed as often as {row['reference']} ({row['arm failed']} vs "
                f"{row['reference failed']} of {row['shared seeds']} seeds).")
    return (f"{row['arm']} failed {row['direction']} than {row['reference']}: "
            f"{row['arm failed']} vs {row['reference failed']} of {row['shared seeds']} shared seeds "
            f"(exact McNemar {stats.p_text(row['p'])}, Holm-adjusted {stats.p_text(row['p (Holm)'], 'p')}; "
            f"{sig}).")


# --------------------------------------------------------------------- budgets
def budget_frame(df: pd.DataFrame, task: str, optimiser: str = "AdamW") -> pd.DataFrame:
    """Failure rate against budget for each arm of one task and optimiser."""
    sub = df[(df["task"] == task) & (df["optimiser"] == optimiser)]
    rows = []
    for (arm, steps), g in sub.groupby(["arm", "steps"]):
        r = stats.rate_ci(int(g["failed"].sum()), len(g))
        rows.append({"arm": arm, "steps": int(steps), "seeds": len(g), "failed": r.k,
                     "rate": r.rate, "lo": r.lo, "hi": r.hi})
    return pd.DataFrame(rows).sort_values(["arm", "steps"]).reset_index(drop=True) if rows else pd.DataFrame()


def budget_plot(bf: pd.DataFrame, ax: Any = None, arms: Sequence[str] | None = None) -> Any:
    """Failure rate (with its exact interval) against the budget, one line per arm."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    arms = arm_order(bf["arm"]) if arms is None else list(arms)
    steps_all = sorted(bf["steps"].unique())
    width = 0.03 * (max(steps_all) - min(steps_all) + 1)
    for i, a in enumerate(arms):
        g = bf[bf["arm"] == a]
        if not len(g):
            continue
        x = g["steps"].to_numpy() + (i - (len(arms) - 1) / 2) * width
        ax.errorbar(x, g["rate"], yerr=[g["rate"] - g["lo"], g["hi"] - g["rate"]], marker="o",
                    capsize=3, lw=1.4, color=ARM_COLOURS.get(a), label=a)
        for xi, (_, r) in zip(x, g.iterrows()):
            ax.annotate(f"{r['failed']}/{r['seeds']}", (xi, r["rate"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=ARM_COLOURS.get(a))
    ax.set(xlabel="optimizer steps (budget)", ylabel="share of seeds failed", ylim=(-0.03, 1.03),
           xticks=steps_all)
    ax.legend(fontsize=8, loc="best")
    return ax


def escape_verdict(df: pd.DataFrame, task: str, arm: str = "DSGD", short: int | None = None,
                   optimiser: str = "AdamW") -> dict[str, Any]:
    """Do ``arm``'s failures at the shortest budget turn into successes with more steps?

    For each seed that failed at the short budget and was also run longer (same task and
    optimiser), its outcome at the longest budget available for it. ``kind``, decided by the
    exact interval of the share that escaped: "late escapes" when it lies above 1/2, "dead
    ends" when below, "mostly late escapes / mostly dead ends (not resolved)" or "not
    resolved" when it straddles 1/2; "not testable" without longer runs of failed seeds.
    """
    sub = df[(df["task"] == task) & (df["optimiser"] == optimiser) & (df["arm"] == arm)]
    if not len(sub):
        return {"kind": "not testable", "n": 0, "escaped": 0, "budgets": []}
    short = int(sub["steps"].min()) if short is None else short
    failed_short = set(sub[(sub["steps"] == short) & sub["failed"]]["seed"])
    longer = sub[(sub["steps"] > short) & sub["seed"].isin(failed_short)]
    if not len(longer):
        return {"kind": "not testable", "n": 0, "escaped": 0, "budgets": [], "short": short}
    last = longer.sort_values("steps").groupby("seed").tail(1)
    n, esc = len(last), int((~last["failed"]).sum())
    r = stats.rate_ci(esc, n)
    # decided by the exact interval of the share that escaped, not by the point estimate
    kind = ("late escapes" if r.lo > 0.5 else "dead ends" if r.hi < 0.5
            else "mostly late escapes (not resolved)" if esc > n / 2
            else "mostly dead ends (not resolved)" if esc < n / 2 else "not resolved")
    return {"kind": kind, "n": n, "escaped": esc, "short": short, "rate": r,
            "budgets": sorted(int(s) for s in longer["steps"].unique())}


def persistence_table(df: pd.DataFrame) -> pd.DataFrame:
    """Do failures persist with a longer budget? One row per task × optimiser × arm stored
    at more than one budget: failures at the shortest budget, how many of those seeds were
    run longer, how many still failed at the longest budget run for them (with the exact
    interval of that share), and :func:`escape_verdict`'s kind."""
    rows = []
    for (task, opt), sub in df.groupby(["task", "optimiser"], sort=False):
        for arm in arm_order(sub["arm"]):
            g = sub[sub["arm"] == arm]
            if g["steps"].nunique() < 2:
                continue
            short = int(g["steps"].min())
            at_short = g[g["steps"] == short]
            esc = escape_verdict(df, task, arm=arm, short=short, optimiser=opt)
            kept = esc["n"] - esc["escaped"]
            r = stats.rate_ci(kept, esc["n"]) if esc["n"] else None
            rows.append({"task": task, "optimiser": opt, "arm": arm,
                         "budgets": ", ".join(str(int(x)) for x in sorted(g["steps"].unique())),
                         "failed at shortest": f"{int(at_short['failed'].sum())}/{len(at_short)}",
                         "of those, run longer": esc["n"], "still failed": kept,
                         "share persisted": r.rate if r else math.nan,
                         "CI low": r.lo if r else math.nan, "CI high": r.hi if r else math.nan,
                         "failures are": esc["kind"]})
    return pd.DataFrame(rows)


def _settings_of(df: pd.DataFrame, task: str, optimiser: str) -> list[str]:
    """The settings (budgets) of one task and optimiser, shortest first."""
    mine = set(df[(df["task"] == task) & (df["optimiser"] == optimiser)]["setting"])
    return [x for x in setting_order(df) if x in mine]


def persistent_regime_sentence(df: pd.DataFrame, comparisons: pd.DataFrame, reference: str = "FFT",
                               arm: str = "DSGD") -> str:
    """The search for a setting in which ``reference``'s failures persist with a longer
    budget (:func:`persistence_table`), in words chosen from the numbers; then, in every such
    setting, ``arm`` against ``reference`` with the same optimiser at each budget."""
    t = persistence_table(df)
    ref = t[(t["arm"] == reference) & (t["of those, run longer"] > 0)] if len(t) else t
    if not len(ref):
        return (f"No setting holds {reference} runs whose failed seeds were also run with a longer "
                "budget, so no regime of persistent failures can be named yet.")
    parts = []
    for _, r in ref.iterrows():
        where = r["task"] + ("" if r["optimiser"] == "AdamW" else f" with {r['optimiser']}")
        parts.append(f"{where} ({r['budgets']} steps): {r['still failed']} of the {r['of those, run longer']} "
                     f"seeds on which {reference} failed at the shortest budget still failed at the longest "
                     f"(share {stats.format_rate(stats.rate_ci(int(r['still failed']), int(r['of those, run longer'])))}; "
                     f"{r['failures are']})")
    dead = ref[ref["failures are"] == "dead ends"]
    text = f"{reference}'s failures with a longer budget, per setting searched: " + "; ".join(parts) + ". "
    if not len(dead):
        return text + ("None of these is yet a regime of persistent failures by the exact interval "
                       "(the share that persisted must lie above 1/2).")
    text += ("A regime of persistent failures (the exact interval of the share that persisted lies above "
             "1/2): " + ", ".join(dead["task"] + dead["optimiser"].map(lambda o: "" if o == "AdamW" else f" with {o}"))
             .rstrip(".") + ". There, " + arm + " against " + reference + " with the same optimiser: ")
    cmp_rows = []
    for _, r in dead.iterrows():
        for s in _settings_of(df, r["task"], r["optimiser"]):
            c = comparisons[(comparisons["setting"] == s) & (comparisons["arm"] == arm)] if len(comparisons) else []
            cmp_rows.append(f"At {s.split(', ')[1]}, " + (comparison_sentence(c.iloc[0]) if len(c)
                                                          else f"{arm} not stored yet."))
    return text + " ".join(cmp_rows)


def persistent_regime_finding(ch: "Chapter", setting: str) -> dict[str, Any]:
    """The findings row for the paper's claim where it matters most: in a regime where FFT's
    failures persist with a longer budget (:func:`persistence_table`), does DSGD with the
    same optimiser fail less often at the longest budget stored? Decided by the paired test."""
    df = ch.df
    t = persistence_table(df)
    dead = t[(t["arm"] == "FFT") & (t["failures are"] == "dead ends")] if len(t) else t
    row, where = None, "no regime of persistent FFT failures stored"
    for _, d in dead.iterrows():
        longest = _settings_of(df, d["task"], d["optimiser"])[-1]
        row, where = _cmp(ch, longest, "DSGD"), longest
        if row is not None:
            break
    return dict(key="dsgd_persistent_regime", source="paper",
                claim="Where plain fine-tuning's failures persist with a longer budget, DSGD (same optimiser) "
                      "fails on fewer seeds.",
                measured=persistent_regime_sentence(df, ch.comparisons),
                setting=re.sub(r", \d+ steps", "", setting.split(";")[0]) + f"; the regime: {where}",
                verdict=_verdict_from_test(row, "less often"), section="a-regime-where-failures-persist")


def plan_progress(ch: "Chapter", sweep_file: Any) -> pd.DataFrame:
    """What the sweep file plans against what the store holds, per setting and arm (the
    chapter's labels): runs planned, stored, still to run. Empty without a sweep file."""
    from pathlib import Path

    from dsgd.engine import budget
    from dsgd.sweep import configs_from_params, load_params

    path = Path(sweep_file) if sweep_file else None
    if path is None or not path.exists() or ch.store is None:
        return pd.DataFrame()
    per_epoch: dict[tuple, float] = {}
    for r in ch.records:
        c = r["config"]
        key = (task_label(c), c.get("train_size"), c.get("batch_size"), c.get("grad_accum"))
        per_epoch.setdefault(key, budget_steps(r) / float(c["epochs"]))
    rows = []
    for cfg in configs_from_params(load_params(path)):
        c = cfg.to_dict()
        key = (task_label(c), c.get("train_size"), c.get("batch_size"), c.get("grad_accum"))
        steps = (round(per_epoch[key] * float(c["epochs"])) if key in per_epoch
                 else budget(int(c.get("train_size") or 0) or 1, cfg)[1])
        done = ch.store.status(cfg.run_id()) in ("ok", "diverged")
        rows.append({"setting": setting_label(task_label(c), optimiser_label(c), int(steps), float(c["lr"])),
                     "arm": arm_label(c), "run_id": cfg.run_id(), "stored": done})
    runs = pd.DataFrame(rows).drop_duplicates("run_id")
    out = (runs.groupby(["setting", "arm"], sort=False)["stored"].agg(planned="size", stored="sum")
           .reset_index())
    out["to run"] = out["planned"] - out["stored"]
    return out


def pending_sentence(progress: pd.DataFrame) -> str:
    """What the sweep file still has to compute, in words, from :func:`plan_progress`."""
    if not len(progress):
        return ("No sweep file lies beside a stored set here (without one the build computes its own grid), "
                "so the page cannot list runs still to compute.")
    todo = progress[progress["to run"] > 0]
    total, stored = int(progress["planned"].sum()), int(progress["stored"].sum())
    if not len(todo):
        return f"The stored set holds every run its sweep file plans ({total})."
    items = [f"{r['arm']} on {r['setting']} ({int(r['stored'])} of {int(r['planned'])} stored)"
             for _, r in todo.iterrows()]
    return (f"The stored set holds {stored} of the {total} runs its sweep file plans; still to run: "
            + "; ".join(items) + ".")


# ------------------------------------------------------------------- survival
def km_plot(df: pd.DataFrame, setting: str, ax: Any = None) -> tuple[Any, dict[str, float]]:
    """Kaplan–Meier curves of the plateau exit per arm in one setting (runs that never left
    the plateau censored at the budget), with the log-rank test across the arms."""
    import matplotlib.pyplot as plt

    sub = df[(df["setting"] == setting) & df["exit_step"].notna()]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for a in arm_order(sub["arm"]):
        g = sub[sub["arm"] == a]
        km = kaplan_meier(g["exit_step"], g["exited"])
        steps = list(km["step"]) + [float(g["steps"].max())]
        surv = list(km["on_plateau"]) + [float(km["on_plateau"].iloc[-1])]
        ax.step(steps, surv, where="post", color=ARM_COLOURS.get(a), lw=1.6,
                label=f"{a} ({int(g['exited'].sum())}/{len(g)} left)")
        ax.fill_between(list(km["step"]) + [steps[-1]], list(km["lo"]) + [km["lo"].iloc[-1]],
                        list(km["hi"]) + [km["hi"].iloc[-1]], step="post", alpha=0.12,
                        color=ARM_COLOURS.get(a))
    test = (logrank(sub["exit_step"], sub["exited"], sub["arm"]) if sub["arm"].nunique() > 1
            else {"statistic": math.nan, "p_value": math.nan, "df": 0})
    ax.set(xlabel="optimizer step", ylabel="share still on the plateau", ylim=(-0.03, 1.03),
           title=setting)
    ax.legend(fontsize=7, loc="lower left")
    return ax, test


def logrank_table(df: pd.DataFrame, reference: str = "FFT") -> pd.DataFrame:
    """Log-rank test of each arm against ``reference`` per setting (exit step, censored at
    the budget), Holm-adjusted over the table."""
    rows = []
    for s in setting_order(df):
        sub = df[(df["setting"] == s) & df["exit_step"].notna()]
        if reference not in set(sub["arm"]):
            continue
        for a in arm_order(sub["arm"]):
            if a == reference:
                continue
            g = sub[sub["arm"].isin([a, reference])]
            t = logrank(g["exit_step"], g["exited"], g["arm"])
            rows.append({"setting": s, "arm": a, "runs": len(g[g["arm"] == a]),
                         "left plateau": int(g[g["arm"] == a]["exited"].sum()),
                         f"{reference} left": int(g[g["arm"] == reference]["exited"].sum()),
                         "median exit step": _median_exit(g[g["arm"] == a]),
                         f"{reference} median exit": _median_exit(g[g["arm"] == reference]),
                         "log-rank χ²": t["statistic"], "p": t["p_value"]})
    out = pd.DataFrame(rows)
    if len(out):
        out["p (Holm)"] = stats.holm(out["p"].tolist())
    return out


def _median_exit(g: pd.DataFrame) -> str:
    """Kaplan–Meier median exit step, or "not reached" when over half never left."""
    if not len(g):
        return "–"
    km = kaplan_meier(g["exit_step"], g["exited"])
    below = km[km["on_plateau"] <= 0.5]
    return str(int(below["step"].iloc[0])) if len(below) else "not reached"


def exit_check(df: pd.DataFrame) -> dict[str, int]:
    """How the exit signal agrees with the held-out outcome: exits among successful runs
    and among runs whose held-out predictions collapsed to one class."""
    d = df[df["exit_step"].notna()]
    succ, coll = d[~d["failed"]], d[d["kind"] == "collapsed"]
    return {"success_runs": len(succ), "success_exited": int(succ["exited"].sum()),
            "collapsed_runs": len(coll), "collapsed_exited": int(coll["exited"].sum())}


# ------------------------------------------------------------------ mechanism
def train_majority_share(cfg: dict[str, Any] | RunConfig) -> float:
    """Majority-class share of a run's training split (loads the task offline; the model's
    tokenizer only, no weights)."""
    from dsgd.data import load_task
    from dsgd.engine import load_tokenizer_for

    c = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(dict(cfg))
    tok, _ = load_tokenizer_for(c)
    data = load_task(c.task, tok, max_length=c.max_length, train_size=c.train_size,
                     eval_size=c.eval_size, split_seed=c.split_seed, **c.task_kwargs)
    y = np.array([int(e["labels"]) for e in data.train])
    return float(np.bincount(y).max() / y.size)


def mechanism_records(ch: Chapter, short_only: bool = True) -> list[dict[str, Any]]:
    """The runs the mechanism section reads: the main task as stored (not its class-balanced
    version), AdamW with bias correction, every method; at the short budget only, or every
    budget stored."""
    steps = short_steps(ch)
    return [r for r in ch.records
            if task_label(r["config"]) == ch.main_task and r["config"]["method"] != "fft-nobc"
            and r["config"].get("adam_bias_correction") is not False
            and (not short_only or budget_steps(r) == steps)]


def mechanism_frame(records: Iterable[dict[str, Any]], pi: float) -> pd.DataFrame:
    """Per run, the checks the resting-point argument predicts, split at the step where the
    run's γ_t first exceeds γ* = (1 − π)/π (FFT: γ ≡ 1, so "before" is empty and the whole
    run counts as "after"; we then use the first 2/3 of training as its comparison window):

    * ``ce_gap``: mean |batch cross-entropy − ln 2| before the crossing (0 on the boundary);
    * ``ce_sd``: standard deviation of the batch cross-entropy there (≈ 0 on the boundary,
      where every example's loss is ln 2 whatever the batch's labels);
    * ``minority_steps``: share of steps there whose whole batch was predicted as the
      minority class (a resting point above 1/2 never predicts it);
    * ``switches``: how often the batch's predicted class (majority share ≥ 1/2 or not)
      changed between consecutive steps there;
    * ``exit_after_crossing``: whether the plateau exit (when any) came after the crossing.
    """
    from dsgd.schedules import schedule as make_schedule
    from dsgd.survival import plateau_exit
    from dsgd.theory.resting import crossing_step

    rows = []
    for r in records:
        h = r.get("history") or {}
        if not h.get("ce"):
            continue
        cfg = r["config"]
        T = budget_steps(r)
        if cfg["method"] == "dsgd":
            g = make_schedule(cfg.get("schedule", "linear"), tau=float(cfg.get("tau", 1.0)),
                              **(cfg.get("schedule_kwargs") or {}))
            cross = crossing_step(g, T, pi)
            cut = T if cross is None else cross
        else:
            cross, cut = None, int(round(2 * T / 3))
        ce = np.asarray(h["ce"], dtype=float)[:cut]
        pcs = np.asarray(h["pred_class_share"], dtype=float)[:cut]
        maj = int(np.bincount(np.asarray(r["labels"])).argmax()) if r.get("labels") else 1
        maj_share = pcs[:, maj] if pcs.ndim == 2 and len(pcs) else np.array([])
        side = maj_share >= 0.5
        ex = plateau_exit(h["correct_share"], pi)
        rows.append({
            "arm": arm_label(cfg), "seed": int(cfg["seed"]), "steps": T,
            "crossing_step": cross, "window_steps": cut,
            "ce_gap": float(np.mean(np.abs(ce - LN2))) if ce.size else math.nan,
            "ce_sd": float(np.std(ce)) if ce.size else math.nan,
            "minority_steps": float(np.mean(maj_share <= 0.0 + 1e-9)) if maj_share.size else math.nan,
            "switches": int(np.sum(side[1:] != side[:-1])) if side.size > 1 else 0,
            "exit_step": ex.step if ex.observed else math.nan,
            "exit_after_crossing": (bool(ex.step >= cross) if ex.observed and cross is not None
                                    else None),
            "failed": failure_kind(r.get("verdict")) is not None,
        })
    return pd.DataFrame(rows, columns=MECHANISM_COLUMNS)


MECHANISM_COLUMNS = ["arm", "seed", "steps", "crossing_step", "window_steps", "ce_gap", "ce_sd",
                     "minority_steps", "switches", "exit_step", "exit_after_crossing", "failed"]


def main_settings(ch: Chapter) -> list[str]:
    """The main task's AdamW settings, shortest budget first."""
    df, task = ch.df, ch.main_task
    return [s for s in setting_order(df) if df[df["setting"] == s]["task"].iloc[0] == task
            and df[df["setting"] == s]["optimiser"].iloc[0] == "AdamW"]


def short_setting(ch: Chapter) -> str:
    """The main task's shortest AdamW setting (``"<task>, 150 steps"`` in the CPU set): the
    one the headline numbers and the mechanism section read."""
    main = main_settings(ch)
    return main[0] if main else setting_order(ch.df)[0]


def longer_setting(ch: Chapter) -> str | None:
    """The main task's next AdamW budget after :func:`short_setting` (300 steps in the CPU
    set), if the set holds one."""
    main = main_settings(ch)
    return main[1] if len(main) > 1 else None


def balanced_setting(ch: Chapter) -> str | None:
    """The class-balanced version of :func:`short_setting` (same budget and optimiser), if
    the set holds one (:mod:`dsgd.data.balance`)."""
    short = short_setting(ch)
    name = short.replace(ch.main_task, f"{ch.main_task} (class-balanced)", 1)
    return name if name != short and name in set(ch.df["setting"]) else None


def short_steps(ch: Chapter) -> int:
    """The budget (optimizer steps) of :func:`short_setting`."""
    df = ch.df
    return int(df[df["setting"] == short_setting(ch)]["steps"].iloc[0])


def mechanism_summary(mf: pd.DataFrame) -> pd.DataFrame:
    """Means of :func:`mechanism_frame` per arm, in the chapter's arm order."""
    if not len(mf):
        return pd.DataFrame()
    g = mf.groupby("arm")
    out = pd.DataFrame({
        "runs": g.size(),
        "window (steps)": g["window_steps"].median(),
        "mean |CE − ln 2|": g["ce_gap"].mean(),
        "CE std over steps": g["ce_sd"].mean(),
        "steps all-minority": g["minority_steps"].mean(),
        "class switches": g["switches"].mean(),
        "failed": g["failed"].sum(),
    })
    return out.loc[arm_order(out.index)]


# ----------------------------------------------------------------- regime map
def regime_map(df: pd.DataFrame, ax: Any = None) -> Any:
    """Settings (rows) × arms (columns); each cell the success rate k/n with its exact
    interval, coloured by the rate; empty where the arm was not run."""
    import matplotlib.pyplot as plt

    settings = setting_order(df)
    arms = arm_order(df["arm"])
    M = np.full((len(settings), len(arms)), np.nan)
    text = [["" for _ in arms] for _ in settings]
    for i, s in enumerate(settings):
        for j, a in enumerate(arms):
            g = df[(df["setting"] == s) & (df["arm"] == a)]
            if not len(g):
                continue
            k = int((~g["failed"]).sum())
            r = stats.rate_ci(k, len(g))
            M[i, j] = r.rate
            text[i][j] = f"{k}/{len(g)}\n[{r.lo:.2f}, {r.hi:.2f}]"
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * len(arms) + 3, 0.62 * len(settings) + 1.2))
    im = ax.imshow(M, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(settings)):
        for j in range(len(arms)):
            if text[i][j]:
                dark = M[i, j] < 0.2 or M[i, j] > 0.85  # light text on the saturated ends
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(settings)), settings, fontsize=8)
    ax.figure.colorbar(im, ax=ax, fraction=0.03, label="success rate")
    ax.set_title("successful seeds / seeds run  [exact 95 % interval]", fontsize=9)
    return ax


def setting_verdicts(df: pd.DataFrame, comparisons: pd.DataFrame, arm: str = "DSGD",
                     reference: str = "FFT") -> pd.DataFrame:
    """One computed sentence per setting: ``arm`` against ``reference`` on shared seeds."""
    rows = []
    for s in setting_order(df):
        c = comparisons[(comparisons["setting"] == s) & (comparisons["arm"] == arm)] if len(comparisons) else []
        if len(c):
            sentence = comparison_sentence(c.iloc[0])
        else:
            present = set(df[df["setting"] == s]["arm"])
            sentence = (f"Not compared: this setting has no {reference if arm in present else arm} runs.")
        rows.append({"setting": s, "verdict": sentence})
    return pd.DataFrame(rows)


# ------------------------------------------------------------- verification
def verification_configs(records: Sequence[dict[str, Any]], k: int, seed: int = 0,
                         max_steps: int = 150) -> list[RunConfig]:
    """``k`` stored runs of at most ``max_steps`` steps to recompute in the build, drawn with
    ``random.Random(seed)`` from the sorted run ids (short runs keep the build fast)."""
    pool = sorted((r for r in records if budget_steps(r) <= max_steps), key=lambda r: r["run_id"])
    if k <= 0 or not pool:
        return []
    chosen = random.Random(seed).sample(pool, min(k, len(pool)))
    return [RunConfig.from_dict(r["config"]) for r in chosen]


def verification_table(stored: Sequence[dict[str, Any]], recomputed: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Each recomputed run against its stored twin (:func:`dsgd.reproduce.compare_runs`),
    labelled by arm, seed and budget."""
    from dsgd.reproduce import compare_runs

    t = compare_runs(stored, recomputed)
    by_id = {r["run_id"]: r for r in recomputed}
    runs = [f"{arm_label(by_id[i]['config'])}, seed {by_id[i]['config']['seed']}, {budget_steps(by_id[i])} steps"
            for i in t["run_id"]]
    return pd.DataFrame({"run": runs, "stored accuracy": t["stored"], "recomputed": t["recomputed"],
                         "difference": t["diff"], "stored verdict": t["stored_verdict"],
                         "recomputed verdict": t["recomputed_verdict"], "reproduces": t["ok"],
                         "same predictions": t["same_predictions"], "stored processor": t["stored_processor"],
                         "recomputed processor": t["recomputed_processor"], "same processor": t["same_processor"]})


def verification_sentence(table: pd.DataFrame) -> str:
    """How many recomputed runs of :func:`verification_table` reproduce their record, and
    why those that differ differ (:func:`dsgd.reproduce.mismatch_sentence`)."""
    from dsgd.reproduce import mismatch_sentence

    if table is None or not len(table):
        return "This build recomputed no stored run."
    t = table.rename(columns={"reproduces": "ok", "same processor": "same_processor",
                              "stored processor": "stored_processor", "recomputed processor": "recomputed_processor"})
    n_ok = int(t["ok"].sum())
    head = (f"The recomputed run {'reproduces' if n_ok else 'does not reproduce'} its stored record."
            if len(t) == 1 else f"{n_ok} of the {len(t)} recomputed runs reproduce their stored record.")
    return (head + " " + mismatch_sentence(t)).strip()


# ------------------------------------------------------------- chapter flow
ARM_VARIANTS = {
    "fft": {"method": "fft"},
    "dsgd": {"method": "dsgd"},
    "dsgd-floor-0.5": {"method": "dsgd", "schedule_kwargs": {"floor": 0.5}},
    "dsgd-floor-0.75": {"method": "dsgd", "schedule_kwargs": {"floor": 0.75}},
    "pcgrad": {"method": "pcgrad"},
    "fft-nobc": {"method": "fft-nobc"},
    "dsgd-nobc": {"method": "dsgd", "adam_bias_correction": False},
}
_BASE_FIELDS = ("task", "task_kwargs", "model", "model_kwargs", "train_size", "eval_size",
                "max_length", "batch_size", "grad_accum", "lr", "warmup_ratio", "tau")


def grid(P: dict[str, Any]) -> list[RunConfig]:
    """The runs this chapter computes when it has no stored set: ``arms`` × ``budgets``
    (epochs) × ``seeds`` on the parameters' task and model."""
    unknown = sorted(set(P["arms"]) - set(ARM_VARIANTS))
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; this chapter knows {sorted(ARM_VARIANTS)}")
    base = {k: P[k] for k in _BASE_FIELDS}
    for k in ("train_size", "eval_size"):
        base[k] = base[k] or None
    return [RunConfig(**{**base, **ARM_VARIANTS[a], "epochs": float(e), "seed": int(s)})
            for e in P["budgets"] for a in P["arms"] for s in P["seeds"]]


class Chapter:
    """What the page works from: the records (stored, or computed here), the runs this
    build computed, their check against the store, and each task's training majority share."""

    def __init__(self, P: dict[str, Any], run_fn: Any = None):
        import time

        from dsgd.chapters import _common as C

        t0 = time.perf_counter()
        self.store, stored = C.open_stored(P["stored_set"])
        if stored:
            self.source = "stored"
            to_compute = verification_configs(stored, P["verify_k"], P["verify_seed"], P["verify_max_steps"])
        else:
            self.source = "computed in this build"
            to_compute = grid(P)
        self.computed = C.compute(to_compute, run_fn=run_fn, workers=P["workers"])[0] if to_compute else []
        self.records = stored if stored else self.computed
        if not self.records:
            raise ValueError("nothing to show: the stored set is empty and the grid has no runs")
        self.verify = verification_table(stored, self.computed) if stored else pd.DataFrame()
        self.stored_description = C.describe_stored(self.store, stored, P["stored_set"])
        self.pi = {}
        for r in self.records:
            t = task_label(r["config"])
            if t not in self.pi:
                self.pi[t] = train_majority_share(r["config"])
        self.df = run_frame(self.records, self.pi)
        plain = self.df[~self.df["task"].str.endswith("(class-balanced)")]
        self.main_task = (plain if len(plain) else self.df)["task"].value_counts().idxmax()
        self.minutes = (time.perf_counter() - t0) / 60
        self.comparisons = paired_comparisons(self.df)
        self.logrank = logrank_table(self.df)


def settings_tried(df: pd.DataFrame) -> pd.DataFrame:
    """Every setting the set holds (the recorded search): seeds, FFT's and DSGD's failures."""
    rows = []
    for s in setting_order(df):
        g = df[df["setting"] == s]
        row = {"setting": s, "task": g["task"].iloc[0], "budget (steps)": int(g["steps"].iloc[0]),
               "optimiser": g["optimiser"].iloc[0], "majority rate": float(g["majority_rate"].iloc[0]),
               "arms": ", ".join(arm_order(g["arm"]))}
        for a in ("FFT", "DSGD"):
            x = g[g["arm"] == a]
            row[f"{a} failed"] = f"{int(x['failed'].sum())}/{len(x)}" if len(x) else "not run"
        rows.append(row)
    return pd.DataFrame(rows)


def _cmp(ch: Chapter, setting: str, arm: str) -> pd.Series | None:
    c = ch.comparisons
    if not len(c):
        return None
    x = c[(c["setting"] == setting) & (c["arm"] == arm)]
    return x.iloc[0] if len(x) else None


def headline_values(ch: Chapter) -> dict[str, Any]:
    """The numbers and computed sentences the page cites (glued under these keys)."""
    df, task = ch.df, ch.main_task
    short = short_setting(ch)
    v: dict[str, Any] = {"main_task": task, "pi_main": ch.pi[task],
                         "gamma_star": (1 - ch.pi[task]) / ch.pi[task],
                         "n_runs": len(df), "n_settings": df["setting"].nunique(),
                         "source": ch.source, "short_setting": short}
    g = df[df["setting"] == short]
    for a, key in (("FFT", "fft"), ("DSGD", "dsgd"), ("PCGrad", "pcgrad"), ("DSGD, floor 0.5", "floor5"),
                   ("DSGD, floor 0.75", "floor75")):
        x = g[g["arm"] == a]
        v[f"{key}_short"] = str(stats.rate_ci(int(x["failed"].sum()), len(x))) if len(x) else "not run"
        row = _cmp(ch, short, a)
        v[f"{key}_short_vs_fft"] = comparison_sentence(row) if row is not None else (
            f"{a} was not run on this setting." if a != "FFT" else "")
    bal = balanced_setting(ch)
    if bal is None:
        v["balanced_sentence"] = ("No class-balanced version of the main setting is stored yet, so "
                                  "whether DSGD's effect depends on the imbalance is not testable here.")
    else:
        gb = df[df["setting"] == bal]
        r = {a: stats.rate_ci(int(x["failed"].sum()), len(x)) for a, x in gb.groupby("arm")}
        row = _cmp(ch, bal, "DSGD")
        v["balanced_sentence"] = (
            f"On the same task made class-balanced (equal class counts in both splits, same budget), "
            f"FFT failed on {r.get('FFT', 'no runs')} and DSGD on {r.get('DSGD', 'no runs')}. "
            + (comparison_sentence(row) if row is not None else ""))
    esc = escape_verdict(df, task)
    v["escape_kind"] = esc["kind"]
    v["escape_sentence"] = (
        f"Of the {esc['n']} seeds on which DSGD failed at {esc.get('short')} steps and that were also "
        f"run longer ({', '.join(map(str, esc['budgets']))} steps), {esc['escaped']} succeeded at the "
        f"longest budget run for them (share {stats.format_rate(esc['rate'])}): judged by that "
        f"interval, DSGD's failures here are {esc['kind']}."
        if esc["n"] else "No seed on which DSGD failed was also run with a longer budget: "
        "whether its failures are late escapes or dead ends is not testable from this set.")
    fesc = escape_verdict(df, task, arm="FFT")
    v["fft_escape_sentence"] = (
        f"For FFT, {fesc['escaped']} of {fesc['n']} seeds that failed at {fesc.get('short')} steps "
        f"succeeded with a longer budget ({fesc['kind']}, share {stats.format_rate(fesc['rate'])})."
        if fesc["n"] else
        "No seed on which FFT failed was also run with a longer budget.")
    ec = exit_check(df)
    v.update({f"exit_{k}": n for k, n in ec.items()})
    v["gamma_star_pct"] = f"{100 * v['gamma_star']:.0f}"
    rates = {a: x["failed"].mean() for a, x in g.groupby("arm")}
    best = min(rates.values()) if rates else math.nan
    tied = [a for a in arm_order(rates) if rates[a] == best]
    v["fewest_failures"] = " and ".join(tied) if tied else "none"
    return v


def _holds(ok: bool | None) -> str:
    return "not testable" if ok is None else "holds" if ok else "does not hold"


def _harm_gone(row: pd.Series) -> str:
    """Did DSGD's excess of failures over FFT vanish in a comparison row? "holds" when the
    arm failed on no more seeds than FFT, "does not hold" when significantly more often
    (Holm), "not resolved" when more often but not significantly so."""
    if int(row["arm failed"]) <= int(row["reference failed"]):
        return "holds"
    return "does not hold" if bool(row["significant"]) else "not resolved (more failures, not significant)"


def mechanism_verdicts(ch: Chapter, msum: pd.DataFrame, mech: pd.DataFrame,
                       mech_all: pd.DataFrame | None = None) -> dict[str, Any]:
    """Each prediction of the resting-point argument, judged from the numbers: sentences
    under ``pred_*`` and the two booleans of the boundary signature under ``ok_*``."""
    out: dict[str, str] = {}
    have = {"FFT", "DSGD"} <= set(msum.index)
    f = msum.loc["FFT"] if have else None
    d = msum.loc["DSGD"] if have else None
    ok1 = None if not have else bool(d["mean |CE − ln 2|"] < f["mean |CE − ln 2|"] and
                                      d["CE std over steps"] < f["CE std over steps"])
    out["pred_ln2"] = (f"Training loss pinned at ln 2 before the crossing: {_holds(ok1)}"
                       + ("" if not have else f" (mean distance {d['mean |CE − ln 2|']:.4f} for DSGD, "
                          f"{f['mean |CE − ln 2|']:.4f} for FFT)") + ".")
    ok2 = None if not have else bool(d["steps all-minority"] > f["steps all-minority"] and
                                      d["class switches"] > f["class switches"])
    out["pred_switch"] = (f"Whole batches predicted as the minority class, and frequent class switches: "
                          f"{_holds(ok2)}" + ("" if not have else
                          f" ({100 * d['steps all-minority']:.1f} % vs {100 * f['steps all-minority']:.1f} % "
                          f"of steps; {d['class switches']:.1f} vs {f['class switches']:.1f} switches per run)") + ".")
    src = mech if mech_all is None else mech_all  # the exit check reads every budget stored
    dx = src[(src["arm"] == "DSGD") & src["exit_step"].notna()]
    ok3 = None if not len(dx) else bool(dx["exit_after_crossing"].all())
    budgets = ", ".join(str(int(b)) for b in sorted(src[src["arm"] == "DSGD"]["steps"].unique()))
    out["pred_exit"] = (f"DSGD leaves the plateau only after γ_t crosses γ*: {_holds(ok3)}"
                        + (f" ({int(dx['exit_after_crossing'].sum())} of {len(dx)} exits came after the "
                           f"crossing; budgets {budgets} steps)" if len(dx)
                           else f" (no DSGD run left the plateau; budgets {budgets} steps)") + ".")
    row = _cmp(ch, short_setting(ch), "DSGD, floor 0.75")
    if row is None:
        out["pred_floor"] = "The harm vanishes with a floor above γ*: not testable (no such runs stored yet)."
    else:
        out["pred_floor"] = (f"The harm vanishes with a floor above γ* (0.75): {_harm_gone(row)}. "
                             + comparison_sentence(row))
    bal = [t for t, p in ch.pi.items() if abs(p - 0.5) < 0.02]
    sents = []
    for t in bal:
        for s in setting_order(ch.df):
            if s.startswith(t + ","):
                row = _cmp(ch, s, "DSGD")
                g = ch.df[ch.df["setting"] == s]
                if len(g) and bool(g["failed"].all()):
                    sents.append(f"On the balanced task, {s} (π = {ch.pi[t]:.3f}): not testable, because "
                                 f"every one of its {len(g)} runs failed (the model did not learn the task "
                                 "in this budget, whatever the method).")
                    continue
                if row is not None:
                    fft_f = int(row["reference failed"])
                    note = ("" if fft_f else " FFT itself never failed there, so this setting "
                            "cannot show a harm that vanishes, only one that appears.")
                    sents.append(f"On the balanced task, {s} (π = {ch.pi[t]:.3f}): {_harm_gone(row)}. "
                                 + comparison_sentence(row) + note)
    out["pred_balanced"] = (" ".join(sents) if sents else
                            "The harm vanishes on a balanced task: not testable (no balanced task stored yet).")
    out["ok_ln2"], out["ok_switch"] = ok1, ok2
    return out


# ------------------------------------------------------- the paper's open choices
OPEN_CHOICES = (  # (key, variant arm, the library's default arm, what the variant changes)
    ("choice_eval", "DSGD, correct from eval pass", "DSGD",
     "deciding which examples are correctly classified by a separate no-dropout pass"),
    ("choice_pcgrad", "PCGrad, paper's Algorithm 1", "PCGrad",
     "projecting with the norm, as the paper's Algorithm 1 prints it, instead of Yu et al.'s squared norm"),
)


def open_choices(df: pd.DataFrame, setting: str) -> dict[str, str]:
    """One sentence per open choice of the paper (:data:`OPEN_CHOICES`) in ``setting``:
    each variant's failures against the library's default arm on the seeds both ran, with
    exact intervals and the exact McNemar test; says so when the variant is not stored."""
    from dsgd.chapters._common import failure_text, failures_sentence

    sub = df[df["setting"] == setting]
    out = {}
    for key, variant, default, what in OPEN_CHOICES:
        v = sub[sub["arm"] == variant].set_index("seed")["failed"]
        d = sub[sub["arm"] == default].set_index("seed")["failed"]
        if not len(v):
            out[key] = (f"{variant} ({what}): not stored yet in {setting} (block 2f of "
                        "results/regimes/sweep.yaml computes it).")
            continue
        out[key] = (f"{variant} ({what}) failed on {failure_text(v)}, {default} on {failure_text(d)}. "
                    + failures_sentence(variant, v, default, d))
    return out


# ------------------------------------------------------- one-pass candidates
def step_time_ratios(path: Any) -> dict[str, float]:
    """CPU-time ratio to FFT per method label from a ``benchmarks/step_time.py --json`` file
    (steps interleaved in one run, so the ratio survives a loaded machine)."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        return {}
    rows = json.loads(p.read_text())["rows"]
    label = {"pcgrad-paper": "PCGrad, paper's Algorithm 1"}
    return {METHOD_NAMES.get(r["label"], label.get(r["label"], r["label"])): float(r["cpu_ratio"]) for r in rows}


def candidates_table(df: pd.DataFrame, setting: str, ratios: dict[str, float]) -> pd.DataFrame:
    """The one-backward-pass candidates beside FFT, DSGD and PCGrad in one setting: failures
    with exact intervals, exact McNemar against FFT and against PCGrad on shared seeds
    (Holm over the table's tests), CPU step time relative to FFT, and a computed verdict."""
    sub = df[df["setting"] == setting]
    by_arm = {a: g.set_index("seed")["failed"] for a, g in sub.groupby("arm")}
    rows, tests = [], []
    for a in [x for x in ["FFT", "DSGD", "PCGrad", *CANDIDATES] if x in by_arm]:
        f = by_arm[a]
        r = stats.rate_ci(int(f.sum()), len(f))
        row = {"method": a, "seeds": r.n, "failed": r.k, "failure rate": r.rate, "CI low": r.lo,
               "CI high": r.hi, "CPU time / FFT": ratios.get(a, math.nan)}
        for ref in ("FFT", "PCGrad"):
            if a == "FFT" or ref == a or ref not in by_arm:
                row[f"p vs {ref}"] = math.nan
                continue
            seeds = sorted(set(f.index) & set(by_arm[ref].index))
            res = stats.mcnemar_exact(f.loc[seeds].to_numpy(bool), by_arm[ref].loc[seeds].to_numpy(bool))
            row[f"p vs {ref}"] = res["p_value"]
            row[f"{ref} failed (shared seeds)"] = int(by_arm[ref].loc[seeds].sum())
            row[f"failed (seeds shared with {ref})"] = int(f.loc[seeds].sum())
            tests.append((len(rows), f"p vs {ref}"))
        rows.append(row)
    out = pd.DataFrame(rows)
    if tests:
        adj = stats.holm([out.loc[i, c] for i, c in tests])
        for (i, c), q in zip(tests, adj):
            out.loc[i, c + " (Holm)"] = q
    return out


def _sig(p_holm: float) -> str:
    return "significant" if p_holm < 0.05 else "not significant"


def candidate_verdict(t: pd.DataFrame, name: str) -> str:
    """One sentence: does candidate ``name`` match PCGrad's stability on the shared seeds?"""
    row = t[t["method"] == name]
    if not len(row):
        return f"{name}: not run in this setting yet."
    r = row.iloc[0]
    rate = stats.format_rate(stats.rate_ci(int(r["failed"]), int(r["seeds"])))
    if "PCGrad failed (shared seeds)" not in r or pd.isna(r.get("p vs PCGrad")):
        return f"{name} failed on {rate} seeds; PCGrad was not run on the same seeds."
    k, kp = int(r["failed (seeds shared with PCGrad)"]), int(r["PCGrad failed (shared seeds)"])
    word = ("matched PCGrad" if k <= kp else "failed more often than PCGrad")
    vs_fft = ""
    if "FFT failed (shared seeds)" in r and not pd.isna(r.get("p vs FFT")):
        kf, kc = int(r["FFT failed (shared seeds)"]), int(r["failed (seeds shared with FFT)"])
        vs_fft = (f"; against FFT it failed {failure_direction(kc, kf)} ({kc} vs {kf}, {stats.p_text(r['p vs FFT'])}, "
                  f"Holm-adjusted {stats.p_text(r['p vs FFT (Holm)'])}; {_sig(r['p vs FFT (Holm)'])})")
    cost = ("" if pd.isna(r["CPU time / FFT"]) else f", at {r['CPU time / FFT']:.2f}× FFT's CPU time per step")
    return (f"{name} {word} on the shared seeds ({k} vs {kp} failed, exact McNemar "
            f"{stats.p_text(r['p vs PCGrad'])}, Holm-adjusted {stats.p_text(r['p vs PCGrad (Holm)'])}; "
            f"{_sig(r['p vs PCGrad (Holm)'])}){vs_fft}"
            f"; failure rate {rate}{cost}.")


def second_task_sentence(cand: pd.DataFrame | None, setting: str | None) -> str:
    """The one-pass candidates on the class-balanced task (issue 19's second task), from
    :func:`candidates_table` of that setting, or why there is nothing to say yet."""
    if cand is None or setting is None:
        return "The set holds no class-balanced task yet."
    return _candidates_in(cand, setting, "block 2g of results/regimes/sweep.yaml runs the class-balanced "
                                         "weights there, beside PCGrad")


def longer_budget_sentence(cand: pd.DataFrame | None, setting: str | None) -> str:
    """The one-pass candidates at the main task's longer budget (:func:`longer_setting`),
    from :func:`candidates_table` of that setting, or why there is nothing to say yet."""
    if cand is None or setting is None:
        return "The set holds no longer budget of the main task yet."
    return _candidates_in(cand, setting, "block 9 of results/regimes/sweep.yaml runs the three candidates "
                                         "there on 20 seeds")


def _candidates_in(cand: pd.DataFrame, setting: str, plan: str) -> str:
    ran = [n for n in CANDIDATES if n in set(cand["method"])]
    if not ran:
        return f"No one-pass candidate has been run on {setting} yet ({plan})."
    return f"On {setting}: " + " ".join(candidate_verdict(cand, n) for n in ran)


# ------------------------------------------------------------------ findings page
def _verdict_from_test(row: pd.Series | None, want: str) -> str:
    """"supported" when the arm fails significantly ``want`` ("less often"/"more often")
    than the reference, "contradicted" when significantly the other way, else "not resolved"."""
    if row is None:
        return "not testable at this scale"
    if not row["significant"]:
        return "not resolved"
    return "supported" if row["direction"] == want else "contradicted"


def candidates_verdict(cand: pd.DataFrame) -> tuple[str, str]:
    """``(verdict, sentences)`` for "a one-pass candidate is as stable as PCGrad": supported
    when some candidate failed on no more shared seeds than PCGrad *and* on significantly
    fewer than FFT (Holm); contradicted when every candidate failed significantly more often
    than PCGrad; otherwise not resolved."""
    ran = cand[cand["method"].isin(CANDIDATES)]
    if not len(ran) or "PCGrad failed (shared seeds)" not in cand:
        return "not testable at this scale", "No candidate has been run beside PCGrad yet."
    # as stable as PCGrad: no more failures than PCGrad on the shared seeds, and fewer than
    # FFT by the paired test (matching PCGrad where neither fails proves little)
    matched = ran[(ran["failed (seeds shared with PCGrad)"] <= ran["PCGrad failed (shared seeds)"])
                  & (ran["p vs FFT (Holm)"] < 0.05)
                  & (ran["failed (seeds shared with FFT)"] < ran["FFT failed (shared seeds)"])]
    worse = ran[(ran["p vs PCGrad (Holm)"] < 0.05)
                & (ran["failed (seeds shared with PCGrad)"] > ran["PCGrad failed (shared seeds)"])]
    verdict = "supported" if len(matched) else "contradicted" if len(worse) == len(ran) else "not resolved"
    return verdict, " ".join(candidate_verdict(cand, n) for n in ran["method"])


def chapter_findings(ch: Chapter, mech: dict[str, Any], cand: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The rows this chapter adds to the findings page (keyword arguments of
    :meth:`dsgd.book.Results.finding`), every verdict decided from the numbers.

    ``mech``: ``{"ln2": bool|None, "switch": bool|None, "text": str}`` from the mechanism
    section; ``cand``: :func:`candidates_table` of the main setting.
    """
    df = ch.df
    v = headline_values(ch)
    short = v["short_setting"]
    n_seeds = int(df[(df["setting"] == short) & (df["arm"] == "FFT")]["seed"].nunique())
    cfg = next(r["config"] for r in ch.records if task_label(r["config"]) == ch.main_task)
    sizes = (f" ({cfg.get('train_size')} training / {cfg.get('eval_size')} held-out examples)"
             if cfg.get("train_size") else "")
    setting = (f"{cfg['model']} on {ch.main_task}{sizes}, {short.split(', ')[1]}, up to {n_seeds} "
               f"seeds; {'stored runs' if ch.source == 'stored' else 'computed in this build'}")
    def fails_less(key: str, source: str, arm: str, claim: str, rates: str) -> dict[str, Any]:
        row = _cmp(ch, short, arm)
        return dict(key=key, source=source, claim=claim, setting=setting,
                    measured=rates + (comparison_sentence(row) if row is not None else ""),
                    verdict=_verdict_from_test(row, "less often"), section="failure-rates-per-setting")

    rows = [fails_less("dsgd_fails_less", "paper", "DSGD",
                       "DSGD makes fine-tuning fail on fewer seeds than plain fine-tuning (FFT).",
                       f"FFT failed on {v['fft_short']}, DSGD on {v['dsgd_short']}. ")]
    bal = balanced_setting(ch)
    if bal is not None:
        g = df[df["setting"] == bal]
        rates = {a: stats.rate_ci(int(x["failed"].sum()), len(x)) for a, x in g.groupby("arm")
                 if a in ("FFT", "DSGD")}
        if len(rates) == 2:
            row = _cmp(ch, bal, "DSGD")
            rows.append(dict(key="dsgd_fails_less_balanced", source="paper",
                             claim="DSGD makes fine-tuning fail on fewer seeds than FFT, on the same task "
                                   "made class-balanced (majority share 1/2).",
                             measured=(f"FFT failed on {rates['FFT']}, DSGD on {rates['DSGD']}. "
                                       + (comparison_sentence(row) if row is not None else "")),
                             setting=setting.replace(ch.main_task, f"{ch.main_task} (class-balanced: "
                                                     "equal class counts in both splits)"),
                             verdict=_verdict_from_test(row, "less often"),
                             section="failure-rates-per-setting"))
    esc = escape_verdict(df, ch.main_task)
    rows.append(dict(key="dsgd_late_escape", source="beyond the paper",
                     claim="DSGD only slows fine-tuning down: with a longer budget its failed seeds succeed.",
                     measured=v["escape_sentence"],
                     setting=setting.replace(short.split(', ')[1], "all budgets stored"),
                     verdict=("supported" if esc["kind"] == "late escapes" else "contradicted"
                              if esc["kind"] == "dead ends" else "not resolved" if esc["n"]
                              else "not testable at this scale"),
                     section="budget-slower-or-stuck"))
    rows.append(persistent_regime_finding(ch, setting))
    ok = None if mech.get("ln2") is None or mech.get("switch") is None else bool(mech["ln2"] and mech["switch"])
    rows.append(dict(key="resting_point", source="beyond the paper",
                     claim=f"While γ_t < (1 − π)/π = {v['gamma_star']:.2f}, DSGD's loss rests on the decision "
                           "boundary (training loss pinned at ln 2, whole-batch class switches).",
                     measured=mech.get("text", ""), setting=setting,
                     verdict={True: "supported", False: "contradicted", None: "not testable at this scale"}[ok],
                     section="why-where-dsgd-s-loss-rests-while-the-features-say-nothing"))
    rows.append(fails_less("pcgrad_fails_less", "beyond the paper", "PCGrad",
                           "PCGrad (two backward passes) fails on fewer seeds than FFT.",
                           f"PCGrad failed on {v['pcgrad_short']}. "))
    if cand is not None and len(cand):
        verdict, text = candidates_verdict(cand)
        rows.append(dict(key="one_pass_candidate", source="beyond the paper",
                         claim="A method with one backward pass (class-balanced weights, group-balanced DSGD, "
                               "or PCGrad on the head only) is as stable as PCGrad.",
                         measured=text, setting=setting, verdict=verdict,
                         section="beyond-the-paper-one-backward-pass-as-stable-as-pcgrad"))
    return rows
