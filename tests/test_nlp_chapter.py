"""NLP chapter (Table 1, Figure 3): its grid and row labels, the tuned-baseline rule, the
stored set's bookkeeping and re-verification, the cost measurement, the paper's Table 1
as transcribed, and the paper profile's code path offline (tiny RoBERTa / Llama on the
hub fixtures, 1-2 optimizer steps, local and Ray backends)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dsgd.chapters import nlp
from dsgd.config import RunConfig
from dsgd.store import ResultStore
from dsgd.sweep import configs_from_params, run_sweep, verify_sample

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "notebooks" / "params" / "nlp"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))


def chapter_defaults() -> dict:
    from tests.test_hygiene import parameters_of

    return parameters_of(ROOT / "notebooks" / "nlp.ipynb")


def profile(name: str) -> dict:
    return {**chapter_defaults(), **yaml.safe_load((PARAMS / f"{name}.yaml").read_text())}


# ---------------------------------------------------------------- grid and labels
def test_method_variants_expand_the_searched_baselines():
    v = nlp.method_variants(["fft", "focal", "swa", "cwgnc"], focal_search=[[0.25, 2], [1, 0.5]],
                            swa_windows=[3, 5], method_kwargs={"cwgnc": {"threshold": 0.1}})
    assert v == [{"method": "fft", "method_kwargs": {}},
                 {"method": "focal", "method_kwargs": {"alpha": 0.25, "gamma": 2.0}},
                 {"method": "focal", "method_kwargs": {"alpha": 1.0, "gamma": 0.5}},
                 {"method": "swa", "method_kwargs": {"window": 3}},
                 {"method": "swa", "method_kwargs": {"window": 5}},
                 {"method": "cwgnc", "method_kwargs": {"threshold": 0.1}}]
    with pytest.raises(ValueError, match="not in methods"):
        nlp.method_variants(["fft"], method_kwargs={"pcgrad": {}})
    with pytest.raises(ValueError, match="pairs"):
        nlp.method_variants(["focal"], focal_search=[[0.25]])
    with pytest.raises(ValueError, match="unknown method"):
        nlp.method_variants(["fft", "nonsense"])
    with pytest.raises(ValueError, match="bad setting"):
        nlp.method_variants(["cwgnc"], method_kwargs={"cwgnc": {"tresh": 0.1}})
    with pytest.raises(ValueError, match="twice"):
        nlp.method_variants(["fft", "fft"])


def test_variant_labels():
    assert nlp.variant_label({"method": "fft"}) == "FFT"
    assert nlp.variant_label({"method": "fft-nobc"}) == "FFT (no bias corr.)"
    assert nlp.variant_label({"method": "focal", "method_kwargs": {"alpha": 1.0, "gamma": 0.5}}) == \
        "FocalLoss (α=1, γ=0.5)"
    assert nlp.variant_label({"method": "swa", "method_kwargs": {"window": 2}}) == "SWA (window 2)"
    assert nlp.variant_label({"method": "dsgd", "schedule": "linear", "tau": 1.0}) == "DSGD"
    assert nlp.variant_label({"method": "dsgd", "schedule": "cosine", "tau": 0.5}) == "DSGD (cosine, τ=0.5)"
    assert nlp.family("FocalLoss (α=1, γ=0.5)") == "FocalLoss"
    assert nlp.family("DSGD(×9)") == "DSGD(×9)" and nlp.family("DSGD") == "DSGD"
    assert nlp.family("FFT (no bias corr.)") == "FFT (no bias corr.)"
    assert nlp.family("SWA (best of search)") == "SWA" and nlp.family("DSGD (cosine)") == "DSGD (cosine)"
    assert nlp.row_order(["DSGD(×9)", "SWA (window 2)", "DSGD", "FocalLoss (best of search)",
                          "FFT (no bias corr.)", "FocalLoss (α=1, γ=2)", "FFT", "ENS(×3)"]) == \
        ["FFT", "FFT (no bias corr.)", "FocalLoss (α=1, γ=2)", "FocalLoss (best of search)", "DSGD",
         "SWA (window 2)", "ENS(×3)", "DSGD(×9)"]


def test_chapter_grid_counts_and_per_task_settings():
    P = profile("paper")
    cfgs = nlp.chapter_grid(P)
    n_var = len(nlp.method_variants(P["methods"], P["focal_search"], P["swa_windows"], P["method_kwargs"]))
    assert n_var == len(P["methods"]) - 2 + len(P["focal_search"]) + len(P["swa_windows"])
    assert len(cfgs) == len(P["tasks"]) * len(P["models"]) * n_var * len(P["seeds"])
    assert len({c.run_id() for c in cfgs}) == len(cfgs)
    # the paper's Table 4: epochs and maximum length per task, batch 5 x accumulation 2
    table4 = {"multirc": (6.0, 512), "rte": (10.0, 512), "copa": (10.0, 256), "boolq": (10.0, 512),
              "cola": (3.0, 256), "mrpc": (3.0, 256)}
    for c in cfgs:
        assert (c.epochs, c.max_length) == table4[c.task]
        assert (c.batch_size, c.grad_accum, c.task_kwargs) == (5, 2, {"source": "hub"})
    assert P["seeds"] == list(range(42, 133, 10))
    assert {c.model for c in cfgs} == {"roberta-large", "llama-3.2-1b"}
    # select: the part computed in a build
    part = nlp.select(cfgs, seeds=[42], methods=["fft", "dsgd"])
    assert len(part) == 6 * 2 * 2 and {c.method for c in part} == {"fft", "dsgd"}
    bad = dict(P, task_settings={"wnli": {"epochs": 1.0}})
    with pytest.raises(ValueError, match="not in tasks"):
        nlp.chapter_grid(bad)
    bad = dict(P, task_settings={"copa": {"epoch": 1.0}})
    with pytest.raises(ValueError, match="unknown RunConfig"):
        nlp.chapter_grid(bad)


def test_stored_sweep_file_is_the_cpu_full_grid():
    """results/nlp/sweep.yaml computes exactly the runs of the chapter's cpu-full profile."""
    P = profile("cpu-full")
    grid = {c.run_id() for c in nlp.chapter_grid(P)}
    stored = [c.run_id() for c in configs_from_params(yaml.safe_load((ROOT / "results/nlp/sweep.yaml").read_text()))]
    assert len(stored) == len(set(stored)) == len(grid) == 160  # 110 + the 50 reviewer rows (issue #20)
    assert set(stored) == grid
    # cpu-full computes every method of the grid for all its seeds
    assert P["build_seeds"] == P["seeds"] and set(P["build_methods"]) == set(P["methods"])
    # the embedded defaults describe the same grid (only what is computed differs)
    assert {c.run_id() for c in nlp.chapter_grid(chapter_defaults())} == grid


