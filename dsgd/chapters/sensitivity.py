"""The sensitivity chapter (the paper's Figure 4): which DSGD settings matter, measured.

What the chapter needs beyond :func:`dsgd.train_run` and :func:`dsgd.run_sweep`:

* **arms** — :func:`chapter_arms` turns the chapter's parameters into named settings
  ("arms": FFT, DSGD, static gamma, other schedules, other tau, PEFT methods with the
  paper's Figure-5 settings, and the variants beyond the paper); :func:`arm_label` reads
  the arm back from any run's config, so stored runs are grouped without bookkeeping;
  :func:`grid_configs` crosses arms with seeds;
* **outcomes** — :func:`outcome_frame` (one row per run), :func:`arm_summary` (failures,
  mean, sample std and a bootstrap interval of the mean per arm), :func:`epoch_summary`
  (accuracy after each epoch, mean and std over seeds);
* **comparisons on the same seeds** — :func:`paired_difference` (mean difference with a
  paired bootstrap interval) and :func:`claim_check` (does the preferred group beat the
  rest, and is the difference resolved at this number of seeds?);
* **the effective-batch argument** — :func:`weight_share` (closed form),
  :func:`weight_frame` / :func:`weight_summary` (measured from the runs' per-step history);
* **one failed seed in detail** — :func:`failed_pair` (the lowest-numbered seed whose FFT run
  failed, with its DSGD twin) and :func:`grad_norm_summary`;
* **the stored set** — :func:`stored_status` (X of Y runs, per arm) and
  :func:`recompute_and_compare` (recompute chosen stored runs, compare as
  :func:`dsgd.sweep.verify_sample` does);
* **the explorer** — :func:`plot_choice` draws one schedule/tau choice: gamma_t, the weight
  share of the correct group, and the per-seed accuracy curves of the stored runs.

Failure: any run whose verdict is not "success" (collapsed, failed, degenerate, diverged).
Std: sample standard deviation over seeds (ddof = 1). Intervals: percentile bootstrap over
seeds, seeded, so a page shows the same interval on every build.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from dsgd.config import RunConfig
from dsgd.schedules import effective_fraction, weight_share

SUCCESS = "success"
from dsgd.reproduce import VERIFY_TOLERANCE, compare_runs  # half a point of accuracy
FFT, DSGD = "FFT", "DSGD"

# The paper's PEFT settings (its "Figure 5" table, reported by the paper): learning rate,
# ranks and target modules. target_modules=None means query and value (see
# dsgd.methods.peft_methods); IA3 uses peft's defaults for the architecture.
PEFT_SETTINGS: dict[str, dict[str, Any]] = {
    "lora-r8": {"method": "lora", "lr": 3e-4, "method_kwargs": {"r": 8, "lora_alpha": 16}},
    "lora-r16": {"method": "lora", "lr": 3e-4, "method_kwargs": {"r": 16, "lora_alpha": 16}},
    "adalora": {"method": "adalora", "lr": 5e-3, "method_kwargs": {"init_r": 64, "target_r": 16}},
    "ia3": {"method": "ia3", "lr": 5e-3, "method_kwargs": {}},
}
PEFT_LABELS = {"lora": "LoRA", "adalora": "AdaLoRA", "ia3": "IA3"}
PARTS = ("a", "b", "c", "f")


# =========================================================================== arms
def _g(x: float) -> str:
    return f"{float(x):g}"


def arm_label(config: dict[str, Any] | RunConfig) -> str:
    """A short name for the setting a run was trained with (the inverse of
    :func:`chapter_arms`).

    "FFT"; "DSGD" (ascending gamma_t = t/T, tau = 1, the paper's default); "static 0.3";
    "descending" / "cosine" (tau = 1); "τ = 0.3" (ascending with that tau); "LoRA r=8",
    "AdaLoRA", "IA3"; variants: "floor 0.5", "delay 0.25", "soft weights" (combinations
    are joined with ", "). Other methods keep their registry name.
    """
    cfg = config.to_dict() if isinstance(config, RunConfig) else config
    method = str(cfg.get("method", "fft"))
    mk = cfg.get("method_kwargs") or {}
    if method == "fft":
        return FFT
    if method == "lora":
        return f"LoRA r={int(mk.get('r', 8))}"
    if method in PEFT_LABELS:
        return PEFT_LABELS[method]
    if method != "dsgd":
        return method
    tau = float(cfg.get("tau", 1.0))
    sched = str(cfg.get("schedule", "linear"))
    sk = dict(cfg.get("schedule_kwargs") or {})
    if sched == "constant":
        base = f"static {_g(sk.pop('value', tau))}"
    elif sched in ("linear", "ascending"):
        base = DSGD if tau == 1.0 else f"τ = {_g(tau)}"
    else:
        base = sched if tau == 1.0 else f"{sched}, τ = {_g(tau)}"
    extra = [f"{k} {_g(v)}" for k, v in sorted(sk.items())]
    if mk.get("weights", "hard") != "hard":
        extra.append(f"{mk['weights']} weights")
    if cfg.get("correct_from", "train") == "eval":
        extra.append("eval pass")
    if not extra:
        return base
    return ", ".join(extra) if base == DSGD else f"{base}, " + ", ".join(extra)


def parse_variant(spec: str) -> dict[str, Any]:
    """Config overrides of one variant beyond the paper, on top of DSGD's default.

    ``"floor:G"`` — ascending schedule lifted to start at gamma = G;
    ``"delay:D"`` — plain fine-tuning for the first fraction D of training, then the ascending
    schedule from 0 over the rest; ``"soft"`` — loss-driven weights
    (:func:`dsgd.weighting.soft_example_weights`) with the ascending schedule. Several
    variants can be combined with ``+`` (e.g. ``"floor:0.5+soft"``).
    """
    out: dict[str, Any] = {"method": "dsgd", "schedule": "linear", "tau": 1.0,
                           "schedule_kwargs": {}, "method_kwargs": {}}
    for part in str(spec).split("+"):
        name, _, value = part.strip().partition(":")
        if name in ("floor", "delay"):
            try:
                out["schedule_kwargs"][name] = float(value)
            except ValueError:
                raise ValueError(f"variant {spec!r}: {name} needs a number, e.g. '{name}:0.5'") from None
        elif name == "soft" and not value:
            out["method_kwargs"]["weights"] = "soft"
        else:
            raise ValueError(f"unknown variant {part!r} in {spec!r}; use 'floor:G', 'delay:D' or "
                             "'soft' (combine with '+')")
    from dsgd.schedules import schedule

    schedule("linear", 1.0, **out["schedule_kwargs"])  # range checks, before any run
    return out


def chapter_arms(static_gammas: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                 schedules: Sequence[str] = ("linear", "descending", "cosine"),
                 taus: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 1.0),
                 peft: Sequence[str] = ("lora-r8", "lora-r16", "adalora", "ia3"),
                 variants: Sequence[str] = ("floor:0.5", "delay:0.25", "soft"),
                 peft_lr: dict[str, float] | None = None,
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The chapter's arms and which part shows which.

    Returns ``(arms, parts)``: ``arms`` maps a label (:func:`arm_label`) to the config
    overrides of that arm; ``parts`` maps "a" (static gamma and schedules), "b" (tau),
    "c" (PEFT) and "f" (variants) to lists of labels, FFT and DSGD included in each.
    A static gamma of 1 is plain fine-tuning (the same update as FFT, checked by the tests)
    and is shown as FFT. ``peft_lr`` overrides the paper's PEFT learning rates by method
    name (e.g. ``{"lora": 1e-3}``).
    """
    from dsgd.schedules import SCHEDULES

    dsgd_default = {"method": "dsgd", "schedule": "linear", "tau": 1.0, "schedule_kwargs": {},
                    "method_kwargs": {}}
    arms: dict[str, dict[str, Any]] = {FFT: {"method": "fft"}, DSGD: dict(dsgd_default)}
    parts: dict[str, list[str]] = {p: [FFT, DSGD] for p in PARTS}

    def add(part: str, overrides: dict[str, Any]) -> None:
        label = arm_label({**dsgd_default, **overrides})
        arms.setdefault(label, overrides)
        if label not in parts[part]:
            parts[part].append(label)

    for g in static_gammas:
        g = float(g)
        if not 0.0 <= g <= 1.0:
            raise ValueError(f"static gamma must lie in [0, 1], got {g}")
        if g == 1.0:
            continue  # = FFT
        add("a", {**dsgd_default, "schedule": "constant", "tau": g})
    for s in schedules:
        if s not in SCHEDULES or s == "constant":
            raise ValueError(f"unknown schedule {s!r}; choose from linear, descending, cosine")
        add("a", {**dsgd_default, "schedule": "linear" if s == "ascending" else s})
    for t in taus:
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"tau must lie in [0, 1], got {t}")
        add("b", {**dsgd_default, "tau": t})
    lrs = dict(peft_lr or {})
    for name in peft:
        if name not in PEFT_SETTINGS:
            raise ValueError(f"unknown PEFT setting {name!r}; choose from {sorted(PEFT_SETTINGS)}")
        s = PEFT_SETTINGS[name]
        ov = {"method": s["method"], "method_kwargs": dict(s["method_kwargs"]),
              "lr": float(lrs.get(s["method"], s["lr"]))}
        label = arm_label(ov)
        arms.setdefault(label, ov)
        parts["c"].append(label)
    for v in variants:
        add("f", parse_variant(v))
    return arms, parts


