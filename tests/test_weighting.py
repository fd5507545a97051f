"""DSGD's maths (dsgd.schedules, dsgd.weighting) against independent computations.

Gradients are checked against per-example autograd gradients summed by hand over the
wrong (W) and correct (C) groups; schedules and losses against their closed forms.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsgd.config import RunConfig
from dsgd.schedules import schedule
from dsgd.weighting import correct_weight_share, dsgd_loss, example_weights, focal

torch.set_num_threads(1)


# ------------------------------------------------------------------ helpers
def _small_model(seed: int = 0, k: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, k))


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _per_example_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Gradient of each example's cross-entropy, one autograd call per example."""
    out = []
    for i in range(x.shape[0]):
        loss = -torch.log_softmax(model(x[i:i + 1]), dim=-1)[0, y[i]]
        g = torch.autograd.grad(loss, list(model.parameters()))
        out.append(torch.cat([t.reshape(-1) for t in g]))
    return out


def _labels(kind: str, logits: torch.Tensor, seed: int) -> torch.Tensor:
    pred = logits.argmax(-1)
    k = logits.shape[1]
    if kind == "all_correct":  # W empty
        return pred.clone()
    if kind == "all_wrong":  # C empty
        return (pred + 1) % k
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (logits.shape[0],), generator=g)
    y[0], y[1] = pred[0], (pred[1] + 1) % k  # make sure both groups are non-empty
    return y


# ------------------------------------------------------------- DSGD gradient
@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("kind", ["mixed", "all_correct", "all_wrong"])
def test_dsgd_gradient_matches_per_example_sum(gamma: float, kind: str) -> None:
    model = _small_model(1)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = _labels(kind, model(x), seed=3)
        correct = (model(x).argmax(-1) == y).tolist()
    grads = _per_example_grads(model, x, y)
    zero = torch.zeros_like(grads[0])
    g_w = sum((g for g, c in zip(grads, correct) if not c), zero)
    g_c = sum((g for g, c in zip(grads, correct) if c), zero)
    m = x.shape[0]
    expected = (g_w + gamma * g_c) / m

    model.zero_grad()
    dsgd_loss(model(x), y, gamma).backward()
    torch.testing.assert_close(_flat_grad(model), expected, rtol=1e-5, atol=1e-7)


def test_dsgd_normalizer_and_weights_from() -> None:
    model = _small_model(4)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = _per_example_grads(model, x, y)
    # decide correctness from other logits: examples 0, 1, 2 "correct", the rest wrong
    decide = torch.zeros(6, 3)
    decide[torch.arange(3), y[:3]] = 1.0
    decide[torch.arange(3, 6), (y[3:] + 1) % 3] = 1.0
    gamma, n = 0.25, 10
    expected = (sum(grads[3:], torch.zeros_like(grads[0])) + gamma * sum(grads[:3], torch.zeros_like(grads[0]))) / n
    model.zero_grad()
    dsgd_loss(model(x), y, gamma, normalizer=n, weights_from=decide).backward()
    torch.testing.assert_close(_flat_grad(model), expected, rtol=1e-5, atol=1e-7)


def test_gamma_one_is_plain_mean_cross_entropy() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 1, 1, 2])
    ref = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(dsgd_loss(logits, y, 1.0), ref)


def test_example_weights_and_ties() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 0, 1])  # correct, wrong, tie -> class 0 correct, tie -> wrong
    w = example_weights(logits, y, 0.4)
    torch.testing.assert_close(w, torch.tensor([0.4, 1.0, 0.4, 1.0]))


def test_correct_weight_share_formula() -> None:
    logits = torch.tensor([[2.0, 0.0]] * 3 + [[0.0, 2.0]] * 2)
    y = torch.tensor([0, 0, 0, 0, 0])  # |C| = 3, |W| = 2
    gamma = 0.5
    assert correct_weight_share(logits, y, gamma) == pytest.approx(gamma * 3 / (2 + gamma * 3))
    assert correct_weight_share(logits, y, 0.0) == 0.0


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_schedule_values_at_start_middle_end(tau: float) -> None:
    T = 100
    expect = {
        "linear": (0.0, tau / 2, tau),
        "descending": (tau, tau / 2, 0.0),
        "cosine": (0.0, tau / 2, tau),  # tau/2 (1 - cos(pi/2)) = tau/2
    }
    for name, (a, b, c) in expect.items():
        g = schedule(name, tau)
        assert (g(0, T), g(T // 2, T), g(T, T)) == pytest.approx((a, b, c)), name
    g = schedule("constant", tau, value=0.3)
    assert (g(0, T), g(50, T), g(T, T)) == pytest.approx((0.3, 0.3, 0.3))
    g = schedule(0.2, tau)  # a number = static gamma
    assert g(37, T) == pytest.approx(0.2)


def test_cosine_quarter_point() -> None:
    g = schedule("cosine", 1.0)
    assert g(25, 100) == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))


def test_schedule_floor_and_delay() -> None:
    T, tau, g0 = 100, 1.0, 0.2
    g = schedule("linear", tau, floor=g0)
    assert (g(0, T), g(50, T), g(100, T)) == pytest.approx((g0, g0 + (1 - g0) * 0.5, tau))
    g = schedule("linear", tau, delay=0.5)
    # plain fine-tuning (gamma = tau) during the first half, then linear from 0 to tau
    assert (g(0, T), g(49, T), g(50, T), g(75, T), g(100, T)) == pytest.approx((1.0, 1.0, 0.0, 0.5, 1.0))


# ------------------------------------------------------------------ focal loss
def test_focal_loss_against_formula() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0]])
    y = torch.tensor([0, 2, 0])
    alpha, gam = 0.25, 2.0
    z = logits.numpy().astype(np.float64)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    pt = p[np.arange(3), y.numpy()]
    expected = -alpha * (1 - pt) ** gam * np.log(pt)
    got = focal(alpha, gam)(logits, y)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # alpha = 1, gamma = 0 is cross-entropy
    np.testing.assert_allclose(focal(1.0, 0.0)(logits, y).numpy(), -np.log(pt), rtol=1e-5)


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_value_error() -> None:
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="tau"):
        schedule("linear", 1.5)
    with pytest.raises(ValueError, match="tau"):
        schedule("linear", -0.1)
    with pytest.raises(ValueError, match="tau"):
        RunConfig(tau=1.2)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule("exponential", 1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        dsgd_loss(logits, torch.tensor([0, 1, 2, 3]), 0.5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        dsgd_loss(logits, torch.tensor([0, -1, 2, 1]), 0.5)
    with pytest.raises(ValueError, match="labels must have shape"):
        dsgd_loss(logits, torch.tensor([0, 1, 2]), 0.5)
    with pytest.raises(ValueError, match="logits must have shape"):
        dsgd_loss(torch.zeros(4), torch.tensor([0, 1, 0, 1]), 0.5)
    with pytest.raises(ValueError, match="gamma"):
        example_weights(logits, torch.tensor([0, 1, 2, 0]), 1.5)
