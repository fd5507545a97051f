"""Does a recomputed run reproduce its stored record, and if not, could the processor explain it?

* :func:`reproduces` — one run against its record: same status, same verdict, accuracy within
  half a point (:data:`VERIFY_TOLERANCE`). Every chapter's check uses it.
* :func:`processor` / :func:`same_processor` — the processor a record names (CPU model and the
  instruction set torch's kernels used, or the GPU), and whether two records share it.
* :func:`compare_pairs` / :func:`compare_runs` — a table of recomputed runs against their
  records, with the processors beside the numbers.
* :func:`mismatch_sentence` — why the runs that did not reproduce differ, in words.
* :func:`recompute_with_capability` — recompute a stored run in a fresh process whose torch
  kernels are restricted to one instruction set (``ATEN_CPU_CAPABILITY``), to measure how far
  the processor alone moves a run.

Why the processor matters: on a CPU the same seed gives the same numbers only on the same kind
of processor. PyTorch picks its kernels by instruction set (AVX-512, AVX2, none), the kernels
sum in different orders, and a long training run can amplify a last-bit difference into a
different trajectory. So a record made on another processor is not a failed reproduction when
it differs: it is not comparable. Records made before ``machine()`` named the processor (before
2026-12-02) cannot say which it was.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any, Iterable, Sequence

VERIFY_TOLERANCE = 0.005  # half a percentage point of accuracy
_FLOAT_SLACK = 1e-9  # 0.655 - 0.65 is 0.00500000000000006 in floating point

# values ATEN_CPU_CAPABILITY accepts on x86 (torch/csrc/... cpu/Utils): the kernels torch dispatches to
CAPABILITIES = ("default", "avx2", "avx512")

COLUMNS = ["run_id", "stored", "recomputed", "diff", "stored_verdict", "recomputed_verdict",
           "same_predictions", "stored_processor", "recomputed_processor", "same_processor", "ok"]


def _number(x: Any) -> float:
    """A metric as a float; ``None`` (how the engine stores NaN) and non-numbers -> NaN."""
    try:
        return math.nan if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return math.nan


def reproduces(stored: dict[str, Any], recomputed: dict[str, Any], metric: str = "accuracy",
               tolerance: float = VERIFY_TOLERANCE) -> tuple[bool, float, float, float]:
    """Whether a recomputed run reproduces its stored record: same status, same verdict
    and ``|stored - recomputed| <= tolerance`` for ``metric`` (both NaN counts as equal,
    e.g. a run that diverged twice). ``tolerance`` is compared with a 1e-9 slack, so that
    a difference of exactly half a point passes. Returns ``(ok, stored, recomputed, diff)``."""
    a = _number((stored.get("metrics") or {}).get(metric))
    b = _number((recomputed.get("metrics") or {}).get(metric))
    diff = abs(b - a)
    same_nan = math.isnan(a) and math.isnan(b)
    ok = (recomputed.get("status") == stored.get("status")
          and recomputed.get("verdict") == stored.get("verdict")
          and (diff <= tolerance + _FLOAT_SLACK or same_nan))
    return bool(ok), a, b, diff


def processor(record: dict[str, Any]) -> str | None:
    """The processor a record ran on, as ``"<CPU model> (<instruction set>)"`` for a CPU
    run or the GPU's name for a GPU run; None when the record does not say (records made
    before the CPU model and instruction set were recorded)."""
    m = record.get("machine") or {}
    if str(m.get("device", "cpu")).startswith("cuda"):
        return m.get("gpu") or None
    model, cap = m.get("cpu_model"), m.get("cpu_capability")
    if not model and not cap:
        return None
    return f"{model or 'unknown CPU'} ({cap or 'instruction set not recorded'})"


def same_processor(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """True/False when both records name their processor, None when either does not."""
    pa, pb = processor(a), processor(b)
    return None if pa is None or pb is None else pa == pb


def compare_pairs(pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]], metric: str = "accuracy",
                  tolerance: float = VERIFY_TOLERANCE):
    """``(stored, recomputed)`` record pairs as a table (columns :data:`COLUMNS`): the two
    values of ``metric``, their difference, the verdicts, whether every prediction is the
    same, both processors and whether they are the same, and :func:`reproduces`' ``ok``."""
    import pandas as pd

    rows = []
    for old, new in pairs:
        ok, a, b, diff = reproduces(old, new, metric, tolerance)
        rows.append({"run_id": new.get("run_id") or old.get("run_id"), "stored": a, "recomputed": b,
                     "diff": diff, "stored_verdict": old.get("verdict"),
                     "recomputed_verdict": new.get("verdict"),
                     "same_predictions": old.get("predictions") == new.get("predictions"),
                     "stored_processor": processor(old), "recomputed_processor": processor(new),
                     "same_processor": same_processor(old, new), "ok": bool(ok)})
    return pd.DataFrame(rows, columns=COLUMNS)


