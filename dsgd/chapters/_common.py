"""Glue that more than one chapter uses: method variants of a grid, and the
"compute the grid, recompute a sample of the stored set, compare" flow of the vision and
multitask chapters.

Chapter modules may import this module and the library, never each other.
"""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dsgd.config import RunConfig


def method_variants(methods: Sequence[str], method_kwargs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``[{"method": m, "method_kwargs": {...}}, ...]``; settings of methods not run are
    ignored, a name that is no method at all is an error (a typo)."""
    from dsgd.methods import METHODS

    method_kwargs = dict(method_kwargs or {})
    unknown = sorted(set(method_kwargs) - set(METHODS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
    return [{"method": m, "method_kwargs": dict(method_kwargs.get(m, {}))} for m in methods]


def in_order(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``names`` (duplicates dropped) with those in ``preferred`` first, in its order, then
    the rest in their own order: the row order of a chapter's tables."""
    names = list(dict.fromkeys(names))
    return [n for n in preferred if n in names] + [n for n in names if n not in preferred]


def open_stored(folder: Any) -> tuple[Any, list[dict[str, Any]]]:
    """``(store, finished records)`` of a stored result set, or ``(None, [])`` when the
    folder is empty (``""``/None: none configured) or has no ``runs/``. A relative
    folder is relative to the book's root."""
    from pathlib import Path

    from dsgd.book import repo_root
    from dsgd.store import ResultStore

    if not folder:
        return None, []
    path = Path(folder) if Path(folder).is_absolute() else repo_root() / folder
    if not (path / "runs").is_dir():
        return None, []
    store = ResultStore(path)
    return store, store.records()


def budget_steps(record: dict[str, Any]) -> int:
    """Optimizer steps the run was given (its history length when timings lack them)."""
    t = record.get("timings") or {}
    n = t.get("total_steps") or t.get("steps")
    if n:
        return int(n)
    return len((record.get("history") or {}).get("step", []))


def verification_sample(store: Any, k: int, seed: int,
                        records: Sequence[dict[str, Any]] | None = None) -> list[RunConfig]:
    """The configs of the ``k`` stored runs that :func:`dsgd.sweep.verify_sample` with
    ``seed`` picks (found without training: a stand-in returns the stored record), drawn
    from ``records`` (the set as the chapter read it) when given."""
    from dsgd.sweep import verify_sample

    if store is None or k <= 0 or not (records if records is not None else store.records()):
        return []
    drawn = verify_sample(store, k=k, seed=seed, run_fn=lambda cfg: store.get(cfg.run_id()), records=records)
    return [RunConfig.from_dict(store.get(i)["config"]) for i in drawn["run_id"]]


def compute(configs: Sequence[RunConfig], extra: Sequence[RunConfig] = (), *, run_fn: Any = None,
            workers: int = 1) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], float]:
    """Run ``configs`` and ``extra`` in one sweep into the build's scratch store; returns
    ``(records of configs in their order, every record by run id, seconds)``. A run that
    raised stops the chapter with its error."""
    from dsgd.sweep import run_sweep

    t0 = time.perf_counter()
    kw = {"run_fn": run_fn} if run_fn is not None else {}
    computed = run_sweep(list(configs) + list(extra), workers=workers, threads_per_worker=1,
                         progress=False, **kw)
    seconds = time.perf_counter() - t0
    errors = [r for r in computed if r["status"] == "error"]
    if errors:
        raise RuntimeError(f"{len(errors)} run(s) failed; first: {errors[0]['error']}")
    by_id = {r["run_id"]: r for r in computed}
    return [by_id[c.run_id()] for c in configs], by_id, seconds