def test_the_recorded_searchs_picks_are_rows_of_the_grid_on_ten_seeds():
    """Whatever the stored search picks (nlp.search_choice) is a row of the stored sweep and
    of the chapter's grid, with ten seeds."""
    import collections

    from dsgd.store import ResultStore

    recs = ResultStore(ROOT / "results" / "nlp_search").records()
    assert len(recs) == 30  # the whole of results/nlp/search_reviewer.yaml
    picks = nlp.search_choice(nlp.search_table(nlp.nlp_frame(recs)))
    assert set(picks) == {"FocalLoss", "LNSR"}
    sweep = configs_from_params(yaml.safe_load((ROOT / "results/nlp/sweep.yaml").read_text()))
    seeds = collections.Counter(nlp.variant_label(c.to_dict()) for c in sweep)
    grid = {nlp.variant_label(c.to_dict()) for c in nlp.chapter_grid(chapter_defaults())}
    for label in picks.values():
        assert seeds[label] == 10 and label in grid


def test_grid_shares_runs_with_the_phenomenon_chapter():
    """Same base config as the phenomenon chapter: its FFT and DSGD runs are runs of ours."""
    nb = ROOT / "notebooks" / "phenomenon.ipynb"
    if not nb.exists():
        pytest.skip("the phenomenon chapter is not written yet")
    from dsgd.chapters.phenomenon import arm_configs, chapter_config
    from tests.test_hygiene import parameters_of

    ph = parameters_of(nb)
    base = chapter_config(ph)
    theirs = {c.run_id() for c in arm_configs(base, ph["seeds"])}
    ours = {c.run_id() for c in nlp.chapter_grid(chapter_defaults())}
    assert theirs <= ours


# ---------------------------------------------------------------- tables
def _row(label_cfg: dict, seed: int, acc: float, verdict: str = "success", task="t", model="m") -> dict:
    cfg = {"method": "fft", "task": task, "model": model, "seed": seed, **label_cfg}
    return {"run_id": f"{nlp.variant_label(cfg)}-{seed}", "status": "ok", "config": cfg,
            "metrics": {"accuracy": acc}, "verdict": verdict, "majority_rate": 0.6,
            "predictions": [0, 1], "timings": {"s_per_step": 1.0, "s_per_epoch": 10.0}}


def test_best_of_search_keeps_the_variant_with_the_highest_mean():
    a = {"method": "focal", "method_kwargs": {"alpha": 0.25, "gamma": 2.0}}
    b = {"method": "focal", "method_kwargs": {"alpha": 1.0, "gamma": 0.5}}
    recs = [_row(a, 0, 0.90), _row(a, 1, 0.60), _row(b, 0, 0.80), _row(b, 1, 0.78),
            _row({"method": "fft"}, 0, 0.99),
            # another task where the first variant wins
            _row(a, 0, 0.70, task="u"), _row(b, 0, 0.65, task="u")]
    df = nlp.nlp_frame(recs)
    rows, choice = nlp.best_of_search(df, "FocalLoss")
    ch = choice.set_index("task")
    # task t: means 0.75 (a) vs 0.79 (b) -> b; task u: 0.70 vs 0.65 -> a
    assert ch.loc["t", "chosen"] == "FocalLoss (α=1, γ=0.5)" and ch.loc["t", "mean"] == pytest.approx(79.0)
    assert ch.loc["u", "chosen"] == "FocalLoss (α=0.25, γ=2)" and ch.loc["t", "searched"] == 2
    assert set(rows["label"]) == {"FocalLoss (best of search)"}
    assert sorted(rows[rows["task"] == "t"]["accuracy"]) == [0.78, 0.80]
    assert len(rows) == 3  # FFT is never part of the focal search


