"""Multitask fine-tuning: one shared backbone, one classification head per task.

The paper's multitask experiment (its Table 6) trains RoBERTa-large on the union of two
GLUE tasks' training sets, with a task-specific head for each task, and evaluates each
task on its own validation set. This module builds that setting on top of the ordinary
training engine (:func:`dsgd.engine.train_run`); it adds no training loop of its own.

How a multitask run is put together
-----------------------------------
* **Task name.** ``RunConfig(task="mrpc+rte", ...)``: the tasks joined by ``+``. Every
  other field means what it means for one task; ``train_size`` / ``eval_size`` apply to
  *each* task. ``task_kwargs`` are passed to every task's loader, except the key
  ``per_task`` (``{"rte": {...}}``) whose entries go to that task only.
* **Labels in blocks.** Task ``k`` with ``n_k`` classes owns the global classes
  ``offset_k .. offset_k + n_k - 1``; the union has ``N = sum_k n_k`` classes. So a
  stored label says which task an example belongs to, and per-task metrics can be read
  off any stored record.
* **Heads.** The backbone's own classification head is replaced by :class:`TaskHeads`:
  one freshly initialised copy of that head per task (a linear layer for BERT/MiniLM and
  ViT, the dense-tanh-linear head for RoBERTa). An example of task ``k`` goes through
  head ``k`` only; its logit row is head ``k``'s output in block ``k`` and the constant
  :data:`FILL` (-10,000) elsewhere. Softmax, cross-entropy and ``argmax`` over that row
  equal those over head ``k``'s own logits (``exp(-10^4)`` is 0 in floating point), and
  no gradient reaches another task's head. The task of each example travels in the batch
  as ``task_id``; a forward pre-hook hands it to the heads.
* **Batches: mixed.** The engine shuffles the union each epoch, so a mini-batch holds
  examples of several tasks, roughly in proportion to the tasks' training-set sizes.
  (The alternative, task-homogeneous batches, would need a different sampler in the
  engine; the paper does not say which it used.)
* **DSGD per task.** Whether an example is "correct" is decided by its own task's head
  (the argmax within its block), so the batch's split into wrongly (W) and correctly (C)
  classified examples is the union of the per-task splits. ``gamma_t`` comes from the
  run's schedule on the joint step counter ``t / T``; because every epoch visits every
  task's examples in a random order, each task's own progress fraction equals ``t / T``,
  so a per-task schedule would give the same ``gamma_t``. The update is
  ``(1/m) sum_k (G_W^k + gamma_t G_C^k)`` over the tasks ``k`` present in the batch.
* **Baselines adapted the same way.** Every method of :mod:`dsgd.methods` runs
  unchanged on the multi-head model: focal loss and PCGrad use the same per-task
  correctness (PCGrad's two groups are W and C over the whole mixed batch), LNSR
  regularises the top layers of the shared backbone, NoisyTune perturbs the backbone and
  the heads, SWA averages everything.

Entry point: :func:`train_run` (``RunConfig -> record``) has the signature of
:func:`dsgd.engine.train_run`, so sweeps use it with ``run_fn="dsgd.multitask:train_run"``
(``dsgd sweep PARAMS --run-fn dsgd.multitask:train_run``). Its record is the engine's
(overall metrics over the union) plus ``tasks`` (the label blocks) and ``per_task``
(accuracy, MCC, majority rate and verdict of each task). :func:`multitask_frame` turns
records into one row per (run, task). The multitask chapter's grid and its Table-6 layout
are in :mod:`dsgd.chapters.multitask`.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from dsgd.config import RunConfig

FILL = -1.0e4  # logit of the classes that belong to other tasks
HEAD_ATTRS = ("classifier", "score", "net._fc")  # where models keep their output head
BATCHES = "mixed"  # documented choice: batches are drawn from the shuffled union


# ============================================================================= names
def parse_tasks(name: str) -> list[str]:
    """``"mrpc+rte"`` -> ``["mrpc", "rte"]`` (at least two distinct tasks)."""
    tasks = [t.strip() for t in str(name).split("+")]
    if len(tasks) < 2 or any(not t for t in tasks):
        raise ValueError(f"a multitask task name joins two or more task names with '+', e.g. "
                         f"'mrpc+rte'; got {name!r}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task {name!r} lists a task twice")
    return tasks


def task_name(tasks: Sequence[str]) -> str:
    return "+".join(parse_tasks("+".join(tasks)))


# ============================================================================= data
def block_offsets(num_labels: Sequence[int]) -> list[int]:
    """Start of each task's label block: ``[0, n_0, n_0 + n_1, ...]`` (without the total)."""
    out, acc = [], 0
    for n in num_labels:
        if int(n) < 1:
            raise ValueError(f"every task needs at least one class, got {list(num_labels)}")
        out.append(acc)
        acc += int(n)
    return out


