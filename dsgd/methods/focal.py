"""Fine-tuning with the focal loss of Lin et al. (2017) instead of cross-entropy.

Per example ``-alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the predicted probability of
the true class. The paper reports that the defaults alpha = 0.25, gamma = 2 often made
runs diverge or collapse and tunes both per task: pass them as
``method_kwargs={"alpha": ..., "gamma": ...}``.

Two ways of reading ``alpha`` (``alpha_mode``):

* ``"uniform"`` (default, what every stored focal run computed): ``alpha_t = alpha`` for
  every class — a constant factor on the loss (see :func:`dsgd.weighting.focal`); with
  AdamW it only matters through epsilon and the interplay with weight decay.
* ``"class"``: a class-dependent ``alpha_t``, the form Lin et al. define.

  - ``alpha`` a number in (0, 1), binary tasks only: **class 1 gets alpha, class 0 gets
    1 - alpha** (Lin et al. give alpha to the positive / foreground class, 1 - alpha to
    the background). alpha < 0.5 down-weights class 1 (Lin et al.'s 0.25 does so although
    their foreground is the rare class: the focusing term already down-weights the many
    easy background examples). Which class is the rare one differs per task.
  - ``alpha`` a list of K weights > 0: ``alpha_t = alpha[y]`` (no normalisation).
  - ``alpha="inverse_frequency"``: ``alpha_c ∝ 1 / n_c`` with ``n_c`` the number of
    training examples of class c, normalised to sum to 1 over the classes (so two classes
    of equal size get 0.5 each, and in the binary case it is the ``alpha`` / ``1 - alpha``
    pair with alpha = n_0 / n). The counts come from the training split through the
    engine's :meth:`Method.observe_data` hook, before training. A class absent from the
    training split gets weight 0 (it is never a target, so its weight never enters the
    loss) and the others are normalised among themselves.

``method_kwargs={"alpha": 0.25, "gamma": 2, "alpha_mode": "class"}`` is Lin et al.'s
default setting in this library.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from dsgd.methods.base import Method, StepContext, forward_logits
from dsgd.weighting import focal

ALPHA_MODES = ("uniform", "class")


def inverse_frequency_alpha(labels: Sequence[int], num_labels: int) -> list[float]:
    """``alpha_c = (1/n_c) / sum_k (1/n_k)`` over the classes present in the training
    labels; 0 for a class with no training example (never a target: its weight is unused)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_labels)[:num_labels]
    if not counts.any():
        raise ValueError("focal alpha='inverse_frequency' needs training labels; got none")
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return (inv / inv.sum()).tolist()


class Focal(Method):
    name = "focal"

    def __init__(self, alpha: float | Sequence[float] | str = 0.25, gamma: float = 2.0,
                 alpha_mode: str = "uniform") -> None:
        if alpha_mode not in ALPHA_MODES:
            raise ValueError(f"focal: alpha_mode must be one of {list(ALPHA_MODES)}, got {alpha_mode!r}")
        if gamma < 0:
            raise ValueError(f"focal loss needs gamma >= 0, got gamma={gamma}")
        self.alpha_mode, self.gamma = alpha_mode, float(gamma)
        self.class_alpha: list[float] | None = None  # per-class weights (class mode)
        if alpha_mode == "uniform":
            if isinstance(alpha, (str, list, tuple)) or alpha <= 0:
                raise ValueError(f"focal loss needs alpha > 0 (a number) with alpha_mode='uniform', "
                                 f"got alpha={alpha!r}; for per-class weights use alpha_mode='class'")
            self.alpha: Any = float(alpha)
            self.loss = focal(self.alpha, self.gamma)
            return
        if isinstance(alpha, str):
            if alpha != "inverse_frequency":
                raise ValueError(f"focal: alpha must be a number, a list or 'inverse_frequency', got {alpha!r}")
            self.alpha = alpha
        elif isinstance(alpha, (list, tuple)):
            if not alpha or any(float(a) <= 0 for a in alpha):
                raise ValueError(f"focal: per-class alpha must be a non-empty list of weights > 0, got {alpha}")
            self.alpha = self.class_alpha = [float(a) for a in alpha]
        else:
            if not 0.0 < float(alpha) < 1.0:
                raise ValueError(f"focal: a single class alpha must lie in (0, 1) (class 1 gets alpha, "
                                 f"class 0 gets 1 - alpha), got {alpha}")
            self.alpha = float(alpha)
            self.class_alpha = [1.0 - self.alpha, self.alpha]
        self.loss = focal(1.0, self.gamma)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alpha": self.alpha, "gamma": self.gamma}
        if self.alpha_mode != "uniform":  # records of the uniform focal loss stay as they were
            out["alpha_mode"] = self.alpha_mode
            out["class_alpha"] = self.class_alpha
        return out

    def observe_data(self, data: Any) -> None:
        if self.alpha_mode == "class" and self.alpha == "inverse_frequency":
            self.class_alpha = inverse_frequency_alpha(data.train_labels, int(data.num_labels))

    def _alpha_t(self, labels: torch.Tensor, k: int) -> torch.Tensor:
        if self.class_alpha is None:
            raise ValueError("focal alpha='inverse_frequency' needs the training labels: the engine "
                             "passes them through observe_data(data) before training")
        if len(self.class_alpha) != k:
            what = ("a single alpha is for binary tasks; pass a list of per-class weights"
                    if not isinstance(self.alpha, (list, str)) else "pass one weight per class")
            raise ValueError(f"focal: {len(self.class_alpha)} class weights for a task with {k} classes ({what})")
        return torch.tensor(self.class_alpha, dtype=torch.float32, device=labels.device)[labels]

    def per_example(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The per-example focal loss (float32)."""
        loss = self.loss(logits, labels)
        if self.alpha_mode == "class":
            loss = self._alpha_t(labels, logits.shape[-1]) * loss
        return loss

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        logits = forward_logits(model, batch, ctx.num_labels)
        loss = self.per_example(logits, batch["labels"]).sum() / ctx.n_items
        loss.backward()
        return {"loss": loss.detach(), "logits": logits.detach(), "gamma": 1.0}