def test_ensemble_frame_uses_fft_and_paper_default_dsgd_only():
    y = [0, 0, 1, 1, 1]
    recs = []
    for s, p in enumerate([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1], [1, 0, 1, 0, 1]]):
        recs.append({"run_id": f"f{s}", "status": "ok", "predictions": p, "labels": y,
                     "config": {"task": "t", "model": "m", "method": "fft", "seed": s}})
    for s in range(3):  # DSGD with a cosine schedule: not the paper's DSGD, no DSGD(xN) row
        recs.append({"run_id": f"d{s}", "status": "ok", "predictions": y, "labels": y,
                     "config": {"task": "t", "model": "m", "method": "dsgd", "seed": s, "schedule": "cosine"}})
    ens = nlp.ensemble_frame(recs, fft_sizes=[3], dsgd_sizes=[3], n_subsets=1)
    assert list(ens["label"]) == ["ENS(×3)"]
    # majority vote by hand: [0, 0, 1, 1, 1] -> all five right
    assert ens["accuracy"].iloc[0] == pytest.approx(1.0) and ens["verdict"].iloc[0] == "success"


def test_ensemble_verdicts_follow_the_single_run_rule():
    """A vote above the majority rate with no decision boundary is 'degenerate', as a single
    run would be; a vote that predicts one class is 'collapsed'."""
    y = [0] * 28 + [1] * 12  # majority rate 0.7
    collapsed = [0] * 40
    # one positive found: accuracy 29/40 = 0.725 > 0.7, informedness 1/12 + 1 - 1 = 0.083 <= 0.1
    odd = [0] * 28 + [1] + [0] * 11
    recs = [{"run_id": f"f{s}", "status": "ok", "predictions": p, "labels": y,
             "config": {"task": "t", "model": "m", "method": "fft", "seed": s}}
            for s, p in enumerate([collapsed, collapsed, odd, odd, odd])]
    ens = nlp.ensemble_frame(recs, fft_sizes=[3, 5], dsgd_sizes=[], n_subsets=1).set_index("label")
    assert ens.loc["ENS(×3)", "verdict"] == "collapsed"  # seeds 0, 1, 2: the collapsed pair outvotes
    assert ens.loc["ENS(×5)", "accuracy"] == pytest.approx(0.725)  # three "odd" members outvote two
    assert ens.loc["ENS(×5)", "verdict"] == "degenerate"


def test_stored_status_counts_the_grid(tmp_path):
    cfgs = [RunConfig(task="synthetic_blobs", model="tiny-mlp", method=m, seed=s)
            for m in ("fft", "dsgd") for s in (0, 1)]
    store = ResultStore(tmp_path)
    store.put({"run_id": cfgs[0].run_id(), "config": cfgs[0].to_dict(), "status": "ok"})
    store.put({"run_id": cfgs[2].run_id(), "config": cfgs[2].to_dict(), "status": "error"})
    st = nlp.stored_status(tmp_path, cfgs)
    assert (st["done"], st["total"], st["errors"], st["complete"]) == (1, 4, 1, False)
    assert st["per_label"] == {"FFT": [1, 2], "DSGD": [0, 2]}
    assert nlp.stored_status(tmp_path / "nothing", cfgs)["done"] == 0


def test_import_runs_copies_finished_grid_runs_and_records_it(tmp_path):
    cfgs = [RunConfig(task="synthetic_blobs", model="tiny-mlp", seed=s) for s in range(3)]
    src = ResultStore(tmp_path / "src")
    src.put({"run_id": cfgs[0].run_id(), "config": cfgs[0].to_dict(), "status": "ok"})
    src.put({"run_id": cfgs[1].run_id(), "config": cfgs[1].to_dict(), "status": "error"})
    other = RunConfig(task="synthetic_blobs", model="tiny-mlp", seed=99)
    src.put({"run_id": other.run_id(), "config": other.to_dict(), "status": "ok"})
    copied = nlp.import_runs(src, tmp_path / "dst", cfgs, note="test")
    assert copied == [cfgs[0].run_id()]
    dst = ResultStore(tmp_path / "dst")
    assert dst.run_ids() == [cfgs[0].run_id()]
    s = dst.provenance.load()["sessions"][0]
    assert s["settings"]["kind"] == "import" and s["computed"] == copied and s["skipped"] == 2
    assert nlp.import_runs(src, dst, cfgs) == []  # nothing left to copy


def test_verify_choice_is_verify_samples_draw(tmp_path):
    from fakerun import fake_run

    cfgs = [RunConfig(task="toy", model="m", method=m, seed=s) for m in ("fft", "dsgd") for s in range(4)]
    run_sweep(cfgs, tmp_path, run_fn=fake_run, progress=False, provenance=False)
    for seed in (0, 1, 7):
        table = verify_sample(tmp_path, k=3, seed=seed, run_fn=fake_run)
        assert [r["run_id"] for r in nlp.verify_choice(tmp_path, 3, seed)] == list(table["run_id"])
        assert table["ok"].all()


def test_verify_in_build_recomputes_into_the_scratch_store(tmp_path, monkeypatch):
    tiny = dict(task="synthetic_blobs", model="tiny-mlp", max_steps=3, train_size=32, eval_size=32, threads=1)
    cfgs = [RunConfig(method=m, seed=s, **tiny) for m in ("fft", "dsgd") for s in (0, 1)]
    run_sweep(cfgs, tmp_path / "stored", progress=False)
    monkeypatch.setenv("DSGD_STORE", str(tmp_path / "elsewhere"))
    table, recs = nlp.verify_in_build(tmp_path / "stored", k=2, seed=0, workers=1,
                                      build_store=tmp_path / "build")
    assert len(table) == 2 and table["ok"].all() and (table["diff"] == 0).all()
    assert sorted(ResultStore(tmp_path / "build").run_ids()) == sorted(table["run_id"])
    assert [r["run_id"] for r in recs] == list(table["run_id"])
    import os
    assert os.environ["DSGD_STORE"] == str(tmp_path / "elsewhere")  # restored
    with pytest.raises(ValueError, match="stored set itself"):
        nlp.verify_in_build(tmp_path / "stored", build_store=tmp_path / "stored")