def task_of_label(labels: Sequence[int], num_labels: Sequence[int]) -> np.ndarray:
    """Index of the task whose label block holds each global label."""
    ends = np.cumsum([int(n) for n in num_labels])
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= ends[-1]):
        raise ValueError(f"global labels must lie in [0, {ends[-1]}), got [{y.min()}, {y.max()}]")
    return np.searchsorted(ends, y, side="right")


def _rows(split: Sequence[dict[str, Any]], offset: int, k: int) -> list[dict[str, Any]]:
    out = []
    for r in split:  # image sets compute their features on access: read each row once
        row = dict(r)
        row["labels"] = int(row["labels"]) + offset
        row["task_id"] = k
        out.append(row)
    return out


def load_multitask(tasks: Sequence[str], tokenizer: Any = None, *, max_length: int = 128,
                   train_size: int | None = None, eval_size: int | None = None,
                   split_seed: int = 0, per_task: dict[str, dict[str, Any]] | None = None,
                   **common: Any):
    """The union of several tasks as one :class:`dsgd.data.TaskData` with label blocks.

    Each task is loaded with :func:`dsgd.data.load_task` (``train_size`` / ``eval_size``
    per task, the same ``split_seed``); ``common`` keywords go to every task, ``per_task``
    entries to one (and may override ``max_length``, ``train_size`` or ``eval_size``).
    Rows keep their features, get ``labels`` shifted into the task's block and an int
    ``task_id``. ``info["tasks"]`` describes the blocks (name, num_labels,
    offset, label_names, n_train, n_eval, majority_rate, metric).
    """
    from dsgd.data import TaskData, load_task

    tasks = parse_tasks("+".join(tasks))
    per_task = dict(per_task or {})
    unknown = sorted(set(per_task) - set(tasks))
    if unknown:
        raise ValueError(f"per_task names {unknown}, which are not among the tasks {tasks}")
    shared = {"max_length": max_length, "train_size": train_size, "eval_size": eval_size,
              "split_seed": split_seed, **common}
    subs = [load_task(t, tokenizer, **{**shared, **per_task.get(t, {})}) for t in tasks]
    kinds = {d.kind for d in subs}
    if len(kinds) != 1:
        raise ValueError(f"cannot mix text and image tasks in one multitask run: {kinds}")
    offsets = block_offsets([d.num_labels for d in subs])
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    blocks = []
    for k, (d, off) in enumerate(zip(subs, offsets)):
        train += _rows(d.train, off, k)
        evals += _rows(d.eval, off, k)
        blocks.append({"name": d.name, "num_labels": int(d.num_labels), "offset": off,
                       "label_names": list(d.label_names), "n_train": len(d.train),
                       "n_eval": len(d.eval), "majority_rate": d.majority_rate,
                       "metric": d.metric})
    label_names = [f"{d.name}:{n}" for d in subs for n in (d.label_names or range(d.num_labels))]
    return TaskData(name="+".join(tasks), num_labels=sum(b["num_labels"] for b in blocks),
                    train=train, eval=evals, label_names=label_names, metric="accuracy",
                    kind=subs[0].kind, info={"tasks": blocks, "batches": BATCHES})


