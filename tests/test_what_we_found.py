"""The chapters' closing "What we found" sentences, checked on tiny made-up sets of runs
whose counts, intervals and p-values are worked out by hand (not read back from the code).

Hand-worked numbers used below:

* Clopper–Pearson 95 % interval of 3/5: [0.1466, 0.9473] (standard tables); of 0/8:
  [0, 1 - 0.025^(1/8)] = [0, 0.3694]; of 2/4: [0.0676, 0.9324]; of 4/4: [0.3976, 1].
* Exact McNemar: with d discordant seeds all against one method, p = 2 * 0.5^d
  (d = 2: 0.5; d = 3: 0.25); with none, p = 1.
* Paired t interval of the differences (0.2, 0.1, 0.3): mean 0.2, sd 0.1, t(0.975, 2) =
  4.3027, half-width 4.3027 * 0.1 / sqrt(3) = 0.2484 -> [-0.048, 0.448]; exact Wilcoxon
  with 3 positive differences: p = 2 / 2^3 = 0.25 (the smallest p three seeds can give).
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from dsgd.chapters import _common as C
from dsgd.chapters import getting_started as gs


# ------------------------------------------------------------------ shared helpers
def test_failure_text_gives_the_exact_interval():
    assert C.failure_text([True, True, False, False, True]) == "3/5 (0.60, 95 % CI 0.15–0.95)"
    assert C.failure_text([False] * 8) == "0/8 (0.00, 95 % CI 0.00–0.37)"
    assert C.failure_text([]) == "no runs"


def test_failures_compared_on_shared_seeds_only():
    a = {0: True, 1: True, 2: False, 3: False, 4: True, 9: True}   # seed 9: no partner in b
    b = {0: False, 1: False, 2: False, 3: False, 4: True}
    c = C.compare_failures(a, b)
    assert (c["n"], c["k_a"], c["k_b"], c["direction"]) == (5, 3, 1, "more often")
    assert c["p"] == pytest.approx(0.5) and not c["significant"]  # 2 discordant seeds
    s = C.failures_sentence("DSGD", a, "FFT", b)
    assert s == ("On the 5 shared seeds DSGD failed more often than FFT (3 vs 1; exact McNemar p = 0.5, "
                 "not significant at the 5 % level).")
    same = C.failures_sentence("DSGD", {0: False, 1: True}, "FFT", {0: False, 1: True})
    assert "failed as often as FFT (1 vs 1" in same and "p = 1," in same
    assert "share no seed" in C.failures_sentence("A", {0: True}, "B", {1: True})


def test_values_compared_with_t_interval_and_wilcoxon():
    a = pd.Series([0.8, 0.7, 0.9])
    b = pd.Series([0.6, 0.6, 0.6])  # a group that ended at one value: no variance test, a paired difference is fine
    c = C.compare_values(a, b)
    assert c["n"] == 3 and c["mean"] == pytest.approx(0.2)
    assert c["lo"] == pytest.approx(-0.0484, abs=1e-3) and c["hi"] == pytest.approx(0.4484, abs=1e-3)
    assert c["p"] == pytest.approx(0.25) and c["p_floor"] == pytest.approx(0.25)
    assert c["word"] == "no different" and c["b_constant"] and not c["a_constant"]
    s = C.values_sentence("DSGD", a, "FFT", b)
    assert s == ("DSGD's accuracy was no different from FFT's: +20.0 points on average over the 3 shared "
                 "seeds (95 % CI -4.8 to +44.8; Wilcoxon p = 0.25, not significant; with 3 seeds the exact "
                 "test cannot go below p = 0.25).")


def test_values_direction_word_needs_a_significant_test():
    # ten seeds, DSGD lower on every one by 1 to 10 points: exact Wilcoxon p = 2 / 2^10 = 0.00195
    b = pd.Series([0.8] * 10)
    a = b - pd.Series([0.01 * k for k in range(1, 11)])
    c = C.compare_values(a, b)
    assert c["word"] == "lower" and c["p"] == pytest.approx(2 / 1024)
    assert C.values_sentence("DSGD", a, "FFT", b).startswith("DSGD's accuracy was lower than FFT's: -5.5 points")
    assert C.compare_values(b, a)["word"] == "higher"


def test_values_sentence_never_prints_nan():
    same = C.values_sentence("DSGD", pd.Series([0.65] * 4), "FFT", pd.Series([0.65] * 4))
    assert "+0.0 points" in same and "identical on every seed: nothing to test" in same
    one = C.values_sentence("DSGD", {3: 0.7}, "FFT", {3: 0.6})
    assert "+10.0 points on average over one shared seed (one seed: no interval and no test)" in one
    assert "share no seed" in C.values_sentence("DSGD", {0: 0.7}, "FFT", {1: 0.6})
    for s in (same, one):
        assert "nan" not in s.lower()


# ------------------------------------------------------------------ getting started
def _gs_rec(method, seed, acc, bal, verdict="success", early=0.0, late=0.5, correct=0.8, steps=10):
    """A run of the getting-started page: its history holds ``steps`` steps whose correct
    examples' weight share is ``early`` in the first step and ``late`` in the last."""
    w = [early] + [0.3] * (steps - 2) + [late]
    return {"config": {"method": method, "seed": seed}, "verdict": verdict, "majority_rate": 0.8,
            "metrics": {"accuracy": acc, "balanced_accuracy": bal},
            "history": {"correct_weight_share": w, "correct_share": [correct] * steps}}