def test_verify_in_build_draws_only_short_runs_when_asked(tmp_path):
    tiny = dict(task="synthetic_blobs", model="tiny-mlp", train_size=32, eval_size=32, threads=1)
    cfgs = [RunConfig(method="fft", seed=s, max_steps=n, **tiny) for s in (0, 1) for n in (3, 6)]
    run_sweep(cfgs, tmp_path / "stored", progress=False)
    table, recs = nlp.verify_in_build(tmp_path / "stored", k=4, seed=0, workers=1,
                                      build_store=tmp_path / "build", max_steps=3)
    assert len(table) == 2 and {r["config"]["max_steps"] for r in recs} == {3}
    with pytest.raises(ValueError, match="at most 2 steps"):
        nlp.verify_in_build(tmp_path / "stored", k=1, build_store=tmp_path / "build", max_steps=2)


def test_verify_in_build_draws_once_while_a_sweep_adds_runs(tmp_path, monkeypatch):
    """A run stored between the draw and the comparison must not change the sample."""
    from fakerun import fake_run

    cfgs = [RunConfig(task="toy", model="m", method="fft", seed=s) for s in range(4)]
    run_sweep(cfgs, tmp_path / "stored", run_fn=fake_run, progress=False, provenance=False)
    calls = []
    import dsgd.sweep as sweep_mod

    original = sweep_mod.run_sweep

    def run_sweep_then_add(configs, store, **kw):
        calls.append([c.run_id() for c in configs])
        out = original(configs, store, run_fn=fake_run, **{k: v for k, v in kw.items() if k != "run_fn"})
        extra = RunConfig(task="toy", model="m", method="fft", seed=99)  # a sweep stores another run
        ResultStore(tmp_path / "stored").put(fake_run(extra))
        return out

    monkeypatch.setattr(sweep_mod, "run_sweep", run_sweep_then_add)
    table, _ = nlp.verify_in_build(tmp_path / "stored", k=2, seed=3, workers=1, build_store=tmp_path / "build")
    assert list(table["run_id"]) == calls[0] and table["ok"].all()


# ---------------------------------------------------------------- cost
def test_epoch_cost_by_hand():
    from dsgd.cost import epoch_cost

    steps = pd.DataFrame({"label": ["FFT", "PCGrad"], "median_s": [0.5, 1.2], "paired_ratio": [1.0, 2.5]})
    d = epoch_cost(steps, 100, ensembles={"ENS(×3)": ("FFT", 3)}).set_index("label")
    assert d.loc["FFT", "s_per_epoch"] == pytest.approx(50.0)
    assert d.loc["PCGrad", "s_per_epoch"] == pytest.approx(120.0) and d.loc["PCGrad", "rel"] == 2.5
    assert d.loc["ENS(×3)", "s_per_epoch"] == pytest.approx(150.0) and d.loc["ENS(×3)", "rel"] == 3.0
    with pytest.raises(ValueError, match="not timed"):
        epoch_cost(steps, 100, ensembles={"DSGD(×9)": ("DSGD", 9)})


def test_as_specs_and_errors():
    from dsgd.cost import MethodSpec, as_specs

    specs = as_specs(["fft", ("Focal", "focal", {"gamma": 1.0}), {"method": "swa", "method_kwargs": {"window": 2}}])
    assert specs == [MethodSpec("fft", "fft"), MethodSpec("Focal", "focal", {"gamma": 1.0}),
                     MethodSpec("swa", "swa", {"window": 2})]
    with pytest.raises(ValueError, match="distinct"):
        as_specs(["fft", "fft"])
    with pytest.raises(ValueError):
        as_specs([42])


def test_figure3_and_success_counts():
    import matplotlib
    matplotlib.use("Agg")
    df = pd.DataFrame({"label": ["FFT", "FFT", "DSGD", "DSGD", "ENS(×3)"],
                       "accuracy": [0.9, 0.65, 0.8, 0.82, 0.88],
                       "verdict": ["success", "collapsed", "success", "degenerate", "success"],
                       "cost": [1.0, 1.0, 1.02, 1.02, 3.0]})
    assert nlp.success_counts(df).to_dict() == {"FFT": "1/2", "DSGD": "1/2", "ENS(×3)": "1/1"}
    fig = nlp.figure3(df, time="cost", majority=0.65)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names[0].startswith("FFT (±17.7, n=2)") and names[-1] == "majority class"
    # FFT's dot: mean accuracy (90 + 65) / 2 = 77.5 at cost 1
    assert tuple(ax.collections[0].get_offsets()[0]) == pytest.approx((1.0, 77.5))


def test_paper_cost_statements():
    assert nlp.paper_cost("PCGrad")[0] == 2.0
    assert nlp.paper_cost("DSGD")[0] == 1.0
    assert nlp.paper_cost("ENS(×7)")[0] == 7.0
    assert nlp.paper_cost("FocalLoss (best of search)")[0] == 1.0
    assert nlp.paper_cost("CWGNC") == (None, "not in the paper")