def describe_stored(store: Any, records: Sequence[dict[str, Any]], name: str) -> str:
    """One or two lines saying what a stored set holds (runs, sweep sessions, the last one)."""
    if not records:
        return (f"No stored result set at {name or '(none configured)'}: this page shows only "
                "the runs computed in this build.")
    sessions = store.provenance.load().get("sessions", [])
    text = f"{len(records)} finished runs in {name}; {len(sessions)} sweep session(s)"
    if sessions:
        text += "\nlast session: " + session_line(sessions[-1])
    return text


def session_line(session: dict[str, Any]) -> str:
    """One sweep session of a store's provenance in words: its command, code version, time
    span and machine."""
    cmd = session.get("command")
    cmd = " ".join(map(str, cmd)) if isinstance(cmd, (list, tuple)) else cmd
    cmd = f"`{cmd}`" if cmd else "command not recorded"
    git = session.get("git") or {}
    commit = str(git.get("commit") or "")[:7]
    code = (f"git {commit}" if commit else "unknown commit") + (" with uncommitted changes" if git.get("dirty") else "")
    when = " to ".join(str(session[k]) for k in ("start", "end") if session.get(k)) or "time not recorded"
    m = session.get("machine") or {}
    cpu = m.get("cpu_model") or m.get("processor") or "processor not recorded"
    where = f"{cpu}, {m.get('cpus', '?')} CPUs, {m.get('platform', 'platform not recorded')}"
    return f"{cmd} at {code}, {when}, on {where}"


def verify_recomputed(store: Any, k: int, seed: int, recomputed: dict[str, dict[str, Any]],
                      records: Sequence[dict[str, Any]] | None = None) -> pd.DataFrame | None:
    """:func:`dsgd.sweep.verify_sample` of the same ``k`` runs as
    :func:`verification_sample` (pass it the same ``records``), with the records this
    build recomputed as the fresh runs; None when there is nothing to verify."""
    from dsgd.sweep import verify_sample

    if store is None or k <= 0 or not (records if records is not None else store.records()):
        return None
    return verify_sample(store, k=k, seed=seed, run_fn=lambda cfg: recomputed[cfg.run_id()], records=records)


