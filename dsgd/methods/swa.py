"""SWA: stochastic weight averaging (Izmailov et al. 2018) of late checkpoints.

Two ways of choosing the checkpoints (equal weights, averaged with
:class:`torch.optim.swa_utils.AveragedModel`):

* default (``span=None``): the ends of the last ``window`` epochs (the paper tunes the
  window in {3, 5}; 3 here by default). If a run has fewer epochs than ``window`` all
  epoch ends are averaged — with the book's short budgets (1.5 epochs = 2 epoch ends)
  that is the weights after step 100 and after step 150, which is not what SWA is for;
* ``span=f`` (a fraction in (0, 1]): ``window`` checkpoints evenly spaced over the last
  ``f`` of the T optimizer steps, the last one at the end of training. After ``s`` steps
  (1-based), the snapshots are taken at
  ``s_j = T - round((window - 1 - j) * f * T / window)`` for j = 0 .. window-1
  (round half up; :func:`snapshot_steps`), i.e. the window splits the last ``f T`` steps
  into ``window`` equal parts and a snapshot closes each. E.g. T = 150, f = 0.3,
  window = 5: steps 114, 123, 132, 141, 150; window = 3: 120, 135, 150. When T is so
  short that two snapshots round to the same step, that step is taken once.

Izmailov et al. average checkpoints taken at a constant or cyclical learning rate after
a conventional training phase; here the run's own schedule (linear decay) is kept, so
the late checkpoints are taken at small learning rates. After training the model's
parameters are replaced by the average and the final evaluation uses it; per-epoch
evaluations show the running (not averaged) model. Buffers are not averaged (the models
here use LayerNorm, which has no running statistics). A run that stops early (divergence,
callback) averages the snapshots it has; with none, the last weights are kept.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from dsgd.methods.base import Method


def snapshot_steps(T: int, window: int, span: float) -> list[int]:
    """Step counts (1-based, ascending, distinct) at which ``span=f`` SWA takes a snapshot."""
    if T < 1:
        raise ValueError(f"SWA needs T >= 1 steps, got {T}")
    offsets = [math.floor((window - 1 - j) * span * T / window + 0.5) for j in range(window)]
    return sorted({max(1, T - o) for o in offsets})


class SWA(Method):
    name = "swa"
    averages_weights = True  # the final model differs from the last per-epoch one

    def __init__(self, window: int = 3, span: float | None = None) -> None:
        if int(window) < 1:
            raise ValueError(f"SWA window must be >= 1, got {window}")
        if span is not None and not 0.0 < float(span) <= 1.0:
            raise ValueError(f"SWA span (fraction of the steps) must lie in (0, 1], got {span}")
        self.window = int(window)
        self.span = None if span is None else float(span)
        self.averaged: AveragedModel | None = None
        self.snapshot_epochs: list[int] = []
        self.snapshot_at: list[int] = []  # steps done at each snapshot (span mode)
        self._planned: set[int] | None = None

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window": self.window}
        if self.span is not None:  # records of epoch-end SWA stay as they were
            out["span"] = self.span
        return out

    def _snapshot(self, model: nn.Module) -> None:
        if self.averaged is None:
            self.averaged = AveragedModel(model, use_buffers=False)
        self.averaged.update_parameters(model)

    def after_step(self, model: nn.Module, ctx: Any) -> None:
        if self.span is None:
            return
        if self._planned is None:
            self._planned = set(snapshot_steps(int(ctx.T), self.window, self.span))
        done = int(ctx.t) + 1
        if done in self._planned:
            self._snapshot(model)
            self.snapshot_at.append(done)

    def on_epoch_end(self, model: nn.Module, epoch: int, n_epochs: int) -> None:
        if self.span is not None or epoch < n_epochs - self.window:
            return
        self._snapshot(model)
        self.snapshot_epochs.append(epoch)

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> nn.Module:
        if self.averaged is None:
            return model
        for p, avg in zip(model.parameters(), self.averaged.module.parameters()):
            p.copy_(avg)
        self.averaged = None  # free the copy
        return model