# ---------------------------------------------------------------- the paper's Table 1
def test_paper_table1_as_transcribed():
    rob, llama = nlp.PAPER_TABLE1["roberta-large"], nlp.PAPER_TABLE1["llama-3.2-1b"]
    assert list(rob) == ["FFT", "FocalLoss", "LNSR", "NoisyTune", "PCGrad", "DSGD", "SWA",
                         "ENS(×3)", "ENS(×5)", "ENS(×7)", "ENS(×9)", "DSGD(×9)"] == list(llama)
    assert rob["FFT"]["tasks"]["multirc"] == (74.05, 14.50, False)
    assert rob["NoisyTune"]["tasks"]["copa"] == (55.00, 0.00, True)
    assert [t for t, v in llama["FocalLoss"]["tasks"].items() if v[2]] == ["boolq", "mrpc", "cola"]
    assert (rob["DSGD"]["acc"], rob["DSGD"]["std"]) == (85.78, 1.42)
    assert (llama["FFT"]["acc"], llama["FFT"]["std"]) == (77.69, 2.41)
    t = nlp.paper_table1("roberta-large")
    assert t.loc["PCGrad", "COPA"] == "69.60 ± 19.11" and t.loc["NoisyTune", "COPA"] == "55.00 ± 0.00†"


def test_paper_average_check_by_hand():
    chk = nlp.paper_average_check().set_index(["model", "method"])
    # FFT, RoBERTa-large: (74.05 + 74.70 + 76.17 + 83.20 + 84.90 + 78.95) / 6 = 78.6617 (printed 78.66)
    r = chk.loc[("RoBERTa-large", "FFT")]
    assert r["mean_of_tasks_acc"] == pytest.approx(78.662, abs=1e-3) and r["acc_matches"]
    # FocalLoss, RoBERTa-large: (73.38 + 80.40 + 77.29 + 81.22 + 86.52 + 83.82) / 6 = 80.438, printed 81.10
    r = chk.loc[("RoBERTa-large", "FocalLoss")]
    assert r["mean_of_tasks_acc"] == pytest.approx(80.438, abs=1e-3) and not r["acc_matches"]
    # ENS(x5), RoBERTa-large: stds (12.12 + 3.43 + 2.58 + 0.14 + 0.90 + 7.36) / 6 = 4.422, printed 4.71
    r = chk.loc[("RoBERTa-large", "ENS(×5)")]
    assert r["mean_of_tasks_std"] == pytest.approx(4.422, abs=1e-3) and not r["std_matches"]
    assert chk.loc[("Llama-3.2-1B", "DSGD(×9)"), "acc_matches"]


# ---------------------------------------------------------------- the paper profile, offline
def _tiny_paper_params() -> dict:
    """The paper profile with only the downloads swapped: tiny models, hub fixtures."""
    P = profile("paper")
    assert P["models"] == ["roberta-large", "llama-3.2-1b"] and P["task_kwargs"] == {"source": "hub"}
    P.update(models=["tiny-roberta", "tiny-llama"], task_kwargs={"source": "fixture"})
    return P


def test_paper_profile_code_path_on_tiny_models(tmp_path, monkeypatch):
    from dsgd.cost import measure_step_times
    from dsgd.report import format_table1, levene_table, table1

    monkeypatch.setenv("DSGD_STORE", str(tmp_path / "scratch"))
    P = _tiny_paper_params()
    P.update(tasks=["copa", "multirc"], task_settings={k: P["task_settings"][k] for k in ("copa", "multirc")},
             seeds=P["seeds"][:3])
    cfgs = [c.replace(max_steps=1) for c in nlp.chapter_grid(P)]
    part = nlp.select(cfgs, seeds=P["seeds"][:2], methods=["fft", "dsgd", "focal", "pcgrad", "swa"])
    part += nlp.select(cfgs, seeds=P["seeds"][2:3], methods=["fft"])  # three FFT seeds: ENS(x3)
    part = [c for c in part if c.task == "copa" or (c.method == "fft" and c.seed == P["seeds"][0])]
    recs = run_sweep(part, workers=1, progress=False)
    assert all(r["status"] == "ok" and r["timings"]["steps"] == 1 for r in recs), \
        [r.get("error") for r in recs if r["status"] != "ok"]
    assert {r["config"]["model"] for r in recs} == {"tiny-roberta", "tiny-llama"}
    frame = nlp.nlp_frame(recs)
    best, choice = nlp.best_of_search(frame, "FocalLoss")
    assert set(choice["searched"]) == {len(P["focal_search"])}
    swa_best, _ = nlp.best_of_search(frame, "SWA")
    ens = nlp.ensemble_frame(recs, [3], [3], n_subsets=2)
    assert set(ens["label"]) == {"ENS(×3)"}  # DSGD has 2 seeds only
    full = pd.concat([frame, best, swa_best, ens], ignore_index=True)
    for model in ("tiny-roberta", "tiny-llama"):
        sub = full[full["model"] == model]
        t = table1(sub, group_by="task", rows="label", order=nlp.row_order(sub["label"]), columns=P["tasks"])
        assert "FocalLoss (best of search)" in t.index and "ENS(×3)" in t.index
        assert t.loc["FFT", ("copa", "n")] == 3 and t.loc["FFT", ("multirc", "n")] == 1
        assert len(format_table1(t)) == len(t)
        assert {"FFT", "DSGD"} <= set(levene_table(sub, reference="FFT", rows="label")["label"]) | {"FFT"}
    # the cost measurement of the profile (MultiRC), on the tiny RoBERTa
    cost_cfg = next(c for c in cfgs if c.task == P["cost_task"] and c.model == "tiny-roberta")
    steps = measure_step_times([("FFT", "fft", {}), ("DSGD", "dsgd", {}), ("PCGrad", "pcgrad", {})],
                               cost_cfg, rounds=2, warmup=1)
    assert list(steps["label"]) == ["FFT", "DSGD", "PCGrad"]
    assert steps.set_index("label").loc["FFT", "paired_ratio"] == 1.0
    assert steps.attrs["batch_shape"][0] == P["batch_size"] and steps.attrs["n_train"] == 6
    assert torch.get_num_threads() == 1  # restored