def setting_config(setting: dict[str, Any]) -> RunConfig:
    """A run setting given as RunConfig fields (the chapter's ``*_setting`` parameters).

    ``train_size`` / ``eval_size`` of 0 mean "the whole split". The method fields are set
    per arm. Unknown fields raise ``ValueError`` naming them.
    """
    d = dict(setting)
    for k in ("train_size", "eval_size"):
        if k in d and not d[k]:
            d[k] = None
    for k in ("method", "seed", "schedule", "tau", "schedule_kwargs", "method_kwargs"):
        if k in d:
            raise ValueError(f"a setting must not fix {k!r}: the arms and seeds set it")
    return RunConfig.from_dict({"method": "fft", **d})


def grid_configs(base: RunConfig, arms: dict[str, dict[str, Any]], seeds: Sequence[int],
                 labels: Sequence[str] | None = None, first: Sequence[str] = (FFT, DSGD)
                 ) -> list[RunConfig]:
    """``base`` under each arm (all, or ``labels``) and each seed, in the order a sweep
    should compute them: the arms in ``first`` for every seed, then the other arms seed
    by seed (all arms of one seed before the next). An interrupted sweep thus holds the
    main comparison on every seed and every other arm on a few seeds."""
    labels = list(arms) if labels is None else list(labels)
    missing = [lab for lab in labels if lab not in arms]
    if missing:
        raise ValueError(f"unknown arm(s) {missing}; known: {list(arms)}")
    head = [lab for lab in labels if lab in first]
    rest = [lab for lab in labels if lab not in first]
    pairs = [(lab, s) for group in (head, rest) for s in seeds for lab in group]
    return [base.replace(seed=int(s), **arms[lab]) for lab, s in pairs]


# =========================================================================== outcomes
def outcome_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run: ``arm, seed, accuracy, verdict, failed, majority_rate,
    epochs`` (list of per-epoch accuracies), ``run_id``. Error records are skipped."""
    rows = []
    for r in records:
        if r.get("status") not in ("ok", "diverged"):
            continue
        cfg = r["config"]
        acc = (r.get("metrics") or {}).get("accuracy")
        rows.append({
            "arm": arm_label(cfg), "seed": int(cfg["seed"]),
            "accuracy": math.nan if acc is None else float(acc),
            "verdict": r.get("verdict"), "failed": r.get("verdict") != SUCCESS,
            "majority_rate": r.get("majority_rate", math.nan),
            "epochs": [e.get("accuracy") for e in r.get("per_epoch") or []],
            "run_id": r["run_id"],
        })
    cols = ["arm", "seed", "accuracy", "verdict", "failed", "majority_rate", "epochs", "run_id"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["arm", "seed"], kind="stable").reset_index(drop=True)


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 5000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``dsgd.report.bootstrap_ci``)."""
    from dsgd.report import bootstrap_ci

    return bootstrap_ci(values, n_boot=n_boot, level=level, seed=seed)


