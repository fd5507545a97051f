"""One fine-tuning run from a :class:`~dsgd.config.RunConfig` to a JSON-ready record.

:func:`train_run` is the single entry point the sweeps, the CLI and the chapters use:

    record = train_run(RunConfig(task="synthetic_blobs", model="tiny-mlp", method="dsgd"))
    record, model = train_run(cfg, keep_model=True)   # also hand back the trained model

What it does, in order:

1. validate the config, the method name and its settings and the schedule — before
   anything is loaded;
2. seed python, numpy and torch with ``cfg.seed``; load the task and the model (unless
   passed in), check the labels lie in ``[0, num_labels)``;
3. re-seed, let the method prepare the model (NoisyTune noise, PEFT wrapping), build AdamW
   and the linear warmup/decay schedule over ``T`` optimizer steps;
4. train: each epoch draws a new order from a ``torch.Generator`` seeded by ``cfg.seed``;
   an optimizer step groups ``grad_accum`` micro-batches of ``batch_size`` (the last
   step of an epoch may have fewer); ``T = ceil(steps_per_epoch * epochs)`` or
   ``max_steps``; evaluation after every epoch (``cfg.eval_each_epoch``);
5. stop at the first non-finite loss or gradient norm: status ``"diverged"``, the bad
   step is not applied, everything logged so far is kept and the model is still evaluated;
6. return the record (see :func:`train_run`).

Bagging: ``task_kwargs={"bootstrap_seed": k}`` (or ``"seed"`` for the run's seed) trains
on a bootstrap resample of the training split (:func:`dsgd.ensembles.bootstrap_train`,
also applied to a ``data=`` passed in); the key is not handed to the task loader.

Seeding covers data order, dropout, the head initialisation (through ``load_model``'s
seed) and the methods' own noise, so the same config reproduces the same numbers on CPU.

Indexing: ``history["step"]`` is the 0-based optimizer step t and ``history["epoch"]`` the
0-based epoch it belongs to; ``per_epoch[i]["epoch"]`` counts the epochs completed
(1-based) and ``per_epoch[i]["step"]`` the optimizer steps done at that evaluation.

Per optimizer step the history holds: ``loss`` (the method's objective), ``ce`` (mean
cross-entropy of the training pass), ``gamma`` (weight of the correct group: gamma_t for
DSGD, 1 for methods that weight every example equally), ``grad_norm`` (global norm after
backward, before clipping), ``correct_share`` (|C| / m), ``correct_weight_share``
(gamma |C| / (|W| + gamma |C|)), ``pred_class_share`` (fraction of the batch predicted as
each class) and ``lr``. "Correct" and the predicted classes come from the logits that
decided the split (an extra eval pass for DSGD/PCGrad with ``correct_from="eval"``, the
training pass otherwise). Methods may add their own per-step values: ``penalty`` (LNSR's
regulariser), ``conflict`` (PCGrad and pcgrad-head: micro-batches whose groups' gradients
conflicted and were projected) and ``weight_correct`` / ``weight_total`` (sums of the
per-example weights of the correct and of all examples: DSGD's soft weights, balanced,
dsgd-balanced).

Smoke mode (``DSGD_SMOKE=1``, :mod:`dsgd.smoke`): every run stops after a few optimizer
steps (``timings.steps``; ``timings.total_steps`` keeps the configured budget) and its record
says ``"smoke": true``; the config and run id are unchanged.

Reproducibility is exact on CPU for a given torch version and thread count; GPU kernels
may be non-deterministic.
"""
from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dsgd import smoke
from dsgd.config import RunConfig
from dsgd.diagnostics import metrics as eval_metrics
from dsgd.ensembles import bootstrap_train, split_bootstrap
from dsgd.methods import Method, StepContext, get_method
from dsgd.optim import linear_warmup_decay
from dsgd.store import cpu_model  # noqa: F401 (re-exported: the CPU model every record names)
from dsgd.schedules import schedule

EVAL_BATCH_SIZE = 64
Callback = Callable[[str, dict[str, Any]], Any]


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def budget(n_train: int, cfg: RunConfig) -> tuple[int, int, list[int]]:
    """``(steps_per_epoch, T, epoch_ends)``: optimizer steps per full epoch, total steps and
    the step counts at which an epoch (possibly the last, partial one) ends."""
    micro = math.ceil(n_train / cfg.batch_size)
    per_epoch = math.ceil(micro / cfg.grad_accum)
    T = int(cfg.max_steps) if cfg.max_steps is not None else max(1, math.ceil(per_epoch * cfg.epochs))
    ends = list(range(per_epoch, T + 1, per_epoch))
    if not ends or ends[-1] != T:
        ends.append(T)
    return per_epoch, T, ends