@pytest.mark.ray
@pytest.mark.xdist_group("ray")  # one local Ray instance at a time (make.py: --dist loadgroup)
def test_paper_profile_on_the_ray_backend(tmp_path):
    pytest.importorskip("ray")
    import ray

    P = _tiny_paper_params()
    cfgs = [c.replace(max_steps=1) for c in nlp.select(nlp.chapter_grid(P), seeds=P["seeds"][:1], methods=["dsgd"])
            if c.task == "rte"]
    local = run_sweep(cfgs, tmp_path / "local", workers=1, progress=False)
    remote = run_sweep(cfgs, tmp_path / "ray", backend="ray", workers=2, progress=False)
    assert not ray.is_initialized()
    assert [r["status"] for r in remote] == ["ok", "ok"]
    for a, b in zip(local, remote):
        assert a["run_id"] == b["run_id"] and a["predictions"] == b["predictions"]
        np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=1e-5)


def test_reviewer_baseline_labels():
    """Issue #20's rows are told apart by their settings, in words."""
    vl = nlp.variant_label
    assert vl({"method": "focal", "method_kwargs": {"alpha": 0.25, "gamma": 2.0, "alpha_mode": "class"}}) == \
        "FocalLoss (class α=0.25, γ=2)"
    assert vl({"method": "focal", "method_kwargs": {"alpha": "inverse_frequency", "gamma": 0.5,
                                                    "alpha_mode": "class"}}) == "FocalLoss (class α ∝ 1/n, γ=0.5)"
    assert vl({"method": "lnsr"}) == "LNSR"
    assert vl({"method": "lnsr", "method_kwargs": {"positions": "first"}}) == "LNSR ([CLS] only)"
    assert vl({"method": "lnsr", "method_kwargs": {"noise": "fixed", "sigma": 0.1}}) == "LNSR (fixed σ=0.1)"
    assert vl({"method": "lnsr", "method_kwargs": {"sigma": 0.01}}) == "LNSR (σ=0.01×RMS)"
    assert vl({"method": "lnsr", "method_kwargs": {"lambdas": [0.02, 0.01]}}) == "LNSR (λ=0.02, 0.01)"
    assert vl({"method": "swa", "method_kwargs": {"window": 3, "span": 0.3}}) == "SWA (window 3, last 30 %)"
    mosbach = {"method": "fft", "lr": 2e-5, "warmup_ratio": 0.1, "epochs": 6.0, "adam_bias_correction": True}
    assert vl(mosbach) == "FFT (Mosbach et al.)"
    assert vl({**mosbach, "adam_bias_correction": False}) == "FFT"  # not the recipe
    assert vl({"method": "fft", "seed": 3, "task_kwargs": {"bootstrap_seed": "seed"}}) == "FFT (bootstrap resample)"
    assert nlp.family("LNSR ([CLS] only)") == "LNSR" and nlp.family("LNSR (best of search)") == "LNSR"
    assert nlp.row_order(["BAG(×3)", "FFT (Mosbach et al.)", "ENS(×3)", "FFT"]) == \
        ["FFT", "FFT (Mosbach et al.)", "ENS(×3)", "BAG(×3)"]


def test_focal_search_prefers_class_dependent_alpha():
    uni = {"method": "focal", "method_kwargs": {"alpha": 0.25, "gamma": 2.0}}
    cls = {"method": "focal", "method_kwargs": {"alpha": 0.75, "gamma": 2.0, "alpha_mode": "class"}}
    df = nlp.nlp_frame([_row(uni, 0, 0.95), _row(cls, 0, 0.70), _row(cls, 1, 0.72)])
    rows, choice = nlp.best_of_search(df, "FocalLoss")
    # the uniform variant has the higher mean but is only a loss scale: the class variant is chosen
    assert choice["chosen"].iloc[0] == "FocalLoss (class α=0.75, γ=2)" and choice["searched"].iloc[0] == 1
    assert sorted(rows["accuracy"]) == [0.70, 0.72]


# six FFT runs of a six-example task, worked by hand in the tests below
SIX_Y = [0, 0, 1, 1, 1, 1]
SIX_PREDS = {0: [0, 0, 1, 1, 0, 0], 1: [0, 1, 1, 1, 1, 0], 2: [1, 0, 1, 0, 1, 1],
             3: [0, 0, 0, 0, 0, 0], 4: [1, 1, 1, 1, 1, 1], 5: [0, 0, 1, 1, 1, 0]}


def _six_runs(prefix: str = "f", **config) -> list[dict]:
    return [{"run_id": f"{prefix}{s}", "status": "ok", "predictions": p, "labels": SIX_Y,
             "config": {"task": "t", "model": "m", "method": "fft", "seed": s, **config}}
            for s, p in SIX_PREDS.items()]


