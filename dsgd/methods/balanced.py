"""Class-balanced batches: every class present in a batch carries the same total weight.

Why it might stabilise fine-tuning like PCGrad, at FFT's cost. With ``p_i`` the softmax
output and ``e_y`` the one-hot label, the cross-entropy gradient with respect to the
logits is ``p_i - e_{y_i}``. On the majority-class plateau the prediction matches the
batch's label frequencies ``pi`` (``p_i ≈ pi`` for every input), so the summed logit
gradient ``sum_i (p_i - e_{y_i}) = m (p - pi)`` vanishes: the prior-matching parts of the
two groups (C = majority-class examples, W = minority-class ones) are equal and opposite
and cancel, and only a small class-separating remainder drives the step — the plateau is
nearly stationary. PCGrad escapes because, for conflicting groups, its direction is
``(1 + |d|/||g_W||^2) g_W + (1 + |d|/||g_C||^2) g_C`` (``d = g_W . g_C < 0``): a
re-weighting of the two groups that up-weights the one with the smaller gradient, so the
cancellation is broken. Class-balanced weights break it directly: they change what the
batch asks the prediction to match from ``pi`` to the uniform ``u`` over the classes
present, ``sum_i w_i (p_i - e_{y_i}) = m (p - u)``, so the plateau ``p = pi`` is no longer
stationary along the prior direction and the step pushes towards a prediction that
depends on the input; at ``p = u`` the prior part is exactly zero and what remains is the
part of the gradient that separates the classes. No correctness split, one backward pass.

Weights (see :func:`dsgd.methods.reweighting.class_balanced_weights`):
``w_i = m / (K_b n_{y_i})`` — mean 1 over the batch; ``K_b`` = classes present in it.
No settings.
"""
from __future__ import annotations

import torch

from dsgd.methods.reweighting import ReweightedMethod, class_balanced_weights


class Balanced(ReweightedMethod):
    name = "balanced"
    uses_correctness = False

    def example_weights(self, labels: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        return class_balanced_weights(labels)
