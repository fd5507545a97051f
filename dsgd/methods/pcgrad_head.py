"""PCGrad on the classification head only; the body gets the plain summed gradient.

Why it might work, at about FFT's cost. On the majority-class plateau the wrong (W) and
correct (C) groups are the two classes, and their gradients conflict mostly through the
*prior-matching* part — the pull of each class's examples on the logit biases and on the
head's weights along the mean feature (see :mod:`dsgd.methods.balanced`). That part lives
largely in the head. Projecting there breaks the cancellation that keeps the plateau
stationary, as full PCGrad does, while the body is trained on ``G_W + G_C`` as in FFT.

Why it is cheap. For a linear head ``z = A h + b`` (``h``: the head's input, e.g. the
pooled [CLS] vector after dropout), the per-example gradients are ``dl_i/dA = e_i h_i^T``
and ``dl_i/db = e_i`` with ``e_i = dl_i/dz_i`` the error signal (``p_i - e_{y_i}`` for
cross-entropy when ``z`` are the logits). So the group gradients are
``G_W^head = E_W^T H_W`` and ``G_C^head = E_C^T H_C`` — one extra (K x m)(m x d) product
on tensors the single backward pass already has: ``H`` is captured by a forward hook on
the head, ``E`` by a gradient hook on its output. For heads applied at every position
(Llama's ``score``: ``(m, S, d) -> (m, S, K)``, then pooled at the last real token) the
products also sum over positions; ``E`` is zero except at the pooled position.

Per micro-batch: one forward, one backward of ``sum_i l_i / n_items`` (body gradients as
FFT), then the head's gradient is replaced by
``PCGrad(G_W^head, G_C^head) / n_items`` (Yu et al.; ``variant="paper"`` uses the DSGD
paper's Algorithm 1 line 22, see :mod:`dsgd.methods.pcgrad`); with one group empty it is
that group's gradient, i.e. the plain one. Head weight and bias form one flat vector.

Finding the head (assumption, checked): the head is the ``nn.Linear`` whose output are the
logits (or, for per-position heads, the logits before pooling), and each example's loss
depends only on its own rows of that output (true for the models here: no batch-level
mixing after the head). Looked up by name on the (PEFT-unwrapped) model:
``classifier.out_proj`` (RoBERTa/DeBERTa heads: dense -> tanh -> out_proj; only out_proj
is projected, the dense layer counts as body), ``classifier`` (BERT — hence the offline
MiniLM and tiny-bert —, ViT, the synthetic TinyMLP), ``score`` (Llama), ``net._fc``
(EfficientNet), ``head``, ``fc``; or ``method_kwargs={"head": "dotted.path"}``. A model
without such a linear head fails with a message asking for ``head=...``; so does a head
whose output width differs from the task's number of classes or that runs more than
once per forward pass.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
from torch import nn

from dsgd.methods.base import (Method, StepContext, deciding_logits, forward_logits,
                               per_example_ce)
from dsgd.methods.pcgrad import COMBINE, check_variant

HEAD_PATHS = ("classifier.out_proj", "classifier", "score", "net._fc", "head", "fc")


def find_head(model: nn.Module, path: str | None = None) -> nn.Linear:
    """The model's linear classification head (see the module docstring)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for p in ((path,) if path else HEAD_PATHS):
        try:
            mod = operator.attrgetter(p)(base)
        except AttributeError:
            continue
        if isinstance(mod, nn.Linear):
            return mod
        if path:
            raise ValueError(f"pcgrad-head: {path!r} in {type(base).__name__} is a "
                             f"{type(mod).__name__}, not an nn.Linear")
    if path:
        raise ValueError(f"pcgrad-head: no module at {path!r} in {type(base).__name__}")
    raise ValueError(
        f"pcgrad-head needs a linear classification head; none of {list(HEAD_PATHS)} is an "
        f"nn.Linear in {type(base).__name__}. Pass method_kwargs={{'head': 'dotted.path'}} "
        "naming the nn.Linear that outputs the logits.")


