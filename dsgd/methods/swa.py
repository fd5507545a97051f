"""SWA: stochastic weight averaging (Izmailov et al. 2018) over the last epochs.

Snapshots are taken at the end of each of the last ``window`` epochs (3 or 5 in the paper,
which tunes it; 3 here by default) and averaged with :class:`torch.optim.swa_utils.AveragedModel`
(equal weights). After training the model's parameters are replaced by the average, and
the final evaluation uses it; per-epoch evaluations show the running (not averaged)
model. If a run has fewer epochs than ``window`` all epoch ends are averaged. Buffers are
not averaged (the models here use LayerNorm, which has no running statistics).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from dsgd.methods.base import Method


class SWA(Method):
    name = "swa"
    averages_weights = True  # the final model differs from the last per-epoch one

    def __init__(self, window: int = 3) -> None:
        if int(window) < 1:
            raise ValueError(f"SWA window must be >= 1, got {window}")
        self.window = int(window)
        self.averaged: AveragedModel | None = None
        self.snapshot_epochs: list[int] = []

    def settings(self) -> dict[str, Any]:
        return {"window": self.window}

    def on_epoch_end(self, model: nn.Module, epoch: int, n_epochs: int) -> None:
        if epoch < n_epochs - self.window:
            return
        if self.averaged is None:
            self.averaged = AveragedModel(model, use_buffers=False)
        self.averaged.update_parameters(model)
        self.snapshot_epochs.append(epoch)

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> nn.Module:
        if self.averaged is None:
            return model
        for p, avg in zip(model.parameters(), self.averaged.module.parameters()):
            p.copy_(avg)
        self.averaged = None  # free the copy
        return model
