"""Glue for the NLP chapter (the paper's Table 1 and Figure 3): its run grid, the labels
of its rows, the stored result set, and the paper's reported numbers.

* **grid** — :func:`method_variants` turns the chapter's method list into grid variants
  (the focal-loss (alpha, gamma) search and the SWA windows become one variant each, recorded
  as such); :func:`chapter_grid` crosses them with tasks, models and seeds (per-task epochs
  and lengths through ``task_settings``); :func:`select` picks the part computed in a build.
* **rows** — :func:`variant_label` names a run's method and settings (``"FocalLoss
  (α=0.25, γ=2)"``, ``"SWA (window 2)"``); :func:`nlp_frame` is
  :meth:`dsgd.store.ResultStore.to_frame` plus that label; :func:`best_of_search` adds the
  row the paper reports for a tuned baseline: per task, the variant with the highest mean
  accuracy (chosen on the evaluation set itself, hence optimistic — the chapter says so);
  :func:`ensemble_frame` gives ENS(×N) and DSGD(×N) from stored predictions (their votes
  judged by the single runs' verdict rule); :func:`success_counts` the successful runs per
  row; :func:`figure3` the paper's Figure-3 layout (accuracy against cost, dot size = std);
  :func:`table1_frame` gathers all of Table 1's rows, and :func:`row_changes` says which
  rows a set of added variants changed (each against the row it answers, on shared seeds).
* **stored set** — :func:`stored_status` (how many runs of the grid a store holds, per
  label), :func:`verify_in_build` (recompute a random sample of stored runs in parallel into
  the build's scratch store, then compare with :func:`dsgd.sweep.verify_sample` — the same
  sample), :func:`import_runs` (copy finished runs of the grid from another chapter's store,
  same run ids, e.g. the phenomenon chapter's FFT/DSGD seeds; recorded in the provenance).
* **paper** — :data:`PAPER_TABLE1` (Table 1, reported by the paper), :func:`paper_table1`,
  :func:`paper_average_check` (do the paper's ACC/STD columns equal the mean of its task
  columns?) and :data:`PAPER_COST` (what the paper's text says about each method's cost).
"""
from __future__ import annotations

import math
import os
import random
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dsgd import stats
from dsgd.config import RunConfig

# ============================================================================ labels
METHOD_NAMES = {
    "fft": "FFT", "fft-nobc": "FFT (no bias corr.)", "dsgd": "DSGD", "focal": "FocalLoss",
    "lnsr": "LNSR", "noisytune": "NoisyTune", "pcgrad": "PCGrad", "swa": "SWA", "cwgnc": "CWGNC",
    "lora": "LoRA", "adalora": "AdaLoRA", "ia3": "IA3",
}
# the paper's row order: single learners, then SWA and the ensembles; ours add rows
ROW_ORDER = ["FFT", "FFT (no bias corr.)", "FFT (Mosbach et al.)", "FocalLoss", "LNSR", "NoisyTune", "PCGrad",
             "CWGNC", "DSGD", "SWA", "ENS(×3)", "ENS(×5)", "ENS(×7)", "ENS(×9)", "BAG(×3)", "BAG(×5)", "BAG(×9)",
             "DSGD(×9)", "FFT (bootstrap resample)"]
SEARCHED = ("focal", "lnsr", "swa")  # baselines whose settings the page searches (the paper tunes focal and SWA)
FAMILIES = ("FocalLoss", "LNSR", "SWA")  # rows that gather searched variants
# Mosbach et al. (2021)'s recipe for stable fine-tuning: bias-corrected AdamW, a small
# learning rate, 10 % warm-up, and a longer budget (here the longest the regimes chapter
# runs: 6 epochs = 600 steps in the embedded setting)
MOSBACH = {"method": "fft", "lr": 2e-5, "warmup_ratio": 0.1, "epochs": 6.0, "adam_bias_correction": True}
LNSR_DEFAULTS = {"lambdas": [0.2, 0.1], "sigma": 0.05, "noise": "relative", "positions": "all"}


def _num(x: Any) -> str:
    return f"{float(x):g}"


def is_mosbach(config: dict[str, Any]) -> bool:
    """Whether a run follows :data:`MOSBACH` (learning rate compared to 1e-12)."""
    return (config.get("method", "fft") == "fft"
            and abs(float(config.get("lr", 0)) - MOSBACH["lr"]) < 1e-12
            and float(config.get("warmup_ratio", 0.1)) == MOSBACH["warmup_ratio"]
            and float(config.get("epochs", 0)) == MOSBACH["epochs"] and config.get("max_steps") is None
            and bool(config.get("adam_bias_correction", True)))


def _focal_label(kw: dict[str, Any]) -> str:
    alpha, gamma = kw.get("alpha", 0.25), _num(kw.get("gamma", 2.0))
    if kw.get("alpha_mode", "uniform") == "uniform":  # one alpha for every class: a loss scale
        return f"α={_num(alpha)}, γ={gamma}"
    if alpha == "inverse_frequency":
        return f"class α ∝ 1/n, γ={gamma}"
    if isinstance(alpha, (list, tuple)):
        return f"class α=[{', '.join(_num(a) for a in alpha)}], γ={gamma}"
    return f"class α={_num(alpha)}, γ={gamma}"


def _lnsr_label(kw: dict[str, Any]) -> str:
    parts = []
    noise, sigma = kw.get("noise", LNSR_DEFAULTS["noise"]), float(kw.get("sigma", LNSR_DEFAULTS["sigma"]))
    if noise == "fixed":
        parts.append(f"fixed σ={_num(sigma)}")
    elif sigma != LNSR_DEFAULTS["sigma"]:
        parts.append(f"σ={_num(sigma)}×RMS")
    elif noise != LNSR_DEFAULTS["noise"]:
        parts.append(f"noise {noise}")
    lam = [float(x) for x in kw.get("lambdas", LNSR_DEFAULTS["lambdas"])]
    if lam != LNSR_DEFAULTS["lambdas"]:
        parts.append("λ=" + ", ".join(_num(x) for x in lam))
    if kw.get("positions", "all") != "all":
        parts.append("[CLS] only" if kw["positions"] == "first" else f"positions {kw['positions']}")
    if kw.get("layers"):
        parts.append(f"layers {kw['layers']}")
    return ", ".join(parts)


def variant_label(config: dict[str, Any]) -> str:
    """The row name of a run: the method's name plus the settings that distinguish a
    searched variant (focal α and γ, saying when α is class-dependent; LNSR's noise,
    weights and positions when not the defaults; the SWA window and span), a non-default
    DSGD schedule, Mosbach et al.'s recipe, or a run trained on a bootstrap resample."""
    from dsgd.ensembles import split_bootstrap

    m = str(config.get("method", "fft"))
    kw = dict(config.get("method_kwargs") or {})
    name = METHOD_NAMES.get(m, m)
    if split_bootstrap(dict(config.get("task_kwargs") or {}), int(config.get("seed", 0)))[1] is not None:
        return f"{name} (bootstrap resample)"  # a bagging member: the BAG rows vote over them
    if m == "fft" and is_mosbach(config):
        return "FFT (Mosbach et al.)"
    if m == "focal":
        return f"{name} ({_focal_label(kw)})"
    if m == "lnsr":
        extra = _lnsr_label(kw)
        return f"{name} ({extra})" if extra else name
    if m == "swa":
        span = kw.get("span")
        return f"{name} (window {int(kw.get('window', 3))}" + (f", last {100 * float(span):g} %)" if span else ")")
    if m == "dsgd":
        extra = []
        if config.get("schedule", "linear") != "linear":
            extra.append(str(config["schedule"]))
        if float(config.get("tau", 1.0)) != 1.0:
            extra.append(f"τ={_num(config['tau'])}")
        if config.get("correct_from", "train") == "eval":
            extra.append("eval pass")
        return name + (f" ({', '.join(extra)})" if extra else "")
    return name


def family(label: str) -> str:
    """The row a searched variant belongs to: ``"FocalLoss (α=1, γ=2)" -> "FocalLoss"``,
    ``"SWA (window 3)" -> "SWA"``, ``"LNSR ([CLS] only)" -> "LNSR"`` (also for their "best
    of search" rows); every other label is its own family (``"FFT (no bias corr.)"``,
    ``"DSGD (cosine)"``, ``"ENS(×3)"``)."""
    for fam in FAMILIES:
        if label == fam or label.startswith(fam + " ("):
            return fam
    return label


# ============================================================================ grid
def method_variants(methods: Sequence[str], focal_search: Sequence[Sequence[float]] = ((0.25, 2.0),),
                    swa_windows: Sequence[int] = (3,), method_kwargs: dict[str, dict[str, Any]] | None = None,
                    ) -> list[dict[str, Any]]:
    """Grid variants (``{"method": ..., "method_kwargs": {...}}``) for the chapter's methods.

    ``focal`` becomes one variant per ``(alpha, gamma)`` of ``focal_search`` and ``swa`` one
    per window of ``swa_windows``; ``method_kwargs`` adds fixed settings per method name
    (e.g. ``{"cwgnc": {"threshold": 0.05}}``). Unknown names and settings fail here, before
    anything runs.
    """
    from dsgd.methods import get_method

    method_kwargs = dict(method_kwargs or {})
    unknown = sorted(set(method_kwargs) - set(methods))
    if unknown:
        raise ValueError(f"method_kwargs names method(s) {unknown} that are not in methods {list(methods)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods lists a name twice: {list(methods)}")
    out: list[dict[str, Any]] = []
    for m in methods:
        fixed = dict(method_kwargs.get(m) or {})
        if m == "focal":
            if not focal_search:
                raise ValueError("focal is in methods but focal_search is empty: give at least one [alpha, gamma]")
            kws = []
            for pair in focal_search:
                if len(pair) != 2:
                    raise ValueError(f"focal_search entries are [alpha, gamma] pairs, got {pair!r}")
                kws.append({**fixed, "alpha": float(pair[0]), "gamma": float(pair[1])})
        elif m == "swa":
            if not swa_windows:
                raise ValueError("swa is in methods but swa_windows is empty")
            kws = [{**fixed, "window": int(w)} for w in swa_windows]
        else:
            kws = [fixed]
        for kw in kws:
            get_method(m, **kw)  # validate now
            out.append({"method": m, "method_kwargs": kw})
    return out


