"""Glue that more than one chapter uses: method variants of a grid, and the
"compute the grid, recompute a sample of the stored set, compare" flow of the vision and
multitask chapters.

Chapter modules may import this module and the library, never each other.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

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


def verification_sample(store: Any, k: int, seed: int) -> list[RunConfig]:
    """The configs of the ``k`` stored runs that :func:`dsgd.sweep.verify_sample` with
    ``seed`` picks (found without training: a stand-in returns the stored record)."""
    from dsgd.sweep import verify_sample

    if store is None or k <= 0 or not store.records():
        return []
    drawn = verify_sample(store, k=k, seed=seed, run_fn=lambda cfg: store.get(cfg.run_id()))
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
        last = sessions[-1]
        keys = ("started", "ended", "command", "git", "machine")
        text += "\nlast session: " + str({k: last.get(k) for k in keys if k in last})
    return text


def verify_recomputed(store: Any, k: int, seed: int,
                      recomputed: dict[str, dict[str, Any]]) -> pd.DataFrame | None:
    """:func:`dsgd.sweep.verify_sample` of the same ``k`` runs as
    :func:`verification_sample`, with the records this build recomputed as the fresh
    runs; None when there is nothing to verify."""
    from dsgd.sweep import verify_sample

    if store is None or k <= 0 or not store.records():
        return None
    return verify_sample(store, k=k, seed=seed, run_fn=lambda cfg: recomputed[cfg.run_id()])


def overlap_agreement(build: Sequence[dict[str, Any]], stored: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """``(agreeing, overlapping)``: of the build's runs whose run id the stored set also
    holds, how many reproduce the stored record (:func:`dsgd.sweep.reproduces`)."""
    from dsgd.sweep import reproduces

    by_id = {r["run_id"]: r for r in stored}
    pairs = [(by_id[r["run_id"]], r) for r in build if r["run_id"] in by_id]
    return sum(reproduces(s, b)[0] for s, b in pairs), len(pairs)


def put_verification(R: Any, verify: pd.DataFrame | None, agree: int, overlap: int) -> None:
    """Glue a verification table (passed, run ids, largest difference in points; dashes
    when there was none) and the agreement of the overlapping runs."""
    if verify is not None and len(verify):
        R.put("verify_passed", f"{int(verify['ok'].sum())} of {len(verify)}")
        R.put("verify_runs", ", ".join(verify["run_id"]))
        R.put("verify_max_diff", 100 * float(verify["diff"].max()), ".2f")
    else:
        for k in ("verify_passed", "verify_runs", "verify_max_diff"):
            R.put(k, "–")
    R.put("overlap_agree", f"{agree} of {overlap}" if overlap else "none (no overlap)")
