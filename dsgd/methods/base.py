"""The interface between the training engine and a fine-tuning method.

The engine (``dsgd.engine``) owns the loop: data order, gradient accumulation, the
optimiser step, evaluation and logging. A :class:`Method` only decides what happens at a
few points of that loop:

* :meth:`Method.observe_data` — once, with the task's data (after any bootstrap
  resampling), before the model is prepared (focal loss's inverse-frequency alpha);
* :meth:`Method.prepare_model` — once, before the optimiser exists (NoisyTune's
  perturbation, PEFT wrapping);
* :meth:`Method.configure_optimizer` — AdamW over the trainable parameters;
* :meth:`Method.backward` — one micro-batch: forward pass(es) and backward pass(es) that
  *add* this micro-batch's share of the step's gradient into ``p.grad``;
* :meth:`Method.clip` — gradient clipping; returns the gradient norm before clipping;
* :meth:`Method.after_step` — after ``optimizer.step()`` (AdaLoRA's rank allocation);
* :meth:`Method.on_epoch_end` / :meth:`Method.finalize` — SWA's snapshots and average.

Normalisation: with gradient accumulation an optimizer step is made of several
micro-batches. Every method divides by ``ctx.n_items`` — the number of examples in the
whole optimizer step — so the accumulated gradient equals the one of a single large batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dsgd.optim import AdamW, param_groups


@dataclass
class StepContext:
    """What a method may need to know about the current micro-batch.

    t: optimizer step (0-based); T: total optimizer steps; gamma: the schedule value
    gamma_t = schedule(t, T); micro: index of this micro-batch inside the step; n_micro:
    micro-batches in this step; n_items: examples in the whole step (the normaliser);
    epoch: 0-based epoch; cfg: the run's :class:`dsgd.config.RunConfig`; num_labels: the
    task's number of classes (the logits must have that many columns; None = unchecked).
    """

    t: int
    T: int
    gamma: float
    micro: int
    n_micro: int
    n_items: int
    epoch: int
    cfg: Any
    num_labels: int | None = None


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its labels (what the model's forward receives)."""
    return {k: v for k, v in batch.items() if k != "labels"}


def _logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the model must return logits or an object with .logits, got {type(out)}")


def check_logits(logits: torch.Tensor, labels: torch.Tensor, num_labels: int | None = None) -> None:
    """Shape checks only (no device sync): (batch, num_classes) logits, (batch,) labels."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, num_classes), got {tuple(logits.shape)}")
    if num_labels is not None and logits.shape[1] != num_labels:
        raise ValueError(f"the model outputs {logits.shape[1]} logits per example but the task has "
                         f"{num_labels} classes: build the model with num_labels={num_labels}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits "
                         f"{tuple(logits.shape)}, got {tuple(labels.shape)}")


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                   num_labels: int | None = None) -> torch.Tensor:
    """Training forward pass; returns the logits after checking their shape."""
    logits = _logits_of(model(**model_inputs(batch)))
    check_logits(logits, batch["labels"], num_labels)
    return logits


@torch.no_grad()
def eval_pass_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """An extra forward pass in eval mode (dropout off), without gradient."""
    was_training = model.training
    model.eval()
    try:
        return _logits_of(model(**model_inputs(batch))).detach()
    finally:
        model.train(was_training)


def deciding_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                    logits: torch.Tensor, cfg: Any) -> torch.Tensor:
    """Logits that decide 'correctly classified': the training pass (default) or an
    extra eval-mode pass when ``cfg.correct_from == "eval"``."""
    if getattr(cfg, "correct_from", "train") == "eval":
        return eval_pass_logits(model, batch)
    return logits.detach()


def total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of a list of tensors (``torch.nn.utils.get_total_norm`` on torch >= 2.6)."""
    fn = getattr(torch.nn.utils, "get_total_norm", None)
    if fn is not None:
        return fn(tensors)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors]))


def per_example_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction="none")


class Method:
    """Plain fine-tuning behaviour; subclasses override the hooks they change.

    ``uses_correctness``: whether the method splits the batch into correct / wrong (only
    then does ``correct_from="eval"`` cost an extra forward pass).
    ``global_clip``: whether the engine's global gradient-norm clipping applies.
    """

    name = "base"
    uses_correctness = False
    global_clip = True

    def __init__(self, **kwargs: Any) -> None:
        if kwargs:
            raise ValueError(f"method {self.name!r} takes no setting(s) {sorted(kwargs)}")

    def settings(self) -> dict[str, Any]:
        """The method's own settings (recorded with the run)."""
        return {}

    # -------------------------------------------------------------- set-up
    def observe_data(self, data: Any) -> None:
        """Called once with the run's :class:`dsgd.data.TaskData` (the training split the
        run will see) before :meth:`prepare_model`; most methods ignore it."""

    def prepare_model(self, model: torch.nn.Module, cfg: Any, *, total_steps: int) -> torch.nn.Module:
        return model

    def configure_optimizer(self, model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
        return AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                     bias_correction=bool(cfg.adam_bias_correction))

    # -------------------------------------------------------------- per step
    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        """Forward + backward of one micro-batch; adds its gradient share into ``p.grad``.

        Returns ``loss`` (detached objective of this micro-batch, already divided by
        ``ctx.n_items`` so the step's objective is the sum over micro-batches), ``logits``
        (detached training logits), ``decide`` (logits that decided correctness, when the
        method uses it) and ``gamma`` (weight of the correct group; 1 = plain).
        """
        logits = forward_logits(model, batch, ctx.num_labels)
        loss = per_example_ce(logits, batch["labels"]).sum() / ctx.n_items
        loss.backward()
        return {"loss": loss.detach(), "logits": logits.detach(), "gamma": 1.0}

    def clip(self, model: torch.nn.Module, cfg: Any) -> torch.Tensor:
        """Global gradient-norm clipping (if ``cfg.max_grad_norm``); returns the norm before."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(())
        if cfg.max_grad_norm is not None and self.global_clip:
            return torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.grad is not None], cfg.max_grad_norm)
        return total_norm(grads)

    def after_step(self, model: torch.nn.Module, ctx: StepContext) -> None:
        """Called after ``optimizer.step()`` and before the gradients are zeroed."""

    def on_epoch_end(self, model: torch.nn.Module, epoch: int, n_epochs: int) -> None:
        """Called after each epoch's last optimizer step (epoch is 0-based)."""

    def finalize(self, model: torch.nn.Module) -> torch.nn.Module:
        """Called once after training, before the final evaluation."""
        return model
