"""The helpers the chapters' cells call (moved out of the notebooks into dsgd/chapters/
and dsgd/book.py), checked on small cases worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dsgd.book import Results, optional
from dsgd.chapters import _common as C
from dsgd.chapters import getting_started as gs
from dsgd.chapters import multitask as mt
from dsgd.chapters import nlp
from dsgd.chapters import phenomenon as ph
from dsgd.chapters import sensitivity as S
from dsgd.chapters import theory as th
from dsgd.chapters import vision as vi
from dsgd.config import RunConfig


class Recorder:
    """Stands in for :class:`dsgd.book.Results`: keeps what was put, formatted as the page shows it."""

    def __init__(self):
        self.values: dict[str, object] = {}

    def put(self, key, value, fmt=None):
        self.values[key] = format(value, fmt) if fmt and isinstance(value, (int, float)) else value
        return value

    put_number = Results.put_number

    def get(self, key):
        return self.values[key]


def _rec(method, seed, acc, verdict="success", *, bal=None, s_per_step=0.1, total_s=2.0, run_id=None, **cfg):
    return {"run_id": run_id or f"{method}-{seed}", "status": "ok", "verdict": verdict,
            "config": {"method": method, "seed": seed, **cfg}, "majority_rate": 0.7,
            "metrics": {"accuracy": acc, "balanced_accuracy": acc if bal is None else bal},
            "timings": {"s_per_step": s_per_step, "total_s": total_s}}


# ------------------------------------------------------------------------ dsgd.book
def test_optional_accepts_none_or_the_type():
    f, i = optional(float), optional(int)
    assert f(None) and f(1) and f(2.5) and not f("2") and not f(True)
    assert i(None) and i(3) and not i(3.0)
    assert f.__doc__ == "float or None"


def test_put_number_writes_a_dash_for_a_missing_number(tmp_path, monkeypatch):
    monkeypatch.setenv("DSGD_RESULTS_DIR", str(tmp_path))
    R = Results("x", {})
    R.put_number("a", float("nan"), ".2f")
    R.put_number("b", None)
    R.put_number("c", np.float64(0.125), ".2f")
    R.put_number("d", float("inf"), missing="n/a")
    R.put_number("e", "text")
    assert R.data["values"] == {"a": "–", "b": "–", "c": 0.125, "d": "n/a", "e": "text"}


# ------------------------------------------------------------------------ _common
def test_in_order_puts_the_preferred_names_first():
    assert C.in_order(["dsgd", "x", "fft", "dsgd"], ["fft", "focal", "dsgd"]) == ["fft", "dsgd", "x"]


def test_method_variants_check_names():
    assert C.method_variants(["fft", "focal"], {"focal": {"gamma": 2.0}, "swa": {"window": 3}}) == [
        {"method": "fft", "method_kwargs": {}}, {"method": "focal", "method_kwargs": {"gamma": 2.0}}]
    with pytest.raises(ValueError, match="unknown method"):
        C.method_variants(["fft", "ftt"])


def test_overlap_agreement_counts_reproduced_runs_only():
    build = [_rec("fft", 0, 0.800), _rec("fft", 1, 0.700), _rec("dsgd", 0, 0.600), _rec("dsgd", 1, 0.9)]
    stored = [_rec("fft", 0, 0.805),                 # 0.5 points apart: reproduced
              _rec("fft", 1, 0.710),                 # 1 point apart: not
              _rec("dsgd", 0, 0.600, "collapsed"),   # other verdict: not
              _rec("dsgd", 7, 0.5)]                  # not in the build
    assert C.overlap_agreement(build, stored) == (1, 3)
    # a build run without the per-epoch evaluation still verifies the full stored run
    lean = [_rec("fft", 0, 0.800, eval_each_epoch=False, run_id="another-id")]
    assert C.overlap_agreement(lean, stored) == (1, 1)
    assert C.overlap_agreement([_rec("fft", 0, 0.800, lr=1e-3)], stored) == (0, 0)


def test_put_verification_glues_counts_or_dashes():
    R = Recorder()
    verify = pd.DataFrame({"run_id": ["a", "b"], "ok": [True, False], "diff": [0.001, 0.02]})
    C.put_verification(R, verify, 2, 3)
    sentence = R.values.pop("rerun_sentence")
    assert R.values == {"verify_passed": "1 of 2", "verify_runs": "a, b", "verify_max_diff": "2.00",
                        "overlap_agree": "2 of 3", "rerun_agree": "3 of 5", "rerun_agree_why": "3 of 5"}
    assert "2 of the 3 runs" in sentence and "1 of 2 stored runs drawn at random (a, b" in sentence
    R = Recorder()
    C.put_verification(R, None, 4, 4)  # no random draw: the build's own runs still count
    assert R.values["rerun_agree"] == "4 of 4" and "drawn at random" not in R.values["rerun_sentence"]
    R = Recorder()
    C.put_verification(R, None, 0, 0)
    assert R.values == {"verify_passed": "–", "verify_runs": "–", "verify_max_diff": "–",
                        "overlap_agree": "none (no overlap)", "rerun_agree": "none", "rerun_agree_why": "none",
                        "rerun_sentence": "This build recomputed no stored run."}


def test_put_verification_says_which_mismatches_a_processor_explains():
    old = {"device": "cpu", "cpu_model": "Intel Xeon", "cpu_capability": "AVX2"}
    new = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": "AVX512"}
    build = [{**_rec("fft", 0, 0.80), "machine": new}, {**_rec("dsgd", 0, 0.60), "machine": new},
             {**_rec("fft", 1, 0.70), "machine": new}]
    stored = [{**_rec("fft", 0, 0.75), "machine": old},  # 5 points apart, another processor
              {**_rec("dsgd", 0, 0.70)},  # 10 points apart, record made before processors were named
              {**_rec("fft", 1, 0.70), "machine": new}]  # reproduced
    rows = C.overlap_table(build, stored)
    assert list(rows["ok"]) == [False, False, True]
    R = Recorder()
    C.put_verification(R, None, *C.overlap_agreement(build, stored), rows)
    assert R.values["rerun_agree_why"] == ("1 of 3 (those that differ: 1 stored on another processor, "
                                           "1 on a processor not recorded)")
    assert "1 run that differs was stored on another processor (Intel Xeon (AVX2); this computation: " \
           "AMD EPYC (AVX512))" in R.values["rerun_sentence"]
    assert R.values["rerun_mismatch"] in R.values["rerun_sentence"]


def test_no_stored_set_means_nothing_to_verify(tmp_path):
    assert C.open_stored("") == (None, [])
    assert C.open_stored(tmp_path) == (None, [])  # a folder without runs/
    assert C.verification_sample(None, 2, 0) == []
    assert C.verify_recomputed(None, 2, 0, {}) is None
    assert C.describe_stored(None, [], "").startswith("No stored result set at (none configured)")


def test_session_line_reads_a_provenance_session():
    s = {"command": ["dsgd", "sweep", "a.yaml", "--workers", "2"], "git": {"commit": "8e57b5c0123", "dirty": True},
         "start": "2026-12-02T14:00:00+0000", "end": "2026-12-02T15:00:00+0000",
         "machine": {"cpus": 2, "platform": "Linux-6", "processor": "x86_64", "cpu_model": "AMD EPYC"}}
    assert C.session_line(s) == ("`dsgd sweep a.yaml --workers 2` at git 8e57b5c with uncommitted changes, "
                                 "2026-12-02T14:00:00+0000 to 2026-12-02T15:00:00+0000, on AMD EPYC, 2 CPUs, Linux-6")
    assert C.session_line({}) == ("command not recorded at unknown commit, time not recorded, on processor not "
                                  "recorded, ? CPUs, platform not recorded")


# ------------------------------------------------------------------------ getting started
def test_gammas_of_the_linear_schedule():
    assert gs.gammas("linear", 0.5, T=4).tolist() == [0.0, 0.125, 0.25, 0.375, 0.5]  # tau * t / T


def test_put_outcomes_means_successes_and_difference():
    recs = [_rec("fft", 0, 0.8, bal=0.5), _rec("fft", 1, 0.9, "failed", bal=0.7),
            _rec("dsgd", 0, 0.7, bal=0.75), _rec("dsgd", 1, 0.8, bal=0.85)]
    table = gs.outcome_table(recs)
    assert list(table.columns) == ["method", "seed", "accuracy", "balanced accuracy", "verdict", "s/step"]
    R = Recorder()
    gs.put_outcomes(R, table)
    assert R.values["fft_acc_mean"] == "0.850" and R.values["fft_bal_mean"] == "0.600"
    assert R.values["dsgd_bal_mean"] == "0.800" and R.values["dsgd_minus_fft_bal"] == "+0.200"
    assert R.values["fft_n_success"] == 1 and R.values["dsgd_n_success"] == 2 and R.values["n_seeds"] == 2


# ------------------------------------------------------------------------ phenomenon
def test_seed_outcomes_and_rolling_mean():
    assert ph.seed_outcomes("0:success 3:collapsed") == {"0": "success", "3": "collapsed"}
    assert ph.rolling_mean([1, 2, 3, 4], window=2).tolist() == [1.0, 1.5, 2.5, 3.5]


def test_budget_arms_sort_by_budget_then_fft_dsgd_others():
    arms = ["DSGD, 300 steps", "FFT, 150 steps", "DSGD (floor 0.5), 150 steps", "DSGD, 150 steps", "FFT, 300 steps"]
    assert sorted(arms, key=ph.budget_arm_key) == [
        "FFT, 150 steps", "DSGD, 150 steps", "DSGD (floor 0.5), 150 steps", "FFT, 300 steps", "DSGD, 300 steps"]


def test_put_pairs_counts_paired_outcomes():
    df = pd.DataFrame({"arm": ["FFT"] * 4 + ["DSGD"] * 3, "seed": [0, 1, 2, 3, 0, 1, 2],
                       "success": [False, True, False, True, True, False, False],
                       "verdict": ["x"] * 7, "accuracy": [0.5] * 7})
    got = {}
    pairs = ph.put_pairs(lambda k, v: got.__setitem__(k, v), "p", df, "FFT", "DSGD")
    assert len(pairs) == 3  # seed 3 has no DSGD run
    assert got == {"p_rescued": 1, "p_lost": 1, "p_both_failed": 1, "p_both_succeeded": 0,
                   "p_pairs": 3, "p_same": 1}


# ------------------------------------------------------------------------ nlp
def test_table_cell_and_cost_verdict():
    t = pd.DataFrame([[81.5, 2.0]], index=["FFT"], columns=pd.MultiIndex.from_tuples([("rte", "mean"), ("rte", "std")]))
    assert nlp.table_cell(t, "FFT", "rte") == 81.5 and nlp.table_cell(t, "FFT", "rte", "std") == 2.0
    assert math.isnan(nlp.table_cell(t, "DSGD", "rte")) and math.isnan(nlp.table_cell(None, "FFT", "rte"))
    assert nlp.cost_verdict(None, 1.0) == "not measured"
    assert nlp.cost_verdict(1.1, 1.0) == "1.10 × FFT, about the same as the paper's 1 ×"  # within 15 %
    assert nlp.cost_verdict(1.2, 1.0).endswith("more than the paper's 1 ×")
    assert nlp.cost_verdict(1.5, 2.0) == "1.50 × FFT, less than the paper's 2 ×"


def test_variant_table_has_one_row_per_variant():
    base = RunConfig(task="synthetic_tokens", model="tiny-bert")
    cfgs = [base.replace(method=m, seed=s, method_kwargs=kw) for m, kw in (("fft", {}), ("dsgd", {}))
            for s in (0, 1)]
    t = nlp.variant_table(cfgs)
    assert list(t.index) == ["FFT", "DSGD"] and list(t["method"]) == ["fft", "dsgd"]


# ------------------------------------------------------------------------ vision and multitask
def _table(columns, cells, failed=(0, 1)):
    """A Table-1-style frame: rows fft and dsgd; per column (mean, std), then runs/failed."""
    cols = pd.MultiIndex.from_tuples([(c, s) for c in columns for s in ("mean", "std")] + [("runs", "failed")])
    return pd.DataFrame([sum(([m, s] for m, s in row), []) + [f] for row, f in zip(cells, failed)],
                        index=["fft", "dsgd"], columns=cols)


def test_vision_put_numbers():
    table = _table(["lt:100"], [[(70.0, 5.0)], [(72.5, 1.0)]])
    frame = pd.DataFrame({"setting": ["lt:100"] * 4, "method": ["fft", "fft", "dsgd", "dsgd"],
                          "head_accuracy": [0.9, 0.8, 0.85, 0.85], "tail_accuracy": [0.5, 0.6, 0.6, 0.7]})
    R = Recorder()
    vi.put_numbers(R, "b", frame, table, ["lt:100"])
    assert R.values["b_s0_fft_acc"] == "70.00" and R.values["b_s0_dsgd_std"] == "1.00"
    assert R.values["b_s0_fft_head"] == "85.0" and R.values["b_s0_dsgd_tail"] == "65.0"
    assert R.values["b_s0_diff"] == "+2.50" and R.values["b_n_runs"] == 4 and R.values["b_n_failed"] == 1
    one_seed = _table(["lt:100"], [[(70.0, float("nan"))], [(72.5, float("nan"))]])
    vi.put_numbers(R, "c", frame, one_seed, ["lt:100"])
    assert R.values["c_s0_fft_std"] == "–"  # one seed has no standard deviation: a dash, never "nan"


def test_multitask_put_numbers_cost_and_titles():
    table = _table(["mrpc+rte: rte", "average"], [[(60.0, 8.0), (65.0, 6.0)], [(62.0, 2.0), (66.0, 1.5)]])
    frame = pd.DataFrame({"verdict": ["success", "failed", "collapsed", "success"]})
    R = Recorder()
    mt.put_numbers(R, "s", frame, table, ["mrpc+rte: rte"])
    assert R.values["s_c0_fft_acc"] == "60.00" and R.values["s_dsgd_STD"] == "1.50"
    assert R.values["s_n_task_runs"] == 4 and R.values["s_n_task_failed"] == 2
    recs = [_rec("fft", 0, 0.5, s_per_step=0.2), _rec("fft", 1, 0.5, s_per_step=0.4), _rec("dsgd", 0, 0.5, s_per_step=0.33)]
    cost = mt.cost_by_method(recs, "here")
    assert cost.loc["fft", "s_per_step"] == pytest.approx(0.3) and cost.loc["dsgd", "relative to FFT"] == pytest.approx(1.1)
    assert mt.two_lines(pd.DataFrame({"column": ["mrpc+rte: rte"]}))["column"].tolist() == ["mrpc+rte:\nrte"]


# ------------------------------------------------------------------------ sensitivity
def _arms_frame():
    return pd.DataFrame({"arm": ["FFT", "FFT", "DSGD", "DSGD"], "seed": [0, 1, 0, 1],
                         "accuracy": [0.5, 0.9, 0.8, 0.9], "verdict": ["collapsed", "success", "success", "success"],
                         "failed": [True, False, False, False]})


def test_fails_and_part_table():
    G = _arms_frame()
    assert S.fails(G, ["FFT"]) == "1 of 2" and S.fails(G, ["static 0.5"]) == "–"
    t = S.part_table(G, G.iloc[:0], ["DSGD", "FFT", "static 0.5"], "grid", "real", n_boot=50)
    assert list(t.index) == ["DSGD", "FFT"]  # an arm without runs is left out
    assert t.loc["FFT", ("grid", "failures")] == "1 of 2"
    assert t.loc["DSGD", ("grid", "accuracy (%)")] == "85.0 ± 7.1"  # std of 0.8, 0.9 = 0.0707


def test_put_claim_and_put_pair():
    R = Recorder()
    S.put_claim(R, "a", {"verdict": "supported", "best_preferred": "DSGD", "best_other": "FFT",
                         "n": 5, "diff": 0.031, "lo": -0.002, "hi": 0.07})
    assert R.values == {"a_verdict": "supported", "a_pref": "DSGD", "a_other": "FFT", "a_diff": "+3.1",
                        "a_ci": "[-0.2, +7.0]", "a_n": 5}
    D = pd.DataFrame([{"source": "g", "arm": "FFT", "seed": 2, "verdict": "collapsed", "accuracy": 0.5,
                       "first_half": 2.0, "second_half": 1.0},
                      {"source": "g", "arm": "DSGD", "seed": 2, "verdict": "success", "accuracy": 0.875,
                       "first_half": 1.0, "second_half": 3.0}])
    R = Recorder()
    S.put_pair(R, "d", D, "g")
    assert R.values == {"d_seed": 2, "d_fft": "collapsed (50.0%)", "d_dsgd": "success (87.5%)",
                        "d_ratio": "3.00", "d_growth_fft": "0.50", "d_growth_dsgd": "3.00"}
    R = Recorder()
    S.put_pair(R, "d", D, "other")
    assert set(R.values.values()) == {"–"} and len(R.values) == 6


def test_shown_value_and_resolve_folder(tmp_path):
    R = Recorder()
    R.values.update({"x": 0.25, "y": "ok"})
    assert S.shown_value(R, "x") == "+0.25" and S.shown_value(R, "y") == "ok" and S.shown_value(R, "z") == "–"
    assert S.resolve_folder("") is None and S.resolve_folder(str(tmp_path)) == tmp_path
    assert S.resolve_folder("results/x").parts[-2:] == ("results", "x")


# ------------------------------------------------------------------------ theory
def test_worst_share_and_extreme():
    summ = [{"n_all": 30, "p": 0.9}, {"n_all": 5, "p": 0.1}, {"n_all": 25, "p": 0.7}]
    assert th.worst_share(summ, "p", min_qualifying=20) == 0.7  # the 5-step setting is not quoted
    assert math.isnan(th.worst_share(summ, "p", min_qualifying=100))
    assert th.extreme(summ, ["a", "b", "c"], "p", min) == (0.1, "b")
    assert th.extreme(summ, ["a", "b", "c"], "p", max) == (0.9, "a")


def test_phenomenon_summary_values_by_hand():
    import pandas as pd

    from dsgd.chapters import phenomenon as ph

    # FFT fails on seeds 0, 1; DSGD on 0, 1, 2, 3: two discordant seeds, both against DSGD
    main = pd.DataFrame({"arm": ["FFT"] * 4 + ["DSGD"] * 4, "seed": [0, 1, 2, 3] * 2,
                         "success": [False, False, True, True] + [False] * 4})
    v = ph.summary_values(main)
    assert v["sum_fft"].startswith("2/4") and v["sum_dsgd"].startswith("4/4")
    assert v["sum_dsgd_direction"] == "more often"
    assert "p = 0.5" in v["sum_test"] and "not significant" in v["sum_test"]  # 2 * 0.5**2
    s = ph.checks_sentence(pd.DataFrame(columns=["arm", "success"]), pd.DataFrame())
    assert "no DSGD run with a floor" in s and "no run with a longer budget" in s


def test_nlp_findings_sentences_by_hand():
    import pandas as pd

    from dsgd.chapters import nlp

    rows = []
    for s in range(4):  # FFT fails on seeds 0, 1; DSGD collapses on all; PCGrad never fails
        rows.append({"label": "FFT", "seed": s, "model": "m", "task": "t", "accuracy": [0.65, 0.66, 0.9, 0.8][s],
                     "verdict": ["collapsed", "degenerate", "success", "success"][s]})
        rows.append({"label": "DSGD", "seed": s, "model": "m", "task": "t", "accuracy": 0.65, "verdict": "collapsed"})
        rows.append({"label": "PCGrad", "seed": s, "model": "m", "task": "t", "accuracy": 0.9, "verdict": "success"})
    f = pd.DataFrame(rows)
    assert "not tested" in nlp.levene_text(f, "m", "t") and "collapsed" in nlp.levene_text(f, "m", "t")
    s = nlp.pcgrad_sentence(f, "m", "t", 2.2)
    assert "less often than FFT (0 vs 2" in s and "p = 0.5" in s and "2.20×" in s  # 2 * 0.5**2
    rows_ = {r["key"]: r for r in nlp.chapter_findings(f, "m", "t", {"DSGD": 1.04}, "setting")}
    assert rows_["table1_failures"]["verdict"] == "not resolved"  # 4 vs 2, p = 0.5
    assert rows_["table1_spread"]["verdict"] == "not testable at this scale"
    assert rows_["dsgd_cost"]["verdict"] == "supported"
    # against the paper's baselines (here PCGrad alone): DSGD 4 vs 0, McNemar p = 2 / 2^4 = 0.125
    b = rows_["table1_baselines"]
    assert b["verdict"] == "not resolved" and "PCGrad 0/4" in b["measured"] and "p = 0.125" in b["measured"]
    # eight seeds: DSGD fails on all, PCGrad on none -> p = 2 / 2^8 = 0.0078: contradicted
    f8 = pd.concat([f, f.assign(seed=f["seed"] + 4)], ignore_index=True)
    b8 = {r["key"]: r for r in nlp.chapter_findings(f8, "m", "t", {}, "s")}["table1_baselines"]
    assert b8["verdict"] == "contradicted" and "DSGD 8 vs 0 on 8 shared seeds" in b8["measured"]
    # a searched baseline is represented by its best of search
    assert nlp.baseline_rows(["FFT", "SWA (window 2)", "FocalLoss (α=1, γ=2)", "FocalLoss (α=1, γ=0.5)",
                              "FocalLoss (best of search)"]) == {"FocalLoss": "FocalLoss (best of search)",
                                                                 "SWA": "SWA (window 2)"}


def test_theory_findings_verdicts_from_values():
    from dsgd.chapters import theory

    v = {"l42_sep_rate": 0.0, "l42_sep_tried": 40, "l42_verdict": "under the paper's assumption ...",
         "l43_verdict": "holds: ...", "t45_verdict": "holds but is vacuous", "t46_verdict": "fails: x",
         "gc_n_wrong": 8, "gc_tau1_errors_end": 8, "gc_verdict": "..."}
    got = {r["key"]: r["verdict"] for r in theory.chapter_findings(v)}
    assert got == {"lemma42": "supported", "l43": "supported", "t45": "supported", "t46": "contradicted",
                   "cancellation": "contradicted"}  # 8 errors before and after: no lasting benefit
    v.update(l42_sep_rate=0.1, gc_tau1_errors_end=5)
    got = {r["key"]: r["verdict"] for r in theory.chapter_findings(v)}
    assert got["lemma42"] == "contradicted" and got["cancellation"] == "supported"


def test_sensitivity_findings_pick_the_deciding_source():
    from dsgd.chapters import sensitivity as S

    v = {"a_stored_verdict": "contradicted", "a_stored_pref": "DSGD", "a_stored_other": "FFT",
         "a_stored_diff": -12.58, "a_stored_ci": "[-20.8, -4.8]", "a_stored_n": 10,
         "b_stored_verdict": "too few seeds", "b_grid_verdict": "not resolved (points towards it)",
         "b_grid_pref": "DSGD", "b_grid_other": "τ = 0.1", "b_grid_diff": 1.07, "b_grid_ci": "[-9.0, +17.2]",
         "b_grid_n": 8, "stored_finished": 84, "stored_expected": 200, "grid_setting_text": "tiny"}
    rows = {r["key"]: r for r in S.chapter_findings(v)}
    assert rows["guideline_a"]["verdict"] == "contradicted" and "-12.6 points" in rows["guideline_a"]["measured"]
    assert rows["guideline_b"]["verdict"] == "not resolved" and "stand-in" in rows["guideline_b"]["setting"]
    assert "guideline_c" not in rows


def test_vision_and_multitask_findings_by_hand():
    import pandas as pd

    from dsgd.chapters import multitask as M
    from dsgd.chapters import vision as V

    # vision: DSGD above FFT by exactly 1 point on each of 6 seeds -> Wilcoxon p = 2/64 < 0.05
    rows = []
    for s in range(6):
        rows.append({"setting": "S", "method": "fft", "seed": s, "accuracy": 0.30 + 0.01 * s, "verdict": "success"})
        rows.append({"setting": "S", "method": "dsgd", "seed": s, "accuracy": 0.31 + 0.01 * s, "verdict": "success"})
    got = {r["key"]: r for r in V.chapter_findings(pd.DataFrame(rows), "2 of 2", 500)}
    assert got["table2_accuracy"]["verdict"] == "supported" and "+1.0 points" in got["table2_accuracy"]["measured"]
    assert got["table2_stability"]["verdict"] == "not resolved"  # identical spreads
    # multitask: task A never fails; task B: FFT fails on seeds 0, 1 of 4, DSGD on all 4
    mt = []
    for s in range(4):
        for m in ("fft", "dsgd"):
            mt.append({"pair": "A+B", "task": "A", "method": m, "seed": s, "accuracy": 0.9, "verdict": "success"})
        mt.append({"pair": "A+B", "task": "B", "method": "fft", "seed": s, "accuracy": 0.6,
                   "verdict": "collapsed" if s < 2 else "success"})
        mt.append({"pair": "A+B", "task": "B", "method": "dsgd", "seed": s, "accuracy": 0.5, "verdict": "collapsed"})
    got = {r["key"]: r for r in M.chapter_findings(pd.DataFrame(mt))}
    assert got["table6_failures"]["verdict"] == "not resolved"  # 4 vs 2 failures: p = 0.5
    assert "B: DSGD failed on 4, FFT on 2" in got["table6_failures"]["measured"]
    # ACC per seed: FFT (0.9 + 0.6)/2, DSGD (0.9 + 0.5)/2 -> -5 points on all 4 seeds, Wilcoxon p = 2/16
    assert got["table6_acc"]["verdict"] == "not resolved" and "-5.00 points" in got["table6_acc"]["measured"]


def test_figure_explorer_redraws_when_a_control_changes():
    import ipywidgets as widgets
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dsgd.chapters._common import figure_explorer

    calls = []

    def draw(k: int):
        calls.append(k)
        fig, ax = plt.subplots()
        ax.plot(range(k + 2))
        return fig

    plt.close("all")  # figures other tests left open are not this test's
    slider = widgets.IntSlider(value=1, min=0, max=5)
    box = figure_explorer(draw, {"k": slider})
    image = box.children[1]
    first = image.value
    assert calls == [1] and first[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 4
    assert calls == [1, 4] and image.value != first
    assert len(plt.get_fignums()) == 0  # every figure closed after rendering


def test_schedule_widget_builds_without_output_capture():
    from dsgd.chapters.getting_started import schedule_widget

    box = schedule_widget()
    assert type(box.children[1]).__name__ == "Image"


def test_seeds_phrase_says_when_methods_have_different_seeds():
    rows = [{"method": m, "setting": st, "seed": s} for m, n in (("fft", 10), ("dsgd", 10), ("pcgrad", 3), ("lnsr", 2))
            for st in ("a", "b") for s in range(n)]
    rows += [{"method": "lnsr", "setting": "a", "seed": 2}]  # 3 seeds in one setting, 2 in the other: fewest counts
    f = pd.DataFrame(rows)
    names = {"fft": "FFT", "dsgd": "DSGD", "pcgrad": "PCGrad", "lnsr": "LNSR"}
    assert C.seeds_phrase(f, ["setting"], names, order=["fft", "pcgrad", "lnsr", "dsgd"]) == \
        "10 seeds of FFT and DSGD, 3 of PCGrad, 2 of LNSR"
    same = f[f["method"].isin(["fft", "dsgd"])]
    assert C.seeds_phrase(same, ["setting"]) == "10 seeds per method"
