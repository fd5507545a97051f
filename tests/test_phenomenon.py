"""The phenomenon chapter's library: outcome tables, seed choice, cosine shares, swings,
representations, store comparison, and the paper profile's code path on a tiny model."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dsgd.config import RunConfig
from dsgd.engine import train_run
from dsgd.chapters.phenomenon import (arm_label, build_plan, chapter_config, compare_with_stored, cosine_by_phase, cosine_shares,
                             ensure_runs, arm_configs, mechanism_frame, outcome_frame,
                             outcome_summary, paired_outcomes, pick_seeds, plateau_exit, probe_frame,
                             representation_examples, run_with_representations, search_rows,
                             swing_stats)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _rec(method: str, seed: int, acc: float, verdict: str, **cfg) -> dict:
    """A minimal finished record (only the fields the outcome tables read)."""
    return {"run_id": f"{method}-{seed}-{cfg.get('lr', 0)}", "status": "ok", "verdict": verdict,
            "config": {"method": method, "seed": seed, **cfg}, "majority_rate": 0.65,
            "metrics": {"accuracy": acc, "pred_share": [0.3, 0.7]},
            "timings": {"steps": 10, "total_steps": 10, "s_per_step": 0.1, "total_s": 2.0}}


RECORDS = [
    _rec("fft", 0, 0.65, "collapsed"), _rec("fft", 1, 0.90, "success"),
    _rec("fft", 2, 0.80, "success"), _rec("fft", 3, 0.66, "degenerate"),
    _rec("dsgd", 0, 0.85, "success"), _rec("dsgd", 1, 0.35, "collapsed"),
    _rec("dsgd", 2, 0.95, "success"), _rec("dsgd", 3, 0.60, "failed"),
]


# ---------------------------------------------------------------- labels and outcomes
def test_arm_labels_name_what_differs_from_the_default() -> None:
    assert arm_label({"method": "fft"}) == "FFT"
    assert arm_label({"method": "dsgd", "schedule": "linear", "tau": 1.0}) == "DSGD"
    assert arm_label({"method": "dsgd", "correct_from": "eval"}) == "DSGD (eval pass)"
    assert arm_label({"method": "dsgd", "schedule_kwargs": {"floor": 0.5}}) == "DSGD (floor 0.5)"
    assert arm_label({"method": "dsgd", "schedule": "cosine", "tau": 0.5}) == "DSGD (cosine, tau 0.5)"
    assert arm_label({"method": "focal"}) == "focal"


def test_outcome_summary_counts_and_sample_std() -> None:
    df = outcome_frame(RECORDS + [{"run_id": "x", "status": "error", "config": {"method": "fft", "seed": 9}}])
    assert len(df) == 8  # the error record is skipped
    s = outcome_summary(df, order=["FFT", "DSGD"])
    assert list(s.index) == ["FFT", "DSGD"]
    fft = s.loc["FFT"]
    assert (fft["runs"], fft["success"], fft["not_success"]) == (4, 2, 2)
    assert (fft["collapsed"], fft["degenerate"], fft["failed"]) == (1, 1, 0)
    acc = [0.65, 0.90, 0.80, 0.66]
    mean = sum(acc) / 4
    assert fft["mean"] == pytest.approx(mean)
    assert fft["std"] == pytest.approx(math.sqrt(sum((a - mean) ** 2 for a in acc) / 3))
    assert fft["mean_success"] == pytest.approx(0.85)
    assert s.loc["DSGD", "failure_share"] == pytest.approx(0.5)


def test_paired_outcomes_and_seed_choice() -> None:
    df = outcome_frame(RECORDS)
    p = paired_outcomes(df, "FFT", "DSGD").set_index("seed")["change"].to_dict()
    assert p == {0: "rescued", 1: "lost", 2: "both succeeded", 3: "both failed"}
    assert pick_seeds(df, "FFT") == (0, 1)
    assert pick_seeds(df, "DSGD") == (1, 0)
    only_ok = outcome_frame([r for r in RECORDS if r["verdict"] == "success"])
    assert pick_seeds(only_ok, "FFT") == (None, 1)


def test_build_plan_three_runs_from_the_stored_set_or_fallback() -> None:
    base = RunConfig(task="synthetic_tokens", model="tiny-bert")
    cfgs, rule = build_plan(outcome_frame(RECORDS), base)
    assert [(c.method, c.seed) for c in cfgs] == [("fft", 0), ("fft", 1), ("dsgd", 0)]
    assert "stored set" in rule
    cfgs, _ = build_plan(outcome_frame([]), base, fallback_seeds=[4, 7])
    assert [(c.method, c.seed) for c in cfgs] == [("fft", 4), ("fft", 7), ("dsgd", 4)]
    cfgs, _ = build_plan(outcome_frame(RECORDS), base, build_seeds=[5, 6])
    assert [(c.method, c.seed) for c in cfgs] == [("fft", 5), ("fft", 6), ("dsgd", 5), ("dsgd", 6)]
    with pytest.raises(ValueError, match="build_seeds"):
        build_plan(outcome_frame([]), base)


# ---------------------------------------------------------------- gradient-conflict statistics
def test_cosine_shares_by_hand() -> None:
    out = cosine_shares([-0.9, -0.2, 0.3, float("nan"), -0.6, None])
    assert out["n"] == 4 and out["n_undefined"] == 2
    assert out["below_0"] == pytest.approx(3 / 4)
    assert out["below_-0.5"] == pytest.approx(2 / 4)
    assert out["median"] == pytest.approx(-0.4)
    assert out["min"] == pytest.approx(-0.9)
    empty = cosine_shares([float("nan")])
    assert empty["n"] == 0 and math.isnan(empty["below_0"])


def _history_record(shares: list[list[float]], labels: list[int], gamma=None) -> dict:
    n = len(shares)
    gamma = gamma or [t / n for t in range(n)]
    return {"run_id": "h", "status": "ok", "verdict": "success", "config": {"method": "dsgd", "seed": 0},
            "labels": labels, "predictions": labels, "timings": {"total_steps": n},
            "history": {"step": list(range(n)), "gamma": gamma, "grad_norm": [1.0] * n,
                        "correct_share": [0.5] * n, "correct_weight_share": [0.25] * n,
                        "lr": [1e-4] * n, "ce": [0.7] * n, "pred_class_share": shares}}


def test_swing_stats_by_hand() -> None:
    # majority class of the labels is 1; steps 0 and 4 put the whole batch into class 0,
    # steps 1 and 3 into class 1: class sequence 0,1,1,0 of one-class steps -> 2 switches
    shares = [[1, 0], [0, 1], [0.5, 0.5], [0, 1], [1, 0], [0.75, 0.25]]
    rec = _history_record(shares, labels=[1, 1, 1, 0])
    s = swing_stats(rec)
    assert s["one_class"] == pytest.approx(4 / 6)
    assert s["one_class_majority"] == pytest.approx(2 / 6)
    assert s["one_class_minority"] == pytest.approx(2 / 6)
    assert s["switches"] == 2
    assert s["last_switch"] == pytest.approx(4 / 6)
    assert s["mean_correct_weight"] == pytest.approx(0.25)
    assert s["mean_correct_share"] == pytest.approx(0.5)
    # the first half only: steps 0, 1, 2 -> one switch (0 -> 1) at step 1
    half = swing_stats(rec, window=(0.0, 0.5))
    assert half["steps"] == 3 and half["switches"] == 1
    assert half["last_switch"] == pytest.approx(1 / 6)
    # plateau exit: running mean (window 2) of the batch accuracy first reaches 0.75 at step 3
    rec["history"]["correct_share"] = [0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    assert plateau_exit(rec, level=0.75, window=2) == 3.0
    assert math.isnan(plateau_exit(rec, level=1.01, window=2))
    m = mechanism_frame([rec])
    assert m.loc[0, "all:switches"] == 2 and m.loc[0, "collapsed_to"] == ""


def test_cosine_by_phase_splits_probes_by_one_class_batches() -> None:
    shares = [[1, 0], [0.5, 0.5], [0, 1], [0.25, 0.75]]
    rec = _history_record(shares, labels=[1, 0])
    rec["history"]["probe"] = {"step": [0, 1, 2, 3], "cos_wc": [-0.9, 0.2, -0.7, -0.1],
                               "norm_w": [1.0] * 4, "norm_c": [1.0] * 4}
    t = cosine_by_phase(rec)
    assert t.loc["all", "below_0"] == pytest.approx(3 / 4)
    assert t.loc["one-class", "probed"] == 2 and t.loc["one-class", "below_-0.5"] == pytest.approx(1.0)
    assert t.loc["mixed", "below_0"] == pytest.approx(1 / 2) and t.loc["mixed", "below_-0.5"] == 0.0


def test_two_class_logit_gradients_of_a_constant_model_are_opposite() -> None:
    # the fact cosine_by_phase's docstring relies on, checked with autograd
    z = torch.tensor([[0.3, -0.2], [0.3, -0.2]], requires_grad=True)
    torch.nn.functional.cross_entropy(z, torch.tensor([0, 1]), reduction="sum").backward()
    g0, g1 = z.grad
    assert torch.nn.functional.cosine_similarity(g0, g1, dim=0).item() == pytest.approx(-1.0)


# ---------------------------------------------------------------- representations
def test_representation_examples_per_class_grouped_and_seeded() -> None:
    labels = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1]
    idx = representation_examples(labels, per_class=2, seed=3)
    assert [labels[i] for i in idx] == [0, 0, 1, 1]
    assert idx[:2] == sorted(idx[:2]) and idx[2:] == sorted(idx[2:])
    assert idx == representation_examples(labels, per_class=2, seed=3)
    assert len(set(idx)) == 4
    with pytest.raises(ValueError, match="class 0 has only 4"):
        representation_examples(labels, per_class=5)


TOKENS = dict(task="synthetic_tokens", model="tiny-bert", lr=1e-3, max_steps=6, batch_size=8,
              train_size=48, eval_size=32, threads=1)


def test_probe_does_not_change_a_run_with_dropout() -> None:
    cfg = RunConfig(method="dsgd", **TOKENS)
    plain, probed = train_run(cfg), train_run(cfg.replace(probe_every=1))
    assert probed["predictions"] == plain["predictions"]
    assert probed["history"]["loss"] == plain["history"]["loss"]
    assert probed["history"]["grad_norm"] == plain["history"]["grad_norm"]
    assert probed["history"]["probe"]["step"] == list(range(6))


def test_run_with_representations_is_the_same_run_plus_similarities() -> None:
    cfg = RunConfig(method="fft", probe_every=2, **TOKENS)
    rec = run_with_representations(cfg, per_class=3)
    plain = train_run(cfg)
    assert rec["predictions"] == plain["predictions"]
    assert rec["history"]["loss"] == plain["history"]["loss"]
    reps = rec["representations"]
    assert [int(y) for y in reps["labels"]] == [0, 0, 0, 1, 1, 1]
    for when in ("before", "after"):
        c = np.array(reps[when]["cosine"])
        assert c.shape == (6, 6)
        np.testing.assert_allclose(np.diag(c), 1.0, atol=1e-5)
        np.testing.assert_allclose(c, c.T, atol=1e-6)
        # class separation by hand: mean within-class minus mean between-class cosine
        y = np.array(reps["labels"])
        same = (y[:, None] == y[None, :]) & ~np.eye(6, dtype=bool)
        assert reps[when]["separation"] == pytest.approx(c[same].mean() - c[y[:, None] != y[None, :]].mean())
    assert probe_frame(rec)["step"].tolist() == [0, 2, 4]


# ---------------------------------------------------------------- stores
def test_ensure_runs_recomputes_records_without_diagnostics(tmp_path) -> None:
    from dsgd.store import ResultStore

    cfg = RunConfig(method="fft", **TOKENS)
    st = ResultStore(tmp_path / "store")
    st.put(train_run(cfg))  # as another chapter would store it: no probe, no representations
    recs = ensure_runs([cfg.replace(probe_every=3)], st, workers=1)
    assert "representations" in recs[0] and recs[0]["history"]["probe"]["step"] == [0, 3]
    assert "representations" in st.get(cfg.run_id())
    # a different probe interval or number of examples per class is recomputed, too
    again = ensure_runs([cfg.replace(probe_every=2, tags={"per_class": 2})], st, workers=1)[0]
    assert again["history"]["probe"]["step"] == [0, 2, 4]
    assert len(again["representations"]["labels"]) == 4
    assert again["predictions"] == recs[0]["predictions"]


def test_compare_with_stored_uses_verdict_and_half_a_point() -> None:
    stored = [_rec("fft", 0, 0.650, "collapsed"), _rec("fft", 1, 0.900, "success")]
    now = [_rec("fft", 0, 0.650, "collapsed"), _rec("fft", 1, 0.906, "success"),
           _rec("fft", 2, 0.800, "success")]
    out = compare_with_stored(now, stored).set_index("seed")
    assert out.loc[0, "ok"] == True  # noqa: E712 - pandas object column
    assert out.loc[1, "ok"] == False  # noqa: E712 - 0.6 points apart
    assert out.loc[1, "diff"] == pytest.approx(0.006)
    assert out.loc[2, "ok"] is None
    now[1]["metrics"]["accuracy"] = 0.904
    assert bool(compare_with_stored(now, stored).set_index("seed").loc[1, "ok"])
    now[1]["verdict"] = "degenerate"
    assert not bool(compare_with_stored(now, stored).set_index("seed").loc[1, "ok"])


def test_search_rows_groups_settings() -> None:
    recs = [_rec("fft", s, a, v, lr=1e-4) for s, a, v in [(1, 0.9, "success"), (0, 0.65, "collapsed")]]
    recs.append(_rec("fft", 0, 0.9, "success", lr=2e-4))
    df = search_rows(recs, keys=("lr",))
    row = df[df["lr"] == 1e-4].iloc[0]
    assert (row["runs"], row["success"], row["not_success"]) == (2, 1, 1)
    assert row["outcomes"] == "0:collapsed 1:success"
    assert row["plateau_exit"] == "- -"  # these records carry no history
    assert len(df) == 2


# ---------------------------------------------------------------- the chapter's parameter profiles
def _chapter_defaults() -> dict:
    from tests.test_hygiene import parameters_of

    return parameters_of(ROOT / "notebooks" / "phenomenon.ipynb")


def test_paper_profile_runs_the_chapter_calls_on_a_tiny_roberta(tmp_path) -> None:
    params = {**_chapter_defaults(),
              **yaml.safe_load((ROOT / "notebooks" / "params" / "phenomenon" / "paper.yaml").read_text())}
    assert params["task"] == "copa" and params["model"] == "roberta-large"
    assert params["seeds"] == list(range(42, 133, 10))
    assert (params["batch_size"], params["grad_accum"], params["epochs"], params["max_length"]) == (5, 2, 10.0, 256)
    assert params["task_kwargs"] == {"source": "hub"}
    # the same calls the chapter makes, with only the download swapped for the fixture
    params.update(model="tiny-roberta", task_kwargs={"source": "fixture"})
    base = chapter_config(params).replace(max_steps=2, eval_size=None)
    cfgs = arm_configs(base, params["seeds"][:1])
    assert [c.method for c in cfgs] == ["fft", "dsgd"]
    assert cfgs[1].tau == 1.0 and cfgs[1].schedule == "linear"
    recs = ensure_runs(cfgs, tmp_path / "store", workers=1)
    assert all(r["status"] == "ok" and r["timings"]["steps"] == 2 for r in recs)
    # the fixture's 4 eval examples (2 per class) cap the 5 examples per class asked for
    assert all(sorted(r["representations"]["labels"]) == [0, 0, 1, 1] for r in recs)
    df = outcome_frame(recs)
    assert set(df["arm"]) == {"FFT", "DSGD"}
    assert cosine_shares(probe_frame(recs[0])["cos_wc"])["n"] + \
        cosine_shares(probe_frame(recs[0])["cos_wc"])["n_undefined"] == len(probe_frame(recs[0]))


def test_stored_set_parameter_file_holds_the_chapter_default_runs() -> None:
    """The stored set (results/phenomenon/sweep.yaml) and the chapter's embedded defaults
    must describe the same runs, or part 1 would silently find nothing to read."""
    from dsgd.sweep import configs_from_params, load_params

    params = _chapter_defaults()
    wanted = {c.run_id() for c in arm_configs(chapter_config(params), params["seeds"])}
    stored = {c.run_id() for c in configs_from_params(load_params(ROOT / "results" / "phenomenon" / "sweep.yaml"))}
    assert len(wanted) == 2 * len(params["seeds"]) and wanted <= stored
