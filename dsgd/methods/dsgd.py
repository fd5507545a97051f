"""DSGD: down-weight the correctly classified examples of each batch by gamma_t.

The step direction is ``(G_W + gamma_t G_C) / m`` (see :mod:`dsgd.weighting`): one forward
and one backward pass, like plain fine-tuning. ``gamma_t`` comes from the run's schedule
(``cfg.schedule``, ``cfg.tau``, ``cfg.schedule_kwargs``) and is handed in by the engine as
``ctx.gamma``. Which pass decides "correct" is ``cfg.correct_from``: the training pass
(dropout on, the default; free) or an extra no-gradient eval-mode pass.
"""
from __future__ import annotations

from typing import Any

import torch

from dsgd.methods.base import Method, StepContext, deciding_logits, forward_logits
from dsgd.weighting import dsgd_loss, get_loss


class DSGD(Method):
    """DSGD with a per-example loss ``loss`` ("ce" default, or "focal" + ``loss_kwargs``)."""

    name = "dsgd"
    uses_correctness = True

    def __init__(self, loss: str = "ce", loss_kwargs: dict[str, Any] | None = None) -> None:
        self.loss_name = loss
        self.loss_kwargs = dict(loss_kwargs or {})
        self.loss = get_loss(loss, **self.loss_kwargs)  # fails fast on an unknown loss

    def settings(self) -> dict[str, Any]:
        return {"loss": self.loss_name, "loss_kwargs": self.loss_kwargs}

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        logits = forward_logits(model, batch, ctx.num_labels)
        decide = deciding_logits(model, batch, logits, ctx.cfg)
        loss = dsgd_loss(logits, batch["labels"], ctx.gamma, loss=self.loss,
                         normalizer=ctx.n_items, weights_from=decide, check=False)
        loss.backward()
        return {"loss": loss.detach(), "logits": logits.detach(), "decide": decide,
                "gamma": float(ctx.gamma)}
