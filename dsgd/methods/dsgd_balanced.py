"""Group-balanced DSGD: the wrong (W) and correct (C) groups carry equal total weight.

DSGD weights a wrong example 1 and a correct one gamma_t; here the weights are set by the
batch instead of a schedule: ``v_i = 1 / (2|W|)`` for ``i`` in W and ``1 / (2|C|)`` for
``i`` in C (each group half of the step), and ``v_i = 1/m`` for everyone when one group is
empty (then there is nothing to balance and the step is plain fine-tuning). Implemented
with mean-1 weights ``w_i = m v_i`` divided by ``n_items``
(:func:`dsgd.methods.reweighting.group_balanced_weights`).

Why it might work. On the majority-class plateau W and C coincide with the minority and
majority classes, so there this is exactly the class-balanced batch of ``balanced``, found
*through the predictions*: the prior-matching parts of ``G_W`` and ``G_C``, which cancel
in FFT's sum ``G_W + G_C`` (and whose cancellation PCGrad breaks by re-weighting the two
groups), no longer cancel, because the target the weighted batch asks the prediction to match is uniform
(see :mod:`dsgd.methods.balanced`). Unlike DSGD's ``gamma_t``, which is near 0 early (the
few wrong examples drive the step) and 1 at the end whatever the batch looks like, the
balance adapts at every step: when most of the batch is correct each correct example is
down-weighted by ``|W| / |C|``; when most is wrong, the wrong ones are. Off the plateau
(both classes in both groups) it still equalises the two groups' pull, which is what
PCGrad's re-weighting ``(1 + |d|/||g||^2)`` does by gradient norms instead of counts.
One backward pass; no schedule is used (``cfg.schedule`` and ``tau`` are ignored). Which
pass decides "correct" is ``cfg.correct_from``, as for DSGD. No settings.
"""
from __future__ import annotations

import torch

from dsgd.methods.reweighting import ReweightedMethod, group_balanced_weights


class DSGDBalanced(ReweightedMethod):
    name = "dsgd-balanced"
    uses_correctness = True

    def example_weights(self, labels: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        return group_balanced_weights(correct)
