"""DSGDTrainer / DSGDCallback / DSGDLoss against an independent plain PyTorch loop.

A tiny randomly initialised BERT (no download, dropout off) is trained for a few optimizer
steps. The reference loop below re-derives DSGD by hand: one big batch per optimizer step,
gamma_t = t / T, v_i = 1 (wrong) or gamma_t (correct), loss = sum_i v_i ce_i / n_step.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

from dsgd.trainer import DSGDCallback, DSGDLoss, DSGDTrainer  # noqa: E402

V, L = 100, 8


def make_data(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (n, L), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(L, dtype=torch.long), "labels": labels[i]}
            for i in range(n)]


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, num_labels=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg)


def targs(tmp_path, *, bs: int, ga: int, epochs: int = 2, optim: str = "adamw_torch", lr: float = 1e-3,
          **kw) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=bs, gradient_accumulation_steps=ga,
        num_train_epochs=epochs, learning_rate=lr, optim=optim, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="no",
        report_to=[], use_cpu=True, seed=0, data_seed=0, train_sampling_strategy="sequential",
        dataloader_num_workers=0, disable_tqdm=True, **kw)


def reference(model, data, *, step_size: int, epochs: int, optim: str, lr: float, gamma_of=None):
    """Independent DSGD: one big batch per optimizer step, same clip and optimizer.

    gamma_of(t, T) defaults to the linear schedule t / T; returns per-step (gamma, share)."""
    params = list(model.parameters())
    if optim == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    chunks = [data[s:s + step_size] for s in range(0, len(data), step_size)]
    T = epochs * len(chunks)
    t, rows = 0, []
    model.train()
    for _ in range(epochs):
        for chunk in chunks:
            ids = torch.stack([x["input_ids"] for x in chunk])
            mask = torch.stack([x["attention_mask"] for x in chunk])
            y = torch.stack([x["labels"] for x in chunk])
            logits = model(input_ids=ids, attention_mask=mask).logits
            ce = F.cross_entropy(logits, y, reduction="none")
            correct = logits.detach().argmax(-1) == y
            gamma = t / T if gamma_of is None else gamma_of(t, T)
            v = torch.where(correct, torch.tensor(gamma), torch.tensor(1.0))
            ((v * ce).sum() / len(chunk)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad()
            nc = int(correct.sum())
            tot = (len(chunk) - nc) + gamma * nc
            rows.append((gamma, gamma * nc / tot if tot > 0 else 0.0))
            t += 1
    return rows


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def assert_same_params(a, b):
    fa, fb = flat(a), flat(b)
    assert torch.allclose(fa, fb, rtol=1e-4, atol=1e-6), f"max diff {(fa - fb).abs().max():.3g}"


@pytest.mark.parametrize("optim,lr", [("adamw_torch", 1e-3), ("sgd", 0.5)])
def test_trainer_with_grad_accum_equals_plain_loop(tmp_path, optim, lr):
    # 22 examples, micro-batch 4, accumulation 2: optimizer steps of 8, 8 and 6 examples
    # (the last step's micro-batches are 4 and 2: only the whole-step count normalises it right).
    data = make_data(22)
    init = tiny_bert()
    ref_model = copy.deepcopy(init)
    rows = reference(ref_model, data, step_size=8, epochs=2, optim=optim, lr=lr)

    model = copy.deepcopy(init)
    tr = DSGDTrainer(model=model, args=targs(tmp_path, bs=4, ga=2, optim=optim, lr=lr),
                     train_dataset=data, schedule="linear", tau=1.0)
    assert tr.model_accepts_loss_kwargs  # so the Trainer hands us num_items_in_batch
    tr.train()
    assert tr.state.max_steps == 6
    assert_same_params(model, ref_model)

    logs = [h for h in tr.state.log_history if "loss" in h]
    assert [h["step"] for h in logs] == list(range(1, 7))
    for h, (gamma, share) in zip(logs, rows):
        assert h["dsgd_gamma"] == pytest.approx((h["step"] - 1) / 6)
        assert h["dsgd_gamma"] == pytest.approx(gamma)
        assert h["dsgd_correct_weight_share"] == pytest.approx(share, abs=1e-9)
        assert 0.0 <= h["dsgd_correct_frac"] <= 1.0 and math.isfinite(h["dsgd_ce"])

    # the comparison has power: plain fine-tuning (gamma = 1) ends elsewhere
    fft = copy.deepcopy(init)
    reference(fft, data, step_size=8, epochs=2, optim=optim, lr=lr, gamma_of=lambda t, T: 1.0)
    assert (flat(fft) - flat(model)).abs().max() > 1e-4


class NoLossKwargs(torch.nn.Module):
    """A model whose forward has no **kwargs: the Trainer then gives no num_items_in_batch."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask=None, labels=None):  # labels: kept by the Trainer
        return self.bert(input_ids=input_ids, attention_mask=attention_mask)