def compare_runs(stored: Iterable[dict[str, Any]], recomputed: Iterable[dict[str, Any]],
                 metric: str = "accuracy", tolerance: float = VERIFY_TOLERANCE, key: Any = None):
    """:func:`compare_pairs` of each recomputed run that has a stored twin, matched by
    ``key(record)`` (default: the run id); recomputed runs without a twin are left out."""
    key = key or (lambda r: r["run_id"])
    by_key = {key(r): r for r in stored}
    return compare_pairs(((by_key[key(r)], r) for r in recomputed if key(r) in by_key), metric, tolerance)


def _runs(n: int, one: str, many: str) -> str:
    """``"1 run that differs was"`` / ``"3 runs that differ were"``: ``one``/``many`` by count."""
    return f"{n} run{'' if n == 1 else 's'} " + (one if n == 1 else many)


def mismatch_counts(table: Any) -> dict[str, int]:
    """Runs of a :func:`compare_pairs` table that did not reproduce, by processor:
    ``other`` (stored on another one), ``unknown`` (the record does not say), ``same``."""
    if table is None or len(table) == 0:
        return {"other": 0, "unknown": 0, "same": 0}
    flag = table.loc[~table["ok"].astype(bool), "same_processor"]
    return {"other": int((flag == False).sum()), "unknown": int(flag.isna().sum()),  # noqa: E712
            "same": int((flag == True).sum())}  # noqa: E712


def mismatch_phrase(table: Any) -> str:
    """:func:`mismatch_counts` in a few words for a table cell, e.g. "3 stored on another
    processor, 1 on one not recorded"; "" when every run reproduced."""
    c = mismatch_counts(table)
    parts = ([f"{c['other']} stored on another processor"] if c["other"] else []) + \
            ([f"{c['unknown']} on a processor not recorded"] if c["unknown"] else []) + \
            ([f"{c['same']} on the same processor"] if c["same"] else [])
    return ", ".join(parts)


def mismatch_sentence(table: Any) -> str:
    """Why the rows of a :func:`compare_pairs` table that did not reproduce differ, in
    one or two sentences ("" when every row reproduced): how many were stored on another
    processor, how many on one their record does not name, and — the case that would be a
    real reproducibility failure — how many differ on the same processor."""
    if table is None or len(table) == 0:
        return ""
    bad = table[~table["ok"].astype(bool)]
    if bad.empty:
        return ""
    flag = bad["same_processor"]
    same, other, unknown = bad[flag == True], bad[flag == False], bad[flag.isna()]  # noqa: E712
    names = lambda col: ", ".join(sorted({str(p) for p in col}))  # noqa: E731
    parts = []
    if len(other):
        parts.append(_runs(len(other), "that differs was", "that differ were")
                     + f" stored on another processor ({names(other['stored_processor'])}; this computation: "
                     f"{names(other['recomputed_processor'])})")
    if len(unknown):
        parts.append(_runs(len(unknown), "that differs has a record that does not name its processor",
                           "that differ have records that do not name their processor")
                     + " (made before records named it)")
    text = ""
    if parts:
        text = ("; ".join(parts) + ". PyTorch's CPU kernels depend on the instruction set, so such runs "
                "are not comparable number for number: a different processor can move a run as far as a "
                "different seed does.")
    if len(same):
        text += (" " + _runs(len(same), "differs on the same processor as its record",
                             "differ on the same processor as their records")
                 + f" ({names(same['stored_processor'])}): that is a failure to reproduce, not a difference "
                 "of hardware.")
    return text.strip()


