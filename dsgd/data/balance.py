"""Class-balanced versions of any task: ``task_kwargs={"class_balance": "downsample"}``.

Why: the resting-point argument of the book's verdict chapter (:mod:`dsgd.theory.resting`)
predicts that DSGD's harm on the majority-class plateau vanishes when the classes are
balanced (the threshold ``(1 - pi) / pi`` is then 1, so FFT and DSGD rest at the same
point). Testing that on a *different* task mixes two changes (the task and its balance);
downsampling the same task isolates the balance.

What it computes: the task is loaded with its usual split (same held-out examples, same
shuffled order), and the training pool is all the non-held-out examples. The training split
keeps the first ``train_size // K`` examples of each of the K classes in that order (so
``train_size`` stays the number of training examples and the step budget is unchanged);
the held-out split keeps the first ``m`` examples of each class, ``m`` its rarest class's
count, so its majority rate is ``1 / K``. Order within each split is the loader's order.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

BALANCE_KEY = "class_balance"
BALANCE_MODES = ("downsample",)


def split_balance(task_kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``(task_kwargs without the balance key, mode or None)``; a ``ValueError`` for an
    unknown mode, raised before anything is loaded."""
    rest = {k: v for k, v in task_kwargs.items() if k != BALANCE_KEY}
    mode = task_kwargs.get(BALANCE_KEY)
    if mode is None:
        return rest, None
    if mode not in BALANCE_MODES:
        raise ValueError(f"task_kwargs['{BALANCE_KEY}'] must be one of {list(BALANCE_MODES)} "
                         f"(or left out), got {mode!r}")
    return rest, str(mode)


def first_per_class(labels: np.ndarray, n_per: int, num_labels: int) -> np.ndarray:
    """Sorted indices of the first ``n_per`` positions of each class 0..num_labels-1."""
    labels = np.asarray(labels, dtype=int)
    picks = [np.flatnonzero(labels == c)[:n_per] for c in range(num_labels)]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=int)


def balance_classes(data: Any, train_size: int | None, *, task: str = "") -> Any:
    """A copy of the :class:`dsgd.data.TaskData` ``data`` with equal class counts in both
    splits (see the module docstring). ``train_size=None`` keeps as many training
    examples as the rarest class allows. A ``ValueError`` says what to change when a
    class is too rare or ``train_size`` is not a multiple of the number of classes."""
    from dsgd.ensembles import Resampled

    K = int(data.num_labels)
    name = task or getattr(data, "name", "task")
    tr = np.bincount(np.asarray(data.train_labels, dtype=int), minlength=K)
    ev = np.bincount(np.asarray(data.eval_labels, dtype=int), minlength=K)
    if tr.min() == 0 or ev.min() == 0:
        raise ValueError(f"{name}: class_balance needs every class in both splits; training counts "
                         f"{tr.tolist()}, held-out counts {ev.tolist()}")
    if train_size is None:
        n_per = int(tr.min())
    else:
        if int(train_size) % K:
            raise ValueError(f"{name}: class_balance needs train_size to be a multiple of the "
                             f"{K} classes, got {train_size}")
        n_per = int(train_size) // K
        if n_per > tr.min():
            raise ValueError(f"{name}: class_balance with train_size {train_size} needs {n_per} "
                             f"training examples of each class, but the pool holds {tr.tolist()}; "
                             f"use train_size <= {K * int(tr.min())}")
    m = int(ev.min())
    i_tr = first_per_class(data.train_labels, n_per, K)
    i_ev = first_per_class(data.eval_labels, m, K)
    info = dict(getattr(data, "info", {}) or {})
    n_tr, n_ev = len(data.train), len(data.eval)
    for k, v in list(info.items()):  # per-example lists (ids, texts) follow their split
        if isinstance(v, (list, tuple)) and k.startswith("train") and len(v) == n_tr:
            info[k] = [v[int(i)] for i in i_tr]
        elif isinstance(v, (list, tuple)) and k.startswith("eval") and len(v) == n_ev:
            info[k] = [v[int(i)] for i in i_ev]
    info.update(class_balance="downsample",
                train_class_counts=[n_per] * K, eval_class_counts=[m] * K,
                pool_train_class_counts=tr.tolist(), pool_eval_class_counts=ev.tolist())

    def pick(split: Any, idx: np.ndarray) -> Any:
        return [split[int(i)] for i in idx] if isinstance(split, list) else Resampled(split, idx)

    return dataclasses.replace(data, train=pick(data.train, i_tr), eval=pick(data.eval, i_ev), info=info)