def test_getting_started_summary_by_hand():
    recs = ([_gs_rec("fft", s, 0.8, 0.5, "collapsed" if s < 2 else "success") for s in range(4)]
            + [_gs_rec("dsgd", s, 0.9, 0.7, early=0.01 * s, late=0.6 + 0.01 * s) for s in range(4)])
    v = gs.what_we_found(recs)
    # FFT failed on 2/4 [0.07, 0.93], DSGD on 0/4 [0, 0.60]; 2 discordant seeds -> p = 0.5
    assert "plain training 2/4 (0.50, 95 % CI 0.07–0.93), DSGD 0/4 (0.00, 95 % CI 0.00–0.60)" in v["wwf_failures"]
    assert "DSGD failed less often than plain training (0 vs 2; exact McNemar p = 0.5, not significant" in v["wwf_failures"]
    # +10 points on all 4 seeds: the same difference everywhere, Wilcoxon p = 2/16 = 0.125
    assert "plain training 80.0 %, DSGD 90.0 % (the majority class alone scores 80.0 %)" in v["wwf_accuracy"]
    assert "not significantly different from plain training's: +10.0 points" in v["wwf_accuracy"]
    assert "p = 0.125" in v["wwf_accuracy"] and "cannot go below p = 0.125" in v["wwf_accuracy"]
    assert "+20.0 points" in v["wwf_balanced"] and "plain training 50.0 %, DSGD 70.0 %" in v["wwf_balanced"]
    # weight share: first tenth = first step (0, 1, 2, 3 %), last tenth = last step (60 ... 63 %)
    assert "carried 2 % of the update's weight in the first tenth" in v["wwf_weight"]
    assert "62 % in the last tenth" in v["wwf_weight"] and "80 % of the batch" in v["wwf_weight"]
    assert v["wwf_weight"].endswith("their weight rose as γ_t rose.")


def test_getting_started_summary_without_both_methods():
    v = gs.what_we_found([_gs_rec("dsgd", 0, 0.9, 0.7)])
    assert set(v) == {"wwf_failures", "wwf_accuracy", "wwf_balanced", "wwf_weight"}
    assert all(t.startswith("not measured") for t in v.values())


# ------------------------------------------------------------------ theory
def _theory_values(**kw):
    v = {"l42_lp_thetas": 5, "l42_lp_rate_K2": 0.0, "l42_lp_rate_K3": 1.0, "l42_lp_rate_K4": 0.6,
         "l42_sep_rate": 0.0, "l42_sep_tried": 5,
         "l43_errors_end": 1, "l43_grad_start": 0.5, "l43_grad_end": 1e-4, "l43_L_errors_end": 0,
         "t45_ratio_min": 638.2, "t45_pairs": 100, "t45_eta_lo": 0.05, "t45_eta_hi": 0.5,
         "t45_word_sgd_lo": "smaller", "t45_diff_sgd_lo": -0.02, "t45_diff_sgd_lo_ci": "[-0.0227, -0.0172]",
         "t45_word_sgd_hi": "not distinguishable", "t45_diff_sgd_hi": 0.001, "t45_diff_sgd_hi_ci": "[-0.0010, +0.0030]",
         "t46_verdict": "holds for one step ...", "t46_dec_fixed_min": 1.0, "t46_runs_all_t_max": 0.0,
         "gc_n_wrong": 8, "gc_tau1_errors_end": 5, "gc_tau1_max_dist": 1.5, "gc_tau1_final_dist": 0.02,
         "col_opt_test_acc": 0.9, "col_majority": 0.9, "col_opt_classes": 1, "col_gd_max_dist": 1e-15,
         "col_probs": "0.9 / 0.1", "col_dsgd05_bacc": 0.502}
    v.update(kw)
    return v


