"""Majority-vote ensembles built from stored per-example predictions, and bagging.

Two kinds of ensemble ENS(xN), both formed from N finished runs (nothing is retrained
here; members are taken from the result store as they are), both predicting for each
example the class most members predict:

* **seed ensemble** (``kind="seed"``, the default; rows named ``ENS(×N)`` for FFT,
  ``DSGD(×N)`` ...): N runs that differ only in their seed — same task, model, method,
  settings and the *same* training set. It averages over initialisation (the new head),
  data order and dropout, but not over the training sample. This is **not bagging**.
* **bagging** (``kind="bagging"``, rows ``BAG(×N)``, ``DSGD-BAG(×N)`` ...): N runs each
  trained on its own bootstrap resample of the training split — ``n`` draws with
  replacement from the ``n`` training examples (:func:`bootstrap_indices`), so each
  member sees about 63 % of the distinct examples, some several times. A run is trained on
  a resample when its ``task_kwargs`` hold ``"bootstrap_seed"``: an int, or ``"seed"``
  for the run's own seed (so that a sweep over seeds gives every member its own
  resample); the engine resamples after loading the task (:func:`bootstrap_train`) and
  the key is not passed to the task loader. Members of a bagging ensemble share every
  result-relevant config field except the seed and the bootstrap seed, and must have
  distinct resamples. The DSGD paper calls its ensembles bagging.

Tie rule: when several classes share the most votes, the **smallest class index** wins.
It is deterministic and does not depend on the order of the members (any permutation
of the members gives the same ensemble). Odd sizes (3, 5, 7, 9) cannot tie on binary
tasks; on multi-class tasks they can.

Which members (``ensemble_table``): the first N in seed order (default), random subsets
(``n_subsets > 1``; they overlap), or all ``floor(n_runs / N)`` **disjoint** groups of N
consecutive runs in seed order (``disjoint=True``; e.g. 10 seeds give 3 disjoint ENS(×3),
2 ENS(×5) and 1 ENS(×9)), whose spread is the spread of independent ensembles.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import random
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from dsgd.config import _NON_RESULT_FIELDS

# fields that do not define the ensemble group: the seed, and those that do not change
# a run's numbers (tags, progress, ...)
_NOT_GROUPING = set(_NON_RESULT_FIELDS) | {"seed"}
BOOTSTRAP_KEY = "bootstrap_seed"
KINDS = ("seed", "bagging")


# ------------------------------------------------------------------ bootstrap resampling
def bootstrap_indices(n: int, seed: int) -> np.ndarray:
    """``n`` indices drawn uniformly with replacement from ``range(n)``
    (``numpy.random.default_rng(seed)``)."""
    if n < 1:
        raise ValueError(f"cannot resample an empty training split (n={n})")
    return np.random.default_rng(int(seed)).integers(0, n, size=n)


def split_bootstrap(task_kwargs: dict[str, Any], seed: int) -> tuple[dict[str, Any], int | None]:
    """``(task_kwargs without the bootstrap key, resample seed or None)``.

    ``task_kwargs["bootstrap_seed"]`` may be an int >= 0 or ``"seed"`` (use ``seed``, the
    run's seed); anything else is a ``ValueError``, raised before anything is loaded.
    """
    rest = {k: v for k, v in task_kwargs.items() if k != BOOTSTRAP_KEY}
    if BOOTSTRAP_KEY not in task_kwargs:
        return rest, None
    value = task_kwargs[BOOTSTRAP_KEY]
    if value == "seed":
        return rest, int(seed)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"task_kwargs['{BOOTSTRAP_KEY}'] must be an int >= 0 or 'seed' "
                         f"(the run's seed), got {value!r}")
    return rest, int(value)


class Resampled(collections.abc.Sequence):
    """Read-only view of ``base`` at ``indices`` (repeats allowed); keeps ``.labels`` of
    lazily transformed image sets."""

    def __init__(self, base: Sequence[Any], indices: Sequence[int]) -> None:
        self.base, self.indices = base, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        if isinstance(i, slice):
            return [self.base[j] for j in self.indices[i]]
        return self.base[self.indices[i]]

    def __iter__(self) -> Iterator[Any]:
        return (self.base[j] for j in self.indices)

    @property
    def labels(self) -> list[int]:
        if hasattr(self.base, "labels"):
            lab = np.asarray(self.base.labels)
        else:
            lab = np.array([int(self.base[j]["labels"]) for j in range(len(self.base))])
        return lab[self.indices].tolist()


def bootstrap_train(data: Any, seed: int) -> Any:
    """A copy of the :class:`dsgd.data.TaskData` ``data`` whose training split is a
    bootstrap resample (same size; the eval split unchanged). ``info`` records the
    resample seed and the number of distinct training examples drawn."""
    idx = bootstrap_indices(len(data.train), seed)
    info = dict(getattr(data, "info", {}) or {},
                bootstrap_seed=int(seed), bootstrap_distinct=int(len(set(idx.tolist()))))
    return dataclasses.replace(data, train=Resampled(data.train, idx), info=info)


def disjoint_subsets(members: Sequence[Any], n: int) -> list[list[Any]]:
    """All ``len(members) // n`` disjoint groups of ``n`` consecutive members."""
    return [list(members[i:i + n]) for i in range(0, len(members) - n + 1, n)]


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


def _resample_seed(cfg: dict[str, Any]) -> int | None:
    return split_bootstrap(dict(cfg.get("task_kwargs") or {}), int(cfg.get("seed", 0)))[1]


def _group_key(cfg: dict[str, Any], kind: str = "seed") -> str:
    import json

    key = {k: v for k, v in cfg.items() if k not in _NOT_GROUPING}
    if kind == "bagging":
        key["task_kwargs"] = {k: v for k, v in (key.get("task_kwargs") or {}).items()
                              if k != BOOTSTRAP_KEY}
    return json.dumps(key, sort_keys=True, default=str)


def ensemble_table(
    records: Iterable[dict[str, Any]],
    sizes: Sequence[int] | dict[str, Sequence[int]] = (3, 5, 7, 9),
    methods: Sequence[str] = ("fft", "dsgd"),
    labels: dict[str, str] | None = None,
    n_subsets: int = 1,
    seed: int = 0,
    kind: str = "seed",
    disjoint: bool = False,
):
    """Accuracy of majority-vote ensembles, one row per ensemble (long format).

    records: finished run records with ``predictions`` and ``labels`` (errors skipped).
    kind: ``"seed"`` (default) — members share every result-relevant config field except
      the seed (a seed ensemble, not bagging; runs trained on a resample are left out);
      ``"bagging"`` — only runs trained on a
      bootstrap resample (``task_kwargs["bootstrap_seed"]``), members sharing every field
      except the seed and the bootstrap seed; their resamples must differ.
    sizes: ensemble sizes, for every method or per method (``{"fft": (3, 5, 7, 9),
      "dsgd": (9,)}`` gives the paper's ENS(x3..9) and DSGD(x9)).
    labels: name shown per method; default ``"ENS"`` for ``fft`` and the upper-cased
      method name otherwise (bagging: ``"BAG"`` and ``"<METHOD>-BAG"``); rows are named
      ``"<label>(×N)"``.
    n_subsets: 1 (default) — one ensemble of the first N members in seed order;
      > 1 — that many random N-member subsets (``random.Random(seed)``, each subset drawn
      without replacement; distinct subsets are not enforced), giving a mean ± std over
      subsets in :func:`dsgd.report.table1`. Sizes larger than the number of members are
      skipped.
    disjoint: instead, every disjoint group of N consecutive members in seed order
      (``n_subsets`` must then be 1).

    Returns a DataFrame with columns ``task, model, method, base_method, size, seed``
    (the subset index, so the table functions treat subsets like seeds), ``members``
    (the members' seeds), ``accuracy``, ``majority_rate``, ``verdict`` (collapsed /
    failed / success, with failed = accuracy <= majority rate), ``status`` and ``kind`` —
    it can be concatenated with :meth:`dsgd.store.ResultStore.to_frame` and passed to
    :func:`dsgd.report.table1`.
    """
    import pandas as pd

    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if disjoint and n_subsets != 1:
        raise ValueError("disjoint=True takes every disjoint group; leave n_subsets at 1")
    labels = dict(labels or {})
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") == "error" or r["config"]["method"] not in methods:
            continue
        if (_resample_seed(r["config"]) is None) == (kind == "bagging"):
            continue  # seed ensembles never mix in runs trained on a resample, and vice versa
        if r.get("predictions") is None or r.get("labels") is None:
            raise ValueError(f"run {r['run_id']} has no stored predictions/labels")
        groups.setdefault(_group_key(r["config"], kind), []).append(r)

    rows = []
    rng = random.Random(seed)
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: (r["config"]["seed"], _resample_seed(r["config"]) or 0))
        cfg = members[0]["config"]
        method = cfg["method"]
        y = members[0]["labels"]
        for m in members[1:]:
            if m["labels"] != y:
                raise ValueError(
                    f"runs {members[0]['run_id']} and {m['run_id']} were evaluated on "
                    "different labels; they cannot form an ensemble")
        if kind == "bagging":
            resamples = [_resample_seed(m["config"]) for m in members]
            if len(set(resamples)) != len(resamples):
                raise ValueError(
                    f"bagging members of {method!r} share bootstrap resamples {resamples}: give each "
                    "run its own task_kwargs['bootstrap_seed'] (e.g. 'seed')")
        method_sizes = sizes.get(method, ()) if isinstance(sizes, dict) else sizes
        default = ("ENS" if method == "fft" else method.upper()) if kind == "seed" else \
            ("BAG" if method == "fft" else f"{method.upper()}-BAG")
        label = labels.get(method, default)
        maj = majority_rate(y)
        for n in method_sizes:
            if n > len(members):
                continue
            if disjoint:
                subsets = disjoint_subsets(members, n)
            elif n_subsets == 1:
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
                    "status": "ok", "kind": kind,
                })
    cols = ["task", "model", "method", "base_method", "size", "seed", "members",
            "accuracy", "majority_rate", "verdict", "status", "kind"]
    return pd.DataFrame(rows, columns=cols)