def arm_summary(df: pd.DataFrame, order: Sequence[str] | None = None, n_boot: int = 5000,
                seed: int = 0) -> pd.DataFrame:
    """Per arm: ``runs``, ``failures`` (verdict not success), ``collapsed``, accuracy
    ``mean``, sample ``std``, bootstrap interval ``lo``/``hi`` of the mean, ``min``.
    Rows follow ``order`` (arms without runs are left out)."""
    arms = list(dict.fromkeys(df["arm"])) if len(df) else []
    if order is not None:
        arms = [a for a in order if a in arms]
    rows = []
    for a in arms:
        sub = df[df["arm"] == a]
        acc = sub["accuracy"].dropna().to_numpy(dtype=float)
        lo, hi = bootstrap_mean_ci(acc, n_boot=n_boot, seed=seed)
        rows.append({"arm": a, "runs": len(sub), "failures": int(sub["failed"].sum()),
                     "collapsed": int((sub["verdict"] == "collapsed").sum()),
                     "mean": float(acc.mean()) if acc.size else math.nan,
                     "std": float(acc.std(ddof=1)) if acc.size >= 2 else math.nan,
                     "lo": lo, "hi": hi, "min": float(acc.min()) if acc.size else math.nan})
    cols = ["arm", "runs", "failures", "collapsed", "mean", "std", "lo", "hi", "min"]
    return pd.DataFrame(rows, columns=cols).set_index("arm")