def overlap_table(build: Sequence[dict[str, Any]], stored: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The build's runs whose training the stored set also holds (same
    :meth:`dsgd.config.RunConfig.training_id`: the same settings and seed, with or without
    the evaluation after each epoch), each against its stored record
    (:func:`dsgd.reproduce.compare_runs`: values, verdicts, processors, ``ok``)."""
    from dsgd.config import RunConfig
    from dsgd.reproduce import compare_runs

    return compare_runs(stored, build, key=lambda r: RunConfig.from_dict(r["config"]).training_id())


def overlap_agreement(build: Sequence[dict[str, Any]], stored: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """``(agreeing, overlapping)`` of :func:`overlap_table`: how many of the build's runs
    that the stored set also holds reproduce their record (:func:`dsgd.sweep.reproduces`)."""
    t = overlap_table(build, stored)
    return int(t["ok"].sum()), len(t)


def put_verification(R: Any, verify: pd.DataFrame | None, agree: int, overlap: int,
                     overlap_rows: pd.DataFrame | None = None) -> None:
    """Glue a verification table (passed, run ids, largest difference in points; dashes
    when there was none), the agreement of the overlapping runs, and both together:
    ``rerun_agree`` ("5 of 6") counts every stored run this build recomputed, drawn at
    random or part of the build's own grid, and ``rerun_sentence`` says it in words. When
    the tables name processors (``verify`` and ``overlap_rows``, the latter from
    :func:`overlap_table`), ``rerun_mismatch`` says why the runs that differ differ
    (:func:`dsgd.reproduce.mismatch_sentence`), the sentence ends with it, and
    ``rerun_agree_why`` is ``rerun_agree`` with the short reason in brackets."""
    from dsgd.reproduce import mismatch_phrase, mismatch_sentence

    n_drawn = 0 if verify is None else len(verify)
    ok_drawn = 0 if verify is None else int(verify["ok"].sum())
    if n_drawn:
        R.put("verify_passed", f"{ok_drawn} of {n_drawn}")
        R.put("verify_runs", ", ".join(verify["run_id"]))
        R.put("verify_max_diff", 100 * float(verify["diff"].max()), ".2f")
    else:
        for k in ("verify_passed", "verify_runs", "verify_max_diff"):
            R.put(k, "–")
    R.put("overlap_agree", f"{agree} of {overlap}" if overlap else "none (no overlap)")
    total = n_drawn + overlap
    R.put("rerun_agree", f"{ok_drawn + agree} of {total}" if total else "none")
    parts = []
    if overlap:
        parts.append(f"{agree} of the {overlap} runs of this build's own grid that the stored set also holds "
                     "(same training settings and seeds)")
    if n_drawn:
        parts.append(f"{ok_drawn} of {n_drawn} stored runs drawn at random ({', '.join(verify['run_id'])}; largest "
                     f"accuracy difference {100 * float(verify['diff'].max()):.2f} points)")
    named = [t for t in (verify, overlap_rows) if t is not None and len(t) and "same_processor" in t]
    both = pd.concat(named, ignore_index=True) if named else None
    why = mismatch_sentence(both) if named else ""
    short = mismatch_phrase(both) if named else ""
    if named:
        R.put("rerun_mismatch", why or "Every recomputed run reproduced its record.")
    # for a table cell: "1 of 4 (3 that differ stored on another processor)"
    R.put("rerun_agree_why", (f"{ok_drawn + agree} of {total}" if total else "none")
          + (f" (those that differ: {short})" if short else ""))
    R.put("rerun_sentence", ("This build recomputed stored runs and compared them with their records (same "
                             "verdict, accuracy within half a point): " + "; ".join(parts) + "."
                             + (" " + why if why else "")) if parts
          else "This build recomputed no stored run.")


# ------------------------------------------------------------------ "What we found" sentences
# Every chapter closes with a few measured statements. These helpers write them from the
# numbers with the library's statistics, so that a direction word ("more often", "higher",
# "no different") is chosen by comparing numbers, a difference that is not significant is
# said to be so, and a missing number never renders as "nan".
def seeds_phrase(frame: pd.DataFrame, by: Sequence[str] = (), names: dict[str, str] | None = None,
                 order: Sequence[str] | None = None) -> str:
    """How many seeds each method has, in words: "10 seeds per method" when they agree,
    else "10 seeds of FFT and DSGD, 3 of PCGrad and LNSR" (per method the fewest over the
    groups ``by``, e.g. the settings), so that a partly computed set says so."""
    names = names or {}
    cols = ["method", *by]
    per = frame.groupby(cols)["seed"].nunique().groupby(level="method").min()
    methods = [m for m in (order or []) if m in per.index] + [m for m in per.index if m not in (order or [])]
    counts = list(dict.fromkeys(int(per[m]) for m in sorted(methods, key=lambda m: -int(per[m]))))
    if len(counts) == 1:
        return f"{counts[0]} seed{'s' if counts[0] != 1 else ''} per method"

    def listing(ms: list[str]) -> str:
        ns = [names.get(m, m) for m in ms]
        return ns[0] if len(ns) == 1 else ", ".join(ns[:-1]) + " and " + ns[-1]

    parts = [f"{n} seed{'s' if n != 1 else ''} of {listing([m for m in methods if int(per[m]) == n])}"
             if i == 0 else f"{n} of {listing([m for m in methods if int(per[m]) == n])}"
             for i, n in enumerate(counts)]
    return ", ".join(parts)


def failure_text(failed: Sequence[bool]) -> str:
    """``"3/10 (0.30, 95 % CI 0.07–0.65)"``: the failed runs among ``failed`` (one flag per
    run) with their exact (Clopper–Pearson) interval; ``"no runs"`` when empty."""
    from dsgd import stats

    flags = [bool(x) for x in failed]
    return stats.format_rate(stats.rate_ci(sum(flags), len(flags)))


def failure_direction(k_a: int, k_b: int) -> str:
    """"more often", "less often" or "as often": A's failure count against B's."""
    return "more often" if k_a > k_b else "less often" if k_a < k_b else "as often"


def stored_records_or_note(stored_set: str) -> list[dict[str, Any]]:
    """The finished records of a chapter's stored set for its headline figure; with none
    (a profile without a stored set) it prints where the page draws its runs instead."""
    _, records = open_stored(stored_set)
    if not records:
        print("No stored set in this profile: its runs are computed further down, and the section "
              "'Computed in this build' draws them.")
    return records


def _by_seed(x: Any) -> pd.Series:
    s = x if isinstance(x, pd.Series) else pd.Series(dict(x))
    return s[~s.index.duplicated(keep="first")]


def compare_failures(a: Any, b: Any, level: float = 0.05) -> dict[str, Any]:
    """Failures of A against B on the seeds both ran (``a``, ``b``: failed flags indexed by
    seed, a Series or a ``{seed: flag}`` mapping): ``n`` shared seeds, ``k_a``/``k_b``
    failures there, the exact McNemar ``p``, ``direction`` ("more often", "less often",
    "as often": A's count against B's) and ``significant`` (p < ``level``)."""
    from dsgd import stats

    a, b = _by_seed(a), _by_seed(b)
    seeds = sorted(set(a.index) & set(b.index))
    fa = a.loc[seeds].to_numpy(bool) if seeds else np.zeros(0, bool)
    fb = b.loc[seeds].to_numpy(bool) if seeds else np.zeros(0, bool)
    p = stats.mcnemar_exact(fa, fb)["p_value"] if seeds else math.nan
    ka, kb = int(fa.sum()), int(fb.sum())
    return {"n": len(seeds), "k_a": ka, "k_b": kb, "p": p,
            "direction": failure_direction(ka, kb),
            "significant": bool(seeds) and p < level}


def failures_sentence(a_name: str, a: Any, b_name: str, b: Any) -> str:
    """:func:`compare_failures` as a sentence: "On the 10 shared seeds DSGD failed more
    often than FFT (10 vs 5; exact McNemar p = 0.0625, not significant at the 5 % level)."."""
    from dsgd import stats

    c = compare_failures(a, b)
    if not c["n"]:
        return f"{a_name} and {b_name} share no seed, so their failures are not compared seed by seed."
    sig = "significant" if c["significant"] else "not significant"
    how = f"as often as {b_name}" if c["direction"] == "as often" else f"{c['direction']} than {b_name}"
    return (f"On the {c['n']} shared seeds {a_name} failed {how} ({c['k_a']} vs {c['k_b']}; exact McNemar "
            f"{stats.p_text(c['p'])}, {sig} at the 5 % level).")