def test_bagging_and_disjoint_seed_ensembles_by_hand():
    recs = _six_runs()
    # bagging members: the same predictions, but trained on bootstrap resamples
    recs += _six_runs("b", task_kwargs={"bootstrap_seed": "seed"})
    ens = nlp.ensemble_frame(recs, fft_sizes=[3], dsgd_sizes=[], bag_sizes=[3], members="disjoint")
    # disjoint groups of three seeds: {0,1,2} votes [0,0,1,1,1,0] -> 5/6; {3,4,5} votes [0,0,1,1,1,0] -> 5/6
    for label in ("ENS(×3)", "BAG(×3)"):
        part = ens[ens["label"] == label]
        assert sorted(map(tuple, part["members"])) == [(0, 1, 2), (3, 4, 5)]
        assert part["accuracy"].tolist() == pytest.approx([5 / 6, 5 / 6])
    assert set(ens[ens["label"] == "BAG(×3)"]["kind"]) == {"bagging"}
    with pytest.raises(ValueError, match="members"):
        nlp.ensemble_frame(recs, members="overlapping")


def test_ensemble_comparison_random_against_disjoint():
    t = nlp.ensemble_comparison(_six_runs(), fft_sizes=[3], dsgd_sizes=[], n_subsets=4, seed=1)
    row = t.loc["ENS(×3)"]
    # two disjoint groups, both 5/6 (worked out in the test above): mean 83.33, no spread between them
    assert row["disjoint groups"] == 2 and row["disjoint groups: mean (%)"] == pytest.approx(500 / 6)
    assert row["disjoint groups: std"] == pytest.approx(0.0) and row["random sets"] == 4
    assert row["mean change"] == pytest.approx(row["disjoint groups: mean (%)"] - row["random sets: mean (%)"])


def test_extra_variants_join_the_grid_and_fail_early():
    P = {**chapter_defaults(), "extra_variants": [{"method": "fft", "lr": 2e-5, "epochs": 6.0},
                                                  {"method": "fft", "task_kwargs": {"bootstrap_seed": "seed"}}]}
    grid = nlp.chapter_grid(P)
    labels = {nlp.variant_label(c.to_dict()) for c in grid}
    assert {"FFT (Mosbach et al.)", "FFT (bootstrap resample)", "FFT"} <= labels
    boot = [c for c in grid if c.task_kwargs.get("bootstrap_seed") == "seed"]
    assert len(boot) == len(P["seeds"]) and all(c.lr == P["lr"] for c in boot)
    for bad, msg in (([{"lr": 1e-5}], "must be a dict with a 'method'"),
                     ([{"method": "fft", "seed": 3}], "not RunConfig fields"),
                     ([{"method": "swa", "method_kwargs": {"span": 2.0}}], "span")):
        with pytest.raises(ValueError, match=msg):
            nlp.chapter_grid({**chapter_defaults(), "extra_variants": bad})


def test_search_table_picks_the_fewest_failures_then_the_higher_mean():
    rows = []
    for s in range(3):  # hand-made search: two focal variants, one LNSR variant
        rows += [{"label": "FocalLoss (class α=0.25, γ=2)", "seed": s, "accuracy": [0.6, 0.8, 0.7][s],
                  "verdict": ["collapsed", "success", "success"][s]},
                 {"label": "FocalLoss (class α ∝ 1/n, γ=2)", "seed": s, "accuracy": [0.6, 0.8, 0.7][s],
                  "verdict": "success"},
                 {"label": "FocalLoss (class α=0.75, γ=2)", "seed": s, "accuracy": [0.75, 0.8, 0.7][s],
                  "verdict": "success"},
                 {"label": "LNSR ([CLS] only)", "seed": s, "accuracy": 0.6, "verdict": "collapsed"}]
    stored = pd.DataFrame([{"label": "FFT", "seed": s, "verdict": v, "accuracy": 0.7}
                           for s, v in enumerate(["collapsed", "success", "failed", "success"])]
                          + [{"label": "FocalLoss (class α=0.75, γ=2)", "seed": s, "verdict": "success",
                              "accuracy": 0.8} for s in range(4)])
    t = nlp.search_table(pd.DataFrame(rows), stored).set_index("variant")
    # 1 of 3 failed: Clopper-Pearson [0.0084, 0.9057]
    assert t.loc["FocalLoss (class α=0.25, γ=2)", "failed"] == "1/3"
    assert t.loc["FocalLoss (class α=0.25, γ=2)", "failure rate 95 % CI"] == "[0.01, 0.91]"
    assert t.loc["LNSR ([CLS] only)", "failure rate 95 % CI"] == "[0.29, 1.00]"
    assert t.loc["LNSR ([CLS] only)", "FFT failed (same seeds)"] == "2/3"  # seeds 0-2 of the stored FFT
    assert np.isnan(t.loc["LNSR ([CLS] only)", "balanced acc. (%)"])  # not in this hand-made frame
    # two focal variants without failures; the one with the higher mean (75 > 70) is chosen
    assert list(t.index[t["chosen"]]) == ["FocalLoss (class α=0.75, γ=2)", "LNSR ([CLS] only)"]
    assert nlp.search_choice(t.reset_index()) == {"FocalLoss": "FocalLoss (class α=0.75, γ=2)",
                                                  "LNSR": "LNSR ([CLS] only)"}
    text = nlp.search_sentence(t.reset_index(), stored)
    assert "3 variants tried" in text and "1 variant tried" in text
    assert "holds 4 of its 10 seeds" in text and "holds 0 of its 10 seeds" in text
    assert "not been run" in nlp.search_sentence(nlp.search_table(pd.DataFrame()), None)


