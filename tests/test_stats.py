"""dsgd.stats and dsgd.survival against values worked out by hand or from textbook formulas."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from dsgd import stats
from dsgd.survival import kaplan_meier, logrank, plateau_exit, record_exit


def test_clopper_pearson_matches_beta_quantiles():
    # Clopper-Pearson bounds are Beta quantiles: lo = B(a/2; k, n-k+1), hi = B(1-a/2; k+1, n-k)
    r = stats.rate_ci(5, 10)
    assert r.lo == pytest.approx(sps.beta.ppf(0.025, 5, 6), abs=1e-9)
    assert r.hi == pytest.approx(sps.beta.ppf(0.975, 6, 5), abs=1e-9)
    assert (round(r.lo, 4), round(r.hi, 4)) == (0.1871, 0.8129)


def test_clopper_pearson_edges_closed_form():
    # k = 0: upper bound solves (1-p)^n = a/2, i.e. p = 1 - (a/2)^(1/n)
    r = stats.rate_ci(0, 10)
    assert r.lo == 0.0 and r.hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    r = stats.rate_ci(10, 10)
    assert r.hi == 1.0 and r.lo == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    with pytest.raises(ValueError):
        stats.rate_ci(11, 10)


def test_mcnemar_exact_headline_case():
    # FFT failed on 5 of 10 seeds, DSGD on all 10: five discordant seeds, all one way,
    # two-sided binomial p = 2 * 0.5**5
    dsgd_failed = [True] * 10
    fft_failed = [True, False, True, False, False, True, True, True, False, False]
    res = stats.mcnemar_exact(dsgd_failed, fft_failed)
    assert (res["n10"], res["n01"]) == (5, 0)
    assert res["p_value"] == pytest.approx(2 * 0.5 ** 5)
    # identical outcomes: nothing to test
    assert stats.mcnemar_exact(fft_failed, fft_failed)["p_value"] == 1.0
    # 1 vs 3 discordant: 2 * P[X <= 1], X ~ Bin(4, 1/2) = 2 * 5/16
    a = [True, False, False, False, True]
    b = [False, True, True, True, True]
    assert stats.mcnemar_exact(a, b)["p_value"] == pytest.approx(10 / 16)
    with pytest.raises(ValueError):
        stats.mcnemar_exact([True], [True, False])


def test_fisher_exact_by_enumeration():
    # 0/10 vs 5/10: sum the hypergeometric probabilities no larger than the observed one
    k1, n1, k2, n2 = 0, 10, 5, 10
    K, N = k1 + k2, n1 + n2
    prob = {x: math.comb(n1, x) * math.comb(n2, K - x) / math.comb(N, K) for x in range(0, K + 1)}
    p_hand = sum(p for p in prob.values() if p <= prob[k1] * (1 + 1e-9))
    assert stats.fisher_exact(k1, n1, k2, n2) == pytest.approx(p_hand)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = stats.holm([0.2, float("nan")])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1])


def test_mean_ci_t_interval_and_constant_group():
    m, lo, hi = stats.mean_ci([1.0, 2.0, 3.0])
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd = 1
    assert (m, lo, hi) == pytest.approx((2.0, 2 - half, 2 + half))
    assert stats.is_constant([0.65] * 10) and not stats.is_constant([0.65, 0.66])
    assert stats.mean_ci([0.65] * 10) == (0.65, 0.65, 0.65)



def test_mean_ci_is_cut_to_the_range_of_a_bounded_quantity():
    # nine runs at 99 %, one at 65 %: mean 95.6, sd = 34/sqrt(10) = 10.75, t half-width 7.69 -> 103.3
    acc = [99.0] * 9 + [65.0]
    m, lo, hi = stats.mean_ci(acc)
    half = sps.t.ppf(0.975, 9) * (34 / math.sqrt(10)) / math.sqrt(10)
    assert (m, lo, hi) == pytest.approx((95.6, 95.6 - half, 95.6 + half)) and hi > 100
    assert stats.mean_ci(acc, bounds=(0.0, 100.0)) == pytest.approx((95.6, 95.6 - half, 100.0))
    assert stats.mean_ci([0.01, 0.02, 0.5], bounds=(0.0, 1.0))[1] == 0.0  # cut below too


def test_paired_difference():
    res = stats.paired_difference([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert res["mean"] == 0 and res["p_value"] == 1.0
    res = stats.paired_difference([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0])
    # all six differences positive: exact two-sided Wilcoxon p = 2 / 2**6
    assert res["p_value"] == pytest.approx(2 / 64)
    assert res["mean"] == pytest.approx(3.5)


def test_format_helpers():
    assert stats.format_rate(stats.rate_ci(5, 10)) == "5/10 (0.50, 95 % CI 0.19–0.81)"
    assert stats.format_p(0.0625) == "0.0625" and stats.format_p(1e-5) == "< 0.001"
    assert stats.p_text(0.0625) == "p = 0.0625" and stats.p_text(1e-5) == "p < 0.001"


# ------------------------------------------------------------------------ survival
def test_plateau_exit_trailing_window_by_hand():
    # 0.6 for steps 0-9, then 1.0: trailing means of 4 are 0.7 at step 10 (not above 0.7)
    # and 0.8 at step 11 -> exit at 11
    x = [0.6] * 10 + [1.0] * 10
    ex = plateau_exit(x, 0.6, window=4, margin=0.1001)
    assert (ex.step, ex.observed, ex.budget) == (11, True, 20)
    never = plateau_exit([0.6] * 50, 0.6, window=4)
    assert (never.step, never.observed, never.fraction) == (50, False, 1.0)
    assert record_exit({"history": {}}, 0.6) is None
    with pytest.raises(ValueError):
        plateau_exit(x, 1.2)


def test_kaplan_meier_by_hand():
    # exits at 2.5, 4, 4, 5; censored at 6, 6.  S(2.5) = 5/6, S(4) = 5/6 * 3/5, S(5) = .. * 2/3
    km = kaplan_meier([5, 6, 6, 2.5, 4, 4], [1, 0, 0, 1, 1, 1])
    assert km["step"].tolist() == [0.0, 2.5, 4.0, 5.0]
    assert km["on_plateau"].tolist() == pytest.approx([1.0, 5 / 6, 0.5, 1 / 3])
    assert (km["lo"] <= km["on_plateau"]).all() and (km["on_plateau"] <= km["hi"]).all()
    none = kaplan_meier([10, 10], [0, 0])
    assert none["on_plateau"].tolist() == [1.0]


def test_logrank_by_hand():
    # A exits at 1 and 2, B at 3 and 4 (no censoring). At t=1: 2+2 at risk, E_A = 1/2,
    # V = 2*2*1*3/(4^2*3) = 1/4; t=2: 1+2 at risk, E_A = 1/3, V = 1*2*1*2/(3^2*2) = 2/9;
    # later A has none at risk. O_A - E_A = 2 - 5/6, chi2 = (7/6)^2 / (17/36) = 49/17.
    res = logrank([1, 2, 3, 4], [1, 1, 1, 1], ["A", "A", "B", "B"])
    assert res["statistic"] == pytest.approx(49 / 17)
    assert res["p_value"] == pytest.approx(sps.chi2.sf(49 / 17, 1))
    assert logrank([5, 5], [0, 0], ["A", "B"])["p_value"] == 1.0


def test_std_ci_brackets_the_sample_std_and_narrows_with_seeds():
    from dsgd.stats import std_ci

    rng = np.random.default_rng(3)
    small, large = rng.normal(0, 2.0, 10), rng.normal(0, 2.0, 400)
    lo_s, hi_s = std_ci(small)
    lo_l, hi_l = std_ci(large)
    assert lo_s < np.std(small, ddof=1) < hi_s and lo_l < 2.0 < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3  # ~ 1/sqrt(n): 40x the seeds, ~6x narrower
    assert all(np.isnan(std_ci([1.0, 2.0]))) and all(np.isnan(std_ci([0.5] * 5)))