GRID_PARAMETERS = ("tasks", "task_kwargs", "task_settings", "models", "model_kwargs", "train_size",
                   "eval_size", "max_length", "batch_size", "grad_accum", "lr", "epochs", "warmup_ratio",
                   "seeds", "methods", "focal_search", "swa_windows", "method_kwargs")
# optional: rows beyond methods x settings, each a dict of RunConfig fields over the shared
# base (``extra_variants``), e.g. Mosbach et al.'s recipe or bagging members:
#   {"method": "fft", "lr": 2e-5, "epochs": 6.0}
#   {"method": "fft", "task_kwargs": {"bootstrap_seed": "seed"}}
#   {"method": "focal", "method_kwargs": {"alpha": 0.75, "gamma": 2.0, "alpha_mode": "class"}}


def check_extra_variants(extra: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate ``extra_variants`` before anything runs: each a dict with a registered
    ``method``, only RunConfig fields (not task, model or seed, which the grid sets), and
    method settings the method accepts."""
    from dsgd.methods import get_method

    known = set(RunConfig.__dataclass_fields__) - {"task", "model", "seed"}
    out = []
    for i, v in enumerate(extra or []):
        if not isinstance(v, dict) or "method" not in v:
            raise ValueError(f"extra_variants[{i}] must be a dict with a 'method', got {v!r}")
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"extra_variants[{i}] has field(s) {bad} that are not RunConfig fields "
                             "(task, model and seed come from the grid)")
        get_method(v["method"], **dict(v.get("method_kwargs") or {}))
        out.append(dict(v))
    return out


def base_config(P: dict[str, Any]) -> dict[str, Any]:
    """The RunConfig fields every run of the chapter shares (``train_size`` / ``eval_size``
    of 0 mean the whole split)."""
    return {
        "task_kwargs": dict(P.get("task_kwargs") or {}),
        "model_kwargs": dict(P.get("model_kwargs") or {}),
        "train_size": int(P["train_size"]) or None, "eval_size": int(P["eval_size"]) or None,
        "max_length": int(P["max_length"]), "batch_size": int(P["batch_size"]),
        "grad_accum": int(P["grad_accum"]), "lr": float(P["lr"]), "epochs": float(P["epochs"]),
        "warmup_ratio": float(P["warmup_ratio"]),
    }


def chapter_grid(P: dict[str, Any]) -> list[RunConfig]:
    """Every run of the chapter: tasks x models x method variants x seeds (that order,
    seeds fastest), from its parameters (see :data:`GRID_PARAMETERS`).

    ``task_settings`` maps a task to RunConfig fields that differ for it (the paper trains
    each task for its own number of epochs and maximum length); ``extra_variants`` (optional)
    adds rows given as RunConfig fields (:func:`check_extra_variants`), after the methods'
    variants. Unknown fields fail.
    """
    missing = [k for k in GRID_PARAMETERS if k not in P]
    if missing:
        raise ValueError(f"chapter parameters lack {missing}")
    known = set(RunConfig.__dataclass_fields__)
    extra = sorted(set(P["task_settings"] or {}) - set(P["tasks"]))
    if extra:
        raise ValueError(f"task_settings names task(s) {extra} that are not in tasks {P['tasks']}")
    variants = method_variants(P["methods"], P["focal_search"], P["swa_windows"], P["method_kwargs"])
    variants += [{"method_kwargs": {}, **v} for v in check_extra_variants(P.get("extra_variants") or [])]
    base = base_config(P)
    out: list[RunConfig] = []
    for task in P["tasks"]:
        over = dict((P["task_settings"] or {}).get(task) or {})
        bad = sorted(set(over) - known)
        if bad:
            raise ValueError(f"task_settings[{task!r}] has unknown RunConfig field(s) {bad}")
        for model in P["models"]:
            for v in variants:
                for s in P["seeds"]:
                    d = {**base, **over, "task": task, "model": model, **v, "seed": int(s)}
                    if "task_kwargs" in over or "task_kwargs" in v:
                        d["task_kwargs"] = {**base["task_kwargs"], **dict(over.get("task_kwargs") or {}),
                                            **dict(v.get("task_kwargs") or {})}
                    out.append(RunConfig(**d))
    ids = [c.run_id() for c in out]
    if len(set(ids)) != len(ids):
        raise ValueError("the grid repeats a run (a seed, task, model or method listed twice?)")
    return out


def select(configs: Iterable[RunConfig], seeds: Sequence[int] | None = None,
           methods: Sequence[str] | None = None) -> list[RunConfig]:
    """The configs whose seed is in ``seeds`` and method name in ``methods`` (None: all)."""
    return [c for c in configs if (seeds is None or c.seed in set(seeds))
            and (methods is None or c.method in set(methods))]


# ============================================================================ frames
def nlp_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run (:func:`dsgd.store.records_to_frame`) plus ``label`` (the
    row name, :func:`variant_label`) and ``family`` (the method without its settings)."""
    from dsgd.store import records_to_frame

    recs = [r for r in records if r.get("status") in ("ok", "diverged")]
    df = records_to_frame(recs)
    if len(df):
        df["label"] = [variant_label(r["config"]) for r in recs]
        df["family"] = df["label"].map(family)
    return df


def best_of_search(df: pd.DataFrame, fam: str, group_by: Sequence[str] = ("task", "model"),
                   metric: str = "accuracy", min_runs: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's reporting rule for a tuned baseline: per task (and model), keep the runs
    of the variant of family ``fam`` with the highest mean ``metric``.

    Returns ``(rows, choice)``: the chosen runs relabelled ``"<fam> (best of search)"``
    and a table of the choice per group (variant, mean, runs, variants searched). The choice
    is made on the evaluation set the table reports, so it is optimistic by construction.
    Focal loss is searched among its class-dependent-α variants (Lin et al.'s form) when
    there are any: with one α for every class, α is only a loss scale.
    """
    sub = df[df["family"] == fam] if len(df) else df
    if fam == "FocalLoss" and len(sub) and sub["label"].str.contains("class α").any():
        sub = sub[sub["label"].str.contains("class α")]
    if not len(sub):
        return df.iloc[0:0], pd.DataFrame(columns=[*group_by, "chosen", "mean", "n", "searched"])
    g = sub.groupby([*group_by, "label"])[metric].agg(["mean", "size"]).reset_index()
    g = g[g["size"] >= min_runs]
    rows, choice = [], []
    for key, part in g.groupby(list(group_by)):
        best = part.sort_values(["mean", "label"], ascending=[False, True]).iloc[0]
        key = key if isinstance(key, tuple) else (key,)
        sel = np.ones(len(sub), dtype=bool)
        for c, v in zip(group_by, key):
            sel &= (sub[c] == v).to_numpy()
        chosen = sub[sel & (sub["label"] == best["label"]).to_numpy()].copy()
        chosen["label"] = f"{fam} (best of search)"
        rows.append(chosen)
        choice.append({**dict(zip(group_by, key)), "chosen": best["label"], "mean": 100 * best["mean"],
                       "n": int(best["size"]), "searched": len(part)})
    return pd.concat(rows) if rows else sub.iloc[0:0], pd.DataFrame(choice)


def search_table(search: pd.DataFrame, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """A recorded search of baseline settings (issue #20: focal loss with a class-dependent
    α, LNSR's noise and weights), one row per variant of the search set ``search`` (a
    :func:`nlp_frame`): its family, seeds, accuracy per seed (%), mean, mean balanced accuracy
    (a class-weighted loss may trade accuracy for it), failed runs with the
    Clopper-Pearson interval, and, from the ``stored`` set on the same seeds, how many FFT
    runs failed. ``chosen`` marks each family's pick (:func:`search_choice`)."""
    from dsgd.diagnostics import failure_kind

    cols = ["family", "variant", "seeds", "accuracy per seed (%)", "mean (%)", "balanced acc. (%)", "failed",
            "failure rate 95 % CI",
            "FFT failed (same seeds)", "chosen"]
    if search is None or not len(search):
        return pd.DataFrame(columns=cols)
    fft = (stored[stored["label"] == "FFT"].set_index("seed")["verdict"] if stored is not None and len(stored)
           else pd.Series(dtype=object))
    rows = []
    for lab in dict.fromkeys(search["label"]):
        g = search[search["label"] == lab].sort_values("seed")
        failed = [failure_kind(v) is not None for v in g["verdict"]]
        r = stats.rate_ci(sum(failed), len(g))
        same = [s for s in g["seed"] if s in fft.index]
        rows.append({"family": family(lab), "variant": lab, "seeds": len(g),
                     "accuracy per seed (%)": ", ".join(f"{100 * a:.1f}" for a in g["accuracy"]),
                     "mean (%)": 100 * float(g["accuracy"].mean()),
                     "balanced acc. (%)": (100 * float(g["balanced_accuracy"].mean())
                                           if "balanced_accuracy" in g else math.nan),
                     "failed": f"{r.k}/{r.n}",
                     "failure rate 95 % CI": f"[{r.lo:.2f}, {r.hi:.2f}]", "_k": r.k,
                     "FFT failed (same seeds)": (f"{sum(failure_kind(fft[s]) is not None for s in same)}/{len(same)}"
                                                 if same else "–")})
    out = pd.DataFrame(rows)
    picks = search_choice(out)
    out["chosen"] = out["variant"].isin(set(picks.values()))
    return out.drop(columns="_k")[cols]


def search_choice(table: pd.DataFrame) -> dict[str, str]:
    """Each family's chosen variant in a :func:`search_table`: the fewest failed runs,
    then the highest mean accuracy, then the name (so ties are settled the same way every
    time). Like the paper's own tuning, the choice is made on the evaluation set."""
    if not len(table):
        return {}
    k = table["_k"] if "_k" in table else table["failed"].str.split("/").str[0].astype(int)
    t = table.assign(_key_k=k.to_numpy(), _key_m=-table["mean (%)"].to_numpy())
    return {fam: g.sort_values(["_key_k", "_key_m", "variant"]).iloc[0]["variant"]
            for fam, g in t.groupby("family", sort=False)}


def _n_variants(table: pd.DataFrame, fam: str) -> str:
    n = int((table["family"] == fam).sum())
    return f"{n} variant{'s' if n != 1 else ''}"


def search_sentence(table: pd.DataFrame, stored: pd.DataFrame | None, seeds_wanted: int = 10) -> str:
    """What the recorded search chose per family and how far its ten-seed row has got in
    the stored set (the choice is then run on ``seeds_wanted`` seeds)."""
    if not len(table):
        return "The recorded search has not been run yet (results/nlp/search_reviewer.yaml)."
    parts = []
    for fam, lab in search_choice(table).items():
        row = table[table["variant"] == lab].iloc[0]
        n = int((stored["label"] == lab).sum()) if stored is not None and len(stored) else 0
        where = (f"its row in the stored set has all {n} seeds" if n >= seeds_wanted else
                 f"the stored set holds {n} of its {seeds_wanted} seeds so far")
        parts.append(f"{fam}: {lab} (failed on {row['failed']} search seeds, mean {row['mean (%)']:.1f} %; "
                     f"{_n_variants(table, fam)} tried); {where}")
    return "Chosen by the search (fewest failed runs, then the higher mean): " + "; ".join(parts) + "."


def ensemble_frame(records: Iterable[dict[str, Any]], fft_sizes: Sequence[int] = (3, 5, 7, 9),
                   dsgd_sizes: Sequence[int] = (9,), n_subsets: int = 10, seed: int = 0,
                   members: str = "random", bag_sizes: Sequence[int] = (3, 5, 9)) -> pd.DataFrame:
    """Majority-vote ensembles of stored predictions (:func:`dsgd.ensembles.ensemble_table`):

    * ``ENS(×N)`` over plain FFT runs and ``DSGD(×N)`` over paper-default DSGD runs —
      **seed ensembles**: the members differ only in their seed (initialisation of the head,
      data order, dropout), all trained on the same training set;
    * ``BAG(×N)`` — **bagging**: FFT runs each trained on its own bootstrap resample of the
      training set (``task_kwargs["bootstrap_seed"]``), when the store holds such runs.

    ``members``: ``"random"`` draws ``n_subsets`` random N-member subsets of the available
    runs (they overlap, so their spread understates the spread of independent ensembles);
    ``"disjoint"`` takes every disjoint group of N consecutive seeds (with ten seeds: three
    groups of 3, two of 5, one of 7 or 9 — no spread from a single group). ``label`` is
    the row name."""
    from dsgd.diagnostics import metrics as _metrics
    from dsgd.diagnostics import verdict
    from dsgd.ensembles import ensemble_predictions, ensemble_table

    if members not in ("random", "disjoint"):
        raise ValueError(f"members must be 'random' or 'disjoint', got {members!r}")
    draw = {"n_subsets": 1, "disjoint": True} if members == "disjoint" else {"n_subsets": n_subsets}
    recs = [r for r in records if r.get("status") in ("ok", "diverged")]
    seed_recs = [r for r in recs if variant_label(r["config"]) in ("FFT", "DSGD")]
    bag_recs = [r for r in recs if variant_label(r["config"]) == "FFT (bootstrap resample)"]
    parts = [ensemble_table(seed_recs, sizes={"fft": tuple(fft_sizes), "dsgd": tuple(dsgd_sizes)},
                            methods=("fft", "dsgd"), labels={"fft": "ENS", "dsgd": "DSGD"}, seed=seed, **draw)]
    if bag_recs:
        parts.append(ensemble_table(bag_recs, sizes={"fft": tuple(bag_sizes)}, methods=("fft",),
                                    labels={"fft": "BAG"}, seed=seed, kind="bagging", **draw))
    ens = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    # the single runs' verdicts distinguish "degenerate" (above the majority rate without a
    # useful decision boundary); judge each ensemble's vote by the same rule
    by_key = {(r["config"]["task"], r["config"]["model"], r["config"]["method"], r["config"]["seed"],
               variant_label(r["config"]) == "FFT (bootstrap resample)"): r for r in seed_recs + bag_recs}
    verdicts, balanced = [], []
    for row in ens.itertuples():
        mem = [by_key[(row.task, row.model, row.base_method, s, row.kind == "bagging")] for s in row.members]
        labels = mem[0]["labels"]
        k = int(max(max(labels), *(max(m["predictions"]) for m in mem))) + 1
        pred = ensemble_predictions([m["predictions"] for m in mem], num_labels=max(2, k))
        verdicts.append(verdict(pred, labels, num_labels=max(2, k), majority_rate=row.majority_rate))
        balanced.append(_metrics(pred, labels, num_labels=max(2, k))["balanced_accuracy"])
    ens["verdict"] = verdicts
    ens["balanced_accuracy"] = balanced
    ens["label"] = ens["method"]
    ens["family"] = ens["method"]
    return ens


def ensemble_comparison(records: Iterable[dict[str, Any]], fft_sizes: Sequence[int] = (3, 5, 7, 9),
                        dsgd_sizes: Sequence[int] = (9,), n_subsets: int = 10, seed: int = 0,
                        model: str | None = None) -> pd.DataFrame:
    """Each ensemble row both ways (:func:`ensemble_frame`): ``n_subsets`` overlapping
    random member sets against disjoint groups of seeds — mean accuracy (%), spread over
    the sets and their number — and the change of the mean and of the spread. Overlapping
    draws share members, so their spread is not that of independent ensembles."""
    recs = list(records)
    if model is not None:
        recs = [r for r in recs if r["config"]["model"] == model]
    out = {}
    for how in ("random", "disjoint"):
        e = ensemble_frame(recs, fft_sizes, dsgd_sizes, n_subsets=n_subsets, seed=seed, members=how)
        g = e.groupby("label")["accuracy"].agg(["mean", "std", "size"]) if len(e) else pd.DataFrame(
            columns=["mean", "std", "size"])
        out[how] = g
    labels = [l for l in ROW_ORDER if l in set(out["random"].index) | set(out["disjoint"].index)]
    rows = []
    for lab in labels:
        r = out["random"].loc[lab] if lab in out["random"].index else None
        d = out["disjoint"].loc[lab] if lab in out["disjoint"].index else None
        rows.append({"row": lab,
                     "random sets: mean (%)": 100 * r["mean"] if r is not None else np.nan,
                     "random sets: std": 100 * r["std"] if r is not None else np.nan,
                     "random sets": int(r["size"]) if r is not None else 0,
                     "disjoint groups: mean (%)": 100 * d["mean"] if d is not None else np.nan,
                     "disjoint groups: std": 100 * d["std"] if d is not None else np.nan,
                     "disjoint groups": int(d["size"]) if d is not None else 0})
    t = pd.DataFrame(rows).set_index("row") if rows else pd.DataFrame()
    if len(t):
        t["mean change"] = t["disjoint groups: mean (%)"] - t["random sets: mean (%)"]
        t["std change"] = t["disjoint groups: std"] - t["random sets: std"]
    return t


def table1_frame(frame: pd.DataFrame, records: Sequence[dict[str, Any]], P: dict[str, Any]
                 ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every row of the page's Table 1 as one frame: the single runs (``frame``, a
    :func:`nlp_frame` of ``records``), each searched family's best of search (when it has
    more than one variant) and the ensembles (:func:`ensemble_frame` with the chapter's
    ``ensemble_sizes``, ``dsgd_ensemble_sizes``, ``ensemble_subsets``, ``ensemble_members``).
    Returns ``(rows, choices)``, ``choices[family]`` being :func:`best_of_search`'s table."""
    parts, choices = [frame], {}
    for fam in FAMILIES:
        if len(frame) and (frame["family"] == fam).any() and frame[frame["family"] == fam]["label"].nunique() > 1:
            best, choice = best_of_search(frame, fam)
            parts.append(best)
            choices[fam] = choice
    ens = (ensemble_frame(records, P["ensemble_sizes"], P["dsgd_ensemble_sizes"], n_subsets=P["ensemble_subsets"],
                          seed=0, members=P["ensemble_members"]) if len(records) else pd.DataFrame())
    rows = pd.concat(parts + ([ens] if len(ens) else []), ignore_index=True) if len(frame) else frame
    return rows, choices


def reference_row(label: str, before: Iterable[str]) -> str | None:
    """The row of the earlier Table 1 (labels ``before``) a row is measured against
    (:func:`row_changes`): itself when it was there already; ``ENS(×N)`` for ``BAG(×N)``
    (bagging against the seed ensemble of the same size); FFT for Mosbach et al.'s recipe
    and for the bootstrap members; for a new variant of a searched family, that family's
    earlier best of search, or its one earlier row; None when nothing earlier compares."""
    before = list(before)
    if label in before:
        return label
    if label.startswith("BAG("):
        ens = "ENS(" + label[len("BAG("):]
        return ens if ens in before else None
    if label in ("FFT (Mosbach et al.)", "FFT (bootstrap resample)"):
        return "FFT" if "FFT" in before else None
    fam = family(label)
    if fam in FAMILIES:
        if f"{fam} (best of search)" in before:
            return f"{fam} (best of search)"
        same = [b for b in before if family(b) == fam]
        return same[0] if len(same) == 1 else None
    return None


def _row_key(rows: pd.DataFrame) -> pd.Series:
    """Per run (or ensemble group) of one Table-1 row, indexed by seed (an ensemble: its
    first member's seed): the pair (accuracy, verdict), to tell an unchanged row."""
    seeds = [int(m[0]) if "members" in rows and isinstance(m, (list, tuple)) and len(m) else int(s)
             for s, m in zip(rows["seed"], rows["members"] if "members" in rows else [None] * len(rows))]
    return pd.Series(list(zip(rows["accuracy"].round(12), rows["verdict"])), index=seeds)


def row_changes(before: pd.DataFrame, after: pd.DataFrame, model: str, task: str,
                before_choices: dict[str, pd.DataFrame] | None = None,
                after_choices: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Which rows of Table 1 a set of added rows changed, and by how much (issue #20: the
    reviewer's baselines). ``before`` and ``after`` are :func:`table1_frame`'s rows without
    and with the added variants; ``*_choices`` its best-of-search choices (to name the
    picks). One row per Table-1 row of ``after`` that is new or whose runs differ, set
    against :func:`reference_row`: failed runs of each with exact intervals, the exact
    McNemar test and the paired accuracy difference (t interval, Wilcoxon) on the shared
    seeds (ensembles: the shared member groups), both p-values Holm-adjusted over the table."""
    from dsgd.chapters._common import compare_failures, compare_values
    from dsgd.diagnostics import failure_kind

    def part(df: pd.DataFrame, label: str) -> pd.DataFrame:
        if not len(df):
            return df
        return df[(df["label"] == label) & (df["model"] == model) & (df["task"] == task)]

    def pick(choices: dict[str, pd.DataFrame] | None, label: str) -> str:
        fam = family(label)
        c = (choices or {}).get(fam)
        if not label.endswith("(best of search)") or c is None or not len(c):
            return label
        c = c[(c["model"] == model) & (c["task"] == task)] if {"model", "task"} <= set(c.columns) else c
        return f"{label} = {c['chosen'].iloc[0]}" if len(c) else label

    def flags(df: pd.DataFrame) -> pd.Series:
        k = _row_key(df)
        return pd.Series([failure_kind(v) is not None for _, v in k], index=k.index)

    def accs(df: pd.DataFrame) -> pd.Series:
        k = _row_key(df)
        return pd.Series([a for a, _ in k], index=k.index, dtype=float)

    def labels(df: pd.DataFrame) -> list[str]:
        return list(dict.fromkeys(df[(df["model"] == model) & (df["task"] == task)]["label"])) if len(df) else []

    labels_b, labels_a = labels(before), labels(after)
    # a variant that is its family's best of search is reported on that row only
    picked = {pick(after_choices, lab).split(" = ", 1)[-1] for lab in labels_a if lab.endswith("(best of search)")}
    rows = []
    for lab in row_order(labels_a):
        ref = reference_row(lab, labels_b)
        if lab in picked and ref != lab:
            continue
        a = part(after, lab)
        b = part(before, ref) if ref is not None else before.iloc[0:0]
        ka, kb = _row_key(a), _row_key(b)
        if ref is not None and len(ka) == len(kb) and ka.sort_index().equals(kb.sort_index()):
            continue  # the same runs as before (e.g. a new best of search that picks the earlier row)
        change = ("new row" if ref != lab else "re-chosen" if lab.endswith("(best of search)") else "runs changed")
        fa, fb = flags(a), flags(b)
        cf = compare_failures(fa, fb)
        cv = compare_values(accs(a), accs(b))
        ra = stats.rate_ci(int(fa.sum()), len(fa))
        rb = stats.rate_ci(int(fb.sum()), len(fb)) if len(fb) else None
        rows.append({"row": pick(after_choices, lab), "change": change,
                     "against": (pick(before_choices, ref) + (" (before)" if ref == lab else "")) if ref else "–",
                     "failed": stats.format_rate(ra), "against: failed": stats.format_rate(rb) if rb else "–",
                     "shared": cf["n"], "McNemar p": cf["p"],
                     "mean (%)": 100 * float(accs(a).mean()),
                     "against: mean (%)": 100 * float(accs(b).mean()) if len(b) else math.nan,
                     "shared: mean (%)": 100 * cv["a_mean"], "shared: against (%)": 100 * cv["b_mean"],
                     "difference (points)": 100 * cv["mean"], "95 % CI": (
                         f"[{100 * cv['lo']:+.1f}, {100 * cv['hi']:+.1f}]" if cv["n"] >= 2 and np.isfinite(cv["lo"])
                         else "–"), "Wilcoxon p": cv["p"],
                     "_k": cf["k_a"], "_k_ref": cf["k_b"], "_dir": cf["direction"]})
    cols = ["row", "change", "against", "failed", "against: failed", "shared", "McNemar p", "Holm (McNemar)",
            "mean (%)", "against: mean (%)", "shared: mean (%)", "shared: against (%)", "difference (points)",
            "95 % CI", "Wilcoxon p", "Holm (Wilcoxon)"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    out["Holm (McNemar)"] = stats.holm(out["McNemar p"].tolist())
    out["Holm (Wilcoxon)"] = stats.holm(out["Wilcoxon p"].tolist())
    return out[cols + ["_k", "_k_ref", "_dir"]]


def changes_sentence(table: pd.DataFrame) -> str:
    """:func:`row_changes` in words: each changed or new row, its failures against its
    reference's on the shared seeds and its accuracy difference, significance read from
    the Holm-adjusted p-values; the direction words follow the numbers."""
    if table is None or not len(table):
        return "No row of Table 1 differs from the table without the added rows."
    parts = []
    for _, d in table.iterrows():
        if d["against"] == "–":
            parts.append(f"{d['row']} (new, nothing earlier to compare with): failed on {d['failed']}")
            continue
        how = "as often as" if d["_dir"] == "as often" else f"{d['_dir']} than"
        q, qw, diff = d["Holm (McNemar)"], d["Holm (Wilcoxon)"], d["difference (points)"]
        sig = "significant" if q < 0.05 else "not significant"
        word = "no different" if not qw < 0.05 else "higher" if diff > 0 else "lower"
        parts.append(f"{d['row']} failed on {d['failed']}, {how} {d['against']} ({d['_k']} vs {d['_k_ref']} on "
                     f"{d['shared']} shared seed{'s' if d['shared'] != 1 else ''}; Holm-adjusted McNemar {stats.p_text(q)}, {sig}); on those "
                     f"seeds its mean accuracy was {d['shared: mean (%)']:.1f} % against "
                     f"{d['shared: against (%)']:.1f} %, {diff:+.1f} points"
                     + (f" (95 % CI {d['95 % CI'].strip('[]').replace(', ', ' to ')})" if d["95 % CI"] != "–" else "")
                     + f", {word} (Holm-adjusted Wilcoxon {stats.p_text(qw)})")
    n = len(table)
    return (f"{n} row{'s' if n != 1 else ''} of Table 1 {'are' if n != 1 else 'is'} new or changed. "
            + "; ".join(parts) + ".")


def row_order(labels: Iterable[str]) -> list[str]:
    """Labels in the paper's row order (variants of a family together, in given order)."""
    labels = list(dict.fromkeys(labels))
    rank = {name: i for i, name in enumerate(ROW_ORDER)}

    def key(lab: str) -> tuple[float, int]:
        f = family(lab)
        r = rank.get(f, len(ROW_ORDER))
        if lab.endswith("(best of search)"):
            return (r + 0.5, 0)
        return (r, labels.index(lab))

    return sorted(labels, key=key)


# ============================================================================ stored set
def stored_status(store: Any, configs: Sequence[RunConfig]) -> dict[str, Any]:
    """How much of the grid ``configs`` a store holds: ``done`` (finished runs), ``total``,
    ``errors``, ``missing``, ``complete`` and ``per_label`` (label -> [done, total])."""
    from dsgd.store import FINISHED_STATUSES, ResultStore

    if store is None or (not isinstance(store, ResultStore) and not Path(store).joinpath("runs").is_dir()):
        st = {}
    else:
        store = store if isinstance(store, ResultStore) else ResultStore(store)
        st = {c.run_id(): store.status(c.run_id()) for c in configs}
    per: dict[str, list[int]] = {}
    done = errors = 0
    for c in configs:
        lab = variant_label(c.to_dict())
        cell = per.setdefault(lab, [0, 0])
        cell[1] += 1
        s = st.get(c.run_id())
        if s in FINISHED_STATUSES:
            done += 1
            cell[0] += 1
        elif s == "error":
            errors += 1
    return {"done": done, "total": len(configs), "errors": errors, "missing": len(configs) - done,
            "complete": done == len(configs), "per_label": per}


def verify_choice(store: Any, k: int, seed: int = 0) -> list[dict[str, Any]]:
    """The records :func:`dsgd.sweep.verify_sample` (store, k, seed) recomputes (the same
    draw: ``random.Random(seed).sample`` over the finished records sorted by run id)."""
    from dsgd.store import ResultStore

    store = store if isinstance(store, ResultStore) else ResultStore(store)
    recs = store.records()
    if not recs or k < 1:
        return []
    return random.Random(seed).sample(sorted(recs, key=lambda r: r["run_id"]), min(k, len(recs)))


def build_store_run(cfg: RunConfig) -> dict[str, Any]:
    """Run function for :func:`dsgd.sweep.verify_sample`: the record of ``cfg`` in the
    build's scratch store (``$DSGD_STORE``, default ``_build/store``) if it is finished there,
    else computed now (and stored there). A record in the scratch store was computed in a
    build, independently of the stored result set being verified."""
    from dsgd.engine import train_run
    from dsgd.store import ResultStore

    store = ResultStore()
    if store.finished(cfg.run_id()):
        return store.get(cfg.run_id())
    rec = train_run(cfg)
    store.put(rec)
    return rec


def verify_in_build(stored: Any, k: int = 2, seed: int = 0, workers: int = 2, threads_per_worker: int = 1,
                    backend: str = "local", build_store: Any = None,
                    max_steps: int | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Re-verify ``k`` random runs of a stored set, computing them in parallel.

    The sample is the one :func:`dsgd.sweep.verify_sample` draws; its runs are computed
    with :func:`dsgd.run_sweep` (``workers`` processes) into the build's scratch store
    (``build_store``, default ``$DSGD_STORE`` / ``_build/store``; runs already there are
    reused), then ``verify_sample`` compares them with the stored records. A sweep may be
    adding runs to the stored set meanwhile, which would change the draw: both steps
    therefore work on a snapshot of its finished records taken first (a temporary copy).
    ``max_steps``: draw only from runs of at most that many optimizer steps, so that a
    stored set gaining long runs (600 steps take ~9 minutes here) cannot push the build
    over its budget. Returns ``(verify_sample's table, the recomputed records)``. Refuses to
    compare a store with itself.
    """
    from dsgd.chapters._common import budget_steps
    import tempfile

    from dsgd.store import ResultStore
    from dsgd.sweep import run_sweep, verify_sample

    stored = stored if isinstance(stored, ResultStore) else ResultStore(stored)
    build = build_store if isinstance(build_store, ResultStore) else ResultStore(build_store)
    if stored.path.resolve() == build.path.resolve():
        raise ValueError(f"the build store {build.path} is the stored set itself: set DSGD_STORE to "
                         "a scratch folder to re-verify it")
    with tempfile.TemporaryDirectory(prefix="dsgd-verify-") as tmp:
        view = ResultStore(tmp)
        for rec in stored.records():
            if not max_steps or budget_steps(rec) <= max_steps:
                view.put(rec)
        chosen = verify_choice(view, k, seed)
        if not chosen:
            raise ValueError(f"no finished runs in {stored.path} to verify"
                             + (f" of at most {max_steps} steps" if max_steps else ""))
        cfgs = [RunConfig.from_dict(r["config"]) for r in chosen]
        recomputed = run_sweep(cfgs, build, workers=min(workers, len(cfgs)),
                               threads_per_worker=threads_per_worker, backend=backend, progress=False)
        old = os.environ.get("DSGD_STORE")
        os.environ["DSGD_STORE"] = str(build.path)
        try:
            table = verify_sample(view, k=k, seed=seed, run_fn=build_store_run)
        finally:
            if old is None:
                os.environ.pop("DSGD_STORE", None)
            else:
                os.environ["DSGD_STORE"] = old
    return table, recomputed


def import_runs(source: Any, target: Any, configs: Sequence[RunConfig], note: str = "") -> list[str]:
    """Copy the finished runs of ``configs`` that ``source`` holds and ``target`` lacks
    (same run id = same settings and code version), and record the copy as a provenance
    session of ``target`` (``settings.kind = "import"``, the source folder, the run ids).
    Returns the copied run ids."""
    from dsgd.store import ResultStore

    src = source if isinstance(source, ResultStore) else ResultStore(source)
    dst = target if isinstance(target, ResultStore) else ResultStore(target)
    copied = []
    recs = []
    for c in configs:
        rid = c.run_id()
        if src.finished(rid) and not dst.finished(rid):
            rec = src.get(rid)
            dst.put(rec)
            copied.append(rid)
            recs.append(rec)
    if copied:
        prov = dst.provenance
        s = prov.start_session(command=["dsgd.chapters.nlp.import_runs", str(src.path)], kind="import",
                               source=str(src.path), note=note, n_configs=len(configs))
        prov.end_session(s, recs, skipped=len(configs) - len(copied))
    return copied


# ============================================================================ the paper
PAPER_TASKS = ("multirc", "copa", "rte", "boolq", "mrpc", "cola")
PAPER_TASK_NAMES = {"multirc": "MultiRC", "copa": "COPA", "rte": "RTE", "boolq": "BoolQ",
                    "mrpc": "MRPC", "cola": "CoLA"}
# Table 1 as printed (reported by the paper): per task "mean ± std", then ACC and STD;
# a cell between asterisks is one where every run collapsed.
_PAPER_TABLE1_TEXT = {
    "roberta-large": """
FFT 74.05 ± 14.50 74.70 ± 15.71 76.17 ± 15.44 83.20 ± 7.39 84.90 ± 5.33 78.95 ± 8.46 78.66 11.13
FocalLoss 73.38 ± 5.73 80.40 ± 7.59 77.29 ± 1.70 81.22 ± 0.46 86.52 ± 6.50 83.82 ± 5.20 81.10 4.53
LNSR 66.07 ± 11.46 82.00 ± 12.58 77.44 ± 15.91 73.41 ± 11.86 88.36 ± 1.55 80.75 ± 8.03 78.00 10.23
NoisyTune 63.62 ± 10.72 *55.00 ± 0.00* 70.65 ± 15.53 71.04 ± 11.46 86.91 ± 6.62 80.67 ± 8.01 71.31 8.72
PCGrad 62.03 ± 8.70 69.60 ± 19.11 81.05 ± 10.08 83.22 ± 7.40 86.67 ± 6.52 81.80 ± 6.84 77.39 9.77
DSGD 84.01 ± 1.31 88.10 ± 3.21 83.61 ± 1.59 85.69 ± 0.20 88.38 ± 1.17 84.92 ± 1.05 85.78 1.42
SWA 65.92 ± 11.27 87.70 ± 4.06 78.45 ± 13.61 80.36 ± 9.61 88.19 ± 1.21 82.46 ± 7.06 80.51 7.80
ENS(×3) 82.77 ± 8.99 82.90 ± 4.72 79.86 ± 3.01 85.86 ± 0.35 86.74 ± 1.40 78.24 ± 7.86 82.82 4.35
ENS(×5) 80.19 ± 12.12 84.80 ± 3.43 80.51 ± 2.58 86.13 ± 0.14 87.25 ± 0.90 79.76 ± 7.36 82.79 4.71
ENS(×7) 85.72 ± 0.81 85.10 ± 2.13 79.89 ± 1.92 86.20 ± 0.15 87.82 ± 0.50 80.77 ± 6.17 84.85 1.94
ENS(×9) 86.11 ± 0.23 86.40 ± 1.17 81.16 ± 1.06 86.31 ± 0.08 88.04 ± 0.32 83.54 ± 0.75 85.26 0.60
DSGD(×9) 85.44 ± 0.16 90.80 ± 0.79 84.77 ± 0.41 86.57 ± 0.08 88.53 ± 0.28 86.18 ± 0.21 87.04 0.32
""",
    "llama-3.2-1b": """
FFT 62.50 ± 0.80 79.40 ± 6.08 79.49 ± 1.83 73.98 ± 3.85 86.69 ± 1.05 84.07 ± 0.83 77.69 2.41
FocalLoss 56.94 ± 0.49 76.00 ± 7.72 49.39 ± 2.97 *62.17 ± 0.00* *68.38 ± 0.00* *69.13 ± 0.00* 63.66 1.86
LNSR 65.33 ± 4.46 82.10 ± 3.14 74.90 ± 2.70 66.81 ± 1.24 82.89 ± 3.15 78.67 ± 3.65 75.12 3.06
NoisyTune 60.85 ± 0.93 *55.00 ± 0.00* 74.69 ± 2.92 67.64 ± 1.01 84.76 ± 2.08 80.91 ± 0.44 70.64 1.23
PCGrad 60.76 ± 3.24 76.40 ± 2.95 73.83 ± 2.95 67.77 ± 1.21 82.84 ± 3.39 80.09 ± 1.62 73.61 2.56
DSGD 67.17 ± 4.70 83.30 ± 2.06 81.55 ± 1.22 75.43 ± 3.55 87.52 ± 0.82 84.75 ± 0.59 79.95 2.16
SWA 62.53 ± 1.01 55.50 ± 5.51 76.17 ± 1.47 67.29 ± 1.64 82.62 ± 3.79 79.95 ± 2.02 70.67 2.57
ENS(×3) 63.44 ± 0.42 81.10 ± 4.79 81.91 ± 1.06 76.12 ± 2.90 87.65 ± 0.83 84.94 ± 0.76 79.20 1.79
ENS(×5) 64.10 ± 0.33 77.60 ± 9.09 82.78 ± 0.83 76.52 ± 1.76 87.75 ± 0.66 85.25 ± 0.34 79.00 2.17
ENS(×7) 63.79 ± 0.32 81.30 ± 7.18 83.14 ± 0.30 76.57 ± 0.72 88.48 ± 0.54 85.11 ± 0.33 79.73 1.56
ENS(×9) 64.20 ± 0.16 83.70 ± 3.56 82.96 ± 0.28 76.64 ± 0.55 88.26 ± 0.69 85.30 ± 0.23 80.18 0.91
DSGD(×9) 69.11 ± 0.88 83.90 ± 3.28 83.54 ± 0.42 78.09 ± 0.19 89.26 ± 0.34 85.60 ± 0.24 81.58 0.89
""",
}
PAPER_MODEL_NAMES = {"roberta-large": "RoBERTa-large", "llama-3.2-1b": "Llama-3.2-1B"}


def _parse_table1(text: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in text.strip().splitlines():
        name, rest = re.match(r"^(\S+(?: \(×\d\))?)\s+(.*)$", line).groups()
        cells = re.findall(r"(\*?)(\d+\.\d+) ± (\d+\.\d+)\*?", rest)
        tail = rest.split()[-2:]
        if len(cells) != len(PAPER_TASKS):
            raise ValueError(f"bad paper row {line!r}")
        out[name] = {
            "tasks": {t: (float(m), float(s), bool(star)) for t, (star, m, s) in zip(PAPER_TASKS, cells)},
            "acc": float(tail[0]), "std": float(tail[1]),
        }
    return out


PAPER_TABLE1: dict[str, dict[str, dict[str, Any]]] = {m: _parse_table1(t) for m, t in _PAPER_TABLE1_TEXT.items()}


def paper_table1(model: str = "roberta-large") -> pd.DataFrame:
    """The paper's Table 1 for ``model`` as printed (reported by the paper): one row per
    method, ``"mean ± std"`` per task (``†``: every run collapsed), then ACC and STD."""
    if model not in PAPER_TABLE1:
        raise ValueError(f"the paper's Table 1 has models {sorted(PAPER_TABLE1)}, not {model!r}")
    rows = {}
    for name, row in PAPER_TABLE1[model].items():
        cells = {PAPER_TASK_NAMES[t]: f"{m:.2f} ± {s:.2f}" + ("†" if star else "")
                 for t, (m, s, star) in row["tasks"].items()}
        rows[name] = {**cells, "ACC": f"{row['acc']:.2f}", "STD": f"{row['std']:.2f}"}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = f"{PAPER_MODEL_NAMES[model]} (reported by the paper)"
    return df


def paper_average_check(tol: float = 0.015) -> pd.DataFrame:
    """Recompute the paper's ACC and STD columns as the mean of its six task means and
    stds and list the rows where the printed value differs by more than ``tol`` (plus
    rounding). Columns: ``model, method, printed_acc, mean_of_tasks_acc, printed_std,
    mean_of_tasks_std, acc_matches, std_matches``."""
    rows = []
    for model, table in PAPER_TABLE1.items():
        for name, row in table.items():
            ms = [v[0] for v in row["tasks"].values()]
            ss = [v[1] for v in row["tasks"].values()]
            a, s = float(np.mean(ms)), float(np.mean(ss))
            rows.append({"model": PAPER_MODEL_NAMES[model], "method": name, "printed_acc": row["acc"],
                         "mean_of_tasks_acc": round(a, 3), "printed_std": row["std"],
                         "mean_of_tasks_std": round(s, 3),
                         "acc_matches": abs(a - row["acc"]) <= tol, "std_matches": abs(s - row["std"]) <= tol})
    return pd.DataFrame(rows)


def paper_summary(model: str = "roberta-large") -> pd.DataFrame:
    """Per method of the paper's Table 1: printed ACC and STD, cells where every run
    collapsed, and the number of tasks where the method's mean beats FFT's."""
    t = PAPER_TABLE1[model]
    fft = t["FFT"]["tasks"]
    rows = []
    for name, row in t.items():
        rows.append({"method": name, "ACC": row["acc"], "STD": row["std"],
                     "all-collapsed cells": sum(v[2] for v in row["tasks"].values()),
                     "tasks above FFT": sum(row["tasks"][k][0] > fft[k][0] for k in PAPER_TASKS)})
    return pd.DataFrame(rows).set_index("method")


# What the paper's text (Section 5.4, Figure 3: RoBERTa-large on MultiRC) says about each
# method's training time relative to FFT; the figure's values are not given as numbers.
PAPER_COST: dict[str, tuple[float | None, str]] = {
    "FFT": (1.0, "reference"),
    "FocalLoss": (1.0, "no additional time (text)"),
    "LNSR": (1.0, "no additional time (text)"),
    "NoisyTune": (1.0, "no additional time (text)"),
    "PCGrad": (2.0, "nearly doubled: two backward passes (text)"),
    "SWA": (1.0, "extra storage for checkpoints, no extra time stated (text)"),
    "DSGD": (1.0, "no extra time or storage (text)"),
    "ENS(×N)": (None, "N times FFT: grows linearly with the ensemble size (text)"),
    "FFT (no bias corr.)": (None, "not in the paper"),
    "CWGNC": (None, "not in the paper"),
}


def paper_cost(label: str) -> tuple[float | None, str]:
    """(ratio to FFT the paper's text implies, its wording) for a row label."""
    f = family(label)
    m = re.match(r"^(ENS|DSGD)\(×(\d+)\)$", f)
    if m:
        return float(m.group(2)), f"{m.group(2)} times {'FFT' if m.group(1) == 'ENS' else 'DSGD'} (text: linear in N)"
    return PAPER_COST.get(f, (None, "not in the paper"))


def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ============================================================================ Figure 3
def figure3(df: pd.DataFrame, time: str, rows: str = "label", metric: str = "accuracy", scale: float = 100.0,
            size_per_std: float = 25.0, min_size: float = 25.0, majority: float | None = None, ax: Any = None):
    """The paper's Figure-3 layout: per row, mean ``metric`` against training time
    (``time``: one value per row, e.g. seconds per epoch relative to FFT), dot area
    ``min_size + size_per_std * std`` over seeds; a legend names the rows (labels next to
    the dots would overlap, most methods costing about what FFT costs). Returns the Figure."""
    import matplotlib.pyplot as plt

    from dsgd.report import cost_points

    if ax is None:
        fig, ax = plt.subplots(figsize=(8.5, 4.8))
    else:
        fig = ax.figure
    markers = "osD^vP*Xhp<>"
    points = cost_points(df, metric, rows, time, scale, order=row_order(df[rows]))
    for i, (lab, x, y, s, n) in enumerate(points):
        ax.scatter([x], [y], s=min_size + size_per_std * (0.0 if math.isnan(s) else s),
                   marker=markers[i % len(markers)], alpha=0.65, edgecolors="black", linewidths=0.6,
                   label=f"{lab} (±{s:.1f}, n={n})" if not math.isnan(s) else f"{lab} (n={n})")
    if majority is not None and math.isfinite(majority):
        ax.axhline(majority * scale, ls="--", lw=1, color="#495057", label="majority class")
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import FuncFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set_xlabel(time)
    ax.set_ylabel(f"{metric} (%)" if scale == 100 else metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              markerscale=0.6, labelspacing=1.1)
    fig.tight_layout()
    return fig


def success_counts(df: pd.DataFrame, rows: str = "label") -> pd.Series:
    """Per row ``"k/n"``: runs whose verdict is ``success`` out of all runs. Stricter than the
    failed count (accuracy at or below the majority class): a *degenerate* run — above the
    majority class but with no useful decision boundary, which the paper's Figure 1 also
    counts as a training failure — is neither failed nor a success."""
    g = df.groupby(rows, sort=False)["verdict"]
    return g.apply(lambda v: f"{int((v == 'success').sum())}/{len(v)}")


# =========================================================================== page helpers
def variant_table(configs: Iterable[RunConfig]) -> pd.DataFrame:
    """One row per method variant of a grid (its Table-1 row name): method and settings."""
    rows = pd.DataFrame([{"row": variant_label(c.to_dict()), "method": c.method,
                          "settings": c.method_kwargs or "—"} for c in configs])
    return rows.drop_duplicates("row").set_index("row")


def table_cell(table: pd.DataFrame | None, label: str, task: str, stat: str = "mean") -> float:
    """One number of a :func:`dsgd.report.table1` table (row ``label``, column ``(task,
    stat)``), NaN where the table, the row or the column is missing."""
    try:
        return float(table.loc[label, (task, stat)])  # type: ignore[union-attr]
    except (KeyError, AttributeError):
        return float("nan")


def cost_verdict(ratio: float | None, paper: float, tol: float = 0.15) -> str:
    """A measured cost ratio against the paper's: "about the same as" within ``tol`` of
    the paper's value (relative), else "more than" / "less than"."""
    if not finite(ratio):
        return "not measured"
    r = float(ratio)  # type: ignore[arg-type]
    word = "about the same as" if abs(r - paper) <= tol * paper else ("more than" if r > paper else "less than")
    return f"{r:.2f} × FFT, {word} the paper's {paper:g} ×"


# ------------------------------------------------------------ findings and sentences
def _failed_by_seed(frame: pd.DataFrame, label: str, model: str, task: str) -> pd.Series:
    from dsgd.diagnostics import failure_kind

    g = frame[(frame["label"] == label) & (frame["model"] == model) & (frame["task"] == task)]
    return pd.Series([failure_kind(v) is not None for v in g["verdict"]], index=g["seed"].to_numpy())


def paired_failures(frame: pd.DataFrame, label: str, model: str, task: str, reference: str = "FFT") -> dict[str, Any]:
    """``label`` against ``reference`` on their shared seeds: failures with exact intervals
    and the exact McNemar test (the book's vocabulary: failed = not a success)."""
    from dsgd import stats

    a, b = _failed_by_seed(frame, label, model, task), _failed_by_seed(frame, reference, model, task)
    seeds = sorted(set(a.index) & set(b.index))
    out = {"rate": stats.rate_ci(int(a.sum()), len(a)), "ref_rate": stats.rate_ci(int(b.sum()), len(b)),
           "seeds": len(seeds), "k": int(a.loc[seeds].sum()) if seeds else 0,
           "k_ref": int(b.loc[seeds].sum()) if seeds else 0, "p": float("nan")}
    if seeds:
        out["p"] = stats.mcnemar_exact(a.loc[seeds].to_numpy(bool), b.loc[seeds].to_numpy(bool))["p_value"]
    out["direction"] = ("more often" if out["k"] > out["k_ref"] else "less often" if out["k"] < out["k_ref"]
                        else "as often")
    return out


def pcgrad_sentence(frame: pd.DataFrame, model: str, task: str, cost_ratio: Any) -> str:
    """PCGrad's result stated as a finding, with its caveats, every number computed."""
    from dsgd import stats

    if not (frame["label"] == "PCGrad").any():
        return "PCGrad was not run in this grid."
    c = paired_failures(frame, "PCGrad", model, task)
    sig = "significant" if c["p"] < 0.05 else "not significant"
    cost = (f"{float(cost_ratio):.2f}× FFT's time per step (two backward passes)"
            if isinstance(cost_ratio, (int, float)) and np.isfinite(cost_ratio) else "an unmeasured cost")
    return (f"PCGrad failed on {stats.format_rate(c['rate'])} seeds, FFT on {stats.format_rate(c['ref_rate'])}: "
            f"on the {c['seeds']} shared seeds PCGrad failed "
            f"{'as often as' if c['direction'] == 'as often' else c['direction'] + ' than'} FFT ({c['k']} vs {c['k_ref']}; exact "
            f"McNemar {stats.p_text(c['p'])}, {sig} at the 5 % level). The caveats: it costs {cost}, and this "
            f"is one task ({task}) and one model ({model}).")


PAPER_BASELINES = ("FocalLoss", "LNSR", "NoisyTune", "PCGrad", "SWA")  # Table 1's single-learner baselines


def baseline_rows(labels: Iterable[str]) -> dict[str, str]:
    """Each of the paper's single-learner baselines (:data:`PAPER_BASELINES`) as Table 1
    shows it: a searched family by its best of search, else its one row; a baseline with
    several rows and no best of search, or none, is left out."""
    labels = list(dict.fromkeys(labels))
    out = {}
    for fam in PAPER_BASELINES:
        if f"{fam} (best of search)" in labels:
            out[fam] = f"{fam} (best of search)"
        else:
            same = [l for l in labels if family(l) == fam]
            if len(same) == 1:
                out[fam] = same[0]
    return out


def baselines_finding(rows: pd.DataFrame, model: str, task: str, setting: str) -> dict[str, Any] | None:
    """The findings row for Table 1's claim that DSGD fails on fewer seeds than the paper's
    baselines: DSGD against each (:func:`baseline_rows`) on shared seeds, exact McNemar,
    Holm over the baselines. Supported when DSGD fails significantly less often than every
    one; contradicted when it fails significantly more often than any; else not resolved."""
    from dsgd import stats

    sub = rows[(rows["model"] == model) & (rows["task"] == task)] if len(rows) else rows
    base = baseline_rows(sub["label"]) if len(sub) else {}
    if not base or not (sub["label"] == "DSGD").any():
        return None
    tests = {fam: paired_failures(sub, "DSGD", model, task, reference=lab) for fam, lab in base.items()}
    adj = dict(zip(tests, stats.holm([t["p"] for t in tests.values()])))
    less = [f for f, t in tests.items() if adj[f] < 0.05 and t["direction"] == "less often"]
    more = [f for f, t in tests.items() if adj[f] < 0.05 and t["direction"] == "more often"]
    verdict = "contradicted" if more else "supported" if len(less) == len(tests) else "not resolved"
    d_rate = next(iter(tests.values()))["rate"]
    parts = [f"{base[f]} {stats.format_rate(t['ref_rate'])} (DSGD {t['k']} vs {t['k_ref']} on {t['seeds']} shared "
             f"seeds, McNemar {stats.p_text(t['p'])}, Holm-adjusted {stats.p_text(adj[f])})" for f, t in tests.items()]
    return dict(key="table1_baselines", source="paper",
                claim="Table 1: DSGD fails on fewer seeds than each of the paper's baselines.",
                measured=f"DSGD failed on {stats.format_rate(d_rate)} seeds; " + "; ".join(parts) + ".",
                setting=setting, verdict=verdict, section="the-grid-and-how-each-baseline-is-run")


def chapter_findings(frame: pd.DataFrame, model: str, task: str, cost: dict[str, Any],
                     setting: str, table_rows: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The NLP chapter's rows of the findings page, verdicts decided from the numbers.
    ``table_rows``: Table 1's rows (:func:`table1_frame`, with the best-of-search rows) for
    the comparison with the paper's baselines; ``frame`` when not given."""
    from dsgd import stats

    rows = []
    d = paired_failures(frame, "DSGD", model, task)
    verdict = ("not resolved" if not (d["p"] < 0.05) else
               "supported" if d["direction"] == "less often" else "contradicted")
    rows.append(dict(key="table1_failures", source="paper",
                     claim="Table 1: DSGD fails on fewer seeds than FFT.",
                     measured=(f"FFT failed on {stats.format_rate(d['ref_rate'])} seeds, DSGD on "
                               f"{stats.format_rate(d['rate'])}; exact McNemar {stats.p_text(d['p'])} on "
                               f"{d['seeds']} shared seeds."),
                     setting=setting, verdict=verdict, section="the-grid-and-how-each-baseline-is-run"))
    acc = {lab: frame[(frame["label"] == lab) & (frame["model"] == model) & (frame["task"] == task)]
           .set_index("seed")["accuracy"] for lab in ("FFT", "DSGD")}
    flat = next((g for g in ("DSGD", "FFT") if len(acc[g]) > 1 and stats.is_constant(acc[g].to_numpy())), None)
    if flat is not None:
        rows.append(dict(key="table1_spread", source="paper",
                         claim="Table 1: DSGD has a smaller spread of accuracy over seeds than FFT.",
                         measured=(f"Every {flat} run ended at {100 * acc[flat].iloc[0]:.1f} % (the majority "
                                   "rate): its spread is zero because every run collapsed, which says nothing "
                                   "about stability; no variance test is made."),
                         setting=setting, verdict="not testable at this scale", section=""))
    elif len(acc["DSGD"]) > 1 and len(acc["FFT"]) > 1:
        from scipy.stats import levene

        p = float(levene(acc["DSGD"], acc["FFT"]).pvalue)
        smaller = acc["DSGD"].std() < acc["FFT"].std()
        rows.append(dict(key="table1_spread", source="paper",
                         claim="Table 1: DSGD has a smaller spread of accuracy over seeds than FFT.",
                         measured=(f"std {100 * acc['DSGD'].std():.2f} vs {100 * acc['FFT'].std():.2f} points; "
                                   f"Levene {stats.p_text(p)}."),
                         setting=setting, verdict=("not resolved" if p >= 0.05 else
                                                   "supported" if smaller else "contradicted"), section=""))
    ratio = cost.get("DSGD")
    if isinstance(ratio, (int, float)) and np.isfinite(ratio):
        rows.append(dict(key="dsgd_cost", source="paper",
                         claim="Figure 3: DSGD costs about as much per step as FFT (one backward pass); "
                               "here: within 10 %.",
                         measured=f"DSGD's time per step was {ratio:.2f}× FFT's, measured interleaved in one run.",
                         setting=setting, verdict="supported" if abs(ratio - 1) <= 0.1 else "contradicted",
                         section=""))
    b = baselines_finding(frame if table_rows is None else table_rows, model, task, setting)
    if b is not None:
        rows.insert(1, b)
    return rows


def levene_text(frame: pd.DataFrame, model: str, task: str, label: str = "DSGD") -> str:
    """Levene's test of ``label`` against FFT as a sentence, or why it is not made: a group
    whose runs all ended at one accuracy has no spread to compare."""
    from scipy.stats import levene

    from dsgd import stats

    acc = {lab: frame[(frame["label"] == lab) & (frame["model"] == model) & (frame["task"] == task)]["accuracy"]
           .to_numpy(float) for lab in (label, "FFT")}
    for g in (label, "FFT"):
        if len(acc[g]) > 1 and stats.is_constant(acc[g]):
            return (f"{label} against FFT: not tested — every {g} run ended at "
                    f"{100 * acc[g][0]:.1f} %, so its spread is zero because the runs collapsed, "
                    "not because they are stable")
    if len(acc[label]) < 2 or len(acc["FFT"]) < 2:
        return f"{label} against FFT: not tested (fewer than two runs)"
    return f"{label} against FFT: Levene {stats.p_text(float(levene(acc[label], acc['FFT']).pvalue))}"


# ------------------------------------------------------------------ the page's top and bottom
def stored_frame(P: dict[str, Any], configs: Sequence[RunConfig] | None = None) -> pd.DataFrame:
    """The stored set's finished runs of this profile's grid (:func:`nlp_frame`); empty
    when the profile names no stored set or the folder has no runs."""
    from dsgd.chapters._common import open_stored

    configs = chapter_grid(P) if configs is None else configs
    ids = {c.run_id() for c in configs}
    _, records = open_stored(P.get("stored_set") or "")
    return nlp_frame([r for r in records if r["run_id"] in ids])


def headline_figure(P: dict[str, Any], configs: Sequence[RunConfig] | None = None):
    """The page's headline: every stored run of the first model, one dot per seed and
    method, coloured by verdict, with the majority-class rate (:func:`dsgd.report.strip_plot`).
    Returns the figure, or None (printing why) when there is no stored run to show."""
    from dsgd.report import strip_plot

    df = stored_frame(P, configs)
    model = P["models"][0]
    df = df[df["model"] == model] if len(df) else df
    if not len(df):
        print("No stored runs in this profile: its runs are computed further down, and the "
              "section 'Every seed' draws them.")
        return None
    order = row_order(df["label"])
    fig = strip_plot(df, group_by="task", rows="label", order=order, columns=list(P["tasks"]),
                     ncols=min(3, len(P["tasks"])), figsize_per=(max(6.0, 0.45 * len(order)), 4.0))
    fig.suptitle(f"{model}: held-out accuracy of every stored run ({df['seed'].nunique()} seeds per method)", y=1.02)
    return fig


def with_balanced(shown: pd.DataFrame, frame: pd.DataFrame, tasks: Sequence[str],
                  order: Sequence[str] | None = None, digits: int = 2) -> pd.DataFrame:
    """A formatted Table 1 (:func:`dsgd.report.format_table1`) with the balanced accuracy
    (%, mean ± std over seeds, from ``frame``) beside each task's accuracy, and its mean
    over tasks (``BAL``) beside ``ACC`` when there is more than one task. On an imbalanced
    task the two read differently: a run that predicts the majority class scores the
    majority share in accuracy and 50 % in balanced accuracy (two classes)."""
    from dsgd.report import table1

    f = frame.copy()
    if "balanced_accuracy" not in f:
        f["balanced_accuracy"] = math.nan
    bt = table1(f, metric="balanced_accuracy", group_by="task", rows="label", order=order, columns=list(tasks))
    tasks = [t for t in tasks if (t, "mean") in bt.columns]

    def cell(label: Any, t: str) -> str:
        if label not in bt.index or bt.loc[label, (t, "n")] == 0:
            return "–"
        m, sd, n = bt.loc[label, (t, "mean")], bt.loc[label, (t, "std")], bt.loc[label, (t, "n")]
        return f"{m:.{digits}f}" if n == 1 else f"{m:.{digits}f} ± {sd:.{digits}f}"

    out = shown.copy()
    for t in tasks:
        name = "bal. acc." if len(tasks) == 1 else f"{t} (bal.)"
        out.insert(list(out.columns).index(str(t)) + 1, name, [cell(l, t) for l in out.index])
    if len(tasks) > 1 and "ACC" in out.columns:
        bal = [bt.loc[l, ("average", "mean")] if l in bt.index else math.nan for l in out.index]
        out.insert(list(out.columns).index("ACC") + 1, "BAL",
                   ["–" if not finite(b) else f"{b:.{digits}f}" for b in bal])
    return out


def what_we_found(frame: pd.DataFrame, model: str, task: str, steps: pd.DataFrame | None = None) -> dict[str, str]:
    """The closing bullets, from the single runs the page's Table 1 shows (``frame``, one
    model and task) and the interleaved step-time measurement (``steps``, from
    :func:`dsgd.cost.measure_step_times`): failures with exact intervals and the exact
    McNemar test against FFT, accuracy and balanced accuracy as paired differences (t
    interval, Wilcoxon), the spread (Levene, or why it is not tested), the fewest failures
    among the single learners, and the cost per step."""
    from dsgd import stats
    from dsgd.chapters._common import failure_text, failures_sentence, values_sentence

    g = frame[(frame["model"] == model) & (frame["task"] == task)] if len(frame) else frame
    labels = set(g["label"]) if len(g) else set()
    if not {"FFT", "DSGD"} <= labels:
        text = "Not measured: the result set holds no FFT and DSGD runs of this task yet."
        return {k: text for k in ("wwf_failures", "wwf_accuracy", "wwf_balanced", "wwf_spread", "wwf_cost")}

    def by_seed(label: str, col: str) -> pd.Series:
        x = g[g["label"] == label]
        return pd.Series(pd.to_numeric(x[col], errors="coerce").to_numpy(), index=x["seed"].to_numpy())

    f_fail, d_fail = _failed_by_seed(g, "FFT", model, task), _failed_by_seed(g, "DSGD", model, task)
    singles = [l for l in row_order(labels) if not l.startswith(("ENS(", "DSGD(", "SWA"))
               and "best of search" not in l]
    counts = {l: _failed_by_seed(g, l, model, task) for l in singles}
    fewest = min(int(c.sum()) / len(c) for c in counts.values() if len(c))
    best = [l for l, c in counts.items() if len(c) and int(c.sum()) / len(c) == fewest]
    out = {"wwf_failures": (
        f"FFT failed on {failure_text(f_fail)} seeds, DSGD on {failure_text(d_fail)}. "
        + failures_sentence("DSGD", d_fail, "FFT", f_fail)
        + (f" All {len(singles)} single learners failed equally often, {failure_text(counts[best[0]])} each."
           if len(best) == len(singles) > 1 else
           f" Fewest failures among the {len(singles)} single learners: " + ", ".join(best)
           + f", {failure_text(counts[best[0]])}" + (" each." if len(best) > 1 else ".")))}
    maj = 100 * float(pd.to_numeric(g["majority_rate"], errors="coerce").mean())
    fa, da = by_seed("FFT", "accuracy"), by_seed("DSGD", "accuracy")
    out["wwf_accuracy"] = (f"Mean accuracy: FFT {100 * fa.mean():.1f} %, DSGD {100 * da.mean():.1f} % (always "
                           f"predicting the majority class: {maj:.1f} %). " + values_sentence("DSGD", da, "FFT", fa))
    if "balanced_accuracy" in g and g["balanced_accuracy"].notna().any():
        fb, db = by_seed("FFT", "balanced_accuracy"), by_seed("DSGD", "balanced_accuracy")
        out["wwf_balanced"] = (f"Mean balanced accuracy (50 % for a run that predicts one class): FFT "
                               f"{100 * fb.mean():.1f} %, DSGD {100 * db.mean():.1f} %. "
                               + values_sentence("DSGD", db, "FFT", fb, what="balanced accuracy"))
    else:
        out["wwf_balanced"] = "The runs do not record a balanced accuracy."
    sd_f, sd_d = stats_std(fa), stats_std(da)
    pts = lambda x: "–" if not finite(x) else f"{100 * x:.1f}"  # noqa: E731
    spread = f"Standard deviation over seeds: FFT {pts(sd_f)} points, DSGD {pts(sd_d)}. "
    flat = [lab for lab, x in (("DSGD", da), ("FFT", fa)) if x.notna().sum() > 1 and stats.is_constant(x.dropna())]
    if flat:  # a group that collapsed to one value has no spread to test
        spread += (f"No variance test: every {flat[0]} run ended at {100 * (da if flat[0] == 'DSGD' else fa).dropna().iloc[0]:.1f} %, "
                   "so its spread is zero because its runs collapsed, not because they are stable.")
    elif da.notna().sum() < 2 or fa.notna().sum() < 2:
        spread += "No variance test: fewer than two runs."
    else:
        from scipy.stats import levene

        from dsgd.chapters._common import levene_clause

        p = float(levene(da.dropna(), fa.dropna()).pvalue)  # as levene_text and the findings row
        spread += levene_clause(p, sd_d, sd_f).replace("DSGD's spread ", "DSGD's spread was ", 1) + "."
    out["wwf_spread"] = spread
    if steps is not None and len(steps):
        sd = steps.set_index("label")
        parts = []
        for lab in ("DSGD", "PCGrad"):
            if lab in sd.index:
                r, q1, q3 = (float(sd.loc[lab, k]) for k in ("paired_ratio", "q1", "q3"))
                how = ("slower than" if q1 > 1 else "faster than" if q3 < 1 else "about as fast as")
                parts.append(f"{lab}'s {r:.2f}× FFT's ({how} FFT: interquartile range of the rounds "
                             f"{q1:.2f}–{q3:.2f})")
        out["wwf_cost"] = ("Time per optimizer step, measured interleaved in this build: " + "; ".join(parts)
                           + ". An ensemble of N runs costs N times one run.")
    else:
        out["wwf_cost"] = "The cost per step was not measured in this profile."
    return out


def stats_std(x: pd.Series) -> float:
    """Sample standard deviation (ddof=1) of the finite values; NaN for fewer than two."""
    v = pd.to_numeric(x, errors="coerce").dropna().to_numpy(float)
    return float(v.std(ddof=1)) if v.size >= 2 else math.nan


def balanced_text(df: pd.DataFrame, label: str, task: str) -> str:
    """Balanced accuracy (%) of one row of Table 1 on one task, "mean ± std" over its runs
    (just the mean for one run, "–" for none)."""
    g = df[(df["label"] == label) & (df["task"] == task)] if len(df) and "balanced_accuracy" in df else df.iloc[0:0]
    v = 100 * pd.to_numeric(g["balanced_accuracy"], errors="coerce").dropna() if len(g) else pd.Series(dtype=float)
    if not len(v):
        return "–"
    return f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def source_text(n_results: int, model: str, task: str, status: dict[str, Any], verify_passed: str,
                n_models: int = 1, n_tasks: int = 1) -> str:
    """Which runs the closing summary reads: the task and model, how many runs the result
    set holds, how much of it is stored and what the build re-verified."""
    s = f"{model} on {task}"
    if n_models > 1 or n_tasks > 1:
        s += " (the first model and task of the grid; the tables above hold the others)"
    s += f", {n_results} runs in the result set"
    if status.get("total") and status.get("done"):
        s += f", {status['done']} of the grid's {status['total']} runs read from the stored set"
        if verify_passed not in ("", "–", None):
            s += f" ({verify_passed} recomputed in this build agreed with their record)"
    else:
        s += ", all computed in this build"
    return s