def _device(cfg: RunConfig) -> torch.device:
    name = getattr(cfg, "device", None)
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _collate(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    from dsgd.data import collate

    return collate(examples, pad_token_id=pad_token_id)


def split_labels(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """The integer labels of a split, in order; read from ``rows.labels`` when the split
    keeps them (image sets: 10,000 test images are not preprocessed just to read labels)."""
    if hasattr(rows, "labels"):
        return np.asarray(rows.labels, dtype=np.int64)
    return np.array([int(r["labels"]) for r in rows])


def check_labels(data: Any) -> None:
    """``ValueError`` unless every train/eval label is an integer in ``[0, num_labels)``."""
    k = int(data.num_labels)
    for split in ("train", "eval"):
        rows = getattr(data, split)
        if not rows:
            raise ValueError(f"task {data.name!r} has an empty {split} split")
        ys = split_labels(rows)
        if ys.min() < 0 or ys.max() >= k:
            raise ValueError(f"{split} labels of task {data.name!r} must lie in [0, {k}) "
                             f"(num_labels={k}), got values in [{ys.min()}, {ys.max()}]")


@torch.no_grad()
def predict(model: torch.nn.Module, examples: Sequence[dict[str, Any]], *, device: torch.device,
            pad_token_id: int = 0, batch_size: int = EVAL_BATCH_SIZE) -> tuple[np.ndarray, float]:
    """Eval-mode predictions (argmax) for ``examples`` in order, and their mean cross-entropy."""
    from dsgd.methods.base import _logits_of, model_inputs

    was_training = model.training
    model.eval()
    preds, loss_sum = [], 0.0
    try:
        for i in range(0, len(examples), batch_size):
            batch = _to(_collate(list(examples[i:i + batch_size]), pad_token_id), device)
            logits = _logits_of(model(**model_inputs(batch))).float()
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            preds.append(logits.argmax(dim=-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(preds).numpy(), loss_sum / max(1, len(examples))


def run_verdict(pred: np.ndarray, labels: np.ndarray, metrics: dict[str, Any], *, num_labels: int,
                metric: str, status: str) -> str:
    """The run's verdict (:func:`dsgd.diagnostics.verdict`) judged on the task's metric
    against the majority-class classifier's value of the same metric."""
    from dsgd.diagnostics import majority_metrics, verdict

    value = metrics.get(metric, metrics["accuracy"])
    base = majority_metrics(labels, num_labels)[metric if metric in metrics else "accuracy"]
    return verdict(pred, labels, num_labels=num_labels, metric_value=value,
                   majority_rate=base, status=status)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def versions() -> dict[str, str | None]:
    import dsgd

    out: dict[str, str | None] = {"dsgd": dsgd.__version__, "torch": torch.__version__,
                                  "numpy": np.__version__, "python": platform.python_version()}
    for name in ("transformers", "peft"):
        mod = sys.modules.get(name)
        out[name] = getattr(mod, "__version__", None) if mod else None
    return out


def machine(device: torch.device) -> dict[str, Any]:
    """Where a run ran: platform, CPU model and the instruction set torch's CPU kernels use
    (``AVX512``, ``AVX2``, ...), cores, threads and device (with the GPU's name)."""
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor(),
                            "cpu_model": cpu_model(), "cpu_capability": capability,
                            "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_tokenizer_for(cfg: RunConfig) -> tuple[Any, tuple[int, Any] | None]:
    """The tokenizer of ``cfg.model`` (a text task is tokenised before the model is built).

    Returns ``(tokenizer, prebuilt)``. Uses ``dsgd.models.load_tokenizer`` when it exists
    (``prebuilt`` is None); otherwise builds the model once (with 2 labels) for its
    tokenizer and hands that model back as ``prebuilt = (2, model)`` so that it can be
    reused when the task has 2 classes (``load_model`` is seeded: same name, labels and
    seed give the same weights).
    """
    from dsgd import models

    fn = getattr(models, "load_tokenizer", None)
    if fn is not None:
        return fn(cfg.model, **cfg.model_kwargs), None
    model, tok = models.load_model(cfg.model, 2, seed=cfg.seed, **cfg.model_kwargs)
    return tok, (2, model)


def _load_tokenizer(cfg: RunConfig) -> Any:
    """Just the tokenizer of ``cfg.model`` (kept for callers outside the engine)."""
    return load_tokenizer_for(cfg)[0]


# ------------------------------------------------------------------- one optimizer step
def optimizer_step(model: torch.nn.Module, method: Method, optimizer: torch.optim.Optimizer,
                   scheduler: Any, batches: list[dict[str, torch.Tensor]], *, t: int, T: int,
                   gamma: float, epoch: int, cfg: RunConfig, num_labels: int) -> dict[str, Any]:
    """Backward over ``batches`` (the micro-batches of one step), clip, step; returns stats.

    On a non-finite loss or gradient norm the parameters are left untouched and the
    returned dict has ``diverged=True``.
    """
    n_items = sum(int(b["labels"].shape[0]) for b in batches)
    # running sums stay on the device: one host sync per step, after clipping
    sums: torch.Tensor | None = None  # [loss, ce, n_correct, counts per class...]
    extras: dict[str, torch.Tensor] = {}
    g_eff = 1.0
    ctx = None
    for j, b in enumerate(batches):
        ctx = StepContext(t=t, T=T, gamma=gamma, micro=j, n_micro=len(batches),
                          n_items=n_items, epoch=epoch, cfg=cfg, num_labels=num_labels)
        out = method.backward(model, b, ctx)
        labels = b["labels"]
        logits = out["logits"]
        pred = out.get("decide", logits).argmax(dim=-1)
        part = torch.cat([
            out["loss"].detach().float().reshape(1),
            F.cross_entropy(logits.float(), labels, reduction="sum").reshape(1),
            (pred == labels).sum().float().reshape(1),
            torch.bincount(pred, minlength=num_labels).float(),
        ])
        sums = part if sums is None else sums + part
        g_eff = float(out.get("gamma", 1.0))
        for k, v in out.items():
            if k not in ("loss", "logits", "decide", "gamma") and isinstance(v, torch.Tensor):
                extras[k] = extras.get(k, 0.0) + v.detach().float()
    grad_norm = method.clip(model, cfg)
    host = torch.cat([sums, grad_norm.detach().float().reshape(1).to(sums.device)]).cpu()
    loss_value, gn = float(host[0]), float(host[-1])
    stats: dict[str, Any] = {"loss": loss_value, "grad_norm": gn}
    if not (math.isfinite(loss_value) and math.isfinite(gn)):
        optimizer.zero_grad(set_to_none=True)
        stats["diverged"] = True
        return stats
    lr = float(scheduler.get_last_lr()[0])
    optimizer.step()
    scheduler.step()
    method.after_step(model, ctx)
    optimizer.zero_grad(set_to_none=True)
    nc = int(host[2])
    nw = n_items - nc
    denom = nw + g_eff * nc
    stats.update({
        "ce": float(host[1]) / n_items,
        "gamma": g_eff,
        "correct_share": nc / n_items,
        "correct_weight_share": (g_eff * nc / denom) if denom > 0 else 0.0,
        "pred_class_share": (host[3:3 + num_labels].double() / n_items).tolist(),
        "lr": lr,
        "diverged": False,
        **{k: float(v) for k, v in extras.items()},
    })
    return stats


# --------------------------------------------------------------------------- the run
def train_run(cfg: RunConfig | dict[str, Any], *, model: torch.nn.Module | None = None,
              tokenizer: Any = None, data: Any = None, callbacks: Sequence[Callback] | None = None,
              keep_model: bool = False) -> dict[str, Any] | tuple[dict[str, Any], torch.nn.Module]:
    """Fine-tune once and return the run's record (a JSON-serialisable dict).

    model / tokenizer / data: use these instead of loading ``cfg.model`` / ``cfg.task``
    (``data`` is a :class:`dsgd.data.TaskData`). The config still names them in the record.
    callbacks: callables ``cb(event, info)`` with event ``"step"`` (info: ``t``, ``stats``,
    ``model``), ``"epoch"`` (``epoch``, ``metrics``, ``model``) and ``"end"`` (``record``,
    ``model``). Returning ``"stop"`` from a step callback ends training early (status ok).
    keep_model: also return the trained model — ``(record, model)`` — e.g. to compute
    representations after training without training again.

    Record keys: ``run_id``, ``config``, ``method_settings``, ``status`` ("ok" |
    "diverged"), ``diverged_at``, ``metrics`` (final: :func:`dsgd.diagnostics.metrics` — accuracy, mcc, f1,
    macro_f1, informedness ... — plus eval_loss; NaN values become None),
    ``per_epoch`` (list of {epoch, step, accuracy, mcc, f1, ...}), ``predictions``,
    ``labels``, ``majority_rate``, ``verdict``, ``history`` (per step, see the module
    docstring; ``probe`` when ``cfg.probe_every > 0``), ``timings`` (total_s, train_s,
    eval_s, probe_s, steps, s_per_step, s_per_epoch), ``versions``, ``machine``.
    """
    t_start = time.perf_counter()
    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    cfg.validate()
    # --- everything that can be checked without loading anything
    method = get_method(cfg.method, **cfg.method_kwargs)
    gamma_fn = schedule(cfg.schedule, cfg.tau, **cfg.schedule_kwargs)
    task_kwargs, bootstrap_seed = split_bootstrap(cfg.task_kwargs, cfg.seed)  # bagging members
    probe = None
    if cfg.probe_every and cfg.probe_every > 0:
        try:
            from dsgd.diagnostics import gradient_probe, pick_dense_layers
        except ImportError as e:
            raise ValueError(f"probe_every > 0 needs dsgd.diagnostics.gradient_probe ({e})") from None
        probe = (gradient_probe, pick_dense_layers)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    callbacks = list(callbacks or [])
    device = _device(cfg)

    # --- data and model
    seed_everything(cfg.seed)
    prebuilt = None
    if data is None:
        if tokenizer is None and model is None:
            tokenizer, prebuilt = load_tokenizer_for(cfg)
        from dsgd.data import load_task

        data = load_task(cfg.task, tokenizer, max_length=cfg.max_length, train_size=cfg.train_size,
                         eval_size=cfg.eval_size, split_seed=cfg.split_seed, **task_kwargs)
    if bootstrap_seed is not None:
        data = bootstrap_train(data, bootstrap_seed)
    check_labels(data)
    method.observe_data(data)
    num_labels = int(data.num_labels)
    if model is None and prebuilt is not None and prebuilt[0] == num_labels:
        model = prebuilt[1]
    elif model is None:
        from dsgd.models import load_model

        model, tok = load_model(cfg.model, num_labels, seed=cfg.seed, **cfg.model_kwargs)
        tokenizer = tokenizer if tokenizer is not None else tok
    del prebuilt
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)

    per_epoch_steps, T, epoch_ends = budget(len(data.train), cfg)
    planned_T = T  # the budget the config sets (recorded), even where smoke mode stops early
    T, epoch_ends = smoke.cap_steps(T, epoch_ends)  # smoke mode only (DSGD_SMOKE=1)
    n_epochs = len(epoch_ends)
    seed_everything(cfg.seed)  # training randomness independent of how the model was built
    model = method.prepare_model(model, cfg, total_steps=T)
    model.to(device)
    model.train()
    optimizer = method.configure_optimizer(model, cfg)
    scheduler = linear_warmup_decay(optimizer, T, cfg.warmup_ratio)
    order_gen = torch.Generator().manual_seed(int(cfg.seed))
    layer_names = None
    if probe is not None:
        layer_names = probe[1](model, 4, cfg.seed)

    hist_keys = ["step", "epoch", "loss", "ce", "gamma", "grad_norm", "correct_share",
                 "correct_weight_share", "pred_class_share", "lr"]
    history: dict[str, Any] = {k: [] for k in hist_keys} if cfg.record_history else {}
    if probe is not None:
        history["probe"] = {"step": [], "cos_wc": [], "norm_w": [], "norm_c": []}
    per_epoch: list[dict[str, Any]] = []
    status, diverged_at, stopped = "ok", None, False
    train_s = eval_s = probe_s = 0.0
    eval_labels = split_labels(data.eval)
    last_eval: tuple[np.ndarray, dict[str, float]] | None = None

    def evaluate() -> tuple[np.ndarray, dict[str, float]]:
        nonlocal eval_s
        t0 = time.perf_counter()
        pred, eval_loss = predict(model, data.eval, device=device, pad_token_id=pad_id)
        m = dict(eval_metrics(pred, eval_labels, num_labels))
        m["eval_loss"] = eval_loss
        eval_s += time.perf_counter() - t0
        return pred, m

    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=T, desc=cfg.run_id())

    t, epoch = 0, 0
    n = len(data.train)
    while t < T and status == "ok" and not stopped:
        t_epoch = time.perf_counter()
        perm = torch.randperm(n, generator=order_gen).tolist()
        micro = [perm[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        for s in range(0, len(micro), cfg.grad_accum):
            if t >= T:
                break
            batches = [_to(_collate([data.train[i] for i in idx], pad_id), device)
                       for idx in micro[s:s + cfg.grad_accum]]
            if probe is not None and t % cfg.probe_every == 0:
                t0 = time.perf_counter()
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    res = probe[0](model, batches[0], layer_names, loss="ce")
                model.train()
                model.zero_grad(set_to_none=True)
                history["probe"]["step"].append(t)
                for k in ("cos_wc", "norm_w", "norm_c"):
                    history["probe"][k].append(_jsonable(float(res[k])) if res.get(k) is not None else None)
                probe_s += time.perf_counter() - t0
            stats = optimizer_step(model, method, optimizer, scheduler, batches, t=t, T=T,
                                   gamma=float(gamma_fn(t, T)), epoch=epoch, cfg=cfg,
                                   num_labels=num_labels)
            if stats["diverged"]:
                status, diverged_at = "diverged", {"step": t, "loss": _jsonable(stats["loss"]),
                                                   "grad_norm": _jsonable(stats["grad_norm"])}
                break
            if cfg.record_history:
                history["step"].append(t)
                history["epoch"].append(epoch)
                for k in hist_keys[2:]:
                    history[k].append(stats[k])
                for k, v in stats.items():
                    if k not in hist_keys and k != "diverged":
                        history.setdefault(k, []).append(v)
            t += 1
            if bar is not None:
                bar.update(1)
            if any(cb("step", {"t": t - 1, "stats": stats, "model": model}) == "stop" for cb in callbacks):
                stopped = True
                break
        train_s += time.perf_counter() - t_epoch
        if status != "ok":
            break
        method.on_epoch_end(model, epoch, n_epochs)
        if cfg.eval_each_epoch:
            pred, m = evaluate()
            last_eval = (pred, m)
            per_epoch.append({"epoch": epoch + 1, "step": t, **m})
            for cb in callbacks:
                cb("epoch", {"epoch": epoch, "metrics": m, "model": model})
        epoch += 1
    if bar is not None:
        bar.close()
    train_s -= probe_s  # the epoch timer included the (diagnostic) probes

    # --- final model and evaluation
    model = method.finalize(model)
    if last_eval is not None and status == "ok" and not getattr(method, "averages_weights", False):
        pred, metrics = last_eval
    else:
        pred, metrics = evaluate()
    verdict = run_verdict(pred, eval_labels, metrics, num_labels=num_labels,
                          metric=getattr(data, "metric", "accuracy"), status=status)
    steps_done = t
    epochs_done = steps_done / per_epoch_steps if per_epoch_steps else 0.0
    record = {
        "run_id": cfg.run_id(),
        "config": cfg.to_dict(),
        "method_settings": method.settings(),
        "status": status,
        "diverged_at": diverged_at,
        "metrics": metrics,
        "metric": getattr(data, "metric", "accuracy"),
        "per_epoch": per_epoch,
        "predictions": pred.tolist(),
        "labels": eval_labels.tolist(),
        "majority_rate": float(np.bincount(eval_labels, minlength=num_labels).max() / len(eval_labels)),
        "verdict": verdict,
        "history": history,
        "timings": {
            "total_s": time.perf_counter() - t_start,
            "train_s": train_s, "eval_s": eval_s, "probe_s": probe_s,
            "steps": steps_done, "total_steps": planned_T,
            "s_per_step": train_s / steps_done if steps_done else None,
            "s_per_epoch": train_s / epochs_done if epochs_done else None,
        },
        "versions": versions(),
        "machine": machine(device),
    }
    if smoke.active():
        record["smoke"] = True  # shortened stand-in run: never a stored result
    record = _jsonable(record)
    for cb in callbacks:
        cb("end", {"record": record, "model": model})
    return (record, model) if keep_model else record
