"""The methods registry, each method's maths and each method end to end on easy tasks.

Reference values are computed independently of the code under test: per-example autograd
gradients summed by hand, hand-written optimiser updates, closed-form statistics.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from dsgd.config import RunConfig
from dsgd.engine import train_run
from dsgd.methods import METHODS, StepContext, get_method
from dsgd.methods.cwgnc import clip_per_tensor_
from dsgd.methods.lnsr import find_layers
from dsgd.methods.noisytune import noisytune_
from dsgd.methods.pcgrad import pcgrad_combine
from dsgd.optim import AdamW, linear_warmup_decay

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

ALL = {"fft", "fft-nobc", "dsgd", "focal", "lnsr", "noisytune", "pcgrad", "swa", "cwgnc",
       "lora", "adalora", "ia3", "balanced", "dsgd-balanced", "pcgrad-head"}


# ------------------------------------------------------------------ helpers
class Net(torch.nn.Module):
    """Tiny classifier with the batch-dict interface the engine uses."""

    def __init__(self, k: int = 3, seed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.l1 = torch.nn.Linear(5, 4)
        self.drop = torch.nn.Dropout(dropout)
        self.l2 = torch.nn.Linear(4, k)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.l2(self.drop(torch.tanh(self.l1(features))))


def _ctx(n_items: int, gamma: float = 1.0, correct_from: str = "train", **kw) -> StepContext:
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", correct_from=correct_from)
    return StepContext(t=0, T=10, gamma=gamma, micro=0, n_micro=1, n_items=n_items, epoch=0,
                       cfg=cfg, **kw)


def _per_example_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for i in range(x.shape[0]):
        loss = -torch.log_softmax(model(x[i:i + 1]), dim=-1)[0, y[i]]
        g = torch.autograd.grad(loss, list(model.parameters()))
        out.append(torch.cat([t.reshape(-1) for t in g]))
    return out


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _batch(seed: int = 1, m: int = 8, k: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"features": torch.randn(m, 5, generator=g), "labels": torch.randint(0, k, (m,), generator=g)}


# ------------------------------------------------------------------ registry
def test_registry_names_and_errors() -> None:
    assert set(METHODS) == ALL
    for name in ALL:
        assert get_method(name).name == name
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        get_method("sgd")
    with pytest.raises(ValueError, match="bad setting"):
        get_method("focal", beta=1.0)
    assert get_method("focal", alpha=0.5, gamma=1.0).settings() == {"alpha": 0.5, "gamma": 1.0}


# ------------------------------------------------------------------ PCGrad
def test_pcgrad_combine_hand_made_vectors() -> None:
    # conflicting: g_w . g_c = -1 < 0
    g_w, g_c = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g_w' = g_w - (-1)/2 g_c = (0.5, 0.5); g_c' = g_c - (-1)/1 g_w = (0, 1)
    torch.testing.assert_close(pcgrad_combine(g_w, g_c), torch.tensor([0.5, 1.5]))
    # non-conflicting: plain sum
    torch.testing.assert_close(pcgrad_combine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])),
                               torch.tensor([2.0, 1.0]))
    # orthogonal counts as non-conflicting
    torch.testing.assert_close(pcgrad_combine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])),
                               torch.tensor([1.0, 2.0]))
    # general conflicting case, written out; the projection of a onto b's normal plane does
    # not change when b is rescaled (squared norm in the denominator, as in Yu et al.)
    a, b = torch.tensor([3.0, -1.0, 2.0]), torch.tensor([-2.0, 0.5, 1.0])  # a . b = -4.5
    for s in (1.0, 10.0):
        bs = s * b
        expected = (a - (a @ bs) / (bs @ bs) * bs) + (bs - (a @ bs) / (a @ a) * a)
        torch.testing.assert_close(pcgrad_combine(a, bs), expected)
        torch.testing.assert_close((a - (a @ bs) / (bs @ bs) * bs), torch.tensor([3.0, -1.0, 2.0]) + 4.5 / 5.25 * b)


@pytest.mark.parametrize("kind", ["mixed", "all_correct", "all_wrong"])
def test_pcgrad_method_gradient(kind: str) -> None:
    model = Net(seed=3)
    b = _batch(seed=4)
    with torch.no_grad():
        pred = model(b["features"]).argmax(-1)
    if kind == "all_correct":
        b["labels"] = pred.clone()
    elif kind == "all_wrong":
        b["labels"] = (pred + 1) % 3
    correct = (pred == b["labels"]).tolist()
    grads = _per_example_grads(model, b["features"], b["labels"])
    zero = torch.zeros_like(grads[0])
    g_w = sum((g for g, c in zip(grads, correct) if not c), zero)
    g_c = sum((g for g, c in zip(grads, correct) if c), zero)
    m = len(correct)
    if kind == "all_correct":
        expected = g_c / m
    elif kind == "all_wrong":
        expected = g_w / m
    else:
        dot = float(g_w @ g_c)
        if dot < 0:
            expected = (g_w - dot / float(g_c @ g_c) * g_c + g_c - dot / float(g_w @ g_w) * g_w) / m
        else:
            expected = (g_w + g_c) / m
    model.zero_grad()
    get_method("pcgrad").backward(model, b, _ctx(m))
    torch.testing.assert_close(_flat_grad(model), expected, rtol=1e-5, atol=1e-7)


def test_pcgrad_projects_on_a_conflicting_batch() -> None:
    # find a batch whose groups conflict, then check the projected direction is not G_W + G_C
    model = Net(seed=0)
    method = get_method("pcgrad")
    for seed in range(50):
        b = _batch(seed=seed)
        model.zero_grad()
        method.backward(model, b, _ctx(8))
        if method.last_conflict:
            break
    assert method.last_conflict, "no conflicting batch found"
    grads = _per_example_grads(model, b["features"], b["labels"])
    plain = sum(grads, torch.zeros_like(grads[0])) / 8
    assert not torch.allclose(_flat_grad(model), plain)


# ------------------------------------------------------------------ DSGD / focal methods
def test_dsgd_method_uses_eval_pass_when_asked() -> None:
    class ModeNet(Net):
        """Training mode predicts class 2 for every example, eval mode class 0."""

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            shift = [0.0, 0.0, 100.0] if self.training else [100.0, 0.0, 0.0]
            return super().forward(features) + torch.tensor(shift)

    model = ModeNet(seed=5)
    b = _batch(seed=6)
    b["labels"] = torch.tensor([0, 0, 0, 2, 2, 1, 1, 0])
    gamma = 0.2
    correct_eval = (b["labels"] == 0).tolist()
    correct_train = (b["labels"] == 2).tolist()

    def expected(correct: list[bool]) -> torch.Tensor:
        # per-example gradients of the training-mode logits
        out = []
        for i in range(8):
            loss = -torch.log_softmax(model(b["features"][i:i + 1]), -1)[0, b["labels"][i]]
            g = torch.autograd.grad(loss, list(model.parameters()))
            out.append(torch.cat([t.reshape(-1) for t in g]) * (gamma if correct[i] else 1.0))
        return sum(out, torch.zeros_like(out[0])) / 8

    for mode, correct in (("eval", correct_eval), ("train", correct_train)):
        model.zero_grad()
        out = get_method("dsgd").backward(model, b, _ctx(8, gamma=gamma, correct_from=mode))
        torch.testing.assert_close(_flat_grad(model), expected(correct), rtol=1e-5, atol=1e-6)
        assert out["gamma"] == gamma


def test_focal_method_gradient_matches_formula() -> None:
    model = Net(seed=2)
    b = _batch(seed=3)
    alpha, gam = 0.5, 1.5
    # independent: focal formula written out with softmax
    p = torch.softmax(model(b["features"]), -1)[torch.arange(8), b["labels"]]
    ref = (-alpha * (1 - p) ** gam * torch.log(p)).mean()
    ref_grad = torch.autograd.grad(ref, list(model.parameters()))
    model.zero_grad()
    get_method("focal", alpha=alpha, gamma=gam).backward(model, b, _ctx(8))
    torch.testing.assert_close(_flat_grad(model), torch.cat([g.reshape(-1) for g in ref_grad]))


# ------------------------------------------------------------------ optimiser
def _hand_adamw(p0: np.ndarray, grads: list[np.ndarray], lr: float, wd: float, bc: bool,
                b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> np.ndarray:
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for k, g in enumerate(grads, start=1):
        p = p - lr * wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh, vh = (m / (1 - b1**k), v / (1 - b2**k)) if bc else (m, v)
        p = p - lr * mh / (np.sqrt(vh) + eps)
    return p


@pytest.mark.parametrize("bc", [True, False])
def test_adamw_against_hand_written_update(bc: bool) -> None:
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) * s for s in (1.0, 0.1, 3.0, 0.5)]
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = AdamW([p], lr=0.01, weight_decay=0.1, bias_correction=bc)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), _hand_adamw(p0, grads, 0.01, 0.1, bc), rtol=1e-10)
    if bc:  # also the same as torch's AdamW
        q = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
        ref = torch.optim.AdamW([q], lr=0.01, weight_decay=0.1)
        for g in grads:
            q.grad = torch.tensor(g)
            ref.step()
        torch.testing.assert_close(p.detach(), q.detach())


def test_fft_nobc_turns_bias_correction_off() -> None:
    model = Net()
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", adam_bias_correction=True)
    assert all(g["bias_correction"] for g in get_method("fft").configure_optimizer(model, cfg).param_groups)
    assert not any(g["bias_correction"] for g in get_method("fft-nobc").configure_optimizer(model, cfg).param_groups)
    # weight decay only on matrices
    groups = get_method("fft").configure_optimizer(model, cfg).param_groups
    assert {(p.dim() >= 2, g["weight_decay"]) for g in groups for p in g["params"]} == {(True, cfg.weight_decay), (False, 0.0)}


def test_linear_warmup_decay_factors() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = linear_warmup_decay(opt, total_steps=10, warmup_ratio=0.2)  # 2 warmup steps
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    expected = [0.0, 1.0] + [2.0 * (10 - t) / 8 for t in range(2, 10)]
    assert lrs == pytest.approx(expected)


# ------------------------------------------------------------------ NoisyTune
def test_noisytune_perturbation_statistics() -> None:
    torch.manual_seed(0)
    big = torch.nn.Parameter(torch.randn(300, 400) * 0.7 + 0.3)
    single = torch.nn.Parameter(torch.tensor([2.5]))
    model = torch.nn.Module()
    model.big, model.single = big, single
    before = big.detach().clone()
    sd = float(before.std())
    lam = 0.15
    n = noisytune_(model, lam, generator=torch.Generator().manual_seed(1))
    assert n == 1  # the 1-element tensor is skipped
    assert float(single) == 2.5
    delta = (big.detach() - before).double()
    half_width = lam / 2 * sd
    assert float(delta.abs().max()) <= half_width * (1 + 1e-5)
    # U(-a, a) has mean 0 and std a / sqrt(3); 120k draws: tight bounds
    assert abs(float(delta.mean())) < 0.01 * half_width
    assert float(delta.std()) == pytest.approx(half_width / math.sqrt(3), rel=0.01)
    assert float(delta.abs().max()) > 0.99 * half_width


def test_noisytune_is_seeded_through_the_run_config() -> None:
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", seed=3)
    a, b, c = Net(seed=0), Net(seed=0), Net(seed=0)
    get_method("noisytune").prepare_model(a, cfg, total_steps=1)
    get_method("noisytune").prepare_model(b, cfg, total_steps=1)
    get_method("noisytune").prepare_model(c, cfg.replace(seed=4), total_steps=1)
    torch.testing.assert_close(a.l1.weight, b.l1.weight)
    assert not torch.equal(a.l1.weight, c.l1.weight)


# ------------------------------------------------------------------ CWGNC
def test_cwgnc_clips_each_tensor_and_not_globally() -> None:
    model = Net(seed=0)
    model.l1.weight.grad = torch.full_like(model.l1.weight, 2.0)  # norm 2 * sqrt(20)
    model.l1.bias.grad = torch.full_like(model.l1.bias, 0.01)  # norm 0.02 < threshold
    model.l2.weight.grad = torch.full_like(model.l2.weight, -1.0)
    model.l2.bias.grad = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    total_before = math.sqrt(sum(float(g.pow(2).sum()) for g in before.values()))
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", max_grad_norm=1e-3)  # ignored by CWGNC
    thr = 0.5
    ret = get_method("cwgnc", threshold=thr).clip(model, cfg)
    assert float(ret) == pytest.approx(total_before, rel=1e-5)
    for n, p in model.named_parameters():
        norm = float(p.grad.norm())
        assert norm <= thr * (1 + 1e-5), n
        old = before[n]
        if float(old.norm()) > thr:  # clipped to exactly the threshold, direction kept
            assert norm == pytest.approx(thr, rel=1e-4)
            torch.testing.assert_close(p.grad / norm, old / old.norm())
        else:
            torch.testing.assert_close(p.grad, old)


def test_clip_per_tensor_skips_missing_grads() -> None:
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2))
    b.grad = torch.tensor([3.0, 4.0])
    clip_per_tensor_([a, b], 1.0)
    assert a.grad is None and float(b.grad.norm()) == pytest.approx(1.0, rel=1e-5)


# ------------------------------------------------------------------ SWA
def test_swa_is_the_mean_of_its_snapshots() -> None:
    model = Net(seed=0)
    method = get_method("swa", window=3)
    snapshots = []
    n_epochs = 5
    for epoch in range(n_epochs):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) + epoch)
        snapshots.append([p.detach().clone() for p in model.parameters()])
        method.on_epoch_end(model, epoch, n_epochs)
    method.finalize(model)
    assert method.snapshot_epochs == [2, 3, 4]
    for i, p in enumerate(model.parameters()):
        mean = (snapshots[2][i] + snapshots[3][i] + snapshots[4][i]) / 3
        torch.testing.assert_close(p.detach(), mean)


def test_swa_with_fewer_epochs_than_window_averages_all() -> None:
    model = Net(seed=0)
    method = get_method("swa", window=5)
    for epoch in range(2):
        with torch.no_grad():
            model.l2.bias.fill_(float(epoch * 4))
        method.on_epoch_end(model, epoch, 2)
    method.finalize(model)
    torch.testing.assert_close(model.l2.bias.detach(), torch.full((3,), 2.0))


# ------------------------------------------------------------------ LNSR
def test_lnsr_penalty_matches_hand_computation() -> None:
    from dsgd.data.synthetic import TinyMLP

    torch.manual_seed(0)
    model = TinyMLP(num_labels=2, n_features=16, hidden=8, n_layers=2, dropout=0.0)
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", seed=0)
    sigma, lambdas = 0.1, (0.2, 0.1)
    method = get_method("lnsr", lambdas=lambdas, sigma=sigma, seed=123)
    method.prepare_model(model, cfg, total_steps=10)
    g = torch.Generator().manual_seed(9)
    b = {"features": torch.randn(6, 16, generator=g), "labels": torch.randint(0, 2, (6,), generator=g)}
    n_items = 10
    out = method.backward(model, b, _ctx(n_items, num_labels=2))

    # by hand: noise at the input of layers[0]; both layers' outputs compared
    with torch.no_grad():
        h0 = model.embed(b["features"])
        eps = torch.randn(h0.shape, generator=torch.Generator().manual_seed(123))
        eps = eps * sigma * h0.pow(2).mean().sqrt()
        c1 = model.layers[0](h0)
        c2 = model.layers[1](c1)
        n1 = model.layers[0](h0 + eps)
        n2 = model.layers[1](n1)
        pen = lambdas[0] * (n1 - c1).pow(2).sum(-1).sum() + lambdas[1] * (n2 - c2).pow(2).sum(-1).sum()
        ce = torch.nn.functional.cross_entropy(model.classifier(c2), b["labels"], reduction="sum")
    assert float(out["penalty"]) == pytest.approx(float(pen) / n_items, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float(ce + pen) / n_items, rel=1e-5)
    method.finalize(model)  # hooks removed
    assert not model.layers[0]._forward_pre_hooks and not model.layers[1]._forward_hooks


def test_lnsr_noisy_pass_shares_dropout_masks() -> None:
    from dsgd.data.synthetic import TinyMLP

    torch.manual_seed(0)
    model = TinyMLP(num_labels=2, hidden=16, dropout=0.5)
    model.train()
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp")
    method = get_method("lnsr", sigma=1e-6)
    method.prepare_model(model, cfg, total_steps=1)
    b = {"features": torch.randn(8, 16), "labels": torch.randint(0, 2, (8,))}
    out = method.backward(model, b, _ctx(8, num_labels=2))
    # with independent dropout masks the outputs would differ by O(1); shared masks: ~ noise
    assert float(out["penalty"]) < 1e-6


def test_lnsr_needs_a_layer_stack() -> None:
    with pytest.raises(ValueError, match="stack of layers"):
        find_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp")
    with pytest.raises(ValueError, match="only 2"):
        from dsgd.data.synthetic import TinyMLP

        get_method("lnsr", lambdas=(0.1, 0.1, 0.1)).prepare_model(TinyMLP(2), cfg, total_steps=1)


# ------------------------------------------------------------------ PEFT
def test_peft_needs_a_transformers_model() -> None:
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", method="lora")
    with pytest.raises(ValueError, match="Hugging Face"):
        train_run(cfg)


def test_lora_trains_only_adapters_and_head() -> None:
    from dsgd.models import load_model

    model, _ = load_model("tiny-bert", 2, seed=0)
    cfg = RunConfig(task="synthetic_tokens", model="tiny-bert", method="lora")
    model = get_method("lora").prepare_model(model, cfg, total_steps=10)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(("lora_" in n) or ("classifier" in n) for n in trainable)
    assert any("classifier" in n for n in trainable)
    assert any("query" in n for n in trainable) and any("value" in n for n in trainable)
    assert not any("key" in n for n in trainable)


# ------------------------------------------------------------------ easy task
EASY = dict(task="synthetic_blobs", model="tiny-mlp", lr=1e-2, epochs=3, batch_size=16, threads=1)
PEFT_EASY = dict(task="synthetic_tokens", model="tiny-bert", epochs=12, batch_size=16, train_size=192,
                 eval_size=128, threads=1, task_kwargs={"n_signal": 6},
                 model_kwargs={"initializer_range": 0.2})
PEFT_LR = {"lora": 1e-2, "adalora": 2e-2, "ia3": 5e-2}


@pytest.mark.parametrize("method", sorted(ALL - set(PEFT_LR)))
def test_each_method_learns_the_easy_task(method: str) -> None:
    rec = train_run(RunConfig(method=method, **EASY))
    assert rec["status"] == "ok"
    assert rec["metrics"]["accuracy"] > 0.9, rec["per_epoch"]


@pytest.mark.parametrize("method", sorted(PEFT_LR))
def test_each_peft_method_learns_the_easy_text_task(method: str) -> None:
    rec = train_run(RunConfig(method=method, lr=PEFT_LR[method], **PEFT_EASY))
    assert rec["status"] == "ok"
    assert rec["metrics"]["accuracy"] > 0.9, [e["accuracy"] for e in rec["per_epoch"]]


def test_dsgd_and_fft_differ_only_through_gamma() -> None:
    """With tau = 0 ... 1 DSGD changes the update; with a constant gamma = 1 it is FFT."""
    base = dict(EASY, epochs=1)
    fft = train_run(RunConfig(method="fft", **base))
    dsgd_one = train_run(RunConfig(method="dsgd", schedule="constant", tau=1.0, **base))
    dsgd_lin = train_run(RunConfig(method="dsgd", **base))
    assert fft["history"]["loss"] == pytest.approx(dsgd_one["history"]["loss"], rel=1e-6)
    assert fft["predictions"] == dsgd_one["predictions"]
    assert dsgd_lin["history"]["loss"] != pytest.approx(fft["history"]["loss"], rel=1e-6)
    assert dsgd_lin["history"]["gamma"][0] == 0.0