def compare_values(a: Any, b: Any, level: float = 0.05, adjusted: float | None = None) -> dict[str, Any]:
    """A's value minus B's on the seeds both ran (``a``, ``b``: indexed by seed):
    :func:`dsgd.stats.paired_difference` (mean, t interval ``lo``/``hi``, exact Wilcoxon
    ``p``) plus ``word``: "higher" or "lower" when the Wilcoxon test is significant at
    ``level``, else "no different"; ``p_floor``: the smallest two-sided p-value the exact
    test can give on the ``n_nonzero`` seeds whose values differ (2 / 2^n; at five or fewer it
    cannot reach 0.05);
    ``a_constant``/``b_constant``: every run of that group ended at one value. ``adjusted``:
    this comparison's Holm-adjusted p among several; significance then follows it."""
    from dsgd import stats

    a, b = _by_seed(a).astype(float), _by_seed(b).astype(float)
    seeds = sorted(s for s in set(a.index) & set(b.index) if np.isfinite(a[s]) and np.isfinite(b[s]))
    x, y = a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float)
    res = stats.paired_difference(x, y) if seeds else {"n": 0, "mean": math.nan, "lo": math.nan,
                                                         "hi": math.nan, "p_value": math.nan}
    n = int(res["n"])
    nz = int(np.count_nonzero(np.abs(x - y) > 1e-12)) if n else 0  # the Wilcoxon test drops zero differences
    sig = n >= 2 and (res["p_value"] if adjusted is None else adjusted) < level
    word = ("higher" if res["mean"] > 0 else "lower") if sig else "no different"
    return {**res, "n": n, "p": res["p_value"], "adjusted": adjusted, "word": word, "significant": bool(sig),
            "p_floor": 2 * 0.5 ** nz if nz else math.nan, "n_nonzero": nz,
            "a_mean": float(x.mean()) if n else math.nan, "b_mean": float(y.mean()) if n else math.nan,
            "a_constant": bool(n) and stats.is_constant(x), "b_constant": bool(n) and stats.is_constant(y)}


