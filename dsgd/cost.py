"""What a training step of each method costs, measured on this machine in one interleaved run.

The paper's cost comparison (its Figure 3) puts each method's training time next to its
accuracy. Timings taken from separate runs on a shared machine mix the methods' cost with
whatever else the machine was doing at the time. :func:`measure_step_times` instead times
the *full optimizer step* of the training engine (:func:`dsgd.engine.optimizer_step`:
forward, backward, statistics, clipping, AdamW, the learning-rate schedule) of every
method on the same fixed batch, round by round, rotating the order of the methods each
round, so that slow drifts of the machine hit all methods alike. It reports the median
seconds per step, the ratio of medians to the reference method, and the median of the
*paired* per-round ratios (with quartiles), for wall time and for the process's CPU time
(``time.process_time``, which does not count the time spent waiting for a core).

Learning rate 0: every operation of the step still runs (AdamW with lr 0 still updates
its moments) but the weights stay put, so the fixed batch keeps its mix of correctly and
wrongly classified examples and each round does the same work (PCGrad needs both groups
non-empty for its second backward pass; the batch is drawn with both labels).

What a step-time ratio leaves out, and :func:`epoch_cost` adds: NoisyTune's one-off
perturbation before training and SWA's weight snapshots at epoch ends are not part of a
step (both are negligible next to an epoch); an ensemble of N members costs N times its
member's training, by construction.

``benchmarks/step_time.py`` is the command-line front end of the same function.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import torch

from dsgd.config import RunConfig

FALLBACK_PAIRS = [
    ("A man is playing a guitar on a stage in front of a large crowd.", "Someone is performing music."),
    ("The committee postponed the vote until the budget report was finished.", "The vote happened before the report."),
    ("Three children are building a sandcastle near the water.", "Kids are at the beach."),
    ("She believes that the train leaves at noon.", "The train leaves at noon."),
    ("The museum was closed for renovations during the whole summer.", "Visitors could see the exhibits in July."),
    ("A dog is running through a field of tall grass after a ball.", "An animal is outside."),
    ("He suspects that his neighbour borrowed the ladder without asking.", "The neighbour borrowed the ladder."),
    ("The researchers reported that the new drug reduced symptoms in most patients.", "The drug had no effect."),
]


@dataclass
class MethodSpec:
    """A method to time: a display ``label``, a registry ``method`` name and its settings."""

    label: str
    method: str
    method_kwargs: dict[str, Any] = field(default_factory=dict)


def as_specs(methods: Sequence[str | MethodSpec | dict[str, Any] | tuple]) -> list[MethodSpec]:
    """Normalise ``["fft", ("focal", "focal", {"gamma": 2}), {"method": "swa"}, ...]``."""
    out: list[MethodSpec] = []
    for m in methods:
        if isinstance(m, MethodSpec):
            out.append(m)
        elif isinstance(m, str):
            out.append(MethodSpec(m, m))
        elif isinstance(m, dict):
            if "method" not in m:
                raise ValueError(f"a method given as a mapping needs a 'method' key, got {m!r}")
            out.append(MethodSpec(str(m.get("label", m["method"])), m["method"],
                                  dict(m.get("method_kwargs") or {})))
        elif isinstance(m, tuple) and len(m) in (2, 3):
            out.append(MethodSpec(str(m[0]), str(m[1]), dict(m[2]) if len(m) == 3 else {}))
        else:
            raise ValueError(f"cannot read a method to time from {m!r}")
    labels = [s.label for s in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be distinct, got {labels}")
    if not out:
        raise ValueError("no methods to time")
    return out


def fixed_batch(cfg: RunConfig, tokenizer: Any, batch_size: int | None = None
                ) -> tuple[dict[str, torch.Tensor], str, int | None]:
    """A training batch of ``cfg.task`` with every label present (round-robin over the
    labels where the training split allows), tokenised as the runs are; a built-in set of
    sentence pairs if the task cannot be loaded. Returns ``(batch, description of the
    source, size of the training split or None)``."""
    from dsgd.data import collate

    bs = int(batch_size or cfg.batch_size)
    try:
        from dsgd.data import load_task

        data = load_task(cfg.task, tokenizer, max_length=cfg.max_length, train_size=cfg.train_size,
                         eval_size=cfg.eval_size, split_seed=cfg.split_seed, **cfg.task_kwargs)
        rows = list(data.train)
        by_label: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            by_label.setdefault(int(r["labels"]), []).append(r)
        labels = sorted(by_label)
        chosen: list[dict[str, Any]] = []
        i = 0
        while len(chosen) < bs and any(by_label.values()):  # round-robin over the labels
            lab = labels[i % len(labels)]
            if by_label[lab]:
                chosen.append(by_label[lab].pop(0))
            i += 1
        source = f"{cfg.task} (training split, {len(labels)} labels)"
        n_train: int | None = len(rows)
    except Exception as e:  # noqa: BLE001 - data not prepared: hand-written pairs
        enc = tokenizer([a for a, _ in FALLBACK_PAIRS], [b for _, b in FALLBACK_PAIRS],
                        truncation=True, max_length=cfg.max_length)
        rows = [{**{k: v[i] for k, v in enc.items()}, "labels": i % 2} for i in range(len(FALLBACK_PAIRS))]
        chosen = (rows * (bs // len(rows) + 1))[:bs]
        source = f"built-in sentence pairs ({type(e).__name__})"
        n_train = None
    pad = getattr(tokenizer, "pad_token_id", None)
    return collate(chosen, pad_token_id=0 if pad is None else int(pad)), source, n_train


def measure_step_times(
    methods: Sequence[str | MethodSpec | dict[str, Any] | tuple],
    cfg: RunConfig,
    rounds: int = 10,
    warmup: int = 2,
    threads: int | None = 1,
    batch: dict[str, torch.Tensor] | None = None,
    reference: str | None = None,
) -> pd.DataFrame:
    """Seconds per optimizer step of each method, interleaved on one fixed batch.

    methods: names, ``(label, method, method_kwargs)`` tuples, :class:`MethodSpec` or
      mappings with ``method`` (and ``label``, ``method_kwargs``).
    cfg: the runs' settings (task, model, batch size, max length, clipping, Adam bias
      correction, ``correct_from``); its ``method`` and ``lr`` are ignored.
    rounds / warmup: timed rounds, and untimed rounds first (allocations, caches).
    threads: torch threads for the measurement (restored afterwards); None leaves them.
    reference: the label the ratios divide by (default: the first method).

    Returns one row per method: ``label, method, median_s, min_s, ratio`` (ratio of
    medians), ``paired_ratio, q1, q3`` (median and quartiles of the per-round ratios),
    ``cpu_median_s, cpu_ratio, cpu_paired_ratio``, ``mixed_share`` (share of timed steps
    whose batch had both correct and wrong examples), ``rounds``; ``df.attrs`` holds the
    batch shape, its source, the thread count and the raw times.
    """
    from dsgd.engine import _device, _to, optimizer_step, seed_everything
    from dsgd.methods import Method, get_method
    from dsgd.models import load_model
    from dsgd.optim import linear_warmup_decay

    specs = as_specs(methods)
    for s in specs:  # fail before loading anything
        get_method(s.method, **s.method_kwargs)
    if rounds < 2:
        raise ValueError(f"rounds must be >= 2 (quartiles need them), got {rounds}")
    ref = reference or specs[0].label
    if ref not in [s.label for s in specs]:
        raise ValueError(f"reference {ref!r} is not among the methods {[s.label for s in specs]}")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        seed_everything(cfg.seed)
        from dsgd.data import load_task  # noqa: F401 - registers the tasks

        num_labels = 2
        base, tok = load_model(cfg.model, num_labels, seed=cfg.seed, **cfg.model_kwargs)
        n_train = None
        if batch is None:
            batch, source, n_train = fixed_batch(cfg, tok)
        else:
            source = "given batch"
        num_labels = int(max(2, int(batch["labels"].max()) + 1))
        if num_labels != 2:
            base, tok = load_model(cfg.model, num_labels, seed=cfg.seed, **cfg.model_kwargs)
        device = _device(cfg)
        base.to(device)
        batch = _to(batch, device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        T = 10**6  # a long horizon: the schedule's factor stays ~constant
        runs: dict[str, dict[str, Any]] = {}
        shared_opt = None
        for s in specs:
            c = cfg.replace(method=s.method, method_kwargs=dict(s.method_kwargs), lr=1e-5, warmup_ratio=0.0)
            method = get_method(s.method, **s.method_kwargs)
            plain_prep = type(method).prepare_model is Method.prepare_model
            plain_opt = type(method).configure_optimizer is Method.configure_optimizer
            # Methods that leave the model alone share it, and those that also build the
            # default AdamW share one optimizer: the weights never move (lr 0), so sharing
            # changes no step's work, only the memory (one MiniLM + AdamW state each ~0.3 GB).
            model = base if plain_prep else method.prepare_model(copy.deepcopy(base), c, total_steps=T)
            model.to(device)
            model.train()
            if plain_prep and plain_opt:
                if shared_opt is None:
                    shared_opt = method.configure_optimizer(model, c)
                opt = shared_opt
            else:
                opt = method.configure_optimizer(model, c)
            for g in opt.param_groups:
                g["lr"] = 0.0
            runs[s.label] = dict(cfg=c, method=method, model=model, opt=opt,
                                 sched=linear_warmup_decay(opt, T, 0.0), wall=[], cpu=[], mixed=[], t=0)

        def one_step(label: str) -> tuple[float, float, bool]:
            r = runs[label]
            for g in r["opt"].param_groups:
                g["lr"] = 0.0
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            stats = optimizer_step(r["model"], r["method"], r["opt"], r["sched"], [batch], t=r["t"],
                                   T=T, gamma=0.5, epoch=0, cfg=r["cfg"], num_labels=num_labels)
            sync()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            r["t"] += 1
            return dt, dc, 0.0 < stats.get("correct_share", 0.0) < 1.0

        labels = [s.label for s in specs]
        for _ in range(max(0, warmup)):
            for lab in labels:
                one_step(lab)
        for k in range(rounds):
            order = labels[k % len(labels):] + labels[:k % len(labels)]  # rotate
            for lab in order:
                dt, dc, mixed = one_step(lab)
                runs[lab]["wall"].append(dt)
                runs[lab]["cpu"].append(dc)
                runs[lab]["mixed"].append(mixed)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)

    rows = []
    for s in specs:
        r, q = runs[s.label], runs[ref]
        paired = [a / b for a, b in zip(r["wall"], q["wall"])]
        q1, q2, q3 = statistics.quantiles(paired, n=4)
        cpu_paired = [a / b for a, b in zip(r["cpu"], q["cpu"]) if b > 0]
        rows.append({
            "label": s.label, "method": s.method,
            "median_s": statistics.median(r["wall"]), "min_s": min(r["wall"]),
            "ratio": statistics.median(r["wall"]) / statistics.median(q["wall"]),
            "paired_ratio": q2, "q1": q1, "q3": q3,
            "cpu_median_s": statistics.median(r["cpu"]),
            "cpu_ratio": statistics.median(r["cpu"]) / max(1e-12, statistics.median(q["cpu"])),
            "cpu_paired_ratio": statistics.median(cpu_paired) if cpu_paired else float("nan"),
            "mixed_share": sum(r["mixed"]) / len(r["mixed"]),
            "rounds": rounds,
        })
    df = pd.DataFrame(rows)
    df.attrs.update({
        "reference": ref, "source": source, "threads": used_threads, "warmup": warmup,
        "device": str(device), "n_train": n_train,
        "batch_shape": tuple(batch["input_ids"].shape) if "input_ids" in batch else None,
        "real_tokens": int(batch["attention_mask"].sum()) if "attention_mask" in batch else None,
        "wall": {k: v["wall"] for k, v in runs.items()}, "cpu": {k: v["cpu"] for k, v in runs.items()},
    })
    return df


def epoch_cost(step_times: pd.DataFrame, steps_per_epoch: int, ensembles: dict[str, tuple[str, int]] | None = None,
               ratio: str = "paired_ratio") -> pd.DataFrame:
    """Seconds per epoch implied by measured step times, and relative to the reference.

    ``steps_per_epoch``: optimizer steps in one epoch of the runs. ``ensembles``: extra
    rows ``{"ENS(×3)": ("fft", 3), ...}`` costing N times a member's label. Columns:
    ``label, s_per_step, s_per_epoch, rel`` (the ``ratio`` column of the measurement; N
    times the member's for an ensemble).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    d = step_times.set_index("label")
    rows = [{"label": lab, "s_per_step": float(d.loc[lab, "median_s"]),
             "s_per_epoch": float(d.loc[lab, "median_s"]) * steps_per_epoch,
             "rel": float(d.loc[lab, ratio])} for lab in d.index]
    for name, (member, n) in (ensembles or {}).items():
        if member not in d.index:
            raise ValueError(f"ensemble {name!r}: member method {member!r} was not timed")
        rows.append({"label": name, "s_per_step": n * float(d.loc[member, "median_s"]),
                     "s_per_epoch": n * float(d.loc[member, "median_s"]) * steps_per_epoch,
                     "rel": n * float(d.loc[member, ratio])})
    return pd.DataFrame(rows, columns=["label", "s_per_step", "s_per_epoch", "rel"])
