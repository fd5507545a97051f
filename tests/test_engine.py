"""The single-run engine: budget, seeding, gradient accumulation, records, failures."""
from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import pytest
import torch

from dsgd.config import RunConfig
from dsgd.data import TaskData, load_task
from dsgd.engine import budget, optimizer_step, train_run
from dsgd.methods import get_method

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

BASE = dict(task="synthetic_blobs", model="tiny-mlp", lr=1e-2, epochs=2, batch_size=16, threads=1)


# ------------------------------------------------------------------ budget
def test_budget_counts_optimizer_steps() -> None:
    cfg = RunConfig(batch_size=8, grad_accum=2, epochs=2)
    # 100 examples -> 13 micro-batches -> 7 optimizer steps per epoch
    assert budget(100, cfg) == (7, 14, [7, 14])
    assert budget(100, cfg.replace(epochs=1.5)) == (7, 11, [7, 11])  # ceil(10.5)
    assert budget(100, cfg.replace(max_steps=3)) == (7, 3, [3])
    assert budget(100, cfg.replace(max_steps=9)) == (7, 9, [7, 9])


def test_history_length_and_epochs() -> None:
    rec = train_run(RunConfig(**{**BASE, "batch_size": 8, "grad_accum": 2, "epochs": 1.5,
                                 "train_size": 100}))
    assert rec["timings"]["steps"] == 11 == len(rec["history"]["loss"])
    assert rec["history"]["epoch"] == [0] * 7 + [1] * 4
    assert [e["step"] for e in rec["per_epoch"]] == [7, 11]
    h = rec["history"]
    assert h["lr"][0] == 0.0 and max(h["lr"]) == pytest.approx(1e-2)  # warmup from 0
    assert all(len(s) == 2 and sum(s) == pytest.approx(1.0) for s in h["pred_class_share"])
    assert all(0.0 <= c <= 1.0 for c in h["correct_share"])


# ------------------------------------------------------------------ determinism
def test_same_seed_same_numbers_different_seed_different() -> None:
    cfg = RunConfig(method="dsgd", **BASE)
    a, b = train_run(cfg), train_run(cfg)
    assert a["predictions"] == b["predictions"]
    assert a["history"] == b["history"]
    assert a["per_epoch"] == b["per_epoch"]
    assert a["run_id"] == b["run_id"]
    c = train_run(cfg.replace(seed=1))
    assert c["history"]["loss"] != a["history"]["loss"]
    assert c["run_id"] != a["run_id"]


def test_determinism_with_dropout_on_a_transformer() -> None:
    cfg = RunConfig(task="synthetic_tokens", model="tiny-bert", method="dsgd", lr=1e-3, max_steps=6,
                    batch_size=8, train_size=48, eval_size=32, threads=1)
    a, b = train_run(cfg), train_run(cfg)
    assert a["history"] == b["history"] and a["predictions"] == b["predictions"]
    assert train_run(cfg.replace(seed=5))["history"]["loss"] != a["history"]["loss"]


def test_probe_does_not_change_the_numbers() -> None:
    cfg = RunConfig(method="dsgd", **BASE)
    plain = train_run(cfg)
    probed = train_run(cfg.replace(probe_every=5))
    assert probed["history"]["loss"] == plain["history"]["loss"]
    assert probed["predictions"] == plain["predictions"]
    assert probed["history"]["probe"]["step"] == list(range(0, plain["timings"]["steps"], 5))
    assert probed["run_id"] == plain["run_id"]