def values_sentence(a_name: str, a: Any, b_name: str, b, what: str = "accuracy", scale: float = 100.0,
                    digits: int = 1, unit: str = " points", adjusted: float | None = None) -> str:
    """:func:`compare_values` as a sentence, every number formatted (never "nan"):
    "DSGD's accuracy was lower than FFT's: -12.6 points on average over the 10 shared seeds
    (95 % CI -21.4 to -3.8; Wilcoxon p = 0.0156, significant at the 5 % level)."; with
    ``adjusted`` (Holm, among several comparisons) the sentence shows it and follows it."""
    from dsgd import stats

    c = compare_values(a, b, adjusted=adjusted)
    holm_text = "" if adjusted is None else f", Holm-adjusted {stats.p_text(adjusted)}"
    if not c["n"]:
        return f"{a_name} and {b_name} share no seed, so their {what} is not compared seed by seed."

    def f(v: float) -> str:
        return f"{scale * v:+.{digits}f}"

    how = {"higher": f"higher than {b_name}'s", "lower": f"lower than {b_name}'s",
           "no different": f"no different from {b_name}'s"}[c["word"]]
    if c["word"] == "no different" and c["n"] >= 2 and (c["lo"] > 0 or c["hi"] < 0):
        # the exact test is not significant although every seed, or the t interval, points one way
        how = (f"not significantly different from {b_name}'s (the t interval lies "
               f"{'above' if c['lo'] > 0 else 'below'} zero, the exact Wilcoxon test is not significant)"
               if c["lo"] != c["hi"] else f"not significantly different from {b_name}'s")
    seeds = "one shared seed" if c["n"] == 1 else f"the {c['n']} shared seeds"
    if c["n"] < 2:
        interval = "one seed: no interval and no test"
    elif c["lo"] == c["hi"] == 0:
        interval = "identical on every seed: nothing to test"
    elif c["lo"] == c["hi"]:
        interval = f"the same difference on every seed; Wilcoxon {stats.p_text(c['p'])}{holm_text}"
    else:
        interval = f"95 % CI {f(c['lo'])} to {f(c['hi'])}; Wilcoxon {stats.p_text(c['p'])}{holm_text}"
    if c["n"] >= 2 and not c["lo"] == c["hi"] == 0:
        interval += ", significant at the 5 % level" if c["significant"] else ", not significant"
        if not c["significant"] and c["p_floor"] >= 0.05:
            which = (f"{c['n']} seeds" if c["n_nonzero"] == c["n"] else
                     "one seed that differs" if c["n_nonzero"] == 1 else f"{c['n_nonzero']} seeds that differ")
            interval += f"; with {which} the exact test cannot go below {stats.p_text(c['p_floor'])}"
    return f"{a_name}'s {what} was {how}: {f(c['mean'])}{unit} on average over {seeds} ({interval})."