def head_group_gradient(err: torch.Tensor, inp: torch.Tensor, mask: torch.Tensor,
                        bias: bool) -> torch.Tensor:
    """Summed head gradient of the examples in ``mask``, flattened as ``[A.ravel(), b]``.

    err: ``dl_i/dz`` of shape ``(m, ..., K)``; inp: the head's input ``(m, ..., d)``;
    mask: ``(m,)`` bool. Positions (the ``...``) are summed over.
    """
    m, k, d = err.shape[0], err.shape[-1], inp.shape[-1]
    e = err.reshape(m, -1, k).float() * mask.float()[:, None, None]
    h = inp.reshape(m, -1, d).float()
    g_a = torch.einsum("msk,msd->kd", e, h).reshape(-1)
    return torch.cat([g_a, e.sum(dim=(0, 1))]) if bias else g_a


class PCGradHead(Method):
    name = "pcgrad-head"
    uses_correctness = True

    def __init__(self, head: str | None = None, variant: str = "yu") -> None:
        self.head_path = head
        self.variant = check_variant(variant)
        self.combine = COMBINE[variant]
        self.last_conflict: bool | None = None

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"head": self.head_path}
        if self.variant != "yu":
            out["variant"] = self.variant
        return out

    def prepare_model(self, model: nn.Module, cfg: Any, *, total_steps: int) -> nn.Module:
        find_head(model, self.head_path)  # fail before training
        return model

    def backward(self, model: nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        head = find_head(model, self.head_path)
        seen: dict[str, Any] = {"calls": 0}

        def keep_err(g: torch.Tensor) -> None:
            seen["err"] = g.detach()

        def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            seen["calls"] += 1
            seen["inp"] = args[0].detach()
            if out.requires_grad:
                out.register_hook(keep_err)

        handle = head.register_forward_hook(hook)
        try:
            logits = forward_logits(model, batch, ctx.num_labels)
        finally:
            handle.remove()
        if seen["calls"] != 1 or logits.shape[-1] != head.out_features:
            raise ValueError(
                f"pcgrad-head: the head {type(head).__name__}(out={head.out_features}) ran "
                f"{seen['calls']} time(s) in the forward pass and the logits have "
                f"{logits.shape[-1]} columns; it must run once and output the logits. "
                "Pass method_kwargs={'head': 'dotted.path'} naming the right nn.Linear.")
        decide = deciding_logits(model, batch, logits, ctx.cfg)
        labels = batch["labels"]
        correct = decide.argmax(dim=-1) == labels
        per_example = per_example_ce(logits, labels)

        params = [head.weight] + ([head.bias] if head.bias is not None else [])
        before = [p.grad for p in params]  # earlier micro-batches of this step
        for p in params:
            p.grad = None
        loss = per_example.sum() / ctx.n_items
        loss.backward()  # body: plain summed gradient; head: replaced below
        if "err" not in seen:
            raise ValueError("pcgrad-head: no gradient reached the head's output")
        err = seen["err"] * ctx.n_items  # d(sum_i l_i)/dz
        n_c = int(correct.sum())
        n_w = labels.shape[0] - n_c
        self.last_conflict = None
        if n_w and n_c:
            g_w = head_group_gradient(err, seen["inp"], ~correct, head.bias is not None)
            g_c = head_group_gradient(err, seen["inp"], correct, head.bias is not None)
            direction = self.combine(g_w, g_c)
            self.last_conflict = bool(torch.dot(g_w, g_c) < 0)
        else:
            direction = head_group_gradient(err, seen["inp"], torch.ones_like(correct),
                                            head.bias is not None)
        direction = direction / ctx.n_items
        offset = 0
        for p, old in zip(params, before):
            piece = direction[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            p.grad = piece if old is None else old + piece
        conflict = torch.tensor(float(bool(self.last_conflict)))
        return {"loss": loss.detach(), "logits": logits.detach(), "decide": decide, "gamma": 1.0,
                "conflict": conflict}
