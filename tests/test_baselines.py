"""Baseline options a reviewer asks for — class-alpha focal loss, LNSR's fixed noise and
[CLS]-only distance, SWA over the last part of training, bagging and disjoint ensembles —
checked against hand computations."""
from __future__ import annotations

import math
import os
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dsgd.config import RunConfig
from dsgd.engine import train_run
from dsgd.ensembles import (Resampled, bootstrap_indices, bootstrap_train, disjoint_subsets,
                            ensemble_table, split_bootstrap)
from dsgd.methods import get_method
from dsgd.methods.lnsr import stability_distance
from dsgd.methods.swa import snapshot_steps
from tests.test_methods import EASY, Net, _ctx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


# ------------------------------------------------------------------ focal, class alpha
def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_focal_binary_class_alpha_by_hand() -> None:
    logits = [[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    labels = [0, 1, 1]
    alpha, gam = 0.25, 2.0
    expected = []
    for row, y in zip(logits, labels):
        p = _softmax(row)[y]
        a = alpha if y == 1 else 1 - alpha  # class 1 gets alpha, class 0 gets 1 - alpha
        expected.append(-a * (1 - p) ** gam * math.log(p))
    f = get_method("focal", alpha=alpha, gamma=gam, alpha_mode="class")
    got = f.per_example(torch.tensor(logits), torch.tensor(labels))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5)
    assert f.settings() == {"alpha": 0.25, "gamma": 2.0, "alpha_mode": "class", "class_alpha": [0.75, 0.25]}
    # the stored setting {alpha, gamma} keeps its meaning: one alpha for every class
    assert get_method("focal", alpha=0.25, gamma=2.0).settings() == {"alpha": 0.25, "gamma": 2.0}
    u = get_method("focal", alpha=alpha, gamma=gam).per_example(torch.tensor(logits), torch.tensor(labels))
    uniform = [-alpha * (1 - _softmax(r)[y]) ** gam * math.log(_softmax(r)[y]) for r, y in zip(logits, labels)]
    np.testing.assert_allclose(u.detach().numpy(), uniform, rtol=1e-5)


def test_focal_per_class_list_and_inverse_frequency() -> None:
    logits, labels = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]), torch.tensor([2, 1])
    w = [0.2, 0.3, 0.5]
    f = get_method("focal", alpha=w, gamma=1.0, alpha_mode="class")
    expected = [-w[y] * (1 - _softmax(r)[y]) * math.log(_softmax(r)[y])
                for r, y in zip(logits.tolist(), labels.tolist())]
    np.testing.assert_allclose(f.per_example(logits, labels).detach().numpy(), expected, rtol=1e-5)
    # inverse frequency: counts 3 and 1 -> (1/3, 1) / (4/3) = (0.25, 0.75)
    inv = get_method("focal", alpha="inverse_frequency", alpha_mode="class")
    inv.observe_data(SimpleNamespace(train_labels=[0, 0, 0, 1], num_labels=2))
    assert inv.class_alpha == pytest.approx([0.25, 0.75])
    # a class with no training example is never a target: weight 0, the rest normalised
    # among themselves: counts (2, 0, 1) -> (1/2, 0, 1) / (3/2) = (1/3, 0, 2/3)
    inv.observe_data(SimpleNamespace(train_labels=[0, 0, 2], num_labels=3))
    assert inv.class_alpha == pytest.approx([1 / 3, 0.0, 2 / 3])
    with pytest.raises(ValueError, match="needs training labels"):
        inv.observe_data(SimpleNamespace(train_labels=[], num_labels=2))


def test_focal_class_alpha_errors() -> None:
    with pytest.raises(ValueError, match="for binary tasks"):
        get_method("focal", alpha=0.25, alpha_mode="class").per_example(torch.zeros(2, 3), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="observe_data"):
        get_method("focal", alpha="inverse_frequency", alpha_mode="class").per_example(
            torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        get_method("focal", alpha=1.5, alpha_mode="class")
    with pytest.raises(ValueError, match="alpha_mode='class'"):
        get_method("focal", alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="alpha_mode"):
        get_method("focal", alpha_mode="per-class")


def test_focal_inverse_frequency_through_the_engine() -> None:
    cfg = RunConfig(method="focal", method_kwargs={"alpha": "inverse_frequency", "alpha_mode": "class",
                                                   "gamma": 1.0},
                    task="synthetic_imbalanced", **{k: v for k, v in EASY.items() if k != "task"})
    from dsgd.data import load_task

    data = load_task("synthetic_imbalanced", None, train_size=cfg.train_size, eval_size=cfg.eval_size,
                     split_seed=cfg.split_seed)
    n0, n1 = np.bincount(data.train_labels, minlength=2)
    rec = train_run(cfg)
    assert rec["status"] == "ok"
    assert rec["method_settings"]["class_alpha"] == pytest.approx([n1 / (n0 + n1), n0 / (n0 + n1)])


# ------------------------------------------------------------------ LNSR options
def test_stability_distance_first_position_by_hand() -> None:
    clean = torch.zeros(2, 3, 2)
    noisy = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]],
                          [[0.0, 1.0], [1.0, 1.0], [2.0, 2.0]]])
    # squared norms per position: ex 0: 5, 9, 0; ex 1: 1, 2, 8
    torch.testing.assert_close(stability_distance(clean, noisy, "first"), torch.tensor([5.0, 1.0]))
    torch.testing.assert_close(stability_distance(clean, noisy), torch.tensor([14 / 3, 11 / 3]))
    flat = torch.tensor([[3.0, 4.0]])  # no position axis: "first" is "all"
    torch.testing.assert_close(stability_distance(torch.zeros(1, 2), flat, "first"), torch.tensor([25.0]))