def levene_clause(p: float, a_std: float, b_std: float, a_name: str = "DSGD", b_name: str = "FFT",
                  adjusted: float | None = None) -> str:
    """The end of a spread sentence from a Levene p-value: "DSGD's spread no different from
    FFT's (Levene p = 0.3, not significant)"; when the test is undefined (NaN: the absolute
    deviations do not vary within either group, as with two runs per group) it says so.
    ``adjusted``: the Holm-adjusted p of this test among several; the direction word then
    follows it, and both p-values are shown."""
    from dsgd import stats

    if p is None or not math.isfinite(p):
        return "Levene's test is undefined here (the deviations from each group's mean do not vary)"
    q = p if adjusted is None else adjusted
    word = "no different from" if q >= 0.05 else "smaller than" if a_std < b_std else "larger than"
    shown = f"Levene {stats.p_text(p)}" + ("" if adjusted is None else f", Holm-adjusted {stats.p_text(adjusted)}")
    return (f"{a_name}'s spread {word} {b_name}'s ({shown}, "
            + ("not significant)" if q >= 0.05 else "significant at the 5 % level)"))


def levene_p(d: Any, f: Any) -> float:
    """Levene's p (mean-centred, as :func:`dsgd.report.levene_table`) of two groups, NaN
    when a group has fewer than two runs or ended at one value (no variance test then)."""
    from scipy.stats import levene

    from dsgd import stats

    d, f = np.asarray(d, float), np.asarray(f, float)
    if len(f) < 2 or len(d) < 2 or stats.is_constant(d) or stats.is_constant(f):
        return float("nan")
    return float(levene(d, f, center="mean").pvalue)


# ------------------------------------------------------------------- explorers
def figure_explorer(draw: Any, controls: dict[str, Any]) -> Any:
    """An ipywidgets explorer: ``controls`` (name -> widget) above an ``Image`` of the
    figure ``draw(**values)`` returns, redrawn whenever a control changes.

    Why not ``ipywidgets.interact``: its Output widget captures the plot through
    ``clear_output(wait=True)``, and executing such a cell non-interactively (papermill /
    nbclient) deadlocks now and then (nbclient issue #312, nbconvert #1921). An Image widget
    needs no output capture: the executed page embeds the first figure in the widget state,
    and in Jupyter or Colab the controls redraw it."""
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def png() -> bytes:
        fig = draw(**{k: w.value for k, w in controls.items()})
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    image = widgets.Image(value=png(), format="png")

    def redraw(_change: Any = None) -> None:
        image.value = png()

    for w in controls.values():
        w.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox(list(controls.values())), image])


def spread_sentence(label: str, d: Any, f: Any, adjusted: float | None = None) -> str:
    """"<label>: std DSGD x, FFT y points, <Levene clause>" for two groups of accuracies in
    points; no variance test when a group ended at one value, and says why. ``adjusted``:
    the Holm-adjusted p when the chapter runs this test for several settings."""
    from dsgd import stats

    d, f = np.asarray(d, float), np.asarray(f, float)
    if len(f) < 2 or len(d) < 2:
        return f"{label}: fewer than two runs, no spread"
    text = f"{label}: std DSGD {d.std(ddof=1):.1f}, FFT {f.std(ddof=1):.1f} points"
    flat = [m for m, x in (("DSGD", d), ("FFT", f)) if stats.is_constant(x)]
    if flat:
        return text + f" (no variance test: every {flat[0]} run ended at one accuracy)"
    return text + ", " + levene_clause(levene_p(d, f), d.std(ddof=1), f.std(ddof=1), adjusted=adjusted)


# ------------------------------------------------------------------- recorded searches
_SEARCH_FIELDS = ("task", "task_kwargs", "model", "model_kwargs", "method", "method_kwargs", "lr",
                  "batch_size", "grad_accum", "epochs", "eval_size", "max_steps")