def test_trainer_without_num_items_in_batch(tmp_path):
    data = make_data(24)
    init = tiny_bert(1)
    ref_model = copy.deepcopy(init)
    reference(ref_model, data, step_size=8, epochs=2, optim="sgd", lr=0.5)
    model = NoLossKwargs(copy.deepcopy(init))
    tr = DSGDTrainer(model=model, args=targs(tmp_path, bs=4, ga=2, optim="sgd", lr=0.5), train_dataset=data)
    assert not tr.model_accepts_loss_kwargs  # the fallback normaliser is what is tested
    tr.train()
    assert_same_params(model.bert, ref_model)


def test_gamma_one_equals_plain_trainer(tmp_path):
    data = make_data(24)
    init = tiny_bert(2)
    plain = copy.deepcopy(init)
    Trainer(model=plain, args=targs(tmp_path / "p", bs=8, ga=1), train_dataset=data).train()

    same = copy.deepcopy(init)
    DSGDTrainer(model=same, args=targs(tmp_path / "d1", bs=8, ga=1), train_dataset=data,
                schedule="constant", tau=1.0).train()
    assert_same_params(same, plain)

    # accumulated micro-batches (2 x 4) equal the one big batch of 8
    accum = copy.deepcopy(init)
    DSGDTrainer(model=accum, args=targs(tmp_path / "d2", bs=4, ga=2), train_dataset=data,
                schedule="constant", tau=1.0).train()
    assert_same_params(accum, plain)


def test_evaluation_loss_is_the_plain_loss(tmp_path):
    data = make_data(12)
    model = tiny_bert(6)
    plain = Trainer(model=model, args=targs(tmp_path / "p", bs=4, ga=1), eval_dataset=data).evaluate()
    ours = DSGDTrainer(model=model, args=targs(tmp_path / "d", bs=4, ga=1), eval_dataset=data).evaluate()
    assert ours["eval_loss"] == pytest.approx(plain["eval_loss"], rel=1e-6)
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.stack([x["input_ids"] for x in data])).logits
    ce = F.cross_entropy(logits, torch.stack([x["labels"] for x in data]))
    assert ours["eval_loss"] == pytest.approx(float(ce), rel=1e-5)


def test_callback_adapter_equals_trainer(tmp_path):
    data = make_data(22)
    init = tiny_bert(3)
    a = copy.deepcopy(init)
    DSGDTrainer(model=a, args=targs(tmp_path / "a", bs=4, ga=2), train_dataset=data, schedule="cosine").train()

    b = copy.deepcopy(init)
    dsgd = DSGDLoss("cosine", tau=1.0)
    cb = DSGDCallback(dsgd)
    Trainer(model=b, args=targs(tmp_path / "b", bs=4, ga=2), train_dataset=data,
            compute_loss_func=dsgd, callbacks=[cb]).train()
    assert_same_params(a, b)
    assert [r["step"] for r in cb.history] == list(range(1, 7))
    for r in cb.history:
        t = r["step"] - 1
        assert r["dsgd_gamma"] == pytest.approx(0.5 * (1 - math.cos(math.pi * t / 6)))


def test_correct_from_eval_without_dropout_equals_train(tmp_path):
    data = make_data(16)
    init = tiny_bert(4)
    a, b = copy.deepcopy(init), copy.deepcopy(init)
    DSGDTrainer(model=a, args=targs(tmp_path / "a", bs=4, ga=2), train_dataset=data).train()
    tr = DSGDTrainer(model=b, args=targs(tmp_path / "b", bs=4, ga=2), train_dataset=data, correct_from="eval")
    tr.train()
    assert_same_params(a, b)


