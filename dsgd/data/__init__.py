"""Task data: offline tasks from registry packages, the paper's hub tasks, imbalanced images,
and your own data (:mod:`dsgd.data.custom`: ``"csv:PATH"``, ``"jsonl:PATH"``,
``"bigbench:TASK"``, :func:`register_frame`).

Every loader is reached by name through :func:`load_task`, which returns a
:class:`TaskData` holding tokenised (or image) train/eval splits with a stable split seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class TaskData:
    """Train/eval splits of a classification task, ready for a model.

    ``train`` / ``eval``: lists of feature dicts (``input_ids``, ``attention_mask``,
    optionally ``token_type_ids`` — or ``pixel_values``) each with an int ``labels``;
    a collator pads them (see :func:`dsgd.data.collate`). ``texts_eval`` keeps the raw
    eval inputs for inspection. ``metric``: "accuracy" (default), "mcc" or "f1".
    """

    name: str
    num_labels: int
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    label_names: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    kind: str = "text"  # "text" or "image"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_labels(self) -> np.ndarray:
        if hasattr(self.eval, "labels"):  # lazily transformed image sets
            return np.asarray(self.eval.labels, dtype=int)
        return np.array([int(x["labels"]) for x in self.eval])

    @property
    def train_labels(self) -> np.ndarray:
        if hasattr(self.train, "labels"):  # lazily transformed image sets
            return np.asarray(self.train.labels, dtype=int)
        return np.array([int(x["labels"]) for x in self.train])

    @property
    def majority_rate(self) -> float:
        """Accuracy of always predicting the eval split's most frequent class."""
        y = self.eval_labels
        return float(np.bincount(y, minlength=self.num_labels).max() / len(y))


class TaskRegistry(dict):
    """name -> loader(tokenizer, *, max_length, train_size, eval_size, split_seed, **kw).

    Iterating, ``len`` and ``sorted(TASKS)`` see the registered tasks only; ``name in
    TASKS`` is also true for an own-data name (``"csv:FILE"``, ``"jsonl:FILE"``,
    ``"bigbench:TASK"``, a frame given to :func:`register_frame`), so code that asks
    whether a task name is known accepts those. It only looks at the name (no file is
    read); :func:`check_task` runs the full checks.
    """

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        if not isinstance(name, str):
            return False
        from dsgd.data.custom import is_custom_name

        return is_custom_name(name)


TASKS: dict[str, Callable[..., TaskData]] = TaskRegistry()


def register_task(name: str) -> Callable[[Callable[..., TaskData]], Callable[..., TaskData]]:
    def deco(fn: Callable[..., TaskData]) -> Callable[..., TaskData]:
        TASKS[name] = fn
        return fn

    return deco


def load_task(name: str, tokenizer: Any = None, **kw: Any) -> TaskData:
    """Load a task by name: a registered one (see ``TASKS``) or own data
    (``"csv:PATH"``, ``"jsonl:PATH"``, ``"bigbench:TASK"``, a name given to
    :func:`register_frame`; see :mod:`dsgd.data.custom`). ``class_balance="downsample"``
    makes any task class-balanced (:mod:`dsgd.data.balance`). In smoke mode
    (``DSGD_SMOKE=1``) a hub source is replaced offline (:func:`dsgd.smoke.substitute_task_kwargs`)."""
    loader = task_loader(name)
    from dsgd import smoke

    if smoke.active():
        kw = smoke.substitute_task_kwargs(name, kw)
    from dsgd.data.balance import balance_classes, split_balance

    kw, balance = split_balance(kw)  # task_kwargs={"class_balance": "downsample"}
    if balance is None:
        return loader(tokenizer, **kw)
    train_size = kw.pop("train_size", None)
    return balance_classes(loader(tokenizer, train_size=None, **kw), train_size, task=name)