_CHILD = r"""
import json, sys, torch
from dsgd.config import RunConfig
from dsgd.engine import train_run
torch.set_num_threads(int(sys.argv[2]))
rec = train_run(RunConfig.from_dict(json.loads(sys.argv[1])))
print("\n" + json.dumps({k: rec.get(k) for k in ("run_id", "status", "verdict", "metrics", "machine")}))
"""


def recompute_with_capability(config: dict[str, Any], capability: str, threads: int = 1,
                              timeout: float | None = None) -> dict[str, Any]:
    """Train ``config`` (a :class:`~dsgd.config.RunConfig` as a dict) in a fresh Python
    process with ``ATEN_CPU_CAPABILITY=capability`` (one of :data:`CAPABILITIES`; torch
    reads it once, at start-up, hence the process) and return the run's status, verdict,
    metrics and machine. A capability the processor lacks falls back to the best it has;
    the returned ``machine["cpu_capability"]`` says which was used."""
    if capability not in CAPABILITIES:
        raise ValueError(f"capability must be one of {CAPABILITIES}, got {capability!r}")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(config), str(threads)], env=env,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"recomputing {config.get('task')}/{config.get('method')} seed "
                           f"{config.get('seed')} with {capability} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def capability_rows(records: Sequence[dict[str, Any]], capabilities: Sequence[str] = CAPABILITIES,
                    threads: int = 1, progress: bool = False) -> list[dict[str, Any]]:
    """Each stored record recomputed under each instruction set: one row per (run,
    capability) with the stored and recomputed accuracy and verdict and the processor."""
    from tqdm.auto import tqdm

    rows = []
    jobs = [(r, c) for r in records for c in capabilities]
    for rec, cap in tqdm(jobs, disable=not progress, desc="recompute"):
        new = recompute_with_capability(rec["config"], cap, threads)
        cfg = rec["config"]
        rows.append({"run_id": rec["run_id"], "task": cfg.get("task"), "method": cfg.get("method"),
                     "seed": cfg.get("seed"), "task_kwargs": cfg.get("task_kwargs") or {},
                     "stored_accuracy": _number((rec.get("metrics") or {}).get("accuracy")),
                     "stored_verdict": rec.get("verdict"), "stored_session": rec.get("session"),
                     "stored_processor": processor(rec), "requested": cap,
                     "capability": (new.get("machine") or {}).get("cpu_capability"),
                     "cpu_model": (new.get("machine") or {}).get("cpu_model"),
                     "accuracy": _number((new.get("metrics") or {}).get("accuracy")),
                     "verdict": new.get("verdict")})
    return rows


def capability_table(rows: Sequence[dict[str, Any]]):
    """The rows of :func:`capability_rows` as one line per run: the stored accuracy, the
    accuracy under each instruction set (columns named by the capability that ran), their
    range (``spread``: largest minus smallest recomputed), their standard deviation
    (``sd``, ddof 1) and whether any recomputation
    reproduces the stored value within :data:`VERIFY_TOLERANCE` (``stored_matched``)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    keys = ["run_id", "task", "method", "seed", "stored_accuracy"]
    wide = df.pivot_table(index=keys, columns="capability", values="accuracy", aggfunc="first").reset_index()
    wide.columns.name = None
    caps = [c for c in wide.columns if c not in keys]
    wide["spread"] = wide[caps].max(axis=1) - wide[caps].min(axis=1)
    wide["sd"] = wide[caps].std(axis=1, ddof=1)
    wide["stored_matched"] = wide[caps].sub(wide["stored_accuracy"], axis=0).abs().min(axis=1) \
        <= VERIFY_TOLERANCE + _FLOAT_SLACK
    return wide
