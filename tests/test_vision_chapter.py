"""Imbalanced-vision chapter: settings and the paper's column labels, class-wise (head vs
tail) accuracy, the paper's Tables 2 and 5, the chapter's run grids, and the paper profile
(tiny ViT on synthetic CIFAR-shaped arrays)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dsgd.chapters.vision import (PAPER_TABLE2, chapter_grid, classwise_accuracy, head_classes, head_tail,
                                paper_column, paper_table2, parse_setting, setting_label, table5_check,
                                task_for, train_class_counts, vision_frame)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "notebooks" / "params" / "vision"


def test_settings_and_paper_labels():
    assert parse_setting("lt:100") == ("lt", 100.0)
    assert parse_setting("step:2") == ("step", 2.0)
    for bad in ("lt", "lt:x", "tail:100", "lt:0.5"):
        with pytest.raises(ValueError):
            parse_setting(bad)
    # the paper's "50" columns hold ratio 2 (factor 0.5); a true ratio 50 is no paper column
    assert paper_column("lt", 2.0) == "50" and paper_column("step", 100.0) == "100"
    assert paper_column("lt", 50.0) is None
    assert setting_label("cifar10", "lt", 2.0) == "CIFAR-10 long-tailed ρ=2 (paper: 50)"
    assert setting_label("fashion_mnist", "step", 100.0) == "Fashion-MNIST step ρ=100"


def test_task_for_datasets():
    assert task_for("fashion_mnist", "lt:100", n_max=300) == ("fashion_mnist_lt", {"imbalance_ratio": 100.0,
                                                                                   "n_max": 300.0})
    assert task_for("cifar100", "step:2", source="synthetic") == (
        "cifar100", {"imbalance_ratio": 2.0, "imbalance": "step", "source": "synthetic"})
    assert task_for("cifar10", "lt:100", source="hub") == ("cifar10", {"imbalance_ratio": 100.0, "imbalance": "lt"})


def test_classwise_and_head_tail_hand_worked():
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    preds = [0, 0, 1, 0, 0, 2, 0, 0]
    np.testing.assert_allclose(classwise_accuracy(preds, labels, 4), [1.0, 0.5, 0.5, 0.0])
    # counts 100, 30, 10, 1 -> head = classes 0, 1; tail = 2, 3
    assert head_classes([100, 30, 10, 1]) == ([0, 1], [2, 3])
    ht = head_tail(preds, labels, [100, 30, 10, 1])
    assert ht["head_accuracy"] == pytest.approx(0.75)
    assert ht["tail_accuracy"] == pytest.approx(0.25)
    assert ht["balanced_accuracy"] == pytest.approx(0.5)
    # odd number of classes: the middle class belongs to the head (C - C // 2 head classes)
    assert head_classes([5, 4, 3]) == ([0, 1], [2])
    # step sets: head = the full classes, tail = the reduced ones
    assert head_classes(train_class_counts("cifar10", "step", 100, None)) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])


def test_vision_frame_from_a_record():
    rec = {"run_id": "r", "status": "ok", "verdict": "success", "majority_rate": 0.1,
           "config": {"task": "fashion_mnist_lt", "task_kwargs": {"imbalance_ratio": 100.0, "n_max": 300.0},
                      "method": "dsgd", "seed": 42, "model": "efficientnet-lite0"},
           "metrics": {"accuracy": 0.6}, "timings": {"total_s": 12.0, "s_per_step": 0.2},
           # classes 0-4 all right, classes 5-9 all wrong (two images per class)
           "labels": [c for c in range(10) for _ in range(2)],
           "predictions": [c if c < 5 else 0 for c in range(10) for _ in range(2)]}
    row = vision_frame([rec]).iloc[0]
    assert row["setting"] == "Fashion-MNIST long-tailed ρ=100"
    assert row["head_accuracy"] == 1.0 and row["tail_accuracy"] == 0.0
    assert row["n_train"] == 740  # 300, 179, 107, 64, 38, 23, 13, 8, 5, 3
    assert row["n_eval"] == 20


def test_table5_every_paper_size_reproduced():
    t = table5_check()
    assert len(t) == 8 and t["match"].all()


def test_paper_table2_transcription_spot_checks():
    # numbers the paper's text repeats: focal loss std 14.22 on CIFAR-10 step "100" and
    # 10.70 on CIFAR-100 long-tailed "100"
    assert PAPER_TABLE2["focal"][2] == (70.31, 14.22)
    assert PAPER_TABLE2["focal"][4] == (64.68, 10.70)
    t = paper_table2(numbers=True)
    assert t.loc["dsgd", ("CIFAR-100 step ρ=100", "mean")] == 59.91
    assert "CIFAR-10 long-tailed ρ=2 (paper: 50)" in paper_table2().columns


def _profile(name):
    return yaml.safe_load((PARAMS / f"{name}.yaml").read_text())


def _notebook_defaults():
    from tests.test_hygiene import parameters_of

    return parameters_of(ROOT / "notebooks" / "vision.ipynb")


def test_stored_sweep_file_holds_the_cpu_full_runs():
    """The stored result set is the chapter's cpu-full profile (same run ids), and the
    embedded build's runs are a subset of it."""
    from dsgd.sweep import configs_from_params, load_params

    sweep = load_params(ROOT / "results" / "vision" / "sweep_table2.yaml")
    assert sweep["store"] == _notebook_defaults()["stored_set"] == "results/vision_full"
    stored = {c.run_id() for c in configs_from_params(sweep)}
    P = {**_notebook_defaults(), **_profile("cpu-full")}
    full = {c.run_id() for c in chapter_grid(P)}
    assert stored == full and len(full) == 4 * 6 * 10
    build = {c.run_id() for c in chapter_grid(_notebook_defaults())}
    assert build <= stored
    assert all(c.eval_size == 10000 and not c.eval_each_epoch for c in configs_from_params(sweep))
    P = _profile("cpu-full")
    assert len(P["seeds"]) >= 10 and {"fft", "focal", "lnsr", "noisytune", "pcgrad", "dsgd"} <= set(P["methods"])