def test_theory_summary_by_hand():
    from dsgd.chapters import theory as th

    summ = {"A": {"n_all": 20, "dec_reevaluated_if_all": 0.5}, "B": {"n_all": 30, "dec_reevaluated_if_all": 0.9},
            "C": {"n_all": 3, "dec_reevaluated_if_all": 0.0}}  # C has too few qualifying steps to be quoted
    v = th.what_we_found(_theory_values(), summ, min_qualifying=20, n_test=100)
    # 0/5: [0, 1 - 0.025^(1/5)] = [0, 0.52]; 5/5: [0.025^(1/5), 1] = [0.48, 1]
    assert v["wwf_l42"].startswith("Holds under the paper's assumption")
    assert "0/5 (0.00, 95 % CI 0.00–0.52) random parameters with errors" in v["wwf_l42"]
    assert "fails beyond two classes" in v["wwf_l42"] and "5/5 (1.00, 95 % CI 0.48–1.00) with three" in v["wwf_l42"]
    assert v["wwf_l43"].startswith("Holds: gradient descent on L_C kept 1 of 3 points")
    assert "lower than SGD's at η = 0.05" in v["wwf_t45"] and "no different from SGD's at η = 0.5" in v["wwf_t45"]
    assert "factor of at least 638" in v["wwf_t45"]
    # the worst setting with >= 20 qualifying steps is A: 10/20, Clopper-Pearson [0.27, 0.73]
    assert "10/20 (0.50, 95 % CI 0.27–0.73)" in v["wwf_t46"] and "setting A" in v["wwf_t46"]
    assert v["wwf_t46"].startswith("Holds for the batch's L_W") and "in no run did all hypotheses" in v["wwf_t46"]
    assert "with 5 training errors, fewer than the 8" in v["wwf_gc"]
    # 90/100 correct on fresh draws: Clopper-Pearson [0.824, 0.951], equal to the majority share
    assert "0.900 (95 % CI 0.824–0.951), is no better than the majority share 0.900" in v["wwf_col"]
    assert "collapse is the optimum, not a trap" in v["wwf_col"]


def test_theory_summary_when_a_part_is_missing():
    from dsgd.chapters import theory as th

    v = th.what_we_found(_theory_values(l42_sep_rate=0.2, gc_tau1_errors_end=9, col_opt_classes=2),
                         {"A": {"n_all": 5, "dec_reevaluated_if_all": 0.5}}, min_qualifying=20, n_test=100)
    assert v["wwf_l42"].startswith("Fails under the paper's assumption") and "1/5" in v["wwf_l42"]
    assert v["wwf_t46"].startswith("No setting had 20 or more steps")
    assert "more than the 8" in v["wwf_gc"] and "predicts 2 classes" in v["wwf_col"]
    assert all("nan" not in s for s in v.values())


# ------------------------------------------------------------------ phenomenon: balanced accuracy beside accuracy
def test_phenomenon_outcome_summary_has_balanced_accuracy():
    from dsgd.chapters import phenomenon as ph

    def rec(method, seed, acc, bal, verdict):
        return {"run_id": f"{method}-{seed}", "status": "ok", "verdict": verdict, "majority_rate": 0.6,
                "config": {"method": method, "seed": seed},
                "metrics": {"accuracy": acc, "balanced_accuracy": bal}, "timings": {}}

    # FFT: one collapsed run (accuracy = the majority share 0.6, balanced accuracy 0.5) and two good ones
    recs = [rec("fft", 0, 0.6, 0.5, "collapsed"), rec("fft", 1, 0.9, 0.8, "success"),
            rec("fft", 2, 0.9, 0.9, "success"), rec("dsgd", 0, 0.6, 0.5, "collapsed")]
    s = ph.outcome_summary(ph.outcome_frame(recs), order=["FFT", "DSGD"])
    assert s.loc["FFT", "mean"] == pytest.approx(0.8) and s.loc["FFT", "bal_mean"] == pytest.approx(0.7333, abs=1e-4)
    assert s.loc["FFT", "bal_std"] == pytest.approx(math.sqrt(((0.5 - 0.7333) ** 2 + (0.8 - 0.7333) ** 2
                                                              + (0.9 - 0.7333) ** 2) / 2), abs=1e-4)
    assert s.loc["DSGD", "bal_mean"] == 0.5 and math.isnan(s.loc["DSGD", "bal_std"])  # one run: no spread
    cols = list(s.columns)
    assert cols.index("bal_mean") == cols.index("std") + 1  # beside the accuracy
    old = ph.outcome_frame([{**recs[0], "metrics": {"accuracy": 0.6}}])  # a record without the metric
    assert math.isnan(ph.outcome_summary(old).loc["FFT", "bal_mean"])


# ------------------------------------------------------------------ nlp
def _nlp_frame():
    """FFT fails on seeds 0, 1 of 4; DSGD collapses on every seed (accuracy 0.65, balanced 0.5);
    PCGrad never fails."""
    rows = []
    for s in range(4):
        rows.append({"label": "FFT", "seed": s, "model": "m", "task": "t", "majority_rate": 0.65,
                     "accuracy": [0.65, 0.66, 0.85, 0.94][s], "balanced_accuracy": [0.5, 0.52, 0.8, 0.9][s],
                     "verdict": ["collapsed", "degenerate", "success", "success"][s]})
        rows.append({"label": "DSGD", "seed": s, "model": "m", "task": "t", "majority_rate": 0.65,
                     "accuracy": 0.65, "balanced_accuracy": 0.5, "verdict": "collapsed"})
        rows.append({"label": "PCGrad", "seed": s, "model": "m", "task": "t", "majority_rate": 0.65,
                     "accuracy": 0.9, "balanced_accuracy": 0.85, "verdict": "success"})
    return pd.DataFrame(rows)