def test_bf16_trainer_runs_and_logs(tmp_path):
    data = make_data(16)
    model = tiny_bert(5)
    before = flat(model).clone()
    tr = DSGDTrainer(model=model, args=targs(tmp_path, bs=4, ga=2, epochs=1, bf16=True), train_dataset=data)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert {"dsgd_gamma", "dsgd_correct_weight_share"} <= set(logs[0])
    assert torch.isfinite(flat(model)).all() and not torch.equal(flat(model), before)


@pytest.mark.parametrize("tau", [1.5, -0.1, float("nan")])
def test_bad_tau_raises_before_setup(tau):
    with pytest.raises(ValueError, match="tau"):
        DSGDTrainer(model=None, args=None, tau=tau)  # no model needed: fails before Trainer set-up
    with pytest.raises(ValueError, match="tau"):
        DSGDLoss("linear", tau=tau)


def test_other_bad_arguments_raise():
    with pytest.raises(ValueError, match="correct_from"):
        DSGDTrainer(model=None, args=None, correct_from="dev")
    with pytest.raises(ValueError, match="schedule"):
        DSGDTrainer(model=None, args=None, schedule="zigzag")
    with pytest.raises(ValueError, match="total"):
        DSGDLoss("linear").loss(torch.zeros(2, 2), torch.tensor([0, 1]), step=0)


def test_label_smoothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="label smoothing"):
        DSGDTrainer(model=tiny_bert(), args=targs(tmp_path, bs=4, ga=1, label_smoothing_factor=0.1))


# ----------------------------------------------------------------- plain-loop adapter
def test_dsgd_loss_hand_values_and_half_precision():
    # 3 examples, 2 classes; example 0 and 2 correct, example 1 wrong. t=1, T=3 -> gamma = 1/3.
    logits64 = torch.tensor([[2.0, 0.5], [1.0, 0.25], [-0.5, 1.5]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    lse = torch.logsumexp(logits64, dim=1)
    ce = lse - logits64[torch.arange(3), labels]
    want = (ce[0] / 3 + ce[1] + ce[2] / 3) / 3
    d = DSGDLoss("linear", tau=1.0, total_steps=3)
    got = d.loss(logits64.float(), labels, step=1)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(float(want), rel=1e-6)

    # bf16 logits: gamma must stay 1/3 (a bf16 weight would be 0.33398...)
    lb = logits64.to(torch.bfloat16)
    l64 = lb.double()
    ce_b = torch.logsumexp(l64, 1) - l64[torch.arange(3), labels]
    want_b = (ce_b[0] / 3 + ce_b[1] + ce_b[2] / 3) / 3
    got_b = d.loss(lb, labels, step=1)
    assert got_b.dtype == torch.float32 and float(got_b) == pytest.approx(float(want_b), rel=1e-6)

    # normalizer (whole optimizer step of 6) and weights from other logits (all wrong -> v = 1)
    other = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    got_n = d.loss(logits64.float(), labels, step=1, normalizer=6, weights_from=other)
    assert float(got_n) == pytest.approx(float(ce.sum() / 6), rel=1e-6)

    stats = d.pop_stats()  # 3 calls: weights 1/3*2 correct per call for the first two, none for the third
    assert stats["dsgd_gamma"] == pytest.approx(1 / 3)
    assert stats["dsgd_correct_weight_share"] == pytest.approx((2 / 3 + 2 / 3) / ((1 + 2 / 3) * 2 + 3))
    assert stats["dsgd_correct_frac"] == pytest.approx(4 / 9)
    assert d.pop_stats() == {}


def test_dsgd_loss_gradient_is_weighted_sum():
    # gradient w.r.t. logits of sum_i v_i ce_i / m is v_i (softmax_i - onehot_i) / m
    torch.manual_seed(0)
    z = torch.randn(5, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    d = DSGDLoss("linear", tau=0.5, total_steps=4)
    d.loss(z, y, step=2).backward()  # gamma = 0.5 * 2/4 = 0.25
    with torch.no_grad():
        v = torch.where(z.argmax(1) == y, 0.25, 1.0)
        want = v[:, None] * (torch.softmax(z, 1) - F.one_hot(y, 3).float()) / 5
    assert torch.allclose(z.grad, want, atol=1e-7)
