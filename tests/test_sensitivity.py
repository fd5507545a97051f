"""Sensitivity chapter: the variants beyond the paper against hand-computed values, the
chapter's arms and statistics on hand-worked cases, the stored grid against the cpu-full
profile, and the paper profile's code path offline (tiny-roberta on the COPA fixture)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dsgd.chapters import sensitivity as S
from dsgd.config import RunConfig
from dsgd.engine import train_run
from dsgd.methods import get_method
from dsgd.schedules import effective_fraction, schedule, weight_share
from dsgd.weighting import dsgd_loss, soft_example_weights

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks" / "sensitivity.ipynb"
PARAMS = ROOT / "notebooks" / "params" / "sensitivity"
LN2 = math.log(2.0)


# ------------------------------------------------------------------ soft weights
def test_soft_weights_hand_computed() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 0])
    gamma = 0.2
    # row 0: correct, loss ln(1 + e^-2); row 1: wrong (weight 1); row 2: a tie, p = 1/2,
    # loss ln 2 -> weight exactly 1; row 3: confident, loss ln(1 + e^-5)
    l0, l3 = math.log1p(math.exp(-2.0)), math.log1p(math.exp(-5.0))
    expected = [gamma + (1 - gamma) * l0 / LN2, 1.0, 1.0, gamma + (1 - gamma) * l3 / LN2]
    w = soft_example_weights(logits, labels, gamma)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5)
    assert expected[0] == pytest.approx(0.346497, abs=1e-5)
    assert not w.requires_grad
    # gamma = 1: plain fine-tuning; gamma = 0: weight = min(1, loss / ln 2)
    np.testing.assert_allclose(soft_example_weights(logits, labels, 1.0).numpy(), 1.0)
    np.testing.assert_allclose(soft_example_weights(logits, labels, 0.0).numpy(),
                               [l0 / LN2, 1.0, 1.0, l3 / LN2], rtol=1e-5)


def test_soft_weights_three_classes_uncertain_correct_keeps_full_weight() -> None:
    # correct (argmax 0) but p_0 = e / (e + 2 e^0.5) < 1/2: loss > ln 2, weight 1
    logits = torch.tensor([[1.0, 0.5, 0.5]])
    p0 = math.e / (math.e + 2 * math.exp(0.5))
    assert p0 < 0.5
    assert float(soft_example_weights(logits, torch.tensor([0]), 0.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="gamma"):
        soft_example_weights(logits, torch.tensor([0]), 1.5)


def test_soft_dsgd_loss_gradient_is_the_weighted_sum_of_example_gradients() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    gamma = 0.3
    with torch.no_grad():
        logits = model(x)
        ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        v = torch.clamp(gamma + (1 - gamma) * ce / LN2, max=1.0)  # the rule, written out
    grads = []
    for i in range(6):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()]))
    expected = sum(v[i] * grads[i] for i in range(6)) / 6
    model.zero_grad()
    dsgd_loss(model(x), y, gamma, weighting="soft").backward()
    got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="weighting"):
        dsgd_loss(model(x), y, gamma, weighting="medium")


def test_dsgd_method_weights_option_is_additive() -> None:
    assert get_method("dsgd").settings() == {"loss": "ce", "loss_kwargs": {}}  # unchanged records
    assert get_method("dsgd", weights="soft").settings()["weights"] == "soft"
    with pytest.raises(ValueError, match="weights"):
        get_method("dsgd", weights="fuzzy")
    base = dict(task="synthetic_imbalanced", model="tiny-mlp", train_size=64, eval_size=64,
                batch_size=16, epochs=1.0, lr=3e-3, seed=3)
    hard = train_run(RunConfig(method="dsgd", **base))
    explicit = train_run(RunConfig(method="dsgd", method_kwargs={"weights": "hard"}, **base))
    assert hard["history"]["loss"] == explicit["history"]["loss"]
    assert "weight_total" not in hard["history"]
    soft = train_run(RunConfig(method="dsgd", method_kwargs={"weights": "soft"}, **base))
    h = soft["history"]
    assert len(h["weight_total"]) == len(h["step"])
    # each correct example weighs between gamma_t and 1, each wrong one exactly 1
    for wc, wt, acc, g in zip(h["weight_correct"], h["weight_total"], h["correct_share"], h["gamma"]):
        n_c = round(acc * 16)
        assert g * n_c - 1e-4 <= wc <= n_c + 1e-4
        assert wc - 1e-6 <= wt <= 16 + 1e-4
    # gamma = 1 everywhere: soft weights are all 1, the run is plain fine-tuning
    fft = train_run(RunConfig(method="fft", **base))
    soft1 = train_run(RunConfig(method="dsgd", schedule="constant", tau=1.0,
                                method_kwargs={"weights": "soft"}, **base))
    assert soft1["history"]["loss"] == pytest.approx(fft["history"]["loss"], rel=1e-6)
    assert soft1["predictions"] == fft["predictions"]


# ------------------------------------------------------------------ schedule variants
def test_floor_and_delay_hand_computed() -> None:
    floor = schedule("linear", 1.0, floor=0.5)
    assert [floor(t, 100) for t in (0, 50, 100)] == pytest.approx([0.5, 0.75, 1.0])
    delay = schedule("linear", 1.0, delay=0.25)
    # plain fine-tuning (gamma = tau) for the first quarter, then t/T restarted over 3/4
    assert [delay(t, 100) for t in (0, 10, 24, 25, 62.5, 100)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.0, 0.5, 1.0])
    low = schedule("linear", 0.5, floor=0.2)  # 0.2 + (1 - 0.2/0.5) * 0.5 t/T
    assert [low(t, 10) for t in (0, 5, 10)] == pytest.approx([0.2, 0.35, 0.5])


# ------------------------------------------------------------------ arms
def test_arms_labels_round_trip_and_parts() -> None:
    arms, parts = S.chapter_arms(static_gammas=[0.1, 0.5, 1.0])
    assert list(arms)[:2] == ["FFT", "DSGD"]
    assert "static 1" not in arms  # gamma = 1 is FFT
    assert parts["a"] == ["FFT", "DSGD", "static 0.1", "static 0.5", "descending", "cosine"]
    assert parts["b"] == ["FFT", "DSGD", "τ = 0", "τ = 0.1", "τ = 0.3", "τ = 0.5"]
    assert parts["c"] == ["FFT", "DSGD", "LoRA r=8", "LoRA r=16", "AdaLoRA", "IA3"]
    assert parts["f"] == ["FFT", "DSGD", "floor 0.5", "delay 0.25", "soft weights"]
    base = RunConfig(task="synthetic_blobs", model="tiny-mlp")
    for label, ov in arms.items():
        assert S.arm_label(base.replace(**ov)) == label
    # the paper's PEFT settings (its Figure 5 table)
    assert arms["LoRA r=16"] == {"method": "lora", "lr": 3e-4, "method_kwargs": {"r": 16, "lora_alpha": 16}}
    assert arms["AdaLoRA"]["lr"] == 5e-3 and arms["IA3"]["lr"] == 5e-3
    assert arms["AdaLoRA"]["method_kwargs"] == {"init_r": 64, "target_r": 16}
    assert S.chapter_arms(peft=["lora-r8"], peft_lr={"lora": 1e-3})[0]["LoRA r=8"]["lr"] == 1e-3
    assert S.arm_label({"method": "dsgd", "schedule": "cosine", "tau": 0.5}) == "cosine, τ = 0.5"
    assert S.parse_variant("floor:0.3+soft")["method_kwargs"] == {"weights": "soft"}
    assert S.choice_label("constant", 1.0) == "FFT" and S.choice_label("constant", 0.3) == "static 0.3"
    for bad in ("floor", "floor:x", "warp:1", "delay:1.5", "soft:1"):
        with pytest.raises(ValueError):
            S.parse_variant(bad)
    with pytest.raises(ValueError, match="unknown PEFT"):
        S.chapter_arms(peft=["prefix"])
    with pytest.raises(ValueError, match="must not fix"):
        S.setting_config({"task": "synthetic_blobs", "method": "fft"})


def test_grid_order_puts_the_main_comparison_first() -> None:
    arms, _ = S.chapter_arms(static_gammas=[0.5], schedules=["linear"], taus=[1.0], peft=[], variants=[])
    cfgs = S.grid_configs(RunConfig(task="synthetic_blobs", model="tiny-mlp"), arms, [0, 1])
    assert [(S.arm_label(c), c.seed) for c in cfgs] == [
        ("FFT", 0), ("DSGD", 0), ("FFT", 1), ("DSGD", 1), ("static 0.5", 0), ("static 0.5", 1)]


# ------------------------------------------------------------------ statistics
def _rec(arm_cfg: dict, seed: int, acc: float, verdict: str = "success", epochs=(0.5,)) -> dict:
    cfg = {"method": "fft", "schedule": "linear", "tau": 1.0, **arm_cfg, "seed": seed}
    return {"run_id": f"{S.arm_label(cfg)}-{seed}", "status": "ok", "config": cfg, "verdict": verdict,
            "metrics": {"accuracy": acc}, "majority_rate": 0.6,
            "per_epoch": [{"epoch": i + 1, "accuracy": a} for i, a in enumerate(epochs)]}


def test_summary_and_paired_difference_hand_worked() -> None:
    d = {"method": "dsgd"}
    recs = [_rec({}, 0, 0.5, "collapsed"), _rec({}, 1, 0.6), _rec({}, 2, 0.7),
            _rec(d, 0, 0.6), _rec(d, 1, 0.6), _rec(d, 2, 0.9)]
    df = S.outcome_frame(recs)
    summ = S.arm_summary(df, order=["FFT", "DSGD"], n_boot=2000)
    assert summ.loc["FFT", "failures"] == 1 and summ.loc["FFT", "collapsed"] == 1
    assert summ.loc["FFT", "mean"] == pytest.approx(0.6)
    assert summ.loc["FFT", "std"] == pytest.approx(0.1)  # sample std of 0.5, 0.6, 0.7
    assert summ.loc["FFT", "lo"] >= 0.5 and summ.loc["FFT", "hi"] <= 0.7
    pdiff = S.paired_difference(df, "FFT", "DSGD", n_boot=2000)  # diffs 0.1, 0, 0.2
    assert pdiff["n"] == 3 and pdiff["diff"] == pytest.approx(0.1)
    assert -1e-9 <= pdiff["lo"] <= 0.1 <= pdiff["hi"] <= 0.2 + 1e-9
    fail = S.paired_difference(df, "FFT", "DSGD", "failed")  # 1 failure -> 0
    assert fail["diff"] == pytest.approx(-1 / 3)
    # three paired seeds are too few for a verdict
    assert S.claim_check(df, ["DSGD"], ["FFT"])["verdict"] == "too few seeds"
    fmt = S.format_summary(summ)
    assert fmt.loc["FFT", "failures"] == "1 of 3" and fmt.loc["FFT", "accuracy (%)"] == "60.0 ± 10.0"


def test_claim_check_verdicts() -> None:
    d = {"method": "dsgd"}
    up = [_rec({}, s, 0.6) for s in range(6)] + [_rec(d, s, 0.7 + 0.01 * s) for s in range(6)]
    c = S.claim_check(S.outcome_frame(up), ["DSGD"], ["FFT"], n_boot=2000)
    assert c["verdict"] == "supported" and c["diff"] == pytest.approx(0.125)
    assert S.claim_check(S.outcome_frame(up), ["FFT"], ["DSGD"])["verdict"] == "contradicted"
    mixed = [_rec({}, s, 0.6) for s in range(6)] + [_rec(d, s, 0.6 + (0.1 if s % 2 else -0.08))
                                                     for s in range(6)]
    assert S.claim_check(S.outcome_frame(mixed), ["DSGD"], ["FFT"])["verdict"] == \
        "not resolved (points towards it)"
    assert S.claim_check(S.outcome_frame(up), ["cosine"], ["FFT"])["verdict"] == "no data"
    assert S.spearman([0, 0.1, 0.3, 1.0], [0.5, 0.6, 0.7, 0.9]) == pytest.approx(1.0)
    assert math.isnan(S.spearman([1, 2], [3, 4]))


def test_epoch_summary_and_comparison_table() -> None:
    d = {"method": "dsgd"}
    recs = [_rec({}, 0, 0.6, epochs=(0.5, 0.6)), _rec({}, 1, 0.8, epochs=(0.7, 0.8)),
            _rec(d, 0, 0.9, epochs=(0.6, 0.9)), _rec(d, 1, 0.9, epochs=(0.6, 0.9))]
    es = S.epoch_summary(S.outcome_frame(recs), order=["FFT", "DSGD"])
    fft = es[es["arm"] == "FFT"].set_index("epoch")
    assert fft.loc[1, "mean"] == pytest.approx(0.6) and fft.loc[2, "std"] == pytest.approx(math.sqrt(0.02))
    ct = S.comparison_table(S.outcome_frame(recs), ["DSGD"], against=["FFT"], n_boot=500)
    assert list(ct["acc_diff"]) == pytest.approx([0.2])  # (0.3 + 0.1) / 2


def test_weight_share_and_history_shares() -> None:
    assert float(weight_share(0.5, 0.8)) == pytest.approx(2 / 3)  # 0.4 / (0.2 + 0.4)
    assert float(weight_share(0.0, 0.9)) == 0.0 and float(weight_share(1.0, 0.3)) == pytest.approx(0.3)
    assert float(weight_share(0.0, 1.0)) == 0.0  # no weight at all
    assert float(effective_fraction(0.5, 0.8)) == pytest.approx(0.6)
    rec = {"status": "ok", "config": {"method": "dsgd", "schedule": "linear", "tau": 1.0, "seed": 0,
                                      "batch_size": 4, "grad_accum": 1},
           "timings": {"total_steps": 4},
           "history": {"step": [0, 1, 2, 3], "gamma": [0.0, 0.25, 0.5, 0.75],
                       "correct_share": [0.5, 0.5, 1.0, 1.0],
                       "correct_weight_share": [0.0, 0.2, 1.0, 1.0]}}
    ws = S.weight_summary([rec], last=0.25)
    assert ws.loc["DSGD", "share"] == pytest.approx(0.55)
    assert ws.loc["DSGD", "share_late"] == pytest.approx(1.0)
    assert ws.loc["DSGD", "frac"] == pytest.approx(np.mean([0.5, 0.625, 0.5, 0.75]))
    wf = S.weight_frame([rec], bins=2)
    assert list(wf["share"]) == pytest.approx([0.1, 1.0])


def test_failed_pair_stored_status_and_comparison() -> None:
    d = {"method": "dsgd"}
    recs = [_rec({}, 0, 0.9), _rec({}, 1, 0.6, "collapsed"), _rec({}, 2, 0.6, "failed"),
            _rec(d, 2, 0.8), _rec(d, 0, 0.9)]
    a, b = S.failed_pair(recs)
    assert (a["config"]["seed"], S.arm_label(b["config"])) == (2, "DSGD")  # seed 1 has no DSGD twin
    assert S.failed_pair(recs[:1]) is None
    new = [dict(recs[0], metrics={"accuracy": 0.903}), dict(recs[3], metrics={"accuracy": 0.7})]
    cmp = S.compare_records(new, recs)
    assert list(cmp["ok"]) == [True, False]
    cfgs = [RunConfig(task="synthetic_blobs", model="tiny-mlp", seed=s) for s in (0, 1)]
    fake = [{"run_id": cfgs[0].run_id(), "status": "ok", "config": cfgs[0].to_dict()},
            {"run_id": "other", "status": "ok", "config": cfgs[0].to_dict()}]
    st = S.stored_status(fake, cfgs)
    assert (st["finished"], st["expected"], st["extra"], st["complete"]) == (1, 2, 1, False)


# ------------------------------------------------------------------ profiles
def _defaults() -> dict:
    from tests.test_hygiene import parameters_of

    return parameters_of(NB)


def _profile(name: str) -> dict:
    return {**_defaults(), **yaml.safe_load((PARAMS / f"{name}.yaml").read_text())}


def _grid(p: dict) -> list[RunConfig]:
    arms, _ = S.chapter_arms(p["static_gammas"], p["schedules"], p["taus"], p["peft"], p["variants"],
                             p["peft_lr"])
    return S.grid_configs(S.setting_config(p["grid_setting"]), arms, p["grid_seeds"])


def test_stored_sweep_equals_the_cpu_full_profile() -> None:
    from dsgd.sweep import configs_from_params, load_params

    stored = configs_from_params(load_params(ROOT / "results" / "sensitivity" / "sweep.yaml"))
    cpu_full = _grid(_profile("cpu-full"))
    assert [c.run_id() for c in stored] == [c.run_id() for c in cpu_full]
    assert len(stored) == 200
    # and the default page reads exactly that grid as its stored set
    d = _defaults()
    arms, _ = S.chapter_arms(d["static_gammas"], d["schedules"], d["taus"], d["peft"], d["variants"])
    real = S.grid_configs(S.setting_config(d["real_setting"]), arms, d["real_seeds"])
    assert {c.run_id() for c in real} == {c.run_id() for c in stored}


def test_paper_profile_settings() -> None:
    p = _profile("paper")
    assert p["grid_seeds"] == list(range(42, 133, 10))
    cfgs = _grid(p)
    assert len(cfgs) == 200
    c0 = cfgs[0]
    assert (c0.task, c0.model, c0.batch_size, c0.grad_accum, c0.max_length) == ("copa", "roberta-large", 5, 2, 256)
    lora = [c for c in cfgs if c.method == "lora"]
    assert {c.method_kwargs["r"] for c in lora} == {8, 16} and {c.lr for c in lora} == {3e-4}


@pytest.mark.parametrize("arm", ["FFT", "DSGD", "soft weights", "LoRA r=8", "IA3"])
def test_paper_profile_code_path_offline(arm: str) -> None:
    """The paper profile's configs, with tiny-roberta and the COPA fixture, for 2 steps."""
    p = _profile("paper")
    p["grid_setting"] = {**p["grid_setting"], "model": "tiny-roberta",
                         "task_kwargs": {"source": "fixture"}, "max_length": 64}
    arms, _ = S.chapter_arms(p["static_gammas"], p["schedules"], p["taus"], p["peft"], p["variants"])
    base = S.setting_config(p["grid_setting"]).replace(max_steps=2)
    cfg = S.grid_configs(base, arms, [42], labels=[arm])[0]
    rec = train_run(cfg)
    assert rec["status"] == "ok" and rec["timings"]["steps"] == 2
    assert S.arm_label(rec["config"]) == arm
    assert len(rec["history"]["grad_norm"]) == 2
    if arm == "soft weights":
        assert "weight_total" in rec["history"]
    df = S.outcome_frame([rec])
    assert list(df["arm"]) == [arm]