def test_nlp_summary_by_hand():
    from dsgd.chapters import nlp

    steps = pd.DataFrame({"label": ["FFT", "DSGD", "PCGrad"], "paired_ratio": [1.0, 1.02, 2.1],
                          "q1": [1.0, 0.97, 2.0], "q3": [1.0, 1.05, 2.2]})
    v = nlp.what_we_found(_nlp_frame(), "m", "t", steps)
    # 2/4 [0.07, 0.93] and 4/4 [0.40, 1]; two discordant seeds against DSGD: McNemar p = 0.5
    assert v["wwf_failures"].startswith("FFT failed on 2/4 (0.50, 95 % CI 0.07–0.93) seeds, DSGD on 4/4 "
                                        "(1.00, 95 % CI 0.40–1.00).")
    assert "DSGD failed more often than FFT (4 vs 2; exact McNemar p = 0.5, not significant" in v["wwf_failures"]
    assert "Fewest failures among the 3 single learners: PCGrad, 0/4" in v["wwf_failures"]
    # DSGD - FFT accuracy: 0, -1, -20, -29 points -> mean -12.5; the exact Wilcoxon test drops the zero:
    # 3 differences of one sign, p = 2 / 2^3 = 0.25, the smallest p three seeds can give
    assert "FFT 77.5 %, DSGD 65.0 % (always predicting the majority class: 65.0 %)" in v["wwf_accuracy"]
    assert "no different from FFT's: -12.5 points" in v["wwf_accuracy"] and "p = 0.25" in v["wwf_accuracy"]
    assert "with 3 seeds that differ the exact test cannot go below p = 0.25" in v["wwf_accuracy"]
    assert "FFT 68.0 %, DSGD 50.0 %" in v["wwf_balanced"] and "-18.0 points" in v["wwf_balanced"]
    # every DSGD run ended at 65 %: no variance test is run or cited
    assert "No variance test: every DSGD run ended at 65.0 %" in v["wwf_spread"] and "Levene" not in v["wwf_spread"]
    assert "DSGD's 1.02× FFT's (about as fast as FFT" in v["wwf_cost"]
    assert "PCGrad's 2.10× FFT's (slower than FFT" in v["wwf_cost"]
    assert all("nan" not in s for s in v.values())


def test_nlp_no_variance_test_for_a_collapsed_reference():
    from dsgd.chapters import nlp

    f = _nlp_frame()
    f.loc[f["label"] == "FFT", "accuracy"] = 0.65  # now FFT collapsed to one value and DSGD is the one that varies
    f.loc[(f["label"] == "DSGD") & (f["seed"] == 3), "accuracy"] = 0.9
    assert "every FFT run ended at 65.0 %" in nlp.levene_text(f, "m", "t")
    assert "every FFT run ended at 65.0 %" in nlp.what_we_found(f, "m", "t")["wwf_spread"]
    rows = {r["key"]: r for r in nlp.chapter_findings(f, "m", "t", {}, "s")}
    assert rows["table1_spread"]["verdict"] == "not testable at this scale"


def test_nlp_balanced_columns_beside_accuracy():
    from dsgd.chapters import nlp
    from dsgd.report import format_table1, table1

    f = _nlp_frame()
    shown = format_table1(table1(f, group_by="task", rows="label", order=["FFT", "PCGrad", "DSGD"], columns=["t"]))
    out = nlp.with_balanced(shown, f, ["t"], ["FFT", "PCGrad", "DSGD"])
    assert list(out.columns)[:2] == ["t", "bal. acc."]
    # FFT's balanced accuracy: mean of 50, 52, 80, 90 = 68.0; DSGD 50 on every seed
    assert out.loc["FFT", "bal. acc."].startswith("68.00 ± ") and out.loc["DSGD", "bal. acc."] == "50.00 ± 0.00"
    assert nlp.balanced_text(f, "PCGrad", "t") == "85.00 ± 0.00" and nlp.balanced_text(f, "x", "t") == "–"
    two = pd.concat([f, f.assign(task="u")])
    shown2 = format_table1(table1(two, group_by="task", rows="label", columns=["t", "u"]))
    out2 = nlp.with_balanced(shown2, two, ["t", "u"])
    assert list(out2.columns)[:4] == ["t", "t (bal.)", "u", "u (bal.)"]
    assert list(out2.columns).index("BAL") == list(out2.columns).index("ACC") + 1
    assert out2.loc["DSGD", "BAL"] == "50.00"