def test_lnsr_fixed_noise_by_hand() -> None:
    from dsgd.data.synthetic import TinyMLP

    torch.manual_seed(0)
    model = TinyMLP(num_labels=2, n_features=16, hidden=8, n_layers=2, dropout=0.0)
    with torch.no_grad():
        model.embed.weight.mul_(7.0)  # hidden states far from unit scale: relative != fixed
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", seed=0)
    sigma, lambdas = 0.1, (0.2, 0.1)
    method = get_method("lnsr", lambdas=lambdas, sigma=sigma, seed=5, noise="fixed")
    method.prepare_model(model, cfg, total_steps=10)
    g = torch.Generator().manual_seed(3)
    b = {"features": torch.randn(6, 16, generator=g), "labels": torch.randint(0, 2, (6,), generator=g)}
    out = method.backward(model, b, _ctx(6, num_labels=2))
    with torch.no_grad():
        h0 = model.embed(b["features"])
        eps = sigma * torch.randn(h0.shape, generator=torch.Generator().manual_seed(5))  # absolute std
        c1, n1 = model.layers[0](h0), model.layers[0](h0 + eps)
        c2, n2 = model.layers[1](c1), model.layers[1](n1)
        pen = lambdas[0] * (n1 - c1).pow(2).sum() + lambdas[1] * (n2 - c2).pow(2).sum()
    assert float(out["penalty"]) == pytest.approx(float(pen) / 6, rel=1e-5)
    assert method.settings()["noise"] == "fixed"
    assert "noise" not in get_method("lnsr").settings()  # default records unchanged
    with pytest.raises(ValueError, match="noise"):
        get_method("lnsr", noise="uniform")


# ------------------------------------------------------------------ SWA over the last steps
@pytest.mark.parametrize("T,window,span,steps", [
    (150, 5, 0.3, [114, 123, 132, 141, 150]),  # 45 steps in 5 parts of 9
    (150, 3, 0.3, [120, 135, 150]),            # 3 parts of 15
    (100, 3, 0.3, [80, 90, 100]),
    (10, 3, 0.3, [8, 9, 10]),                  # offsets 2, 1, 0
    (5, 5, 0.3, [4, 5]),                       # offsets 1.2, 0.9, 0.6, 0.3, 0 -> 1, 1, 1, 0, 0
    (4, 1, 1.0, [4]),
])
def test_swa_snapshot_steps_by_hand(T: int, window: int, span: float, steps: list[int]) -> None:
    assert snapshot_steps(T, window, span) == steps


