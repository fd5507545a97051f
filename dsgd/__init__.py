"""dsgd — Dynamic Scaled Gradient Descent for stable fine-tuning of classifiers.

DSGD splits each mini-batch by the model's current predictions into wrongly (W) and
correctly (C) classified examples and descends along ``(G_W + gamma_t * G_C) / m``:
the correctly classified examples are down-weighted by a schedule ``gamma_t`` in
``[0, tau]``. It costs one backward pass, like plain fine-tuning.

Public names are imported lazily so that ``import dsgd`` stays cheap (no torch import
until a name that needs it is used).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # the method
    "schedule": "dsgd.schedules",
    "SCHEDULES": "dsgd.schedules",
    "example_weights": "dsgd.weighting",
    "dsgd_loss": "dsgd.weighting",
    "correct_weight_share": "dsgd.weighting",
    # framework adapters
    "DSGDTrainer": "dsgd.trainer",
    "DSGDCallback": "dsgd.trainer",
    "DSGDLoss": "dsgd.trainer",
    # methods registry and training engine
    "METHODS": "dsgd.methods",
    "get_method": "dsgd.methods",
    "RunConfig": "dsgd.config",
    "train_run": "dsgd.engine",
    "ensemble_predictions": "dsgd.ensembles",
    "ensemble_table": "dsgd.ensembles",
    # seed sweeps, result store and reporting
    "expand_grid": "dsgd.sweep",
    "run_sweep": "dsgd.sweep",
    "verify_sample": "dsgd.sweep",
    "compare_runs": "dsgd.reproduce",
    "ResultStore": "dsgd.store",
    "table1": "dsgd.report",
    "strip_plot": "dsgd.report",
    # data and models by name
    "load_task": "dsgd.data",
    "load_model": "dsgd.models",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dsgd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