def test_nlp_summary_source_and_missing_runs():
    from dsgd.chapters import nlp

    assert nlp.source_text(8, "m", "t", {"done": 8, "total": 10}, "2 of 2") == (
        "m on t, 8 runs in the result set, 8 of the grid's 10 runs read from the stored set "
        "(2 of 2 recomputed in this build agreed with their record)")
    assert nlp.source_text(4, "m", "t", {"done": 0, "total": 4}, "–", 2) .endswith("all computed in this build")
    v = nlp.what_we_found(_nlp_frame()[lambda d: d["label"] != "DSGD"], "m", "t")
    assert all(s.startswith("Not measured") for s in v.values())


def test_nlp_ties_are_said_as_ties():
    from dsgd.chapters import nlp

    f = _nlp_frame()
    f["verdict"], f["accuracy"] = "collapsed", 0.65  # every run of every method collapsed
    v = nlp.what_we_found(f, "m", "t")
    assert "All 3 single learners failed equally often, 4/4 (1.00, 95 % CI 0.40–1.00) each." in v["wwf_failures"]
    assert "PCGrad failed as often as FFT (4 vs 4" in nlp.pcgrad_sentence(f, "m", "t", 2.0)


def test_values_sentence_when_t_interval_and_wilcoxon_disagree():
    # five seeds, DSGD higher by 2, 3, 4, 5, 6 points: t interval 4 ± 2.776 * 1.581 / sqrt(5) = [2.04, 5.96]
    # excludes zero, but five differences of one sign give the exact Wilcoxon p = 2 / 2^5 = 0.0625
    b = pd.Series([0.5] * 5)
    a = b + pd.Series([0.02, 0.03, 0.04, 0.05, 0.06])
    c = C.compare_values(a, b)
    assert c["word"] == "no different" and c["p"] == pytest.approx(0.0625)
    assert c["lo"] == pytest.approx(0.0204, abs=1e-3) and c["hi"] == pytest.approx(0.0596, abs=1e-3)
    s = C.values_sentence("DSGD", a, "FFT", b)
    assert s.startswith("DSGD's accuracy was not significantly different from FFT's (the t interval lies above "
                        "zero, the exact Wilcoxon test is not significant): +4.0 points")


# ------------------------------------------------------------------ vision
def _vision_frame(fft_fail=False):
    rows = []
    for s in range(4):
        for m, acc, tail in (("fft", 0.30 + 0.01 * s, 0.05), ("dsgd", 0.33 + 0.01 * s, 0.05 + 0.01 * s),
                             ("lnsr", 0.40 + 0.02 * s, 0.1)):
            rows.append({"setting": "LT", "method": m, "seed": s, "accuracy": acc, "tail_accuracy": tail,
                         "verdict": "collapsed" if (fft_fail and m == "fft" and s == 0) else "success"})
    return pd.DataFrame(rows)


def test_vision_summary_by_hand():
    from dsgd.chapters import vision as V

    v = V.what_we_found(_vision_frame(), "stored set", n_eval=500)
    # DSGD - FFT = +3 points on every seed: the same difference everywhere, Wilcoxon p = 2/2^4 = 0.125
    assert "LT: DSGD's accuracy was not significantly different from FFT's: +3.0 points" in v["wwf_accuracy"]
    assert "cannot go below p = 0.125" in v["wwf_accuracy"]
    # tail: FFT 5 % everywhere, DSGD 5, 6, 7, 8 % -> +1.5 points, 3 seeds differ: p = 0.25
    assert "LT: FFT 5.0 %, DSGD 6.5 %" in v["wwf_tail"] and "with 3 seeds that differ" in v["wwf_tail"]
    # 0/4 failures: [0, 1 - 0.025^(1/4)] = [0, 0.60]
    assert "FFT 0/4 (0.00, 95 % CI 0.00–0.60), DSGD 0/4" in v["wwf_failures"]
    assert "no seed-induced failure here for DSGD to remove" in v["wwf_failures"]
    # identical spreads (std of 30, 31, 32, 33 points = 1.29): Levene's statistic is 0, p = 1
    assert "std DSGD 1.3, FFT 1.3 points, DSGD's spread no different from FFT's (Levene p = 1" in v["wwf_spread"]
    # one run's binomial standard error at 31.5 % on 500 images: sqrt(0.315 * 0.685 / 500) = 2.08 points
    assert "standard error ≈ 2.1 points" in v["wwf_spread"]
    assert v["wwf_best"].startswith("Highest mean accuracy over the settings: LNSR (43.0 %, FFT 31.5 %)")
    assert v["wwf_source"] == "stored set"


