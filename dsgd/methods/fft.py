"""Plain full fine-tuning (FFT), with and without Adam's bias correction.

"fft" follows Mosbach et al. (2020): AdamW with bias correction, warmup then linear decay.
"fft-nobc" is the same loop with the bias correction turned off, i.e. the optimiser of the
original BERT code, which Mosbach et al. identify as a cause of failed runs.
"""
from __future__ import annotations

from typing import Any

import torch

from dsgd.methods.base import Method
from dsgd.optim import AdamW, param_groups


class FFT(Method):
    """Mean cross-entropy over the batch, one backward pass."""

    name = "fft"


class FFTNoBiasCorrection(FFT):
    """FFT with Adam's bias correction switched off (whatever ``cfg`` says)."""

    name = "fft-nobc"

    def configure_optimizer(self, model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
        return AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, bias_correction=False)