def test_paper_profile_runs_with_tiny_vit_on_synthetic_cifar():
    from dsgd.engine import train_run

    P = {**_notebook_defaults(), **_profile("paper")}
    assert P["model"] == "vit-base" and P["lr"] == 1e-3 and P["batch_size"] == 128 and P["epochs"] == 5.0
    assert P["datasets"] == ["cifar10", "cifar100"] and set(P["settings"]) == {"lt:100", "lt:2", "step:100", "step:2"}
    configs = chapter_grid(P)
    assert len(configs) == 2 * 4 * len(P["methods"]) * len(P["seeds"])
    # the same runs with a tiny random ViT on synthetic CIFAR-shaped images, 2 steps
    pick = [c for c in configs if c.seed == P["seeds"][0] and c.method in ("fft", "dsgd")
            and c.task_kwargs["imbalance_ratio"] == 100.0 and c.task_kwargs["imbalance"] == "lt"]
    assert {c.task for c in pick} == {"cifar10", "cifar100"}
    recs = []
    for c in pick:
        tiny = c.replace(model="tiny-vit", model_kwargs={}, max_steps=2, eval_size=None,
                         task_kwargs={**c.task_kwargs, "source": "synthetic", "synthetic_per_class": 100,
                                      "n_max": 100.0})
        rec = train_run(tiny)
        assert rec["status"] == "ok" and rec["timings"]["steps"] == 2
        assert rec["config"]["batch_size"] == 128 and rec["config"]["grad_accum"] == 2
        recs.append(rec)
    fr = vision_frame(recs)
    assert set(fr["setting"]) == {"CIFAR-10 long-tailed ρ=100", "CIFAR-100 long-tailed ρ=100"}
    assert fr["head_accuracy"].between(0, 1).all() and fr["tail_accuracy"].between(0, 1).all()


# ------------------------------------------------------------------ spread, search, comparison
def _search_record(seed, acc, verdict="success", **changes):
    cfg = {"task": "fashion_mnist_lt", "task_kwargs": {"imbalance_ratio": 100.0, "n_max": 150.0},
           "model": "efficientnet-lite0", "model_kwargs": {"image_size": 32}, "method": "fft",
           "method_kwargs": {}, "lr": 1e-3, "batch_size": 16, "grad_accum": 1, "epochs": 5.0,
           "eval_size": 10000, "max_steps": None, "seed": seed}
    cfg.update(changes)
    return {"config": cfg, "metrics": {"accuracy": acc}, "verdict": verdict}


def test_search_names_each_candidate_by_what_it_changes_and_flags_leads():
    from dsgd.chapters.vision import search_frame, search_sentence, search_table

    recs = ([_search_record(s, a) for s, a in [(42, 0.30), (52, 0.34), (62, 0.32)]]  # std 2.0 points
            + [_search_record(s, a, lr=1e-4) for s, a in [(42, 0.20), (52, 0.21), (62, 0.22)]]  # std 1.0
            + [_search_record(s, a, v, batch_size=8) for s, a, v in
               [(42, 0.40, "success"), (52, 0.40, "failed"), (62, 0.40, "success")]])  # std 0, one failed
    t = search_table(search_frame(recs))
    assert list(t.index) == ["reference", "learning rate 0.0001", "batch 8"]
    assert t.loc["reference", "std"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 2^2 + 0) / 2)
    assert t.loc["learning rate 0.0001", "std"] == pytest.approx(1.0)
    assert list(t["lead"]) == [True, False, True] and list(t["failed"]) == [0, 0, 1]
    assert t.loc["reference", "accuracy per seed"] == "30.0, 34.0, 32.0"
    multi = [{**r, "metrics": {"accuracy": 0.9}, "verdict": "success",
              "per_task": {"a": {"accuracy": r["metrics"]["accuracy"], "verdict": r["verdict"]}}} for r in recs]
    assert search_table(search_frame(multi, task="a")).equals(t)  # a multitask record's task "a"
    mixed = search_table(search_frame(recs), lead="mixed")  # only batch 8 has a failed and a successful seed
    assert list(mixed["lead"]) == [False, False, True]
    text = search_sentence(t)
    assert text.startswith("2 of 3 candidates") and "the reference setting is among them (STD 2.0" in text