def task_loader(name: str) -> Callable[..., TaskData]:
    """The loader behind a task name; ``ValueError`` for a name that is none."""
    _import_builtin_loaders()
    if dict.__contains__(TASKS, name):
        return TASKS[name]
    from dsgd.data.custom import custom_loader

    fn = custom_loader(name)
    if fn is None:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}, or your own data "
                         "as 'csv:PATH', 'jsonl:PATH', 'bigbench:TASK' or a name registered with "
                         "dsgd.data.register_frame")
    return fn


def check_task(name: str, *, train_size: int | None = None, eval_size: int | None = None,
               split_seed: int = 0, **task_kwargs: Any) -> None:
    """Check a task name and, for own data, every property of its rows and split, without
    a tokenizer or model: a ``ValueError`` (or ``FileNotFoundError``) that says what to fix.
    Meant for checking a sweep's configs before any of them runs."""
    task_loader(name)
    from dsgd.data.balance import split_balance
    from dsgd.data.custom import describe_task as describe, is_custom_name

    task_kwargs, _ = split_balance(task_kwargs)

    if is_custom_name(name):
        describe(name, train_size=train_size, eval_size=eval_size, split_seed=split_seed, **task_kwargs)


def register_frame(name: str, df: Any, **kw: Any) -> str:
    """Make a pandas DataFrame a task named ``name`` (:func:`dsgd.data.custom.register_frame`)."""
    from dsgd.data.custom import register_frame as fn

    return fn(name, df, **kw)


def register_dataset(name: str, dataset: Any, **kw: Any) -> str:
    """Make a ``datasets.Dataset`` a task named ``name`` (:func:`dsgd.data.custom.register_dataset`)."""
    from dsgd.data.custom import register_dataset as fn

    return fn(name, dataset, **kw)


def save_frame(df: Any, path: Any, **kw: Any) -> dict[str, Any]:
    """Write a DataFrame to CSV/JSONL; the config fields naming it (:func:`dsgd.data.custom.save_frame`)."""
    from dsgd.data.custom import save_frame as fn

    return fn(df, path, **kw)


def describe_task(name: str, **kw: Any) -> dict[str, Any]:
    """Check an own-data task without a tokenizer; its split (:func:`dsgd.data.custom.describe_task`)."""
    from dsgd.data.custom import describe_task as fn

    return fn(name, **kw)


def _import_builtin_loaders() -> None:
    """Import the modules that register the built-in tasks (they may not all exist yet)."""
    import importlib

    for mod in ("dsgd.data.offline", "dsgd.data.hub", "dsgd.data.synthetic", "dsgd.data.vision"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


# Token-level keys padded by :func:`collate` and the value each is padded with
# (``None``: the tokenizer's pad id).
_PAD_VALUES: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}


def collate(features: list[dict[str, Any]], pad_token_id: int = 0) -> dict[str, Any]:
    """Stack a list of feature dicts into a batch of tensors, padding to the longest.

    Token keys (``input_ids``, ``attention_mask``, ``token_type_ids``) are right-padded to
    the batch's longest sequence (``input_ids`` with ``pad_token_id``, the others with 0);
    ``labels`` become a long tensor; ``pixel_values`` (and any other array-like key) are
    stacked as they are. Use ``functools.partial(collate, pad_token_id=tok.pad_token_id)``
    as a DataLoader ``collate_fn``.
    """
    import torch

    if not features:
        raise ValueError("collate() got an empty batch")
    batch: dict[str, Any] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if key == "labels":
            batch[key] = torch.as_tensor([int(v) for v in values], dtype=torch.long)
        elif key in _PAD_VALUES:
            pad = pad_token_id if _PAD_VALUES[key] is None else _PAD_VALUES[key]
            longest = max(len(v) for v in values)
            out = torch.full((len(values), longest), int(pad), dtype=torch.long)
            for i, v in enumerate(values):
                out[i, : len(v)] = torch.as_tensor(list(v), dtype=torch.long)
            batch[key] = out
        else:
            batch[key] = torch.stack([torch.as_tensor(v) for v in values])
    return batch
