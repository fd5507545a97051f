"""NoisyTune (Wu et al. 2022): perturb the pretrained weights once before fine-tuning.

Every parameter tensor p gets uniform noise scaled by its own standard deviation:
``p <- p + U(-lambda/2, lambda/2) * std(p)`` with lambda = 0.15 (the value the paper uses
for all tasks). Tensors with a single element have no standard deviation and are left
alone. The noise is drawn from a generator seeded by the run's seed, so it is
reproducible. Training afterwards is plain fine-tuning.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dsgd.methods.base import Method


@torch.no_grad()
def noisytune_(model: nn.Module, lam: float = 0.15, *, generator: torch.Generator | None = None,
               trainable_only: bool = True) -> int:
    """Perturb ``model`` in place; returns the number of tensors perturbed."""
    n = 0
    for p in model.parameters():
        if (trainable_only and not p.requires_grad) or p.numel() < 2:
            continue
        u = torch.rand(p.shape, generator=generator, device="cpu", dtype=torch.float32)
        p.add_(((u - 0.5) * lam * p.float().std()).to(p.device, p.dtype))
        n += 1
    return n


class NoisyTune(Method):
    name = "noisytune"

    def __init__(self, lam: float = 0.15) -> None:
        if lam < 0:
            raise ValueError(f"NoisyTune lam must be >= 0, got {lam}")
        self.lam = float(lam)

    def settings(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def prepare_model(self, model: nn.Module, cfg: Any, *, total_steps: int) -> nn.Module:
        gen = torch.Generator().manual_seed(int(cfg.seed) + 7)
        noisytune_(model, self.lam, generator=gen)
        return model
