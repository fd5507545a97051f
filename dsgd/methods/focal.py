"""Fine-tuning with the focal loss of Lin et al. (2017) instead of cross-entropy.

Per example ``-alpha (1 - p_t)^gamma log p_t`` with ``p_t`` the predicted probability of
the true class (one alpha for every class, see :func:`dsgd.weighting.focal`). The paper
reports that the defaults alpha = 0.25, gamma = 2 often made runs diverge or collapse and
tunes both per task: pass them as ``method_kwargs={"alpha": ..., "gamma": ...}``.
"""
from __future__ import annotations

from typing import Any

import torch

from dsgd.methods.base import Method, StepContext, forward_logits
from dsgd.weighting import focal


class Focal(Method):
    name = "focal"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        if alpha <= 0 or gamma < 0:
            raise ValueError(f"focal loss needs alpha > 0 and gamma >= 0, got alpha={alpha}, gamma={gamma}")
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.loss = focal(self.alpha, self.gamma)

    def settings(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "gamma": self.gamma}

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        logits = forward_logits(model, batch, ctx.num_labels)
        loss = self.loss(logits, batch["labels"]).sum() / ctx.n_items
        loss.backward()
        return {"loss": loss.detach(), "logits": logits.detach(), "gamma": 1.0}