def test_vision_summary_no_variance_test_for_a_collapsed_group():
    from dsgd.chapters import vision as V

    f = _vision_frame(fft_fail=True)
    f.loc[f["method"] == "fft", "accuracy"] = 0.1  # every FFT run at one accuracy
    v = V.what_we_found(f, "x")
    assert "no variance test: every FFT run ended at one accuracy" in v["wwf_spread"] and "Levene" not in v["wwf_spread"]
    assert "FFT 1/4 (0.25" in v["wwf_failures"] and "no seed-induced" not in v["wwf_failures"]
    assert all(s.startswith("Not measured") for k, s in V.what_we_found(f[f["method"] != "dsgd"], "x").items()
               if k != "wwf_source")


def test_levene_clause_words_and_undefined_test():
    assert C.levene_clause(0.3, 1.0, 2.0) == "DSGD's spread no different from FFT's (Levene p = 0.3, not significant)"
    assert C.levene_clause(0.01, 1.0, 2.0).startswith("DSGD's spread smaller than FFT's (Levene p = 0.01, significant")
    assert C.levene_clause(0.01, 3.0, 2.0).startswith("DSGD's spread larger than")
    # two runs per group: |x - mean| is the same for both runs of a group, Levene's F is 0/0
    from scipy.stats import levene
    p = float(levene([0.25, 0.75], [0.5, 1.0], center="mean").pvalue)  # exact binary fractions
    assert math.isnan(p) and C.levene_clause(p, 7.1, 7.1).startswith("Levene's test is undefined here")


# ------------------------------------------------------------------ multitask
def _mt_frame():
    """Task A is learnt by both methods (never fails); on task B (majority 0.55) FFT fails on
    seeds 0, 1 of 4 and DSGD on every seed, and no method is above the majority share."""
    rows = []
    for s in range(4):
        for m, acc_a, acc_b, vb in (("fft", 0.80 + 0.01 * s, 0.505, "collapsed" if s < 2 else "success"),
                                    ("dsgd", 0.84 + 0.01 * s, 0.445, "failed")):
            rows.append({"pair": "A+B", "task": "A", "column": "A+B: A", "method": m, "seed": s,
                         "accuracy": acc_a, "majority_rate": 0.3, "verdict": "success"})
            rows.append({"pair": "A+B", "task": "B", "column": "A+B: B", "method": m, "seed": s,
                         "accuracy": acc_b, "majority_rate": 0.55, "verdict": vb})
    return pd.DataFrame(rows)


def test_multitask_summary_by_hand():
    from dsgd.chapters import multitask as M

    v = M.what_we_found(_mt_frame(), "stored set")
    # ACC per seed: FFT (0.80 + 0.01 s + 0.505) / 2, DSGD (0.84 + 0.01 s + 0.445) / 2 -> -1 point on every seed
    assert "FFT 66.0 %, DSGD 65.0 %" in v["wwf_acc"] and "-1.0 points" in v["wwf_acc"]
    assert "not significantly different from FFT's" in v["wwf_acc"] and "p = 0.125" in v["wwf_acc"]
    assert v["wwf_tasks"].startswith("A: DSGD's accuracy was not significantly different from FFT's: +4.0 points")
    # task B: FFT 2/4 [0.07, 0.93], DSGD 4/4 [0.40, 1]; 2 discordant seeds -> McNemar p = 0.5
    assert ("B (majority class 55.0 %): FFT failed on 2/4 (0.50, 95 % CI 0.07–0.93), DSGD on 4/4 (1.00, 95 % CI "
            "0.40–1.00). On the 4 shared seeds DSGD failed more often than FFT (4 vs 2; exact McNemar p = 0.5") in v["wwf_failures"]
    assert "No method's mean accuracy is above the majority share (44.5–50.5 %)" in v["wwf_failures"]
    assert "A (majority class 30.0 %): FFT failed on 0/4" in v["wwf_failures"]
    # task B: every run of each method at one accuracy: no variance test
    assert "B: std DSGD 0.0, FFT 0.0 points (no variance test: every DSGD run ended at one accuracy)" in v["wwf_spread"]
    assert v["wwf_best"] == "Highest ACC: FFT (66.0 %)."
    assert v["wwf_baselines"] == "No baseline beside FFT and DSGD in this set."
    assert all(s.startswith("Not measured") for k, s in M.what_we_found(None, "x").items() if k != "wwf_source")


