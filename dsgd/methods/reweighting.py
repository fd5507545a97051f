"""Per-example weights that balance a batch, and the one-backward-pass method using them.

Both balanced methods (``balanced`` and ``dsgd-balanced``) descend along the gradient of
``sum_i w_i * loss_i / n_items`` with constant (no-gradient) weights ``w_i`` — one forward
and one backward pass, like plain fine-tuning. They differ only in how ``w_i`` is chosen.

Normalisation: the weights of one micro-batch of ``m`` examples have **mean 1** (they sum
to ``m``), so the objective is on the scale of the mean cross-entropy and, without
gradient accumulation (``n_items = m``), it equals ``sum_i v_i loss_i`` with ``v_i = w_i /
m`` summing to 1 — the form in which the weights are usually written. With gradient
accumulation each micro-batch is balanced on its own and contributes in proportion to its
size, like every method here.

What the history logs (see :mod:`dsgd.engine`): ``gamma`` is the *effective* weight of a
correct example relative to a wrong one, ``(S_C / |C|) / (S_W / |W|)`` with ``S_C, S_W``
the weight sums of the two groups (1 when a group is empty), so that the engine's
``correct_weight_share = gamma |C| / (|W| + gamma |C|)`` is exactly ``S_C / (S_W + S_C)``;
``weight_correct`` and ``weight_total`` are the two sums themselves.
"""
from __future__ import annotations

from typing import Any

import torch

from dsgd.methods.base import Method, StepContext, deciding_logits, forward_logits, per_example_ce


def class_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Mean-1 weights under which every class *present* in the batch has equal total weight.

    ``w_i = m / (K_b * n_{y_i})`` with ``m`` the batch size, ``K_b`` the number of distinct
    labels in the batch and ``n_c`` the count of label ``c``. Float32, no gradient.
    """
    m = labels.shape[0]
    counts = torch.bincount(labels)
    k_present = (counts > 0).sum()
    return (m / (k_present * counts[labels])).float()


def group_balanced_weights(correct: torch.Tensor) -> torch.Tensor:
    """Mean-1 weights giving the wrong (W) and correct (C) groups equal total weight.

    ``w_i = m / (2 |W|)`` for ``i`` in W and ``m / (2 |C|)`` for ``i`` in C; if one group
    is empty every example gets weight 1 (i.e. ``v_i = 1/m``). Float32, no gradient.
    """
    m = correct.shape[0]
    n_c = correct.sum()
    n_w = m - n_c
    both = (n_c > 0) & (n_w > 0)
    one = torch.ones((), device=correct.device)
    w_c = torch.where(both, m / (2.0 * n_c.clamp(min=1)), one)
    w_w = torch.where(both, m / (2.0 * n_w.clamp(min=1)), one)
    return torch.where(correct, w_c, w_w).float()


def effective_gamma(weights: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Mean weight of the correct examples over the mean weight of the wrong ones (1 if a
    group is empty): the DSGD-style ``gamma`` that gives the same weight share."""
    c = correct.float()
    n_c, n_w = c.sum(), (1.0 - c).sum()
    s_c, s_w = (weights * c).sum(), (weights * (1.0 - c)).sum()
    ratio = (s_c / n_c.clamp(min=1.0)) / (s_w / n_w.clamp(min=1.0)).clamp(min=1e-30)
    return torch.where((n_c > 0) & (n_w > 0), ratio, torch.ones((), device=weights.device))


class ReweightedMethod(Method):
    """Weighted cross-entropy with batch-dependent constant weights (one backward pass).

    Subclasses implement :meth:`example_weights`; ``uses_correctness`` says whether the
    weights read the correct/wrong split (then ``cfg.correct_from`` decides which pass
    defines it; otherwise the training pass only feeds the logged statistics).
    """

    def example_weights(self, labels: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        labels = batch["labels"]
        logits = forward_logits(model, batch, ctx.num_labels)
        decide = deciding_logits(model, batch, logits, ctx.cfg) if self.uses_correctness else logits.detach()
        correct = decide.argmax(dim=-1) == labels
        w = self.example_weights(labels, correct).to(logits.device)
        loss = (w * per_example_ce(logits, labels)).sum() / ctx.n_items
        loss.backward()
        out: dict[str, Any] = {"loss": loss.detach(), "logits": logits.detach(),
                               "gamma": effective_gamma(w, correct),
                               "weight_correct": (w * correct).sum(), "weight_total": w.sum()}
        if self.uses_correctness:
            out["decide"] = decide
        return out
