"""PCGrad (Yu et al. 2020) adapted to one task: the wrong (W) and correct (C) examples of
a batch are treated as two objectives, as the DSGD paper does for its baseline.

Per micro-batch, with L_W and L_C the summed per-example losses of the two groups and
g_W, g_C their gradients (two backward passes over one shared forward pass):

* both groups non-empty and g_W . g_C >= 0: direction g_W + g_C;
* g_W . g_C < 0 (conflict): each gradient is projected onto the normal plane of the
  *original* other one, as in Yu et al.:
  g_W' = g_W - (g_W . g_C) / ||g_C||^2 g_C,  g_C' = g_C - (g_C . g_W) / ||g_W||^2 g_W,
  direction g_W' + g_C';
* one group empty: the other group's gradient.

The direction is divided by the number of examples in the optimizer step (``n_items``),
like every other method here. Without gradient accumulation that is the batch size m,
which is also what the paper's Algorithm 1 divides by: in the empty-group branches it
divides by |C| or |W|, and there that group *is* the whole batch, so |C| = m (or |W| = m).

Variants (``method_kwargs={"variant": ...}``):

* ``"yu"`` (default): the projection above, Yu et al.'s PCGrad. With two objectives the
  random task order of Yu et al. does not matter.
* ``"paper"``: the DSGD paper's Algorithm 1 as printed. It differs in one place, line 22:
  on a conflict it steps along
  ``g_W + g_C - (g_W . g_C) / ||g_C|| g_C - (g_W . g_C) / ||g_W|| g_W``,
  dividing by the norms, not the squared norms. That is not a projection: the removed
  component is ``||g_W|| cos(g_W, g_C) g_C`` instead of ``||g_W|| cos(...) g_C / ||g_C||``,
  so it depends on the scale of the gradients (the subtracted terms grow quadratically
  with a common scale s while g_W + g_C grows linearly), and the result need not be
  orthogonal to anything. Everything else is as in Algorithm 1: the branch test
  ``cos(g_W, g_C) >= 0`` (the sign of the dot product), division by m, and the
  empty-group branches (``1/|C| grad L_C`` with |C| = m there; with gradient accumulation
  we divide by ``n_items`` as elsewhere, which Algorithm 1 does not cover).

All trainable parameters are treated as one flattened vector.
"""
from __future__ import annotations

from typing import Any

import torch

from dsgd.methods.base import (Method, StepContext, deciding_logits, forward_logits,
                               per_example_ce)


def pcgrad_combine(g_w: torch.Tensor, g_c: torch.Tensor) -> torch.Tensor:
    """Yu et al.'s PCGrad sum of two flat gradients (no normalisation)."""
    dot = torch.dot(g_w, g_c)
    if dot >= 0:
        return g_w + g_c
    g_w_proj = g_w - dot / g_c.dot(g_c) * g_c
    g_c_proj = g_c - dot / g_w.dot(g_w) * g_w
    return g_w_proj + g_c_proj


def pcgrad_combine_paper(g_w: torch.Tensor, g_c: torch.Tensor) -> torch.Tensor:
    """The DSGD paper's Algorithm 1, line 22, as printed (norms, not squared norms)."""
    dot = torch.dot(g_w, g_c)
    if dot >= 0:
        return g_w + g_c
    return g_w + g_c - dot / g_c.norm() * g_c - dot / g_w.norm() * g_w


COMBINE = {"yu": pcgrad_combine, "paper": pcgrad_combine_paper}


def check_variant(variant: str) -> str:
    if variant not in COMBINE:
        raise ValueError(f"pcgrad: variant must be one of {list(COMBINE)}, got {variant!r}")
    return variant


class PCGrad(Method):
    name = "pcgrad"
    uses_correctness = True

    def __init__(self, variant: str = "yu") -> None:
        self.variant = check_variant(variant)
        self.combine = COMBINE[variant]
        self.last_conflict: bool | None = None  # whether the last micro-batch projected

    def settings(self) -> dict[str, Any]:
        return {} if self.variant == "yu" else {"variant": self.variant}  # old records unchanged

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        labels = batch["labels"]
        logits = forward_logits(model, batch, ctx.num_labels)
        decide = deciding_logits(model, batch, logits, ctx.cfg)
        correct = decide.argmax(dim=-1) == labels
        per_example = per_example_ce(logits, labels)
        params = [p for p in model.parameters() if p.requires_grad]

        n_c = int(correct.sum())
        n_w = labels.shape[0] - n_c
        grads = []
        for k, group in enumerate((~correct, correct)):
            if not (n_w if k == 0 else n_c):
                grads.append(None)
                continue
            retain = k == 0 and n_c > 0  # the graph is needed again for the C group
            g = torch.autograd.grad(per_example[group].sum(), params,
                                    retain_graph=retain, allow_unused=True)
            grads.append(torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1)
                                    for p, gi in zip(params, g)]))
        g_w, g_c = grads
        self.last_conflict = None
        if g_w is None:
            direction = g_c
        elif g_c is None:
            direction = g_w
        else:
            direction = self.combine(g_w, g_c)
            self.last_conflict = bool(torch.dot(g_w, g_c) < 0)
        direction = direction / ctx.n_items

        offset = 0
        for p in params:
            n = p.numel()
            piece = direction[offset:offset + n].view_as(p)
            offset += n
            if p.grad is None:
                p.grad = piece.clone()
            else:
                p.grad.add_(piece)
        loss = per_example.detach().sum() / ctx.n_items
        conflict = torch.tensor(float(bool(self.last_conflict)))  # None (one group empty) -> 0
        return {"loss": loss, "logits": logits.detach(), "decide": decide, "gamma": 1.0,
                "conflict": conflict}