def test_swa_span_averages_the_planned_steps() -> None:
    model = Net(seed=0)
    method = get_method("swa", window=3, span=0.3)
    T = 10
    for t in range(T):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(t + 1))  # weights after t + 1 steps = t + 1
        method.after_step(model, SimpleNamespace(t=t, T=T))
        if t in (4, 9):
            method.on_epoch_end(model, t // 5, 2)  # epoch ends are ignored in span mode
    method.finalize(model)
    assert method.snapshot_at == [8, 9, 10] and method.snapshot_epochs == []
    for p in model.parameters():
        torch.testing.assert_close(p.detach(), torch.full_like(p, 9.0))
    assert method.settings() == {"window": 3, "span": 0.3}
    assert get_method("swa").settings() == {"window": 3}
    with pytest.raises(ValueError, match="span"):
        get_method("swa", span=0.0)


def test_swa_span_in_a_run() -> None:
    rec = train_run(RunConfig(method="swa", method_kwargs={"window": 5, "span": 0.3}, **EASY))
    assert rec["status"] == "ok" and rec["metrics"]["accuracy"] > 0.9


# ------------------------------------------------------------------ bagging
def test_bootstrap_indices_properties() -> None:
    a, b = bootstrap_indices(20000, 1), bootstrap_indices(20000, 2)
    assert a.min() >= 0 and a.max() < 20000 and len(a) == 20000
    assert (a == bootstrap_indices(20000, 1)).all() and not (a == b).all()
    # share of distinct examples in a bootstrap sample -> 1 - (1 - 1/n)^n ~ 1 - 1/e
    assert len(set(a.tolist())) / 20000 == pytest.approx(1 - (1 - 1 / 20000) ** 20000, abs=0.01)


def test_split_bootstrap() -> None:
    assert split_bootstrap({"n_signal": 6}, 3) == ({"n_signal": 6}, None)
    assert split_bootstrap({"bootstrap_seed": "seed", "x": 1}, 3) == ({"x": 1}, 3)
    assert split_bootstrap({"bootstrap_seed": 11}, 3) == ({}, 11)
    for bad in (-1, 1.5, True, "auto"):
        with pytest.raises(ValueError, match="bootstrap_seed"):
            split_bootstrap({"bootstrap_seed": bad}, 0)


def test_bootstrap_train_view() -> None:
    from dsgd.data import TaskData

    rows = [{"features": [float(i)], "labels": i % 2} for i in range(6)]
    data = TaskData(name="t", num_labels=2, train=rows, eval=rows[:2])
    boot = bootstrap_train(data, 4)
    idx = bootstrap_indices(6, 4)
    assert [r["features"][0] for r in boot.train] == [float(i) for i in idx]
    assert boot.train_labels.tolist() == [int(i) % 2 for i in idx]
    assert boot.eval is data.eval and boot.info["bootstrap_distinct"] == len(set(idx.tolist()))
    assert data.train is rows  # the original is untouched
    view = Resampled(rows, [5, 5, 0])
    assert len(view) == 3 and view[1] is rows[5] and view[0:2] == [rows[5], rows[5]]


def test_engine_trains_bagging_members_on_the_resample() -> None:
    from dsgd.data import load_task

    base = dict(EASY, epochs=1)
    data = load_task("synthetic_blobs", None)
    bagged = train_run(RunConfig(task_kwargs={"bootstrap_seed": "seed"}, seed=2, **base), data=data)
    by_hand = train_run(RunConfig(seed=2, **base), data=bootstrap_train(data, 2))
    plain = train_run(RunConfig(seed=2, **base), data=data)
    assert bagged["history"]["loss"] == by_hand["history"]["loss"]
    assert bagged["history"]["loss"] != plain["history"]["loss"]
    with pytest.raises(ValueError, match="bootstrap_seed"):
        train_run(RunConfig(task_kwargs={"bootstrap_seed": -2}, **base))


def _rec(seed: int, preds: list[int], boot: object = None, method: str = "fft") -> dict:
    tk = {} if boot is None else {"bootstrap_seed": boot}
    return {"run_id": f"{method}-{seed}-{boot}", "status": "ok", "labels": [0, 1, 1, 0],
            "predictions": preds,
            "config": {"task": "t", "model": "m", "method": method, "seed": seed, "task_kwargs": tk}}


def _vote(pred_lists: list[list[int]]) -> list[int]:
    out = []
    for col in zip(*pred_lists):
        c = Counter(col)
        out.append(min(k for k, v in c.items() if v == max(c.values())))
    return out


PREDS = [[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]


def test_bagging_and_disjoint_ensembles() -> None:
    bag = [_rec(s, PREDS[s], "seed") for s in range(7)]
    seed_runs = [_rec(s, PREDS[(s + 3) % 7]) for s in range(7)]
    labels = [0, 1, 1, 0]
    t = ensemble_table(bag + seed_runs, sizes=(3,), kind="bagging", disjoint=True)
    assert list(t["method"]) == ["BAG(×3)", "BAG(×3)"]  # 7 runs: 2 disjoint triples
    assert list(t["members"]) == [[0, 1, 2], [3, 4, 5]] and set(t["kind"]) == {"bagging"}
    for row, members in zip(t.itertuples(), ([0, 1, 2], [3, 4, 5])):
        vote = _vote([PREDS[s] for s in members])
        assert row.accuracy == pytest.approx(np.mean(np.array(vote) == labels))
    # the seed ensemble leaves the bagged runs out
    s = ensemble_table(seed_runs + bag, sizes=(3,), disjoint=True)
    assert list(s["method"]) == ["ENS(×3)", "ENS(×3)"] and list(s["members"]) == [[0, 1, 2], [3, 4, 5]]
    vote = _vote([PREDS[(k + 3) % 7] for k in (0, 1, 2)])
    assert s.iloc[0]["accuracy"] == pytest.approx(np.mean(np.array(vote) == labels))
    assert disjoint_subsets(list(range(10)), 5) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert disjoint_subsets(list(range(10)), 11) == []


def test_bagging_needs_distinct_resamples() -> None:
    same = [_rec(s, PREDS[s], 7) for s in range(3)]  # one fixed resample for all seeds
    with pytest.raises(ValueError, match="share bootstrap resamples"):
        ensemble_table(same, sizes=(3,), kind="bagging")
    with pytest.raises(ValueError, match="n_subsets"):
        ensemble_table(same, sizes=(3,), disjoint=True, n_subsets=3)
    with pytest.raises(ValueError, match="kind"):
        ensemble_table(same, sizes=(3,), kind="boosting")