def format_summary(summary: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """Strings for the page: ``failures`` as "k of n", accuracy "mean ± std" and the
    interval "[lo, hi]" in percent."""
    out = pd.DataFrame(index=summary.index)
    out["failures"] = [f"{int(f)} of {int(n)}" for f, n in zip(summary["failures"], summary["runs"])]
    out["accuracy (%)"] = [f"{m * scale:.1f} ± {s * scale:.1f}" if not math.isnan(s) else f"{m * scale:.1f}"
                           for m, s in zip(summary["mean"], summary["std"])]
    out["95% interval of the mean"] = [f"[{lo * scale:.1f}, {hi * scale:.1f}]"
                                       for lo, hi in zip(summary["lo"], summary["hi"])]
    return out


def epoch_summary(df: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Accuracy after each epoch: columns ``arm, epoch`` (1-based), ``mean``, ``std``
    (sample), ``n`` over the arm's seeds."""
    rows = []
    for _, r in df.iterrows():
        for i, acc in enumerate(r["epochs"] or []):
            if acc is not None:
                rows.append({"arm": r["arm"], "seed": r["seed"], "epoch": i + 1, "accuracy": float(acc)})
    long = pd.DataFrame(rows, columns=["arm", "seed", "epoch", "accuracy"])
    if not len(long):
        return pd.DataFrame(columns=["arm", "epoch", "mean", "std", "n"])
    g = long.groupby(["arm", "epoch"])["accuracy"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.size()}).reset_index()
    if order is not None:
        out["_o"] = out["arm"].map({a: i for i, a in enumerate(order)})
        out = out.dropna(subset=["_o"]).sort_values(["_o", "epoch"]).drop(columns="_o")
    return out.reset_index(drop=True)


# =========================================================================== comparisons
def paired_difference(df: pd.DataFrame, a: str, b: str, value: str = "accuracy",
                      n_boot: int = 5000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """``b - a`` over the seeds both arms ran: mean difference and a paired percentile
    bootstrap interval (seeds resampled with replacement, the pairs kept together).

    ``value`` is a column of :func:`outcome_frame`: "accuracy", or "failed" (then the
    difference is in failure rate). Returns ``n, diff, lo, hi, resolved`` (the interval
    excludes 0).
    """
    left = df[df["arm"] == a].set_index("seed")[value]
    right = df[df["arm"] == b].set_index("seed")[value]
    seeds = sorted(set(left.index) & set(right.index))
    d = np.array([float(right[s]) - float(left[s]) for s in seeds], dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return {"n": 0, "diff": math.nan, "lo": math.nan, "hi": math.nan, "resolved": False}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"n": int(d.size), "diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "resolved": bool(lo > 0 or hi < 0)}  # read it only with enough seeds (claim_check)


def comparison_table(df: pd.DataFrame, arms: Sequence[str], against: Sequence[str] = (FFT, DSGD),
                     n_boot: int = 5000, seed: int = 0) -> pd.DataFrame:
    """For each arm, the paired difference (arm minus reference) in accuracy and in failure
    rate against each reference arm: columns ``arm, against, n, acc_diff, acc_lo, acc_hi,
    fail_diff, fail_lo, fail_hi``."""
    rows = []
    for a in arms:
        for ref in against:
            if a == ref:
                continue
            acc = paired_difference(df, ref, a, "accuracy", n_boot=n_boot, seed=seed)
            fail = paired_difference(df, ref, a, "failed", n_boot=n_boot, seed=seed)
            if acc["n"] == 0:
                continue
            rows.append({"arm": a, "against": ref, "n": acc["n"], "acc_diff": acc["diff"],
                         "acc_lo": acc["lo"], "acc_hi": acc["hi"], "fail_diff": fail["diff"],
                         "fail_lo": fail["lo"], "fail_hi": fail["hi"]})
    return pd.DataFrame(rows, columns=["arm", "against", "n", "acc_diff", "acc_lo", "acc_hi",
                                       "fail_diff", "fail_lo", "fail_hi"])


VERDICTS = ("supported", "contradicted", "not resolved (points towards it)",
            "not resolved (points against it)", "too few seeds", "no data")


def claim_check(df: pd.DataFrame, preferred: Sequence[str], others: Sequence[str],
                n_boot: int = 5000, seed: int = 0, min_seeds: int = 5) -> dict[str, Any]:
    """Does the best of ``preferred`` beat the best of ``others`` on the same seeds?

    "Best" = highest mean accuracy. Returns ``best_preferred``, ``best_other``, the paired
    difference (``diff``, ``lo``, ``hi``, ``n``), failures of both and a ``verdict`` (one of
    :data:`VERDICTS`): "supported" (the 95% paired interval lies above 0), "contradicted"
    (below 0), "not resolved (points towards it / against it)" (the interval contains 0;
    the sign of the mean difference), "too few seeds" (fewer than ``min_seeds`` paired
    seeds: a bootstrap over two or three values is far too narrow to mean anything), or
    "no data".
    """
    means = df.groupby("arm")["accuracy"].mean()
    p = [a for a in preferred if a in means.index]
    o = [a for a in others if a in means.index]
    if not p or not o:
        return {"verdict": "no data", "best_preferred": None, "best_other": None, "n": 0,
                "diff": math.nan, "lo": math.nan, "hi": math.nan}
    bp = max(p, key=lambda a: means[a])
    bo = max(o, key=lambda a: means[a])
    d = paired_difference(df, bo, bp, "accuracy", n_boot=n_boot, seed=seed)
    if d["n"] == 0:
        verdict = "no data"
    elif d["n"] < min_seeds:
        verdict = "too few seeds"
    elif d["lo"] > 0:
        verdict = "supported"
    elif d["hi"] < 0:
        verdict = "contradicted"
    else:
        verdict = f"not resolved (points {'towards' if d['diff'] > 0 else 'against'} it)"
    fails = df.groupby("arm")["failed"].sum()
    return {"verdict": verdict, "best_preferred": bp, "best_other": bo, **d,
            "failures_preferred": int(fails.get(bp, 0)), "failures_other": int(fails.get(bo, 0))}


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 3 points."""
    x = pd.Series(x, dtype=float)
    y = pd.Series(y, dtype=float)
    ok = ~(x.isna() | y.isna())
    if ok.sum() < 3:
        return math.nan
    rx, ry = x[ok].rank(), y[ok].rank()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


# =========================================================================== effective batch
def _step_shares(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per step: t/T, gamma, correct-group weight share and effective fraction."""
    h = record.get("history") or {}
    steps = np.asarray(h.get("step") or [], dtype=float)
    if steps.size == 0:
        z = np.zeros(0)
        return z, z, z, z
    T = float((record.get("timings") or {}).get("total_steps") or (steps.max() + 1))
    gamma = np.asarray(h["gamma"], dtype=float)
    acc = np.asarray(h["correct_share"], dtype=float)
    if "weight_total" in h and "weight_correct" in h:  # soft weights: measured sums
        wt = np.asarray(h["weight_total"], dtype=float)
        wc = np.asarray(h["weight_correct"], dtype=float)
        cfg = record["config"]
        m = float(cfg.get("batch_size", 1) * cfg.get("grad_accum", 1))
        share = np.where(wt > 0, wc / np.where(wt > 0, wt, 1.0), 0.0)
        frac = np.minimum(wt / m, 1.0)
    else:
        share = np.asarray(h["correct_weight_share"], dtype=float)
        frac = effective_fraction(gamma, acc)
    return steps / T, gamma, share, frac


def _finished_step_shares(records: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(record, t/T, gamma, share, fraction)`` of every finished run that has a history."""
    for r in records:
        if r.get("status") not in ("ok", "diverged"):
            continue
        x, g, s, f = _step_shares(r)
        if x.size:
            yield r, x, g, s, f


def weight_frame(records: Iterable[dict[str, Any]], bins: int = 10) -> pd.DataFrame:
    """Per arm and training-time bin (``bin`` 0..bins-1 over t/T): mean over steps and
    seeds of ``gamma``, ``batch_acc`` (share of the batch classified correctly),
    ``share`` (weight share of the correct group) and ``frac`` (total weight / batch size).
    """
    rows = []
    for r, x, g, s, f in _finished_step_shares(records):
        acc = np.asarray(r["history"]["correct_share"], dtype=float)
        b = np.minimum((x * bins).astype(int), bins - 1)
        for k in range(bins):
            sel = b == k
            if sel.any():
                rows.append({"arm": arm_label(r["config"]), "seed": int(r["config"]["seed"]), "bin": k,
                             "gamma": g[sel].mean(), "batch_acc": acc[sel].mean(),
                             "share": s[sel].mean(), "frac": f[sel].mean()})
    df = pd.DataFrame(rows, columns=["arm", "seed", "bin", "gamma", "batch_acc", "share", "frac"])
    if not len(df):
        return df.drop(columns="seed")
    return df.groupby(["arm", "bin"], as_index=False)[["gamma", "batch_acc", "share", "frac"]].mean()


def weight_summary(records: Iterable[dict[str, Any]], order: Sequence[str] | None = None,
                   last: float = 0.25) -> pd.DataFrame:
    """Per arm: mean weight share of the correct group and mean effective fraction over
    the whole run and over its last ``last`` fraction of steps (averaged per run, then
    over seeds)."""
    rows = []
    for r, x, g, s, f in _finished_step_shares(records):
        late = x >= 1.0 - last
        rows.append({"arm": arm_label(r["config"]), "share": s.mean(), "share_late": s[late].mean(),
                     "frac": f.mean(), "frac_late": f[late].mean()})
    df = pd.DataFrame(rows, columns=["arm", "share", "share_late", "frac", "frac_late"])
    out = df.groupby("arm").mean()
    if order is not None:
        out = out.loc[[a for a in order if a in out.index]]
    return out


# =========================================================================== one seed in detail
def failed_pair(records: Iterable[dict[str, Any]], a: str = FFT, b: str = DSGD
                ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(record_a, record_b)`` for the lowest-numbered seed whose ``a`` run failed and
    whose ``b`` run exists (a fixed rule, so the pair is not picked by how it looks);
    ``None`` if there is no such seed."""
    by: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        if r.get("status") in ("ok", "diverged"):
            by[(arm_label(r["config"]), int(r["config"]["seed"]))] = r
    seeds = sorted(s for (arm, s), r in by.items() if arm == a and r.get("verdict") != SUCCESS)
    for s in seeds:
        if (b, s) in by:
            return by[(a, s)], by[(b, s)]
    return None


def grad_norm_summary(rec: dict[str, Any]) -> dict[str, float]:
    """Mean gradient norm (before clipping) over the first and the second half of a run's
    steps, and the run's final accuracy."""
    gn = np.asarray((rec.get("history") or {}).get("grad_norm") or [], dtype=float)
    half = gn.size // 2
    return {"first_half": float(gn[:half].mean()) if half else math.nan,
            "second_half": float(gn[half:].mean()) if gn.size else math.nan,
            "accuracy": float((rec.get("metrics") or {}).get("accuracy") or math.nan)}


def smooth(y: Sequence[float], window: int = 9) -> np.ndarray:
    """Centred moving average (shorter windows at the ends)."""
    y = np.asarray(y, dtype=float)
    if y.size == 0 or window <= 1:
        return y
    # a series shorter than the window (a short run) keeps its length
    return pd.Series(y).rolling(window, center=True, min_periods=1).mean().to_numpy()


# =========================================================================== stored set
def load_records(folder: str | os.PathLike | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Finished records and provenance of a stored set (``([], None)`` if absent)."""
    if not folder:
        return [], None
    path = Path(folder)
    if not (path / "runs").is_dir():
        return [], None
    from dsgd.store import ResultStore

    store = ResultStore(path)
    return store.records(), store.provenance.load()


def load_stored_sets(folders: Sequence[str | os.PathLike | None]
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Finished records of several stored sets, and what each folder holds.

    Another chapter's stored set may hold some of this grid's runs (same config, same run
    id): they are used rather than computed twice. On a run id present in several folders
    the first folder's record is used. Returns ``(records, folders)`` where each entry of
    ``folders`` has ``path``, ``records`` (its finished records) and ``provenance``.
    """
    seen: set[str] = set()
    union: list[dict[str, Any]] = []
    info: list[dict[str, Any]] = []
    for f in folders:
        recs, prov = load_records(f)
        info.append({"path": f, "records": recs, "provenance": prov})
        for r in recs:
            if r["run_id"] not in seen:
                seen.add(r["run_id"])
                union.append(r)
    return union, info


def stored_status(records: Iterable[dict[str, Any]], expected: Sequence[RunConfig]) -> dict[str, Any]:
    """How much of the expected grid a stored set holds.

    Returns ``expected``, ``finished`` (expected runs present), ``extra`` (stored runs not
    in the grid), ``complete`` and ``per_arm`` (a DataFrame: arm, finished, expected).
    """
    ids = {r["run_id"] for r in records if r.get("status") in ("ok", "diverged")}
    exp_ids = [c.run_id() for c in expected]
    per: dict[str, list[int]] = {}
    for c, rid in zip(expected, exp_ids):
        row = per.setdefault(arm_label(c), [0, 0])
        row[1] += 1
        row[0] += rid in ids
    finished = sum(rid in ids for rid in exp_ids)
    return {"expected": len(exp_ids), "finished": finished, "extra": len(ids - set(exp_ids)),
            "complete": finished == len(exp_ids) and len(exp_ids) > 0,
            "per_arm": pd.DataFrame([{"arm": a, "finished": f, "expected": e} for a, (f, e) in per.items()])}


def compare_records(computed: Iterable[dict[str, Any]], stored: Iterable[dict[str, Any]],
                    tolerance: float = VERIFY_TOLERANCE) -> pd.DataFrame:
    """Runs computed here against their stored twins (same run id), with the criterion of
    :func:`dsgd.sweep.verify_sample`: same status and verdict, accuracy within
    ``tolerance``. The table of :func:`dsgd.reproduce.compare_runs` (``run_id, stored,
    recomputed, diff``, verdicts, processors, ``ok``)."""
    return compare_runs(stored, computed, tolerance=tolerance)


def detail_configs(stored: Sequence[dict[str, Any]], base: RunConfig, fallback_seed: int,
                   arms: dict[str, dict[str, Any]]) -> tuple[list[RunConfig], str]:
    """The two runs of the real setting this build computes (FFT and DSGD on one seed),
    and why that seed: the stored failed pair if the stored set has one, else the
    lowest seed with both arms stored, else ``fallback_seed``."""
    pair = failed_pair(stored)
    if pair is not None:
        seed, why = int(pair[0]["config"]["seed"]), "the lowest-numbered seed whose stored FFT run failed"
    else:
        have: dict[int, set[str]] = {}
        for r in stored:
            have.setdefault(int(r["config"]["seed"]), set()).add(arm_label(r["config"]))
        both = sorted(s for s, a in have.items() if {FFT, DSGD} <= a)
        if both:
            seed, why = both[0], "no stored FFT run failed: the lowest seed with both arms stored"
        else:
            seed, why = int(fallback_seed), "no stored pair yet: the fallback seed"
    return [base.replace(seed=seed, **arms[FFT]), base.replace(seed=seed, **arms[DSGD])], why


# =========================================================================== explorer
def choice_label(schedule_name: str, tau: float) -> str:
    """The arm label of a schedule/tau choice ("constant" means static gamma = tau)."""
    cfg = {"method": "dsgd", "schedule": schedule_name, "tau": float(tau), "schedule_kwargs": {},
           "method_kwargs": {}}
    if schedule_name == "constant" and float(tau) == 1.0:
        return FFT
    return arm_label(cfg)


def plot_choice(axes: Sequence[Any], records: Sequence[dict[str, Any]], schedule_name: str,
                tau: float, title: str = "", bins: int = 20, show_legend: bool = True) -> str:
    """Draw one schedule/tau choice on two axes and return its arm label.

    Left: gamma_t over t/T, the closed-form weight share of the correct group at batch
    accuracies 50/80/95% (dotted) and, when ``records`` holds runs of this arm, their
    measured weight share (mean over seeds). Right: per seed, the share of each training
    batch classified correctly (smoothed) and the held-out accuracy after each epoch
    (dots), coloured by the run's verdict.
    """
    from dsgd.report import VERDICT_COLOURS
    from dsgd.schedules import schedule

    ax_g, ax_a = axes
    label = choice_label(schedule_name, tau)
    x = np.linspace(0, 1, 201)
    g = np.array([schedule(schedule_name, tau)(s, 1.0) for s in x]) if label != FFT else np.ones_like(x)
    ax_g.plot(x, g, color="k", lw=2, label="γ_t")
    for acc, ls in ((0.5, ":"), (0.8, "-."), (0.95, "--")):
        ax_g.plot(x, weight_share(g, acc), color="#868e96", lw=1, ls=ls,
                  label=f"weight share if {acc:.0%} correct")
    runs = [r for r in records if arm_label(r["config"]) == label and r.get("status") in ("ok", "diverged")]
    if runs:
        wf = weight_frame(runs, bins=bins)
        ax_g.plot((wf["bin"] + 0.5) / bins, wf["share"], color="#1c7ed6", lw=2,
                  label=f"measured weight share ({len(runs)} runs)")
    ax_g.set(xlabel="t / T", ylim=(-0.02, 1.02), title=title or label)
    for r in sorted(runs, key=lambda r: r["config"]["seed"]):
        h = r["history"]
        T = float(r["timings"].get("total_steps") or len(h["step"]))
        colour = VERDICT_COLOURS.get(r.get("verdict"), "#868e96")
        ax_a.plot(np.asarray(h["step"]) / T, smooth(h["correct_share"], 9), color=colour, lw=1, alpha=0.7)
        ep = r.get("per_epoch") or []
        ax_a.scatter([e["step"] / T for e in ep], [e["accuracy"] for e in ep], color=colour, s=14, zorder=3)
    if runs:
        ax_a.axhline(float(runs[0].get("majority_rate", np.nan)), ls="--", lw=1, color="#495057")
    else:
        ax_a.text(0.5, 0.5, "no stored runs\nfor this choice", ha="center", va="center",
                  transform=ax_a.transAxes, color="#868e96")
    ax_a.set(xlabel="t / T", ylim=(-0.02, 1.02), title="per seed: batch accuracy (line), held-out (dots)")
    if show_legend:
        ax_g.legend(fontsize=7, loc="lower right")
    return label


# =========================================================================== page helpers
def resolve_folder(p: str | os.PathLike | None) -> Path | None:
    """A parameter path: relative to the book's root unless absolute; ``""``/None = None."""
    from dsgd.book import repo_root

    return None if not p else (Path(p) if os.path.isabs(p) else repo_root() / p)


def part_table(G: pd.DataFrame, Q: pd.DataFrame, labels: Sequence[str], grid_name: str, real_name: str,
               n_boot: int = 5000) -> pd.DataFrame:
    """One part's table: the arms ``labels`` of the build's grid ``G`` and, where it has runs
    of them, of the stored set ``Q`` side by side (:func:`format_summary`); "–" where a
    set has no run of an arm."""
    out = {grid_name: format_summary(arm_summary(G, order=labels, n_boot=n_boot))}
    if len(Q) and Q["arm"].isin(labels).any():
        s = arm_summary(Q, order=labels, n_boot=n_boot)
        out[f"{real_name}, {int(s['runs'].sum())} runs"] = format_summary(s)
    arms = set(G["arm"]) | (set(Q["arm"]) if len(Q) else set())
    table = pd.concat(out, axis=1).reindex([a for a in labels if a in arms])
    return table.fillna("–")


def part_strip(G: pd.DataFrame, Q: pd.DataFrame, labels: Sequence[str], title: str):
    """Every seed of the arms ``labels``, one panel per source (the frames' ``source``)."""
    from dsgd.report import strip_plot

    frames = [d[d["arm"].isin(labels)] for d in (G, Q) if len(d)]
    fig = strip_plot(pd.concat(frames), group_by="source", rows="arm", order=labels,
                     ncols=2, figsize_per=(6.2, 3.2))
    fig.suptitle(title, y=1.02)
    return fig


def fails(df: pd.DataFrame, labels: Sequence[str]) -> str:
    """``"<failed> of <runs>"`` over the runs of the arms ``labels``; "–" without runs."""
    sub = df[df["arm"].isin(labels)] if len(df) else df
    return f"{int(sub['failed'].sum())} of {len(sub)}" if len(sub) else "–"


def put_claim(R: Any, key: str, claim: dict[str, Any], scale: float = 100.0) -> None:
    """Glue a :func:`claim_check`: verdict, the two arms compared, the difference and its
    interval (scaled, e.g. to points), and the number of paired seeds."""
    R.put(f"{key}_verdict", claim["verdict"])
    R.put(f"{key}_pref", str(claim["best_preferred"]))
    R.put(f"{key}_other", str(claim["best_other"]))
    ok = claim["n"] > 0
    R.put_number(f"{key}_diff", scale * claim["diff"] if ok else None, "+.1f")
    R.put(f"{key}_ci", f"[{scale * claim['lo']:+.1f}, {scale * claim['hi']:+.1f}]" if ok else "–")
    R.put(f"{key}_n", claim["n"])


def put_pair(R: Any, key: str, D: pd.DataFrame, source: str) -> None:
    """Glue part (d)'s pair of ``source`` from the table ``D`` (one row per run: ``source,
    arm, seed, verdict, accuracy, first_half, second_half``): both outcomes, DSGD's
    second-half gradient norm over FFT's and each run's growth from the first half to the
    second; dashes when the pair is not there."""
    sub = D[D["source"] == source].set_index("arm") if len(D) else pd.DataFrame()
    if not {FFT, DSGD} <= set(sub.index):
        for k in ("seed", "fft", "dsgd", "ratio", "growth_fft", "growth_dsgd"):
            R.put(f"{key}_{k}", "–")
        return
    f, d = sub.loc[FFT], sub.loc[DSGD]
    R.put(f"{key}_seed", int(f["seed"]))
    R.put(f"{key}_fft", f"{f['verdict']} ({100 * f['accuracy']:.1f}%)")
    R.put(f"{key}_dsgd", f"{d['verdict']} ({100 * d['accuracy']:.1f}%)")
    R.put_number(f"{key}_ratio", d["second_half"] / f["second_half"], ".2f")
    R.put_number(f"{key}_growth_fft", f["second_half"] / f["first_half"], ".2f")
    R.put_number(f"{key}_growth_dsgd", d["second_half"] / d["first_half"], ".2f")


def weight_table(records: Iterable[dict[str, Any]], df: pd.DataFrame, arms: Sequence[str],
                 n_boot: int = 5000) -> pd.DataFrame:
    """Part (e): per arm the correct group's weight share and the batch's weight
    (:func:`weight_summary`, over the run and its last quarter) next to its accuracy,
    failures and runs."""
    ws = weight_summary(records, order=list(arms) + [FFT])
    summ = arm_summary(df, order=list(ws.index), n_boot=n_boot)
    return ws.join(summ[["mean", "failures", "runs"]]).rename(columns={
        "share": "correct share (all)", "share_late": "correct share (last quarter)",
        "frac": "weight / batch (all)", "frac_late": "weight / batch (last quarter)", "mean": "accuracy"})


def shown_value(R: Any, key: str, fmt: str = "+.2f") -> str:
    """A glued value as the page shows it: a float in ``fmt``, anything else as text, "–"
    when the key was never glued."""
    try:
        x = R.get(key)
    except KeyError:
        return "–"
    return format(x, fmt) if isinstance(x, float) else str(x)


def choice_widget(sources: dict[str, Sequence[dict[str, Any]]], taus: Sequence[float]):
    """An explorer of :func:`plot_choice`: schedule, tau and the set of runs above the figure."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from dsgd.chapters._common import figure_explorer

    def draw(schedule: str, tau: float, source: str) -> Any:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
        plot_choice(axes, sources[source], schedule, tau, title=f"{source}: {choice_label(schedule, tau)}")
        fig.tight_layout()
        return fig

    return figure_explorer(draw, {
        "schedule": widgets.Dropdown(options=["linear", "cosine", "descending", "constant"], value="linear",
                                     description="schedule"),
        "tau": widgets.SelectionSlider(options=list(taus), value=1.0, description="τ"),
        "source": widgets.Dropdown(options=list(sources), value=next(iter(sources)), description="runs")})


# ------------------------------------------------------------------ findings page
_CLAIMS = {
    "a": "Guideline: prefer an ascending (or cosine) schedule for γ_t over a static γ.",
    "b": "Guideline: τ = 1 beats a small τ.",
    "c": "PEFT is not a remedy for seed failures; DSGD ends best.",
}


def finding_verdict(text: str) -> str:
    """The findings page's verdict for a :func:`claim_check` verdict text."""
    t = str(text)
    if t.startswith("supported"):
        return "supported"
    if t.startswith("contradicted"):
        return "contradicted"
    if t.startswith("not resolved"):
        return "not resolved"
    return "not testable at this scale"


def chapter_findings(v: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the findings page for guidelines (a)–(c): the stored MiniLM set's verdict
    where it decides one, else the stand-in grid's, each with its paired difference."""
    rows = []
    for part, claim in _CLAIMS.items():
        src = "stored" if finding_verdict(v.get(f"{part}_stored_verdict")) != "not testable at this scale" else "grid"
        if f"{part}_{src}_verdict" not in v:
            continue
        where = (f"MiniLM-L6 on epistemic_reasoning, stored runs ({v.get('stored_finished')} of "
                 f"{v.get('stored_expected')} of the planned set)" if src == "stored"
                 else f"stand-in grid computed in the build: {v.get('grid_setting_text')}")
        diff = v.get(f"{part}_{src}_diff")
        diff = f"{diff:+.1f}" if isinstance(diff, (int, float)) else str(diff)
        measured = (f"best {v.get(f'{part}_{src}_pref')} against best {v.get(f'{part}_{src}_other')}: "
                    f"{diff} points {v.get(f'{part}_{src}_ci')} on "
                    f"{v.get(f'{part}_{src}_n')} paired seeds ({v.get(f'{part}_{src}_verdict')}).")
        rows.append(dict(key=f"guideline_{part}", source="paper", claim=claim, measured=measured, setting=where,
                         verdict=finding_verdict(v.get(f"{part}_{src}_verdict")), section=""))
    return rows


# ------------------------------------------------------------------ the page's top and bottom
def chapter_frames(P: dict[str, Any]) -> tuple[list[str], pd.DataFrame]:
    """``(arms in page order, stored frame)``: the arms of this profile's grid and the
    :func:`outcome_frame` of the stored runs of its real setting (empty without one)."""
    arms, parts = chapter_arms(P["static_gammas"], P["schedules"], P["taus"], P["peft"], P["variants"], P["peft_lr"])
    order = list(dict.fromkeys(a for p in PARTS for a in parts[p]))
    if not P.get("real_setting"):
        return order, outcome_frame([])
    cfgs = grid_configs(setting_config(P["real_setting"]), arms, P["real_seeds"])
    ids = {c.run_id() for c in cfgs}
    records, _ = load_stored_sets([resolve_folder(f) for f in P.get("stored_sets") or []])
    return order, outcome_frame([r for r in records if r["run_id"] in ids])


def headline_figure(P: dict[str, Any]):
    """The page's headline: every stored run of the real setting, one dot per seed and arm
    (every setting of the sensitivity grid), coloured by verdict, with the majority-class
    rate. Returns the figure, or None (printing why) when nothing is stored."""
    from dsgd.report import strip_plot

    order, Q = chapter_frames(P)
    if not len(Q):
        print("No stored runs in this profile: the grid is computed further down, and each part "
              "draws its runs.")
        return None
    model = P["real_setting"].get("model", "")
    fig = strip_plot(Q.assign(setting=f"{model}, stored runs ({len(Q)})"), group_by="setting", rows="arm",
                     order=[a for a in order if a in set(Q["arm"])], figsize_per=(11.0, 3.8))
    return fig


def _source_of(v: dict[str, Any], part: str) -> str:
    """The source a guideline's finding reads (as :func:`chapter_findings`): the stored set
    where it decides a verdict, else the grid computed in the build."""
    return "stored" if finding_verdict(v.get(f"{part}_stored_verdict")) != "not testable at this scale" else "grid"


def what_we_found(G: pd.DataFrame, Q: pd.DataFrame, parts: dict[str, list[str]], v: dict[str, Any],
                  grid_name: str, real_name: str) -> dict[str, str]:
    """The closing bullets from the frames the parts show (``G`` the grid computed in the
    build, ``Q`` the stored runs) and the claim checks they glued (``v``, the results
    values): DSGD against FFT in failures on both sources (exact intervals, exact McNemar);
    guidelines (a)–(c) with the paired bootstrap difference and verdict of the source the
    findings page uses, beside the failures of the arms the claim is about; and the best
    variant of part (f) against DSGD."""
    from dsgd.chapters._common import failure_text, failures_sentence

    frames = {"grid": (G, grid_name), "stored": (Q, real_name)}

    def flags(df: pd.DataFrame, arms: Sequence[str]) -> list[bool]:
        return [bool(x) for x in df[df["arm"].isin(arms)]["failed"]] if len(df) else []

    def by_seed(df: pd.DataFrame, arm: str) -> pd.Series:
        g = df[df["arm"] == arm] if len(df) else df
        return pd.Series(g["failed"].to_numpy(bool), index=g["seed"].to_numpy()) if len(g) else pd.Series(dtype=bool)

    out = {}
    pair = []
    for src in ("stored", "grid"):
        df, name = frames[src]
        if len(df) and {FFT, DSGD} <= set(df["arm"]):
            pair.append(f"“{name}”: FFT failed on {failure_text(flags(df, [FFT]))} seeds, DSGD on "
                        f"{failure_text(flags(df, [DSGD]))}. "
                        + failures_sentence("DSGD", by_seed(df, DSGD), "FFT", by_seed(df, FFT)))
    out["wwf_dsgd"] = " ".join(pair) or "No source holds both FFT and DSGD runs."

    def claim(part: str, what: str, groups: list[tuple[str, list[str]]]) -> str:
        src = _source_of(v, part)
        df, name = frames[src]
        key = f"{part}_{src}"
        if f"{key}_verdict" not in v:
            return f"Not checked in this profile (“{name}”)."
        d = v.get(f"{key}_diff")
        diff = f"{d:+.1f} points" if isinstance(d, (int, float)) else "no difference measured"
        pref = v.get(f"{key}_pref")
        text = (f"In “{name}” ({v.get(f'{key}_n')} paired seeds), {what}" + (f" ({pref})" if pref != what else "")
                + f" against the best of the others ({v.get(f'{key}_other')}): {diff} (95 % paired bootstrap "
                f"interval {v.get(f'{key}_ci')}), verdict: {v.get(f'{key}_verdict')}.")
        fails = [f"{label} {failure_text(flags(df, arms))}" for label, arms in groups if flags(df, arms)]
        return text + (" Failed runs: " + ", ".join(fails) + "." if fails else "")

    static = [a for a in parts.get("a", []) if a.startswith("static")]
    static_hi = [a for a in static if float(a.split()[1]) > 0.1]
    schedules = [a for a in (DSGD, "cosine", "descending") if a in parts.get("a", [])]
    out["wwf_a"] = claim("a", "the better of the ascending and cosine schedules",
                         [("static γ > 0.1", static_hi), ("static γ = 0.1", [a for a in static if a == "static 0.1"]),
                          ("the three schedules", schedules), ("FFT", [FFT])])
    taus = [a for a in parts.get("b", []) if a.startswith("τ")]
    small = [a for a in taus if float(a.split("=")[1]) <= 0.1]
    out["wwf_b"] = claim("b", "τ = 1", [("τ ≤ 0.1", small), ("0.1 < τ < 1", [a for a in taus if a not in small]),
                                               ("τ = 1", [DSGD])])
    peft = [a for a in parts.get("c", []) if a not in (FFT, DSGD)]
    out["wwf_c"] = claim("c", "DSGD", [("PEFT", peft), ("FFT", [FFT]), ("DSGD", [DSGD])])
    # part (f): the stored set where the best variant has at least five seeds paired with DSGD
    best = None
    for src in ("stored", "grid"):
        df, name = frames[src]
        arm = v.get(f"f_{src}_best")
        if arm in (None, "–") or not len(df):
            continue
        c = failures_sentence(arm, by_seed(df, arm), "DSGD", by_seed(df, DSGD))
        n = len(set(by_seed(df, arm).index) & set(by_seed(df, DSGD).index))
        if n >= 5 or src == "grid":
            d = v.get(f"f_{src}_best_diff")
            best = (f"In “{name}”, the variant with the largest gain over DSGD is {arm}: "
                    + (f"{d:+.1f} points" if isinstance(d, (int, float)) else "no difference measured")
                    + f" (95 % paired bootstrap interval {v.get(f'f_{src}_best_ci')}; picked after the fact among "
                    f"{len([a for a in parts.get('f', []) if a not in (FFT, DSGD)])} variants). "
                    f"It failed on {failure_text(flags(df, [arm]))} seeds. " + c)
            break
    out["wwf_f"] = best or "No variant of part (f) was run in this profile."
    return out