def test_row_changes_by_hand():
    """Table 1 before and after added rows (issue #20), worked out by hand: the FFT and plain
    focal rows are unchanged and not listed; focal's best of search is re-chosen (class α);
    SWA gains a best of search measured against its one earlier row; Mosbach et al.'s
    recipe is measured against FFT."""
    S, C = "success", "collapsed"
    fft = {"method": "fft"}
    f1 = {"method": "focal", "method_kwargs": {"alpha": 1.0, "gamma": 0.5}}
    f2 = {"method": "focal", "method_kwargs": {"alpha": 0.25, "gamma": 2.0}}
    fc = {"method": "focal", "method_kwargs": {"alpha": 0.75, "gamma": 2.0, "alpha_mode": "class"}}
    w2 = {"method": "swa", "method_kwargs": {"window": 2}}
    w3 = {"method": "swa", "method_kwargs": {"window": 3, "span": 0.3}}
    mos = {"method": "fft", "lr": 2e-5, "epochs": 6.0}
    runs = {  # per seed 0-3: accuracy and verdict
        "fft": (fft, [0.9, 0.6, 0.6, 0.8], [S, C, C, S]),
        "f1": (f1, [0.8, 0.8, 0.6, 0.6], [S, S, C, C]),  # mean 0.70: the earlier focal pick
        "f2": (f2, [0.6] * 4, [C] * 4),  # mean 0.60
        "fc": (fc, [0.9, 0.9, 0.9, 0.6], [S, S, S, C]),  # the only class-α variant: the new pick
        "w2": (w2, [0.6] * 4, [C] * 4),
        "w3": (w3, [0.8] * 4, [S] * 4),
        "mos": (mos, [0.9, 0.85, 0.6, 0.8], [S, S, C, S]),
    }
    recs = {k: [_row(cfg, s, a, v) for s, (a, v) in enumerate(zip(acc, ver))] for k, (cfg, acc, ver) in runs.items()}
    P = {"ensemble_sizes": [], "dsgd_ensemble_sizes": [], "ensemble_subsets": 1, "ensemble_members": "disjoint"}
    old = [r for k in ("fft", "f1", "f2", "w2") for r in recs[k]]
    new = [r for rs in recs.values() for r in rs]
    B, cb = nlp.table1_frame(nlp.nlp_frame(old), [], P)
    A, ca = nlp.table1_frame(nlp.nlp_frame(new), [], P)
    t = nlp.row_changes(B, A, "m", "t", cb, ca).set_index("row")
    assert list(t.index) == ["FFT (Mosbach et al.)", "FocalLoss (best of search) = FocalLoss (class α=0.75, γ=2)",
                             "SWA (best of search) = SWA (window 3, last 30 %)"]
    m = t.loc["FFT (Mosbach et al.)"]
    assert m["change"] == "new row" and m["against"] == "FFT"
    assert m["failed"].startswith("1/4") and m["against: failed"].startswith("2/4")
    # differences 0, +0.25, 0, 0: mean +6.25 points; one discordant seed: McNemar p = 1
    assert m["difference (points)"] == pytest.approx(6.25) and m["McNemar p"] == pytest.approx(1.0)
    f = t.loc["FocalLoss (best of search) = FocalLoss (class α=0.75, γ=2)"]
    assert f["change"] == "re-chosen"
    assert f["against"] == "FocalLoss (best of search) = FocalLoss (α=1, γ=0.5) (before)"
    assert f["difference (points)"] == pytest.approx(12.5)  # (0.1 + 0.1 + 0.3 + 0) / 4
    w = t.loc["SWA (best of search) = SWA (window 3, last 30 %)"]
    assert w["against"] == "SWA (window 2)" and w["_k"] == 0 and w["_k_ref"] == 4
    # four discordant seeds: exact McNemar p = 2 / 2^4 = 0.125; Holm over (1, 1, 0.125): 0.375
    assert w["McNemar p"] == pytest.approx(0.125) and w["Holm (McNemar)"] == pytest.approx(0.375)
    text = nlp.changes_sentence(t.reset_index())
    assert text.startswith("3 rows of Table 1 are new or changed. FFT (Mosbach et al.) failed on 1/4")
    assert "less often than SWA (window 2) (0 vs 4 on 4 shared seeds" in text
    assert "Holm-adjusted McNemar p = 0.375, not significant" in text
    assert nlp.changes_sentence(nlp.row_changes(B, B, "m", "t", cb, cb)).startswith("No row of Table 1 differs")
    # a new SWA variant that loses the search: its own row is listed, the best of search
    # (still the earlier SWA (window 2), the same runs) is not
    w5 = [_row({"method": "swa", "method_kwargs": {"window": 5}}, s, 0.5, C) for s in range(4)]
    A2, ca2 = nlp.table1_frame(nlp.nlp_frame(old + w5), [], P)
    t2 = nlp.row_changes(B, A2, "m", "t", cb, ca2)
    assert list(t2["row"]) == ["SWA (window 5)"] and t2["against"].iloc[0] == "SWA (window 2)"
