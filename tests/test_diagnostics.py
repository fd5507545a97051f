"""dsgd.diagnostics against hand-worked cases (confusion matrices, closed-form softmax gradients)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dsgd.diagnostics import (
    batch_grad_norm,
    class_separation,
    confusion_matrix,
    gradient_probe,
    majority_metrics,
    majority_rate,
    metrics,
    pairwise_cosine,
    pick_dense_layers,
    pooled_representations,
    verdict,
)

torch.set_num_threads(1)


# ------------------------------------------------------------------------ verdicts
def test_verdicts_on_hand_made_predictions():
    y = np.array([0] * 70 + [1] * 30)
    assert majority_rate(y) == pytest.approx(0.7)
    # collapsed: one class only (whichever)
    assert verdict(np.zeros(100, int), y) == "collapsed"
    assert verdict(np.ones(100, int), y) == "collapsed"
    # failed: accuracy below the majority rate
    p = y.copy()
    p[:40] = 1  # 40 majority examples wrong, all 30 minority right -> acc 0.6
    assert verdict(p, y) == "failed"
    # degenerate: one minority example found, nothing else -> acc 0.71 > 0.70, informedness 1/30
    p = np.zeros(100, int)
    p[70] = 1
    assert metrics(p, y)["accuracy"] == pytest.approx(0.71)
    assert verdict(p, y) == "degenerate"
    # success: 80% recall on both classes -> acc 0.8, informedness 0.6
    p = y.copy()
    p[:14] = 1
    p[70:76] = 0
    assert verdict(p, y) == "success"
    # diverged wins over everything, and a NaN metric means diverged
    assert verdict(p, y, status="diverged") == "diverged"
    assert verdict(p, y, metric_value=float("nan")) == "diverged"
    with pytest.raises(ValueError):
        verdict(p, y, status="weird")


def test_tie_with_majority_rate_is_failed():
    y = np.array([0, 0, 0, 1, 1])  # majority rate 0.6
    p = np.array([0, 0, 1, 1, 0])  # 3/5 right, predictions vary
    assert metrics(p, y)["accuracy"] == pytest.approx(0.6)
    assert verdict(p, y) == "failed"
    # a metric passed in explicitly, tied with the baseline passed in, is failed too
    assert verdict(p, y, metric_value=0.0, majority_rate=0.0) == "failed"


def test_degenerate_on_balanced_task_near_chance():
    # balanced 50/50: 26/50 right on each class -> acc 0.52 > 0.5 but informedness 0.04
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.r_[np.zeros(26), np.ones(24)], np.r_[np.ones(26), np.zeros(24)]]).astype(int)
    m = metrics(p, y)
    assert m["accuracy"] == pytest.approx(0.52) and m["informedness"] == pytest.approx(0.04)
    assert verdict(p, y) == "degenerate"
    assert verdict(p, y, margin=0.03) == "success"


def test_verdict_with_another_metric_and_its_baseline():
    y = np.array([0] * 6 + [1] * 4)
    p = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    base = majority_metrics(y)
    assert base["mcc"] == 0.0 and base["accuracy"] == pytest.approx(0.6)
    m = metrics(p, y)
    assert verdict(p, y, metric_value=m["mcc"], majority_rate=base["mcc"]) == "success"


# ------------------------------------------------------------------------- metrics
def test_binary_metrics_from_hand_confusion_matrix():
    # TP=3 FN=2 FP=1 TN=4 (positive class 1)
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    assert confusion_matrix(p, y).tolist() == [[4, 1], [2, 3]]
    m = metrics(p, y, num_labels=2)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["f1"] == pytest.approx(6 / 9)  # 2TP / (2TP + FP + FN)
    assert m["macro_f1"] == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert m["mcc"] == pytest.approx((3 * 4 - 1 * 2) / math.sqrt(4 * 5 * 5 * 6))
    assert m["balanced_accuracy"] == pytest.approx((3 / 5 + 4 / 5) / 2)
    assert m["informedness"] == pytest.approx(3 / 5 + 4 / 5 - 1)
    assert m["kappa"] == pytest.approx((0.7 - 0.5) / (1 - 0.5))  # pe = .5*.4 + .5*.6
    assert m["pred_share"] == pytest.approx([0.6, 0.4])
    assert m["majority_rate"] == pytest.approx(0.5)


def test_multiclass_metrics_from_hand_confusion_matrix():
    # C[true, pred] = [[3,1,0],[1,2,1],[0,1,1]]
    c = np.array([[3, 1, 0], [1, 2, 1], [0, 1, 1]])
    y = np.concatenate([[i] * c[i].sum() for i in range(3)])
    p = np.concatenate([np.repeat(np.arange(3), c[i]) for i in range(3)])
    assert (confusion_matrix(p, y) == c).all()
    m = metrics(p, y)
    assert m["accuracy"] == pytest.approx(0.6)
    # Gorodkin: (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)), t = p = [4,4,2]
    assert m["mcc"] == pytest.approx((6 * 10 - 36) / 64)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 4 + 1 / 2) / 3)
    assert m["macro_f1"] == pytest.approx((6 / 8 + 4 / 8 + 2 / 4) / 3)
    assert math.isnan(m["f1"])
    assert m["informedness"] == pytest.approx((m["balanced_accuracy"] - 1 / 3) / (2 / 3))


def test_metrics_agree_with_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        y = rng.integers(0, k, 200)
        p = np.where(rng.random(200) < 0.6, y, rng.integers(0, k, 200))
        m = metrics(p, y, num_labels=k)
        assert m["mcc"] == pytest.approx(sk.matthews_corrcoef(y, p))
        assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro"))
        assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p))
        assert m["informedness"] == pytest.approx(sk.balanced_accuracy_score(y, p, adjusted=True))
        assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(y, p))
        if k == 2:
            assert m["f1"] == pytest.approx(sk.f1_score(y, p))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="length"):
        metrics([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics([], [])
    with pytest.raises(ValueError, match="num_labels"):
        metrics([0, 2], [0, 1], num_labels=2)


# ------------------------------------------------------------------ gradient probe
class LinearSoftmax(nn.Module):
    def __init__(self, d: int, k: int, bias: bool = False):
        super().__init__()
        self.fc = nn.Linear(d, k, bias=bias)

    def forward(self, x):
        return self.fc(x)


def test_gradient_probe_matches_closed_form():
    torch.manual_seed(0)
    model = LinearSoftmax(4, 3, bias=True)
    X = torch.randn(12, 4)
    y = torch.randint(0, 3, (12,))
    W = model.fc.weight.detach().double().numpy()
    b = model.fc.bias.detach().double().numpy()
    # fold the bias into the inputs for the hand computation of the weight gradient
    z = X.double().numpy() @ W.T + b
    correct = z.argmax(1) == y.numpy()
    assert 0 < correct.sum() < 12  # both groups present
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    per = (p - np.eye(3)[y.numpy()])[:, :, None] * X.double().numpy()[:, None, :]
    gw, gc = per[~correct].sum(0).ravel(), per[correct].sum(0).ravel()

    model.train()
    out = gradient_probe(model, (X, y), ["fc.weight"])
    assert out["n_wrong"] == int((~correct).sum()) and out["n_correct"] == int(correct.sum())
    assert out["norm_w"] == pytest.approx(np.linalg.norm(gw), rel=1e-5)
    assert out["norm_c"] == pytest.approx(np.linalg.norm(gc), rel=1e-5)
    assert out["norm_total"] == pytest.approx(np.linalg.norm(gw + gc), rel=1e-5)
    cos = gw @ gc / (np.linalg.norm(gw) * np.linalg.norm(gc))
    assert out["cos_wc"] == pytest.approx(cos, abs=1e-5)
    assert out["cos_wc_layer_mean"] == pytest.approx(cos, abs=1e-5)
    # diagnostic only: no .grad written, mode unchanged
    assert model.fc.weight.grad is None and model.fc.bias.grad is None
    assert model.training
    model.eval()
    gradient_probe(model, (X, y), ["fc.weight"])
    assert not model.training


def test_gradient_probe_two_parameters_concatenates():
    # weight and bias together: G = [(p - e) x^T, (p - e)] summed per group
    torch.manual_seed(1)
    model = LinearSoftmax(3, 2, bias=True)
    X, y = torch.randn(8, 3), torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    W, b = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    z = X.double().numpy() @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = p - np.eye(2)[y.numpy()]
    correct = z.argmax(1) == y.numpy()
    assert 0 < correct.sum() < 8
    gw_w = (r[~correct][:, :, None] * X.double().numpy()[~correct][:, None, :]).sum(0).ravel()
    gc_w = (r[correct][:, :, None] * X.double().numpy()[correct][:, None, :]).sum(0).ravel()
    gw_b, gc_b = r[~correct].sum(0), r[correct].sum(0)

    def cos(a, c):
        return a @ c / (np.linalg.norm(a) * np.linalg.norm(c))

    out = gradient_probe(model, {"x": X, "labels": y}, ["fc.weight", "fc.bias"])
    assert out["cos_wc"] == pytest.approx(cos(np.r_[gw_w, gw_b], np.r_[gc_w, gc_b]), abs=1e-5)
    assert out["cos_wc_layer_mean"] == pytest.approx((cos(gw_w, gc_w) + cos(gw_b, gc_b)) / 2, abs=1e-5)
    assert out["norm_w"] == pytest.approx(np.linalg.norm(np.r_[gw_w, gw_b]), rel=1e-5)


def test_gradient_probe_exact_cancellation():
    # W = 0: uniform softmax, argmax ties -> class 0. Same input with labels 0 (correct) and
    # 1 (wrong): gradients (p - e_0) a^T and (p - e_1) a^T are exact opposites.
    model = LinearSoftmax(3, 2)
    with torch.no_grad():
        model.fc.weight.zero_()
    a = torch.tensor([1.0, -2.0, 0.5])
    out = gradient_probe(model, (torch.stack([a, a]), torch.tensor([0, 1])), ["fc.weight"])
    assert out["n_wrong"] == 1 and out["n_correct"] == 1
    assert out["cos_wc"] == pytest.approx(-1.0, abs=1e-12)
    assert out["norm_total"] == pytest.approx(0.0, abs=1e-12)
    assert out["norm_w"] == pytest.approx(out["norm_c"]) and out["norm_w"] == pytest.approx(
        math.sqrt(0.5) * float(a.norm()))  # ||(-.5, .5)|| * ||a||
    assert out["cancellation"] == pytest.approx(1.0)


def test_gradient_probe_empty_group_gives_nan():
    model = LinearSoftmax(2, 2)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    X = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    out = gradient_probe(model, (X, torch.tensor([0, 1])), ["fc.weight"])  # both correct
    assert out["n_wrong"] == 0 and out["norm_w"] == 0.0 and math.isnan(out["cos_wc"])
    with pytest.raises(ValueError, match="unknown"):
        gradient_probe(model, (X, torch.tensor([0, 1])), ["nope.weight"])


def test_batch_grad_norm():
    model = LinearSoftmax(2, 2, bias=True)
    assert batch_grad_norm(model) == 0.0
    model.fc.weight.grad = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    model.fc.bias.grad = torch.tensor([0.0, 4.0])
    assert batch_grad_norm(model) == pytest.approx(5.0)


def tiny_bert(seed=0):
    tr = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = tr.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    return tr.BertForSequenceClassification(cfg)


def test_pick_dense_layers_on_bert():
    model = tiny_bert()
    linear_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    picked = pick_dense_layers(model, k=5, seed=0)
    assert len(picked) == 5 and len(set(picked)) == 5
    assert set(picked) <= linear_weights
    assert not any("embed" in n for n in picked)
    assert pick_dense_layers(model, k=5, seed=0) == picked
    assert any(pick_dense_layers(model, k=5, seed=s) != picked for s in range(1, 5))
    assert set(pick_dense_layers(model, k=1000)) == linear_weights  # all 2 layers x 6 + pooler + head
    with pytest.raises(ValueError):
        pick_dense_layers(model, k=0)


def test_gradient_probe_on_bert_leaves_no_trace():
    model = tiny_bert(1)
    model.train()
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, 100, (6, 8), generator=g),
             "attention_mask": torch.ones(6, 8, dtype=torch.long), "labels": torch.tensor([0, 1, 0, 1, 0, 1])}
    names = pick_dense_layers(model, k=4, seed=0)
    rng_before = torch.get_rng_state()
    out = gradient_probe(model, batch, names)
    assert torch.equal(torch.get_rng_state(), rng_before)  # eval-mode pass: no dropout draws
    assert all(p.grad is None for p in model.parameters()) and model.training
    assert out["n_wrong"] + out["n_correct"] == 6
    assert out["norm_total"] <= out["norm_w"] + out["norm_c"] + 1e-9


# ---------------------------------------------------------------- representations
def test_pairwise_cosine_and_class_separation_by_hand():
    reps = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    s = pairwise_cosine(reps)
    r = 1 / math.sqrt(2)
    want = np.array([[1, 0, r, 0], [0, 1, r, 0], [r, r, 1, 0], [0, 0, 0, 0]])
    assert np.allclose(s, want)
    # two tight classes, orthogonal to each other: within 1, between 0
    assert class_separation(np.array([[1.0, 0], [2.0, 0], [0, 1.0], [0, 3.0]]), [0, 0, 1, 1]) == pytest.approx(1.0)
    # all alike (collapsed-looking): separation 0
    assert class_separation(np.ones((4, 3)), [0, 1, 0, 1]) == pytest.approx(0.0)
    # mixed case: within pairs (0,1): cos 0 ; (2,3): cos r ; between: (0,2) 1, (0,3) r, (1,2) 0, (1,3) r
    reps = np.array([[1.0, 0], [0, 1.0], [1.0, 0], [1.0, 1.0]])
    assert class_separation(reps, [0, 0, 1, 1]) == pytest.approx((0 + r) / 2 - (1 + r + 0 + r) / 4)
    assert math.isnan(class_separation(reps, [0, 0, 0, 0]))


def test_pooled_representations_bert_first_token():
    model = tiny_bert(2)
    model.train()
    ids = torch.randint(5, 100, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 7, dtype=torch.long)
    reps = pooled_representations(model, {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 0])})
    assert model.training
    model.eval()
    with torch.no_grad():
        want = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    assert reps.shape == (3, 32) and torch.allclose(reps, want, atol=1e-6)


def test_pooled_representations_decoder_last_non_pad_token():
    tr = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = tr.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         pad_token_id=0, num_labels=2)
    model = tr.LlamaForSequenceClassification(cfg)
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    ids = ids * mask  # right padding with pad id 0
    reps = pooled_representations(model, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(reps[0], h[0, 3], atol=1e-5) and torch.allclose(reps[1], h[1, 5], atol=1e-5)


def test_pooled_representations_head_input_for_plain_models():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    model = nn.Sequential(body, nn.Dropout(0.5), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    reps = pooled_representations(model, (x, torch.zeros(5, dtype=torch.long)))
    assert torch.allclose(reps, body(x).detach())  # dropout off: eval mode during the pass
    assert model.training
