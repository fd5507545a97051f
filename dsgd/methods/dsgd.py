"""DSGD: down-weight the correctly classified examples of each batch by gamma_t.

The step direction is ``(G_W + gamma_t G_C) / m`` (see :mod:`dsgd.weighting`): one forward
and one backward pass, like plain fine-tuning. ``gamma_t`` comes from the run's schedule
(``cfg.schedule``, ``cfg.tau``, ``cfg.schedule_kwargs``) and is handed in by the engine as
``ctx.gamma``. Which pass decides "correct" is ``cfg.correct_from``: the training pass
(dropout on, the default; free) or an extra no-gradient eval-mode pass.

``weights="soft"`` (beyond the paper) replaces the hard 1 / gamma_t split by the
loss-driven weights of :func:`dsgd.weighting.soft_example_weights`; the step then also
logs ``weight_correct`` and ``weight_total`` (sums of the weights of the correct examples
and of all examples), from which the true weight share of the correct group follows. The
default ``"hard"`` is the paper's method and leaves runs and records exactly as before.
"""
from __future__ import annotations

from typing import Any

import torch

from dsgd.methods.base import Method, StepContext, deciding_logits, forward_logits
from dsgd.weighting import WEIGHTINGS, dsgd_loss, get_loss, weights_for


class DSGD(Method):
    """DSGD with a per-example loss ``loss`` ("ce" default, or "focal" + ``loss_kwargs``)
    and weights ``weights`` ("hard", the paper's split, default; or "soft")."""

    name = "dsgd"
    uses_correctness = True

    def __init__(self, loss: str = "ce", loss_kwargs: dict[str, Any] | None = None,
                 weights: str = "hard") -> None:
        self.loss_name = loss
        self.loss_kwargs = dict(loss_kwargs or {})
        self.loss = get_loss(loss, **self.loss_kwargs)  # fails fast on an unknown loss
        if weights not in WEIGHTINGS:
            raise ValueError(f"dsgd: weights must be one of {list(WEIGHTINGS)}, got {weights!r}")
        self.weights = weights

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loss": self.loss_name, "loss_kwargs": self.loss_kwargs}
        if self.weights != "hard":  # records of the paper's method stay as they were
            out["weights"] = self.weights
        return out

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        logits = forward_logits(model, batch, ctx.num_labels)
        decide = deciding_logits(model, batch, logits, ctx.cfg)
        loss = dsgd_loss(logits, batch["labels"], ctx.gamma, loss=self.loss,
                         normalizer=ctx.n_items, weights_from=decide, check=False,
                         weighting=self.weights)
        loss.backward()
        out = {"loss": loss.detach(), "logits": logits.detach(), "decide": decide,
               "gamma": float(ctx.gamma)}
        if self.weights != "hard":
            w = weights_for(self.weights, decide, batch["labels"], ctx.gamma, check=False)
            correct = decide.argmax(dim=-1) == batch["labels"]
            out["weight_correct"] = (w * correct).sum()
            out["weight_total"] = w.sum()
        return out