_FIELD_NAMES = {"lr": "learning rate", "batch_size": "batch", "epochs": "epochs", "method": "method",
                "task": "task", "eval_size": "test images", "grad_accum": "accumulation"}


def _field_text(field: str, value: Any) -> str:
    """A config field's value in words: ``lr 0.0001`` -> "learning rate 0.0001"; task options
    flattened ("imbalance_ratio 100, n_max 130"; multitask ``per_task`` options as
    "bbc_news: train_size 200")."""
    def kv(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(d.items()))

    if field == "task_kwargs":
        value = dict(value or {})
        per_task = value.pop("per_task", None) or {}
        parts = ([kv(value)] if value else []) + [f"{t}: {kv(o)}" for t, o in sorted(per_task.items())]
        return "; ".join(parts) or "no task options"
    if isinstance(value, float):
        return f"{_FIELD_NAMES.get(field, field)} {value:g}"
    return f"{_FIELD_NAMES.get(field, field)} {value}"


def search_frame(records: Sequence[dict[str, Any]], task: str | None = None) -> pd.DataFrame:
    """One row per run of a recorded search: ``candidate`` (what the run's config changes
    from the reference: for every field the value most runs share, so the reference is
    the setting each candidate departs from), ``seed, accuracy, verdict, failed``.
    ``task``: for multitask records (:mod:`dsgd.multitask`), read that task's accuracy and
    verdict from the record's ``per_task`` instead of the overall ones."""
    import json
    from collections import Counter

    if not records:
        return pd.DataFrame(columns=["candidate", "seed", "accuracy", "verdict", "failed"])
    key = {f: (lambda c, f=f: json.dumps(c.get(f), sort_keys=True)) for f in _SEARCH_FIELDS}
    ref = {f: Counter(key[f](r["config"]) for r in records).most_common(1)[0][0] for f in _SEARCH_FIELDS}
    from dsgd.diagnostics import failure_kind

    rows = []
    for r in records:
        c = r["config"]
        diffs = [_field_text(f, c.get(f)) for f in _SEARCH_FIELDS if key[f](c) != ref[f]]
        res = (r.get("per_task") or {}).get(task, {}) if task else {**(r.get("metrics") or {}), "verdict": r.get("verdict")}
        rows.append({"candidate": "; ".join(diffs) or "reference", "seed": c["seed"],
                     "accuracy": res.get("accuracy"), "verdict": res.get("verdict"),
                     "failed": failure_kind(res.get("verdict")) is not None})
    return pd.DataFrame(rows)


def search_table(frame: pd.DataFrame, target: float = 1.5, scale: float = 100.0,
                 lead: str = "spread") -> pd.DataFrame:
    """Per candidate (reference first, then in the order run): seeds, the accuracies (points),
    mean, seed STD, failed runs, and ``lead``: with ``lead="spread"`` the STD reaches
    ``target`` or a run failed; with ``lead="mixed"`` at least one run failed and one
    succeeded (a setting in which the seed decides the outcome)."""
    if lead not in ("spread", "mixed"):
        raise ValueError(f"lead must be 'spread' or 'mixed', got {lead!r}")
    rows = []
    cands = list(dict.fromkeys(frame["candidate"]))
    cands = [c for c in cands if c == "reference"] + [c for c in cands if c != "reference"]
    for c in cands:
        sub = frame[frame["candidate"] == c].sort_values("seed")
        v = scale * sub["accuracy"].to_numpy(float)
        std = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
        n_failed = int(sub["failed"].sum())
        rows.append({"candidate": c, "seeds": int(v.size), "accuracy per seed": ", ".join(f"{x:.1f}" for x in v),
                     "mean": float(v.mean()), "std": std, "failed": n_failed,
                     "lead": bool((std >= target) or n_failed > 0) if lead == "spread"
                     else bool(0 < n_failed < v.size)})
    return pd.DataFrame(rows).set_index("candidate")