def test_spread_table_binomial_error_and_bootstrap_interval():
    import pandas as pd
    from dsgd.chapters.vision import spread_table, std_interval

    frame = pd.DataFrame({"setting": ["a"] * 4 + ["a"] * 3, "method": ["fft"] * 4 + ["dsgd"] * 3,
                          "accuracy": [0.28, 0.30, 0.32, 0.30, 0.5, 0.5, 0.5]})
    t = spread_table(frame, 10000, order=["fft", "dsgd"])
    row = t.loc[("a", "fft")]
    assert row["std"] == pytest.approx(np.sqrt(8 / 3))  # deviations -2, 0, 2, 0 points
    assert row["binomial SE of one run"] == pytest.approx(100 * np.sqrt(0.3 * 0.7 / 10000))  # 0.458
    assert row["std 95% lo"] <= row["std"] <= row["std 95% hi"]
    d = t.loc[("a", "dsgd")]  # one value three times: no spread, no interval
    assert d["std"] == 0 and np.isnan(d["std 95% lo"]) and np.isnan(d["std 95% hi"])
    assert all(np.isnan(std_interval([0.3, 0.4])))  # fewer than 3 seeds


def test_paper_comparison_counts_the_papers_columns():
    import pandas as pd
    from dsgd.chapters.vision import paper_comparison
    from dsgd.report import table1

    frame = pd.DataFrame({"setting": ["s"] * 4, "dataset": ["fashion_mnist"] * 4, "kind": ["lt"] * 4,
                          "ratio": [100.0] * 4, "method": ["fft", "fft", "dsgd", "dsgd"], "seed": [1, 2, 1, 2],
                          "accuracy": [0.30, 0.32, 0.29, 0.29], "verdict": ["success"] * 4, "majority_rate": [0.1] * 4})
    cmp, counts = paper_comparison(table1(frame, group_by="setting"), frame, "ours")
    # by hand from PAPER_TABLE2: DSGD's mean is above FFT's and its STD below in all 8 columns
    assert (counts["paper_up"], counts["paper_std_down"], counts["paper_n"]) == (8, 8, 8)
    assert (counts["paper_up_100"], counts["paper_n_100"]) == (4, 4)
    assert (counts["ours_up"], counts["ours_n"]) == (0, 1)  # 29 < 31
    assert cmp.loc[("long-tailed ρ=100", "Fashion-MNIST, ours"), "DSGD − FFT (mean)"] == pytest.approx(-2.0)
    assert len(cmp) == 9  # 8 paper columns + our one setting


def _cap_rows(run_id, method, stored, accs, ratio=100.0):
    return [{"run_id": run_id, "task": "fashion_mnist_lt", "method": method, "seed": 42,
             "task_kwargs": {"imbalance_ratio": ratio, "n_max": 150.0}, "stored_accuracy": stored,
             "stored_verdict": "success", "stored_session": "s", "stored_processor": None, "requested": cap.lower(),
             "capability": cap, "cpu_model": "AMD EPYC", "accuracy": a, "verdict": "success"}
            for cap, a in accs.items()]


