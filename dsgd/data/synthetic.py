"""Tiny synthetic classification tasks and the tiny MLP that fits them.

They make the library's tests and the quickest demonstrations run in seconds without any
download:

* ``synthetic_blobs`` — Gaussian blobs, one per class, well separated (an *easy* task:
  every method should exceed 90% accuracy);
* ``synthetic_imbalanced`` — two overlapping blobs with an 80/20 class split (a task on
  which a run can collapse to the majority class);
* ``synthetic_tokens`` — short token sequences whose class is given by which of
  ``num_labels`` small sets of "signal" tokens they contain: an easy *text* task for the
  tiny random transformers (``tiny-bert`` ...), e.g. to test PEFT methods.

Blob examples carry a float vector under ``"features"`` and an int ``"labels"``; the
``tiny-mlp`` model (registered in :mod:`dsgd.models`) reads ``features``.
The data are drawn from ``data_seed`` (the task itself) and split into train/eval by
``split_seed``; ``train_size``/``eval_size`` choose the split sizes.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from dsgd.data import TaskData, register_task


def make_blobs(n: int, *, num_labels: int = 2, n_features: int = 16, separation: float = 3.0,
               class_weights: Sequence[float] | None = None, data_seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from ``num_labels`` unit-variance Gaussians whose means sit at distance
    ``separation`` from the origin in random directions; labels drawn with ``class_weights``."""
    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}")
    rng = np.random.default_rng(data_seed)
    means = rng.standard_normal((num_labels, n_features))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)
    w = np.ones(num_labels) if class_weights is None else np.asarray(class_weights, dtype=float)
    if w.shape != (num_labels,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"class_weights must be {num_labels} non-negative numbers, got {class_weights}")
    y = rng.choice(num_labels, size=n, p=w / w.sum())
    x = means[y] + rng.standard_normal((n, n_features))
    return x.astype(np.float32), y.astype(np.int64)


def _task(name: str, *, train_size: int | None, eval_size: int | None, split_seed: int,
          default_train: int, default_eval: int, **blob_kw: Any) -> TaskData:
    n_train = default_train if train_size is None else int(train_size)
    n_eval = default_eval if eval_size is None else int(eval_size)
    if n_train < 1 or n_eval < 1:
        raise ValueError(f"train_size and eval_size must be >= 1, got {n_train}, {n_eval}")
    x, y = make_blobs(n_train + n_eval, **blob_kw)
    order = np.random.default_rng(split_seed).permutation(len(y))
    rows = [{"features": x[i], "labels": int(y[i])} for i in order]
    k = blob_kw.get("num_labels", 2)
    return TaskData(name=name, num_labels=k, train=rows[:n_train], eval=rows[n_train:],
                    label_names=[f"class{i}" for i in range(k)], metric="accuracy",
                    kind="vector", info={"generator": "make_blobs", **blob_kw})


@register_task("synthetic_blobs")
def synthetic_blobs(tokenizer: Any = None, *, max_length: int | None = None,
                    train_size: int | None = None, eval_size: int | None = None,
                    split_seed: int = 0, num_labels: int = 2, n_features: int = 16,
                    separation: float = 3.0, data_seed: int = 0) -> TaskData:
    """Easy task: well separated blobs (Bayes accuracy about 98% with the defaults)."""
    return _task("synthetic_blobs", train_size=train_size, eval_size=eval_size,
                 split_seed=split_seed, default_train=256, default_eval=256,
                 num_labels=num_labels, n_features=n_features, separation=separation,
                 data_seed=data_seed)


@register_task("synthetic_imbalanced")
def synthetic_imbalanced(tokenizer: Any = None, *, max_length: int | None = None,
                         train_size: int | None = None, eval_size: int | None = None,
                         split_seed: int = 0, n_features: int = 16, separation: float = 1.0,
                         majority: float = 0.8, data_seed: int = 0) -> TaskData:
    """Harder binary task: overlapping blobs, ``majority`` of the examples in class 0."""
    if not 0.5 <= majority < 1.0:
        raise ValueError(f"majority must lie in [0.5, 1), got {majority}")
    return _task("synthetic_imbalanced", train_size=train_size, eval_size=eval_size,
                 split_seed=split_seed, default_train=256, default_eval=256,
                 num_labels=2, n_features=n_features, separation=separation,
                 class_weights=[majority, 1.0 - majority], data_seed=data_seed)


@register_task("synthetic_tokens")
def synthetic_tokens(tokenizer: Any = None, *, max_length: int = 32,
                     train_size: int | None = None, eval_size: int | None = None,
                     split_seed: int = 0, num_labels: int = 2, length: tuple[int, int] = (8, 16),
                     n_signal: int = 3, vocab: tuple[int, int] = (1000, 2000),
                     data_seed: int = 0) -> TaskData:
    """Token sequences ``[CLS] ... [SEP]`` of random filler ids from ``vocab`` with
    ``n_signal`` tokens drawn from the class's own set of 5 ids (outside the filler range).

    The tokenizer is only asked for its ``cls_token_id``/``sep_token_id`` (101/102 without
    one, as BERT's vocabulary).
    """
    n_train = 256 if train_size is None else int(train_size)
    n_eval = 256 if eval_size is None else int(eval_size)
    cls_id = getattr(tokenizer, "cls_token_id", None) or 101
    sep_id = getattr(tokenizer, "sep_token_id", None) or 102
    lo, hi = vocab
    signal = [list(range(hi + 5 * k, hi + 5 * k + 5)) for k in range(num_labels)]
    rng = np.random.default_rng(data_seed)
    rows = []
    for _ in range(n_train + n_eval):
        y = int(rng.integers(num_labels))
        body = list(rng.integers(lo, hi, size=int(rng.integers(length[0], length[1] + 1))))
        for tok in rng.choice(signal[y], size=n_signal):
            body.insert(int(rng.integers(len(body) + 1)), int(tok))
        ids = ([cls_id] + [int(v) for v in body] + [sep_id])[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                     "token_type_ids": [0] * len(ids), "labels": y})
    order = np.random.default_rng(split_seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    return TaskData(name="synthetic_tokens", num_labels=num_labels, train=rows[:n_train],
                    eval=rows[n_train:], label_names=[f"class{i}" for i in range(num_labels)],
                    metric="accuracy", kind="text",
                    info={"signal_ids": signal, "filler_ids": [lo, hi], "n_signal": n_signal})


class _Block(nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h + self.dropout(self.act(self.dense(h))))


class TinyMLP(nn.Module):
    """features -> Linear -> ``n_layers`` residual blocks (``self.layers``) -> ``classifier``.

    Returns an object with ``.logits`` like a Hugging Face model. The ``layers`` stack lets
    layer-wise methods (LNSR) and diagnostics treat it like a transformer.
    """

    def __init__(self, num_labels: int, n_features: int = 16, hidden: int = 32,
                 n_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features, hidden)
        self.layers = nn.ModuleList([_Block(hidden, dropout) for _ in range(n_layers)])
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, features: torch.Tensor, **_: Any) -> SimpleNamespace:
        h = self.embed(features)
        for layer in self.layers:
            h = layer(h)
        return SimpleNamespace(logits=self.classifier(h))


def tiny_mlp(num_labels: int, *, seed: int = 0, **kw: Any) -> tuple[TinyMLP, None]:
    """A :class:`TinyMLP` initialised from ``seed`` (no tokenizer)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyMLP(num_labels, **kw)
    return model, None