# ============================================================================= model
class TaskHeads(nn.Module):
    """One output head per task; routes each example to its task's head.

    ``heads[k]`` maps the backbone's features to ``num_labels[k]`` logits. The output row
    of an example of task ``k`` is :data:`FILL` except block ``k``, which holds head
    ``k``'s logits. ``task_id`` (a long tensor, one entry per example) is set before each
    forward pass by the hook that :func:`attach_task_heads` registers.
    """

    def __init__(self, heads: Sequence[nn.Module], num_labels: Sequence[int],
                 names: Sequence[str] | None = None, fill: float = FILL):
        super().__init__()
        if len(heads) != len(num_labels) or len(heads) < 1:
            raise ValueError("give one head per task and each task's number of classes")
        self.heads = nn.ModuleList(heads)
        self.num_labels = [int(n) for n in num_labels]
        self.offsets = block_offsets(self.num_labels)
        self.total = sum(self.num_labels)
        self.names = list(names) if names is not None else [f"task{k}" for k in range(len(heads))]
        self.fill = float(fill)
        self.task_id: torch.Tensor | None = None

    def forward(self, features: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        tid = self.task_id
        if tid is None:
            raise ValueError("a multi-head model needs the task of every example: pass "
                             "task_id=<long tensor of task indices> with the inputs")
        tid = tid.to(features.device)
        if tid.dim() != 1 or tid.shape[0] != features.shape[0]:
            raise ValueError(f"task_id must have shape ({features.shape[0]},), got {tuple(tid.shape)}")
        if tid.numel() and (int(tid.min()) < 0 or int(tid.max()) >= len(self.heads)):
            raise ValueError(f"task_id values must lie in [0, {len(self.heads)}), got "
                             f"[{int(tid.min())}, {int(tid.max())}]")
        out = None
        for k, head in enumerate(self.heads):
            sel = (tid == k).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            y = head(features[sel], *args, **kwargs)
            if y.shape[-1] != self.num_labels[k]:
                raise ValueError(f"head {k} returned {y.shape[-1]} logits, expected {self.num_labels[k]}")
            if out is None:
                out = y.new_full((features.shape[0], *y.shape[1:-1], self.total), self.fill)
            a = self.offsets[k]
            out[sel, ..., a:a + self.num_labels[k]] = y
        if out is None:  # empty batch
            out = features.new_full((0, self.total), self.fill)
        return out


def _get_attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(obj: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def find_head(model: nn.Module, head: str | None = None) -> str:
    """Dotted path of the model's output head (``classifier``, ``score`` or ``net._fc``)."""
    for path in ((head,) if head else HEAD_ATTRS):
        try:
            mod = _get_attr(model, path)
        except AttributeError:
            continue
        if isinstance(mod, nn.Module):
            return path
    raise ValueError(f"cannot find the classification head of {type(model).__name__} (looked for "
                     f"{', '.join((head,) if head else HEAD_ATTRS)}); pass head='dotted.path'")


def _init_std(model: nn.Module) -> float | None:
    cfg = getattr(model, "config", None)
    return float(getattr(cfg, "initializer_range", 0.02) or 0.02) if cfg is not None else None


def _output_linear(head: nn.Module, out_features: int) -> str:
    """Name of the last ``nn.Linear`` of ``head`` with ``out_features`` outputs ("" = head)."""
    found = None
    for name, m in head.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == out_features:
            found = name
    if found is None:
        raise ValueError(f"no output nn.Linear with {out_features} outputs in the head {type(head).__name__}")
    return found


def make_head(template: nn.Module, template_labels: int, num_labels: int, std: float | None) -> nn.Module:
    """A copy of ``template`` whose output layer has ``num_labels`` outputs, re-initialised:
    Hugging Face style (weights N(0, std^2), biases 0, LayerNorm 1/0) when ``std`` is given,
    else each layer's own ``reset_parameters``."""
    head = copy.deepcopy(template)
    name = _output_linear(head, template_labels)
    old = head if name == "" else _get_attr(head, name)
    new = nn.Linear(old.in_features, int(num_labels), bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    if name == "":
        head = new
    else:
        _set_attr(head, name, new)
    for m in head.modules():
        if std is not None and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif std is not None and isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif std is None and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return head


def _task_id_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: take ``task_id`` out of the inputs and hand it to every
    :class:`TaskHeads` inside the model (wrappers such as PEFT may hold copies)."""
    kwargs = dict(kwargs)
    tid = kwargs.pop("task_id", None)  # missing: TaskHeads.forward raises a clear error
    tid = None if tid is None else torch.as_tensor(tid, dtype=torch.long)
    for m in module.modules():
        if isinstance(m, TaskHeads):
            m.task_id = tid
    return args, kwargs


def attach_task_heads(model: nn.Module, num_labels: Sequence[int], *, names: Sequence[str] | None = None,
                      seed: int = 0, head: str | None = None) -> nn.Module:
    """Replace ``model``'s output head by :class:`TaskHeads` (one new head per task), in place.

    The model keeps its class (so layer lookups by name, LNSR, PEFT and the diagnostics
    work as for one task) and now takes ``task_id=`` with its inputs. The heads are
    initialised under ``torch.manual_seed(seed)`` (the caller's RNG state is restored).
    """
    from dsgd.models import seeded

    path = find_head(model, head)
    template = _get_attr(model, path)
    if isinstance(template, TaskHeads):
        raise ValueError("the model already has task heads")
    cfg = getattr(model, "config", None)
    t_labels = int(getattr(model, "num_labels", None) or getattr(cfg, "num_labels", 0) or 0)
    if not t_labels:
        lin = [m for m in template.modules() if isinstance(m, nn.Linear)]
        t_labels = lin[-1].out_features
    std = _init_std(model)
    with seeded(seed):
        heads = [make_head(template, t_labels, n, std) for n in num_labels]
    router = TaskHeads(heads, num_labels, names)
    _set_attr(model, path, router)
    model.register_forward_pre_hook(_task_id_hook, with_kwargs=True)
    total = router.total
    if cfg is not None and hasattr(cfg, "num_labels"):
        cfg.num_labels = total
    if hasattr(model, "num_labels"):
        model.num_labels = total
    model.task_heads = router  # a handle for inspection (the same module as at `path`)
    return model


def build_multitask_model(backbone: str, num_labels: Sequence[int], *, names: Sequence[str] | None = None,
                          seed: int = 0, head: str | None = None, **model_kwargs: Any) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)``: the registered model ``backbone`` with one head per task."""
    from dsgd.models import load_model

    model, tok = load_model(backbone, int(num_labels[0]), seed=seed, **model_kwargs)
    return attach_task_heads(model, num_labels, names=names, seed=seed, head=head), tok


# ============================================================================= metrics
def per_task_metrics(predictions: Sequence[int], labels: Sequence[int], blocks: Sequence[dict[str, Any]],
                     status: str = "ok") -> dict[str, dict[str, Any]]:
    """Metrics and verdict of each task from global predictions/labels and the blocks.

    A prediction outside its example's block (impossible with :class:`TaskHeads`) counts
    as wrong. The verdict compares each task's accuracy with its own majority class.
    """
    from dsgd.diagnostics import metrics, verdict

    p = np.asarray(predictions, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    k_of = task_of_label(y, [b["num_labels"] for b in blocks])
    out = {}
    for k, b in enumerate(blocks):
        sel = k_of == k
        if not sel.any():
            continue
        n, off = int(b["num_labels"]), int(b["offset"])
        yl = y[sel] - off
        pl = p[sel] - off
        inside = (pl >= 0) & (pl < n)
        pl = np.where(inside, pl, (yl + 1) % n if n > 1 else 0)  # outside the block: wrong
        m = metrics(pl, yl, n)
        base = float(np.bincount(yl, minlength=n).max() / yl.size)
        v = verdict(pl, yl, num_labels=n, metric_value=m["accuracy"], majority_rate=base,
                    status=status if status in ("ok", "diverged") else "ok")
        out[b["name"]] = {"accuracy": m["accuracy"], "mcc": m["mcc"], "f1": m["f1"],
                          "balanced_accuracy": m["balanced_accuracy"], "majority_rate": base,
                          "n_eval": int(sel.sum()), "pred_share": m["pred_share"], "verdict": v,
                          "outside_block": int((~inside).sum())}
    return out


# ============================================================================= the run
def train_run(cfg: RunConfig | dict[str, Any], *, callbacks: Sequence[Any] | None = None,
              keep_model: bool = False) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """One multitask fine-tuning run (see the module docstring); a drop-in run function
    for :func:`dsgd.sweep.run_sweep` and :func:`dsgd.sweep.verify_sample`.

    Loads the tasks named by ``cfg.task`` (``"a+b"``) and ``cfg.model`` with one head per
    task, then trains with :func:`dsgd.engine.train_run`. The record gains ``tasks`` (the
    label blocks) and ``per_task`` (per-task metrics and verdicts).
    """
    from dsgd import engine
    from dsgd.methods import get_method
    from dsgd.models import load_tokenizer
    from dsgd.schedules import schedule

    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    cfg.validate()
    tasks = parse_tasks(cfg.task)
    get_method(cfg.method, **cfg.method_kwargs)  # fail before loading anything
    schedule(cfg.schedule, cfg.tau, **cfg.schedule_kwargs)
    model_kwargs = dict(cfg.model_kwargs)
    head = model_kwargs.pop("head", None)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    engine.seed_everything(cfg.seed)
    tokenizer = load_tokenizer(cfg.model, **model_kwargs)
    task_kwargs = dict(cfg.task_kwargs)
    data = load_multitask(tasks, tokenizer, max_length=cfg.max_length, train_size=cfg.train_size,
                          eval_size=cfg.eval_size, split_seed=cfg.split_seed, **task_kwargs)
    blocks = data.info["tasks"]
    model, _ = build_multitask_model(cfg.model, [b["num_labels"] for b in blocks],
                                     names=[b["name"] for b in blocks], seed=cfg.seed, head=head,
                                     **model_kwargs)
    out = engine.train_run(cfg, model=model, tokenizer=tokenizer, data=data, callbacks=callbacks,
                           keep_model=keep_model)
    record, trained = out if keep_model else (out, None)
    record["tasks"] = blocks
    record["batches"] = BATCHES
    record["per_task"] = per_task_metrics(record["predictions"], record["labels"], blocks,
                                          status=record["status"])
    return (record, trained) if keep_model else record


# ============================================================================= records
def multitask_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, task): ``pair`` (the run's task, e.g. ``mrpc+rte``), ``task``,
    ``column`` (``"mrpc+rte: rte"``), ``method``, ``seed``, ``accuracy``, ``mcc``,
    ``majority_rate``, ``verdict``, ``status``, ``run_id`` and the run's timings."""
    rows = []
    for r in records:
        cfg = r["config"]
        if "per_task" not in r:
            raise ValueError(f"record {r.get('run_id')} has no per-task metrics: was it made with "
                             "dsgd.multitask.train_run?")
        names = [b["name"] for b in r.get("tasks") or []] or list(r["per_task"])  # the pair's order
        for name in names:
            m = r["per_task"][name]
            rows.append({"pair": cfg["task"], "task": name, "column": f"{cfg['task']}: {name}",
                         "method": cfg["method"], "seed": cfg["seed"], "model": cfg["model"],
                         "accuracy": m["accuracy"], "mcc": m["mcc"], "majority_rate": m["majority_rate"],
                         "verdict": m["verdict"], "status": r["status"], "run_id": r["run_id"],
                         "overall_accuracy": (r.get("metrics") or {}).get("accuracy"),
                         "s_per_step": (r.get("timings") or {}).get("s_per_step"),
                         "total_s": (r.get("timings") or {}).get("total_s")})
    return pd.DataFrame(rows)
