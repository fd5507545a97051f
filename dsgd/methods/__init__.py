"""Fine-tuning methods by name: DSGD and the paper's baselines.

``METHODS`` maps a name to a :class:`Method` subclass; :func:`get_method` builds one with
its own settings (``RunConfig.method_kwargs``) and fails at once on an unknown name or
setting. Each method lives in its own module; the engine (``dsgd.engine``) calls the
hooks documented in :mod:`dsgd.methods.base`.

============== ========================================================================
name           what it changes
============== ========================================================================
fft            nothing: mean cross-entropy, AdamW with bias correction (Mosbach et al.)
fft-nobc       AdamW without bias correction (the original BERT optimiser)
dsgd           correct examples weighted by gamma_t (one backward pass)
dsgd-balanced  wrong and correct groups carry equal total weight (one backward pass)
balanced       every class in the batch carries equal total weight (one backward pass)
focal          focal loss (alpha, gamma; alpha_mode "class" for Lin et al.'s class alpha)
lnsr           noise-stability penalty on the last layers (Hua et al. 2021)
noisytune      uniform noise scaled by each tensor's std before training (Wu et al. 2022)
pcgrad         PCGrad between the wrong and correct groups (two backward passes;
               variant "yu" default, "paper" = the DSGD paper's Algorithm 1 as printed)
pcgrad-head    PCGrad on the linear classification head only, body plain (one backward)
swa            average of the weights at the last ``window`` epoch ends (or, with
               ``span``, of ``window`` checkpoints over the last ``span`` of the steps)
cwgnc          per-tensor gradient-norm clipping instead of global clipping
lora           LoRA via peft
adalora        AdaLoRA via peft
ia3            IA3 via peft
============== ========================================================================

Ensembles (majority votes over N finished runs: seed ensembles, or bagging when the
members were trained on bootstrap resamples, ``task_kwargs={"bootstrap_seed": ...}``)
and DSGD(xN) are formed from finished runs, not trained here (see ``dsgd.ensembles``).
"""
from __future__ import annotations

import inspect
from typing import Any

from dsgd.methods.balanced import Balanced
from dsgd.methods.base import Method, StepContext
from dsgd.methods.cwgnc import CWGNC
from dsgd.methods.dsgd import DSGD
from dsgd.methods.dsgd_balanced import DSGDBalanced
from dsgd.methods.fft import FFT, FFTNoBiasCorrection
from dsgd.methods.focal import Focal
from dsgd.methods.lnsr import LNSR
from dsgd.methods.noisytune import NoisyTune
from dsgd.methods.pcgrad import PCGrad
from dsgd.methods.pcgrad_head import PCGradHead
from dsgd.methods.peft_methods import IA3, AdaLoRA, LoRA
from dsgd.methods.swa import SWA

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (FFT, FFTNoBiasCorrection, DSGD, Focal, LNSR, NoisyTune, PCGrad, SWA, CWGNC,
                LoRA, AdaLoRA, IA3, Balanced, DSGDBalanced, PCGradHead)
}


def get_method(name: str, **kwargs: Any) -> Method:
    """Build the method ``name`` with its settings; ``ValueError`` on unknown names/settings."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    cls = METHODS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        params = [p for p in inspect.signature(cls).parameters if p not in ("kw", "kwargs")]
        raise ValueError(f"bad setting(s) for method {name!r}: {e}; its settings are {params}") from None
    return cls(**kwargs)


__all__ = ["METHODS", "Method", "StepContext", "get_method"]