def test_capability_check_ranges_and_stored_matches_by_hand(tmp_path):
    import json

    import pandas as pd

    from dsgd.chapters.vision import capability_frame, capability_sentence, setting_label

    rows = (_cap_rows("a", "fft", 0.3515, {"DEFAULT": 0.300, "AVX2": 0.287, "AVX512": 0.271})
            + _cap_rows("b", "dsgd", 0.3042, {"DEFAULT": 0.304, "AVX2": 0.2474, "AVX512": 0.363}))
    path = tmp_path / "cap.json"
    path.write_text(json.dumps({"command": "benchmarks/cpu_capability.py x", "cpu_model": "AMD EPYC", "rows": rows}))
    t, header = capability_frame(path)
    t = t.set_index("run_id")
    assert t.loc["a", "spread"] == pytest.approx(2.9) and t.loc["b", "spread"] == pytest.approx(11.56)
    # a's stored 35.15 is matched by nothing; b's 30.42 by DEFAULT (30.40, 0.02 points away)
    assert list(t["stored_matched"]) == [False, True]
    label = setting_label("fashion_mnist", "lt", 100.0)
    assert set(t["setting"]) == {label}
    # SDs over the three instruction sets: a 1.45, b 5.78 points; median 3.62
    assert t.loc["a", "sd"] == pytest.approx(np.std([30.0, 28.7, 27.1], ddof=1))
    spread = pd.DataFrame({"setting": [label, label], "method": ["fft", "dsgd"], "std": [4.5, 5.9],
                           "std 95% lo": [3.1, 4.0], "std 95% hi": [6.0, 8.0]}).set_index(["setting", "method"])
    s = capability_sentence(t.reset_index(), header, spread)
    assert "differ by up to 11.6 points within one run; their standard deviation over the instruction sets " \
           "is 3.6 points (median over the runs)" in s
    assert "seed standard deviation in the same settings is 4.5–4.5 points (95 % intervals together 3.1–6.0)" in s
    assert "a change of processor moves a run about as much as a change of seed does." in s
    tight = spread.assign(**{"std 95% lo": [4.4, 4.0], "std 95% hi": [4.6, 8.0]})
    assert "moves a run by less than a change of seed does" in capability_sentence(t.reset_index(), header, tight)
    assert s.endswith("1 of the 2 stored values is reproduced within half a point by any of them.")
    assert capability_frame(tmp_path / "missing.json") == (None, {})
    assert capability_sentence(None, {}, None).startswith("This page read no instruction-set check")


def test_pair_sessions_counts_seeds_whose_two_runs_share_a_session():
    from dsgd.chapters.vision import pair_sessions_sentence

    def r(method, seed, session):
        return {"config": {"task": "fashion_mnist_lt", "task_kwargs": {"imbalance_ratio": 100.0}, "method": method,
                           "seed": seed}, "session": session}

    recs = [r("fft", 1, "A"), r("dsgd", 1, "A"), r("fft", 2, "A"), r("dsgd", 2, "B"), r("fft", 3, "C"),
            r("lnsr", 3, "C")]
    assert pair_sessions_sentence(recs) == ("Of the 2 seeds on which both FFT and DSGD are stored, 1 have both "
                                            "runs from the same sweep session, hence the same machine (2 sessions "
                                            "in all).")


def test_processor_check_compares_only_runs_made_on_the_build_processor(tmp_path):
    import json

    from dsgd.chapters.vision import processor_check
    from dsgd.config import RunConfig

    cfg = RunConfig(task="fashion_mnist_lt", model="efficientnet-lite0", method="fft", seed=42).to_dict()
    cfg2 = {**cfg, "method": "dsgd"}
    stored = [{"run_id": "s-fft", "config": cfg}, {"run_id": "s-dsgd", "config": cfg2}]
    epyc = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": "AVX512"}
    build = [{"run_id": "b-fft", "status": "ok", "config": {**cfg, "eval_each_epoch": True}, "machine": epyc,
              "metrics": {"accuracy": 0.2710}, "verdict": "success"},
             {"run_id": "b-dsgd", "status": "ok", "config": cfg2, "machine": epyc, "metrics": {"accuracy": 0.3630},
              "verdict": "success"}]
    rows = [{"run_id": "s-fft", "cpu_model": "AMD EPYC", "capability": "AVX512", "accuracy": 0.2712,
             "verdict": "success"},
            {"run_id": "s-fft", "cpu_model": "AMD EPYC", "capability": "AVX2", "accuracy": 0.287, "verdict": "success"},
            {"run_id": "s-dsgd", "cpu_model": "AMD EPYC", "capability": "AVX512", "accuracy": 0.3700,
             "verdict": "success"}]
    path = tmp_path / "cap.json"
    path.write_text(json.dumps({"rows": rows}))
    t, s = processor_check(build, path, stored)
    assert list(t["agrees"]) == [True, False]  # 0.02 points apart; 0.7 points apart
    assert t["difference"].tolist() == pytest.approx([0.02, 0.70])
    assert s.startswith("This build ran on AMD EPYC (AVX512), a processor on which the instruction-set check also "
                        "recomputed 2 of this build's runs: 1 of 2 agree")
    assert "not reproducible" in s
    xeon = [{**b, "machine": {"device": "cpu", "cpu_model": "Intel Xeon", "cpu_capability": "AVX2"}} for b in build]
    t, s = processor_check(xeon, path, stored)
    assert len(t) == 0 and "none of its runs can be compared" in s
    assert processor_check(build, "", stored)[1].startswith("No instruction-set check")
