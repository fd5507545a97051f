"""The optimiser and learning-rate schedule every method shares.

:class:`AdamW` is decoupled-weight-decay Adam (Loshchilov & Hutter) with a switch for
Adam's bias correction. ``bias_correction=False`` reproduces the optimiser of the original
BERT code ("BertAdam"), which Mosbach et al. (2020) identify as one cause of failed
fine-tuning runs; with ``bias_correction=True`` it matches :class:`torch.optim.AdamW`.

The update for a parameter p with gradient g at step k = 1, 2, ... is

    p <- p - lr * wd * p                               (decoupled weight decay)
    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
    p <- p - lr * m_hat / (sqrt(v_hat) + eps)

with ``m_hat = m / (1 - b1^k)``, ``v_hat = v / (1 - b2^k)`` when bias correction is on and
``m_hat = m``, ``v_hat = v`` when it is off.

:func:`linear_warmup_decay` is the linear warmup then linear decay to zero used by the
paper and by Hugging Face's ``get_linear_schedule_with_warmup``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR


class AdamW(torch.optim.Optimizer):
    """AdamW with an on/off switch for bias correction (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must be >= 0")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            b1, b2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            ms, vs = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
            # all tensors of a group advance together, so one step count serves the group
            k = self.state[params[0]]["step"]

            if wd != 0:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_lerp_(ms, grads, 1.0 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, grads, grads, value=1.0 - b2)
            denom = torch._foreach_sqrt(vs)
            if group["bias_correction"]:
                step_size = lr / (1.0 - b1**k)
                torch._foreach_div_(denom, math.sqrt(1.0 - b2**k))
            else:
                step_size = lr
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, ms, denom, value=-step_size)
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (matrices) and not decayed (biases, norms).

    The Hugging Face convention: weight decay applies to tensors with >= 2 dimensions only.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Number of warmup steps: ``ceil(warmup_ratio * total_steps)`` (as Hugging Face)."""
    return int(math.ceil(warmup_ratio * total_steps))


def linear_warmup_decay(optimizer: torch.optim.Optimizer, total_steps: int,
                        warmup_ratio: float = 0.1) -> LambdaLR:
    """LR factor rising linearly 0 -> 1 over the warmup, then falling linearly to 0 at T.

    Factor at optimizer step t (0-based): ``t / w`` for ``t < w``, else ``(T - t) / (T - w)``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must lie in [0, 1), got {warmup_ratio}")
    w = warmup_steps(total_steps, warmup_ratio)

    def factor(t: int) -> float:
        if t < w:
            return t / max(1, w)
        return max(0.0, (total_steps - t) / max(1, total_steps - w))

    return LambdaLR(optimizer, factor)
