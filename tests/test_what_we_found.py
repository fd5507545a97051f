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
    assert "no different from plain training's: +10.0 points" in v["wwf_accuracy"]
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