@pytest.mark.parametrize("method", ["fft", "dsgd", "swa"])
def test_evaluating_each_epoch_does_not_change_the_run(method: str) -> None:
    # a transformer with dropout, three epochs: the per-epoch evaluations (dropout off, no
    # gradients) must not move the random streams that training draws from
    cfg = RunConfig(task="synthetic_tokens", model="tiny-bert", method=method, lr=1e-3, epochs=3,
                    batch_size=8, train_size=32, eval_size=24, threads=1,
                    method_kwargs={"window": 2} if method == "swa" else {})
    full = train_run(cfg)
    lean = train_run(cfg.replace(eval_each_epoch=False, record_history=False))
    assert len(full["per_epoch"]) == 3 and lean["per_epoch"] == [] and not lean["history"].get("loss")
    assert lean["predictions"] == full["predictions"]
    assert lean["metrics"]["accuracy"] == full["metrics"]["accuracy"]
    assert lean["run_id"] != full["run_id"]  # the records differ ...
    assert cfg.replace(eval_each_epoch=False).training_id() == cfg.training_id() == full["run_id"]
    assert cfg.replace(seed=1).training_id() != cfg.training_id()  # ... the training does not

# ------------------------------------------------------------------ gradient accumulation
class _Recorder(torch.optim.SGD):
    """SGD with lr 1 that remembers the gradient it applied."""

    def step(self, closure=None):  # type: ignore[override]
        self.seen = [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        return super().step(closure)


@pytest.mark.parametrize("method", ["fft", "dsgd", "focal"])
def test_accumulated_gradient_equals_one_big_batch(method: str) -> None:
    from dsgd.data.synthetic import TinyMLP

    data = load_task("synthetic_blobs", train_size=24, eval_size=8)
    batch = {"features": torch.stack([torch.as_tensor(r["features"]) for r in data.train]),
             "labels": torch.tensor([r["labels"] for r in data.train])}
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", method=method, max_grad_norm=None)
    grads = []
    for parts in (1, 3):
        torch.manual_seed(0)
        model = TinyMLP(2, dropout=0.0)
        opt = _Recorder(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
        chunks = [{k: v[i::parts] for k, v in batch.items()} for i in range(parts)]
        optimizer_step(model, get_method(method), opt, sched, chunks, t=3, T=10, gamma=0.3,
                       epoch=0, cfg=cfg, num_labels=2)
        grads.append(opt.seen)
    for g1, g3 in zip(*grads):
        torch.testing.assert_close(g1, g3, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ the record
def test_record_is_complete_and_json_serialisable() -> None:
    rec, model = train_run(RunConfig(method="dsgd", **BASE), keep_model=True)
    json.dumps(rec, allow_nan=False)
    for key in ("run_id", "config", "status", "metrics", "per_epoch", "predictions", "labels",
                "majority_rate", "verdict", "history", "timings", "versions", "machine"):
        assert key in rec, key
    for key in ("step", "loss", "gamma", "grad_norm", "correct_share", "correct_weight_share",
                "pred_class_share", "lr"):
        assert len(rec["history"][key]) == rec["timings"]["steps"], key
    assert rec["config"] == RunConfig(method="dsgd", **BASE).to_dict()
    assert set(rec["metrics"]) >= {"accuracy", "mcc", "f1"}
    assert len(rec["per_epoch"]) == 2
    assert rec["verdict"] == "success"
    assert rec["timings"]["s_per_step"] > 0
    # the returned model reproduces the recorded predictions
    data = load_task("synthetic_blobs")
    x = torch.stack([torch.as_tensor(r["features"]) for r in data.eval])
    model.eval()
    with torch.no_grad():
        assert model(features=x).logits.argmax(-1).tolist() == rec["predictions"]
    assert rec["labels"] == data.eval_labels.tolist()
    # the weight share of the correct group follows gamma |C| / (|W| + gamma |C|)
    h = rec["history"]
    for g, c, w in zip(h["gamma"], h["correct_share"], h["correct_weight_share"]):
        expected = g * c / ((1 - c) + g * c) if (1 - c) + g * c > 0 else 0.0
        assert w == pytest.approx(expected)
    assert h["gamma"] == pytest.approx([t / rec["timings"]["steps"] for t in h["step"]])


def test_swa_final_metrics_come_from_the_average() -> None:
    rec = train_run(RunConfig(method="swa", method_kwargs={"window": 2}, **{**BASE, "epochs": 3}))
    assert rec["status"] == "ok" and len(rec["per_epoch"]) == 3
    assert rec["method_settings"] == {"window": 2}


def test_callbacks_see_steps_epochs_and_can_stop() -> None:
    events = []

    def cb(event, info):
        events.append(event)
        if event == "step" and info["t"] == 4:
            return "stop"

    rec = train_run(RunConfig(**BASE), callbacks=[cb])
    assert events.count("step") == 5 and events.count("epoch") == 1 and events[-1] == "end"
    assert rec["timings"]["steps"] == 5


# ------------------------------------------------------------------ failures
class _NaNAfter(torch.nn.Module):
    """TinyMLP whose training-mode logits become NaN from the ``k``-th forward on."""

    def __init__(self, k: int) -> None:
        super().__init__()
        from dsgd.data.synthetic import TinyMLP

        self.net, self.k, self.calls = TinyMLP(2), k, 0

    def forward(self, features):
        out = self.net(features).logits
        if self.training:
            self.calls += 1
            if self.calls > self.k:
                out = out * float("nan")
        return SimpleNamespace(logits=out)


def test_nan_loss_stops_the_run_and_keeps_the_log() -> None:
    rec = train_run(RunConfig(**BASE), model=_NaNAfter(3))
    assert rec["status"] == "diverged" and rec["verdict"] == "diverged"
    assert rec["diverged_at"]["step"] == 3 and rec["diverged_at"]["loss"] is None
    assert len(rec["history"]["loss"]) == 3
    assert all(math.isfinite(v) for v in rec["history"]["loss"])
    assert len(rec["predictions"]) == len(rec["labels"])  # the pre-divergence model is evaluated
    json.dumps(rec, allow_nan=False)


def test_bad_inputs_fail_fast_with_clear_errors(monkeypatch) -> None:
    import dsgd.data

    def no_loading(*a, **k):
        raise AssertionError("loaded data before validating the config")

    monkeypatch.setattr(dsgd.data, "load_task", no_loading)
    with pytest.raises(ValueError, match="unknown method 'adam'"):
        train_run(RunConfig(**{**BASE, "method": "adam"}))
    with pytest.raises(ValueError, match="bad setting"):
        train_run(RunConfig(**{**BASE, "method": "swa", "method_kwargs": {"windows": 3}}))
    with pytest.raises(ValueError, match="unknown schedule"):
        train_run(RunConfig(**{**BASE, "method": "dsgd", "schedule": "step"}))
    with pytest.raises(ValueError, match="tau"):
        RunConfig(**{**BASE, "tau": 1.5})
    with pytest.raises(ValueError, match="tau"):
        train_run({**BASE, "tau": -0.5})
    monkeypatch.undo()

    data = load_task("synthetic_blobs", train_size=16, eval_size=8)
    bad = TaskData(name="bad", num_labels=2, train=[dict(r) for r in data.train], eval=data.eval)
    bad.train[3]["labels"] = 2
    with pytest.raises(ValueError, match=r"labels .* must lie in \[0, 2\)"):
        train_run(RunConfig(**BASE), data=bad)

    from dsgd.data.synthetic import TinyMLP

    with pytest.raises(ValueError, match="outputs 3 logits .* 2 classes"):
        train_run(RunConfig(**BASE), model=TinyMLP(3))

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(16, 1)

        def forward(self, features):
            return self.lin(features)[:, 0]

    with pytest.raises(ValueError, match="logits must have shape"):
        train_run(RunConfig(**BASE), model=Flat())


def test_unknown_task_and_model() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        train_run(RunConfig(**{**BASE, "task": "no_such_task"}))
    with pytest.raises(ValueError, match="unknown model"):
        train_run(RunConfig(**{**BASE, "model": "no_such_model"}))


def test_cpu_model_is_read_from_cpuinfo_text() -> None:
    """Two processors of a hand-written /proc/cpuinfo: the first model name is taken; a
    text without one falls back to platform.processor()."""
    import platform

    from dsgd.engine import cpu_model

    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n"
            "flags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n")
    assert cpu_model(text) == "AMD EPYC 9R14 96-Core Processor"
    assert cpu_model("processor\t: 0\nmodel name\t:   \n") == (platform.processor() or "")
