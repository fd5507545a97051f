"""Precision of DSGD's loss: float64 stays float64, half precision is upcast to float32,
float32 computes exactly what it computed before.

The float64 check compares autograd's gradient of ``dsgd_loss`` for a linear softmax model
``z = x W^T`` with the hand-summed ``(G_W + gamma G_C) / m``, where each example's
cross-entropy gradient is the closed form ``(softmax(z_i) - e_{y_i}) x_i^T``, at 1e-10
(float32 arithmetic would miss by about 1e-7).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsgd.trainer import DSGDLoss
from dsgd.weighting import dsgd_loss, soft_example_weights, upcast_half


def _problem(dtype=torch.float64, m=12, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, d, generator=g, dtype=torch.float64)
    W = torch.randn(k, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (m,), generator=g)
    return x.to(dtype), W.to(dtype), y


def _hand_gradient(x: np.ndarray, W: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    z = x @ W.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    G_W = np.zeros_like(W)
    G_C = np.zeros_like(W)
    for i in range(len(y)):
        g_i = np.outer(p[i] - np.eye(W.shape[0])[y[i]], x[i])
        if np.argmax(z[i]) == y[i]:
            G_C += g_i
        else:
            G_W += g_i
    return (G_W + gamma * G_C) / len(y)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_float64_gradient_matches_hand_sum(gamma):
    x, W, y = _problem()
    W.requires_grad_(True)
    loss = dsgd_loss(x @ W.T, y, gamma)
    assert loss.dtype == torch.float64
    loss.backward()
    want = _hand_gradient(x.numpy(), W.detach().numpy(), y.numpy(), gamma)
    corr = (x @ W.T).argmax(1) == y
    assert 0 < int(corr.sum()) < len(y)  # both groups present
    np.testing.assert_allclose(W.grad.numpy(), want, rtol=0, atol=1e-10)


def test_float64_through_dsgdloss_and_soft_weights():
    x, W, y = _problem()
    W.requires_grad_(True)
    crit = DSGDLoss(0.3)
    loss = crit.loss(x @ W.T, y, step=0, total_steps=10)
    assert loss.dtype == torch.float64
    loss.backward()
    want = _hand_gradient(x.numpy(), W.detach().numpy(), y.numpy(), 0.3)
    np.testing.assert_allclose(W.grad.numpy(), want, rtol=0, atol=1e-10)
    assert soft_example_weights(x @ W.detach().T, y, 0.5).dtype == torch.float64


def test_float32_unchanged_from_the_former_formula():
    """The float32 path: weights 1 / gamma in float32 times float32 cross-entropy, summed,
    divided by m — bit for bit (the formula dsgd_loss used before float64 was kept)."""
    x, W, y = _problem(torch.float32)
    z = x @ W.T
    gamma = 0.37
    correct = z.argmax(1) == y
    w = torch.where(correct, torch.tensor(gamma, dtype=torch.float32), torch.tensor(1.0))
    old = (w * F.cross_entropy(z.float(), y, reduction="none")).sum() / len(y)
    assert torch.equal(dsgd_loss(z, y, gamma), old)
    crit = DSGDLoss(gamma)
    assert torch.equal(crit.loss(z, y, step=0, total_steps=10), old)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast_to_float32(half):
    x, W, y = _problem(torch.float32)
    z = (x @ W.T).to(half)
    assert upcast_half(z).dtype == torch.float32 and upcast_half(x.double()).dtype == torch.float64
    gamma = 0.3  # not representable in bf16: the weights must be built in float32
    loss = dsgd_loss(z, y, gamma)
    assert loss.dtype == torch.float32
    z32 = z.float()
    w = torch.where(z32.argmax(1) == y, torch.tensor(gamma, dtype=torch.float32), torch.tensor(1.0))
    want = (w * F.cross_entropy(z32, y, reduction="none")).sum() / len(y)
    assert torch.equal(loss, want)
    assert DSGDLoss(gamma).loss(z, y, step=0, total_steps=1).dtype == torch.float32