def test_multitask_baselines_against_fft_by_hand():
    from dsgd.chapters import multitask as M

    f = _mt_frame()
    extra = []
    for s in range(4):  # PCGrad: fails on task B only at seed 3 (FFT failed on 0 and 1); LNSR never
        for m, vb in (("pcgrad", "collapsed" if s == 3 else "success"), ("lnsr", "success")):
            extra.append({"pair": "A+B", "task": "A", "column": "A+B: A", "method": m, "seed": s,
                          "accuracy": 0.8, "majority_rate": 0.3, "verdict": "success"})
            extra.append({"pair": "A+B", "task": "B", "column": "A+B: B", "method": m, "seed": s,
                          "accuracy": 0.6, "majority_rate": 0.55, "verdict": vb})
    text = M.what_we_found(pd.concat([f, pd.DataFrame(extra)], ignore_index=True), "x")["wwf_baselines"]
    # only task B, where FFT failed; PCGrad 1/4 vs FFT 2/4 with 3 discordant seeds: McNemar p = 2 * 4/8 = 1;
    # LNSR 0/4 vs 2/4, 2 discordant seeds: p = 0.5; Holm over the two: 1 and 1
    assert text.startswith("B, where FFT failed on 2/4 (0.50, 95 % CI 0.07–0.93): PCGrad 1/4")
    assert "less often than FFT on the 4 shared seeds (1 vs 2; exact McNemar p = 1, Holm-adjusted p = 1" in text
    assert "LNSR 0/4 (0.00, 95 % CI 0.00–0.60), less often than FFT on the 4 shared seeds (0 vs 2; exact " \
           "McNemar p = 0.5, Holm-adjusted p = 1, not significant)" in text
    assert "A, where" not in text


# ------------------------------------------------------------------ sensitivity
def _sens_frame(rows):
    return pd.DataFrame([{"arm": a, "seed": s, "accuracy": acc, "failed": f} for a, s, acc, f in rows])


def test_sensitivity_summary_by_hand():
    from dsgd.chapters import sensitivity as S

    parts = {"a": ["FFT", "DSGD", "static 0.1", "static 0.5", "cosine"], "b": ["FFT", "DSGD", "τ = 0", "τ = 0.5"],
             "c": ["FFT", "DSGD", "LoRA r=8"], "f": ["FFT", "DSGD", "floor 0.5"]}
    # stored: FFT fails on seeds 0, 1 of 5, DSGD on all 5, floor 0.5 on seed 0 only, static 0.5 on none
    Q = _sens_frame([("FFT", s, 0.8, s < 2) for s in range(5)] + [("DSGD", s, 0.65, True) for s in range(5)]
                    + [("floor 0.5", s, 0.75, s == 0) for s in range(5)] + [("static 0.5", s, 0.8, False) for s in range(5)])
    G = _sens_frame([("FFT", s, 0.7, False) for s in range(3)] + [("DSGD", s, 0.7, s == 0) for s in range(3)]
                    + [("τ = 0", s, 0.6, True) for s in range(3)])
    v = {"a_stored_verdict": "contradicted", "a_stored_pref": "DSGD", "a_stored_other": "static 0.5",
         "a_stored_diff": -15.0, "a_stored_ci": "[-15.0, -15.0]", "a_stored_n": 5,
         "b_stored_verdict": "no data", "b_grid_verdict": "too few seeds", "b_grid_pref": "DSGD",
         "b_grid_other": "τ = 0", "b_grid_diff": 10.0, "b_grid_ci": "[+10.0, +10.0]", "b_grid_n": 3,
         "f_stored_best": "floor 0.5", "f_stored_best_diff": 10.0, "f_stored_best_ci": "[+10.0, +10.0]"}
    w = S.what_we_found(G, Q, parts, v, "grid", "stored")
    # stored: 2/5 [0.05, 0.85] and 5/5 [0.48, 1]; 3 discordant seeds against DSGD -> McNemar p = 0.25
    assert w["wwf_dsgd"].startswith("“stored”: FFT failed on 2/5 (0.40, 95 % CI 0.05–0.85) seeds, DSGD on 5/5 "
                                    "(1.00, 95 % CI 0.48–1.00). On the 5 shared seeds DSGD failed more often than FFT "
                                    "(5 vs 2; exact McNemar p = 0.25")
    assert "“grid”: FFT failed on 0/3" in w["wwf_dsgd"] and "(1 vs 0; exact McNemar p = 1" in w["wwf_dsgd"]
    # (a) is decided on the stored set; the failures of its arms there: static > 0.1 0/5, the schedules 5/5
    assert w["wwf_a"].startswith("In “stored” (5 paired seeds), the better of the ascending and cosine schedules "
                                 "(DSGD) against the best of the others (static 0.5): -15.0 points")
    assert "verdict: contradicted" in w["wwf_a"] and "static γ > 0.1 0/5 (0.00, 95 % CI 0.00–0.52)" in w["wwf_a"]
    assert "the three schedules 5/5" in w["wwf_a"] and "static γ = 0.1" not in w["wwf_a"]  # no such run: left out
    # (b): the stored set decides nothing ("no data"), so the grid is read, as on the findings page
    assert w["wwf_b"].startswith("In “grid” (3 paired seeds), τ = 1 (DSGD) against the best of the others (τ = 0)")
    assert "verdict: too few seeds" in w["wwf_b"] and "τ ≤ 0.1 3/3" in w["wwf_b"]
    assert w["wwf_c"].startswith("Not checked in this profile")
    # (f): floor 0.5 vs DSGD on the stored set: 1 vs 5 failures, 4 discordant seeds -> p = 2 / 2^4 = 0.125
    assert "the variant with the largest gain over DSGD is floor 0.5: +10.0 points" in w["wwf_f"]
    assert "It failed on 1/5 (0.20" in w["wwf_f"] and "(1 vs 5; exact McNemar p = 0.125" in w["wwf_f"]


