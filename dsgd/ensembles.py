"""Majority-vote ensembles built from stored per-example predictions.

An ensemble ENS(xN) here is N finished runs that differ only in their seed (same task,
model, method and settings); its prediction for an example is the class most members
predict. Nothing is retrained: members are taken from the result store as they are
(bagging on bootstrap resamples, if wanted, is a training-time option of the runs).

Tie rule: when several classes share the most votes, the **smallest class index** wins.
It is deterministic and does not depend on the order of the members (any permutation
of the members gives the same ensemble). Odd sizes (3, 5, 7, 9) cannot tie on binary
tasks; on multi-class tasks they can.
"""
from __future__ import annotations

import random
from typing import Any, Iterable, Sequence

import numpy as np

from dsgd.config import _NON_RESULT_FIELDS

# fields that do not define the ensemble group: the seed, and those that do not change
# a run's numbers (tags, progress, ...)
_NOT_GROUPING = set(_NON_RESULT_FIELDS) | {"seed"}


def ensemble_predictions(predictions: Sequence[Sequence[int]] | np.ndarray,
                         num_labels: int | None = None) -> np.ndarray:
    """Majority vote over members: ``(n_members, n_examples)`` ints -> ``(n_examples,)``.

    Ties go to the smallest class index (see the module docstring). ``num_labels``
    (default: the largest prediction + 1) only validates the class range.
    """
    p = np.asarray(predictions)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(
            f"predictions must be a non-empty list of equally long prediction lists "
            f"(n_members, n_examples); got shape {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        if not np.all(np.equal(np.mod(p, 1), 0)):
            raise ValueError("predictions must be integer class indices")
        p = p.astype(np.int64)
    k = int(p.max()) + 1 if p.size else 0
    if num_labels is not None:
        if p.size and (p.max() >= num_labels):
            raise ValueError(f"a prediction {int(p.max())} is >= num_labels={num_labels}")
        k = num_labels
    if p.size and p.min() < 0:
        raise ValueError("predictions must be non-negative class indices")
    votes = np.zeros((k, p.shape[1]), dtype=np.int64)
    for c in range(k):
        votes[c] = (p == c).sum(axis=0)
    return votes.argmax(axis=0)  # argmax returns the first (smallest) index on ties


def accuracy(pred: Sequence[int], labels: Sequence[int]) -> float:
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {labels.shape[0]} labels")
    return float((pred == labels).mean())


def majority_rate(labels: Sequence[int]) -> float:
    """Accuracy of always predicting the most frequent label."""
    labels = np.asarray(labels)
    return float(np.bincount(labels).max() / labels.size)


def _group_key(cfg: dict[str, Any]) -> str:
    import json

    return json.dumps({k: v for k, v in cfg.items() if k not in _NOT_GROUPING},
                      sort_keys=True, default=str)


def ensemble_table(
    records: Iterable[dict[str, Any]],
    sizes: Sequence[int] | dict[str, Sequence[int]] = (3, 5, 7, 9),
    methods: Sequence[str] = ("fft", "dsgd"),
    labels: dict[str, str] | None = None,
    n_subsets: int = 1,
    seed: int = 0,
):
    """Accuracy of majority-vote ensembles, one row per ensemble (long format).

    records: finished run records with ``predictions`` and ``labels`` (errors skipped).
    Members of one ensemble share every result-relevant config field except the seed.
    sizes: ensemble sizes, for every method or per method (``{"fft": (3, 5, 7, 9),
      "dsgd": (9,)}`` gives the paper's ENS(x3..9) and DSGD(x9)).
    labels: name shown per method; default ``"ENS"`` for ``fft`` and the upper-cased
      method name otherwise; rows are named ``"<label>(×N)"``.
    n_subsets: 1 (default) — one ensemble of the first N members in seed order;
      > 1 — that many random N-member subsets (``random.Random(seed)``, each subset drawn
      without replacement; distinct subsets are not enforced), giving a mean ± std over
      subsets in :func:`dsgd.report.table1`. Sizes larger than the number of members are
      skipped.

    Returns a DataFrame with columns ``task, model, method, base_method, size, seed``
    (the subset index, so the table functions treat subsets like seeds), ``members``,
    ``accuracy``, ``majority_rate``, ``verdict`` (collapsed / failed / success, with
    failed = accuracy <= majority rate) — it can be concatenated with
    :meth:`dsgd.store.ResultStore.to_frame` and passed to :func:`dsgd.report.table1`.
    """
    import pandas as pd

    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    labels = dict(labels or {})
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") == "error" or r["config"]["method"] not in methods:
            continue
        if r.get("predictions") is None or r.get("labels") is None:
            raise ValueError(f"run {r['run_id']} has no stored predictions/labels")
        groups.setdefault(_group_key(r["config"]), []).append(r)

    rows = []
    rng = random.Random(seed)
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: r["config"]["seed"])
        cfg = members[0]["config"]
        method = cfg["method"]
        y = members[0]["labels"]
        for m in members[1:]:
            if m["labels"] != y:
                raise ValueError(
                    f"runs {members[0]['run_id']} and {m['run_id']} were evaluated on "
                    "different labels; they cannot form an ensemble")
        method_sizes = sizes.get(method, ()) if isinstance(sizes, dict) else sizes
        label = labels.get(method, "ENS" if method == "fft" else method.upper())
        maj = majority_rate(y)
        for n in method_sizes:
            if n > len(members):
                continue
            if n_subsets == 1:
                subsets = [members[:n]]
            else:
                subsets = [rng.sample(members, n) for _ in range(n_subsets)]
            for i, sub in enumerate(subsets):
                pred = ensemble_predictions([m["predictions"] for m in sub])
                acc = accuracy(pred, y)
                verdict = ("collapsed" if len(set(pred.tolist())) == 1
                           else "failed" if acc <= maj + 1e-12 else "success")
                rows.append({
                    "task": cfg["task"], "model": cfg["model"], "method": f"{label}(×{n})",
                    "base_method": method, "size": n, "seed": i,
                    "members": [m["config"]["seed"] for m in sub],
                    "accuracy": acc, "majority_rate": maj, "verdict": verdict,
                    "status": "ok",
                })
    cols = ["task", "model", "method", "base_method", "size", "seed", "members",
            "accuracy", "majority_rate", "verdict", "status"]
    return pd.DataFrame(rows, columns=cols)