def test_holm_adjusted_p_decides_the_direction_word():
    # seven seeds, DSGD higher on every one: exact two-sided Wilcoxon p = 2 / 2^7 = 0.015625
    a = pd.Series([0.60 + 0.01 * i for i in range(7)], index=range(7))
    b = a - 0.05
    raw = C.values_sentence("DSGD", a, "FFT", b)
    assert "was higher than FFT's" in raw and "p = 0.0156" in raw
    # the same comparison as one of four settings: Holm multiplies the smallest p by 4 -> 0.0625
    held = C.values_sentence("DSGD", a, "FFT", b, adjusted=0.0625)
    assert "not significantly different from FFT's" in held and "Holm-adjusted p = 0.0625" in held
    assert C.compare_values(a, b, adjusted=0.0625)["significant"] is False
    assert C.levene_clause(0.01, 1.0, 2.0, adjusted=0.04).startswith("DSGD's spread smaller than FFT's")
    text = C.levene_clause(0.01, 1.0, 2.0, adjusted=0.3)
    assert text == "DSGD's spread no different from FFT's (Levene p = 0.01, Holm-adjusted p = 0.3, not significant)"


def test_vision_best_method_over_and_within_settings_by_hand():
    """Two settings; focal loss is stored in one of them only, so it competes there but not
    over the settings (a method run only in an easy setting would look best)."""
    from dsgd.chapters import vision as V

    rows = []
    for s in range(4):
        for m, lt, st in (("fft", 0.30 + 0.01 * s, 0.50 + 0.01 * s), ("dsgd", 0.33 + 0.01 * s, 0.49 + 0.01 * s),
                          ("lnsr", 0.40 + 0.02 * s, 0.521 + 0.01 * s), ("focal", 0.90, None)):
            for setting, acc in (("LT", lt), ("ST", st)):
                if acc is not None:
                    rows.append({"setting": setting, "method": m, "seed": s, "accuracy": acc,
                                 "tail_accuracy": 0.1, "verdict": "success"})
    v = V.what_we_found(pd.DataFrame(rows), "stored set")["wwf_best"]
    # over the settings: FFT (31.5 + 51.5) / 2 = 41.5, DSGD 42.5, LNSR (43 + 53.6) / 2 = 48.3
    assert v.startswith("Highest mean accuracy over the settings: LNSR (48.3 %, FFT 41.5 %), among the 3 methods "
                        "with runs in every setting (focal loss: not yet in every setting)")
    # LT: focal 90 % against FFT, 60, 59, 58, 57 points; ST: LNSR +2.1 points on every seed.
    # Each: four differences of one sign, Wilcoxon p = 2 / 2^4 = 0.125; Holm over the two: 0.25
    assert "Highest mean in each setting: LT: focal loss (90.0 %) — focal loss's accuracy was" in v
    assert "+58.5 points" in v and "ST: LNSR (53.6 %) — LNSR's accuracy was" in v
    assert v.count("Holm-adjusted p = 0.25") == 2 and v.endswith(".") and ".;" not in v


def test_vision_stored_summary_leaves_partly_stored_methods_out():
    from dsgd.chapters import vision as V
    from dsgd.report import table1

    rows = [{"setting": st, "method": m, "seed": s, "accuracy": acc + 0.01 * s, "verdict": "success"}
            for st in ("A", "B") for m, acc in (("fft", 0.50), ("dsgd", 0.40)) for s in range(3)]
    rows += [{"setting": "A", "method": "focal", "seed": 0, "accuracy": 0.99, "verdict": "success"},
             {"setting": "B", "method": "lnsr", "seed": 0, "accuracy": 0.9, "verdict": "success"}]
    rows += [{"setting": "A", "method": "lnsr", "seed": s, "accuracy": 0.6 + 0.1 * s, "verdict": "success"}
             for s in range(2)]
    f = pd.DataFrame(rows)
    out = V.stored_summary(f, table1(f, group_by="setting", columns=["A", "B"]))
    assert V.complete_methods(f) == ["fft", "dsgd"]
    # focal (one run) and LNSR (one run in B) would top the means; neither has two runs in every setting
    assert out["stored_best_method"] == "FFT" and out["stored_steadiest_method"] == "FFT"  # equal stds: the first
    assert out["stored_n_seeds"] == ("3 seeds of FFT and DSGD, 1 of focal loss and LNSR in the settings stored so "
                                     "far (focal loss, LNSR: not yet two runs in every setting, so left out of the "
                                     "best and steadiest below)")
