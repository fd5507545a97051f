"""Table 1, Levene, bootstrap, cost, figures and ensembles on a small stored fixture.

The fixture (tests/fixtures/report_store, written by make_report_fixture.py) holds
3 methods x 3 seeds x 2 tasks with these accuracies (percent):

    task_a (majority 60%): fft 60 (collapsed), 85, 90 | dsgd 80, 85, 90 | pcgrad 55 (failed), 75, 90
    task_b (majority 50%): fft 50 (collapsed), 80, 75 | dsgd 80, 75, 85 | pcgrad 70, 70, 75

Expected values are worked out by hand below (or with numpy/scipy on the raw JSON files).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from dsgd.ensembles import ensemble_predictions, ensemble_table  # noqa: E402
from dsgd.report import (  # noqa: E402
    bootstrap_ci,
    bootstrap_table,
    cost_plot,
    cost_table,
    format_table1,
    is_failed,
    levene_table,
    strip_plot,
    table1,
    to_markdown,
)
from dsgd.store import ResultStore  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report_store"


@pytest.fixture(scope="module")
def df():
    return ResultStore(FIXTURE).to_frame()


def raw(task, method, key="accuracy"):
    """Metric values straight from the JSON files, in seed order (no library code)."""
    recs = [json.loads(p.read_text()) for p in (FIXTURE / "runs").glob("*.json")]
    recs = [r for r in recs if r["config"]["task"] == task and r["config"]["method"] == method]
    recs.sort(key=lambda r: r["config"]["seed"])
    return recs if key is None else [r["metrics"][key] for r in recs]


# ------------------------------------------------------------------ Table 1
def test_table1_hand_values(df):
    t = table1(df, order=["fft", "dsgd", "pcgrad"])
    assert list(t.index) == ["fft", "dsgd", "pcgrad"]
    # dsgd task_a: 80, 85, 90 -> mean 85, deviations -5, 0, 5 -> s^2 = 50/2 -> std 5
    assert t.loc["dsgd", ("task_a", "mean")] == pytest.approx(85.0)
    assert t.loc["dsgd", ("task_a", "std")] == pytest.approx(5.0)
    # fft task_a: 60, 85, 90 -> mean 235/3; squared deviations sum 1550/3 -> s^2 = 775/3
    assert t.loc["fft", ("task_a", "mean")] == pytest.approx(235 / 3)
    assert t.loc["fft", ("task_a", "std")] == pytest.approx(math.sqrt(775 / 3))
    # pcgrad task_b: 70, 70, 75 -> mean 215/3; s^2 = (2*(5/3)^2 + (10/3)^2)/2 = 25/3
    assert t.loc["pcgrad", ("task_b", "std")] == pytest.approx(math.sqrt(25 / 3))
    # averages over the two tasks: dsgd (85 + 80)/2, (5 + 5)/2
    assert t.loc["dsgd", ("average", "mean")] == pytest.approx(82.5)
    assert t.loc["dsgd", ("average", "std")] == pytest.approx(5.0)
    # failed = accuracy <= majority: fft's two collapsed runs, pcgrad's 55 on task_a
    assert list(t[("runs", "failed")]) == [2, 0, 1]
    assert list(t[("runs", "n")]) == [6, 6, 6]
    assert not t[("task_a", "all_collapsed")].any()


@pytest.mark.parametrize("metric", ["accuracy", "mcc"])
def test_table1_matches_numpy_on_raw_files(df, metric):
    t = table1(df, metric=metric)
    for task in ("task_a", "task_b"):
        for m in ("fft", "dsgd", "pcgrad"):
            v = 100 * np.array(raw(task, m, metric))
            assert t.loc[m, (task, "mean")] == pytest.approx(v.mean())
            assert t.loc[m, (task, "std")] == pytest.approx(v.std(ddof=1))


def test_format_and_markdown(df):
    f = format_table1(table1(df, order=["fft", "dsgd", "pcgrad"]), labels={"fft": "FFT"})
    assert list(f.columns) == ["task_a", "task_b", "ACC", "STD", "failed"]
    assert f.loc["FFT", "task_a"] == "78.33 ± 16.07"
    assert f.loc["dsgd", "task_b"] == "80.00 ± 5.00"
    assert f.loc["dsgd", "ACC"] == "82.50" and f.loc["FFT", "failed"] == "2/6"
    md = to_markdown(f).splitlines()
    assert md[0] == "| method | task_a | task_b | ACC | STD | failed |"
    assert md[2] == "| FFT | 78.33 ± 16.07 | 68.33 ± 16.07 | 73.33 | 16.07 | 2/6 |"
    assert format_table1(table1(df, metric="mcc")).columns[2] == "MCC"


def test_all_collapsed_mark_and_missing_task(df):
    d = df.copy()
    d.loc[(d.method == "fft") & (d.task == "task_b"), "verdict"] = "collapsed"
    d = d[~((d.method == "pcgrad") & (d.task == "task_b"))]
    t = table1(d)
    assert bool(t.loc["fft", ("task_b", "all_collapsed")])
    assert format_table1(t).loc["fft", "task_b"].endswith("†")
    # a method missing a task has no average (a partial sweep is not a complete one)
    assert math.isnan(t.loc["pcgrad", ("average", "mean")])
    assert format_table1(t).loc["pcgrad", "task_b"] == "–"


def test_is_failed_definition():
    # a tie with the majority rate fails; a degenerate run (above the majority rate by luck,
    # informedness <= 0.1) is a failed run of kind "degenerate" in the book's vocabulary
    d = pd.DataFrame({"accuracy": [0.6, 0.61, 0.62, 0.9, math.nan],
                      "majority_rate": [0.6, 0.6, 0.6, 0.6, 0.6],
                      "verdict": ["success", "success", "degenerate", "diverged", "success"]})
    assert list(is_failed(d)) == [True, False, True, True, False]


# ------------------------------------------------------------------ Levene
def levene_by_hand(x, y):
    """One-way ANOVA F on absolute deviations from each group's mean (Levene 1960)."""
    z = [np.abs(np.asarray(g) - np.mean(g)) for g in (x, y)]
    zbar = np.mean(np.concatenate(z))
    n = sum(len(g) for g in z)
    between = sum(len(g) * (g.mean() - zbar) ** 2 for g in z)
    within = sum(((g - g.mean()) ** 2).sum() for g in z)
    f = (n - 2) / 1 * between / within
    return f, stats.f.sf(f, 1, n - 2)


def test_levene_mean_centred(df):
    lev = levene_table(df, reference="fft").set_index(["task", "method"])
    # task_a dsgd vs fft, worked in fractions: between 9600/81, within 6900/81 -> F = 4*96/69
    row = lev.loc[("task_a", "dsgd")]
    assert row["statistic"] == pytest.approx(4 * 96 / 69)
    assert row["p_value"] == pytest.approx(stats.f.sf(4 * 96 / 69, 1, 4))
    assert row["std_ref"] == pytest.approx(math.sqrt(775 / 3)) and row["n"] == 3
    for task in ("task_a", "task_b"):
        for m in ("dsgd", "pcgrad"):
            f, p = levene_by_hand(100 * np.array(raw(task, m)), 100 * np.array(raw(task, "fft")))
            assert lev.loc[(task, m), "statistic"] == pytest.approx(f, abs=1e-9)
            assert lev.loc[(task, m), "p_value"] == pytest.approx(p)
    assert ("task_a", "fft") not in lev.index


def test_levene_median_variant(df):
    lev = levene_table(df, reference="fft", center="median").set_index(["task", "method"])
    x, y = np.array(raw("task_b", "pcgrad")), np.array(raw("task_b", "fft"))
    # Brown-Forsythe = ANOVA on |x - median|
    zx, zy = np.abs(x - np.median(x)), np.abs(y - np.median(y))
    f_bf = stats.f_oneway(zx, zy).statistic
    assert lev.loc[("task_b", "pcgrad"), "statistic"] == pytest.approx(f_bf)
    with pytest.raises(ValueError):
        levene_table(df, center="mode")


# ------------------------------------------------------------------ bootstrap
def test_bootstrap_small_cases():
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (pytest.approx(0.7), pytest.approx(0.7))
    # 3 values: the mean of 3 draws is the minimum w.p. 1/27 > 2.5%, so the 95% CI is [min, max]
    assert bootstrap_ci([80, 85, 90], n_boot=20_000, seed=3) == (80.0, 90.0)
    assert bootstrap_ci([80, 85, 90], seed=1) == bootstrap_ci([80, 85, 90], seed=1)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2], level=95)


def test_bootstrap_agrees_with_scipy_and_normal_theory():
    x = np.random.default_rng(0).normal(10.0, 2.0, size=60)
    lo, hi = bootstrap_ci(x, n_boot=20_000, seed=0)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20_000, method="percentile",
                          confidence_level=0.95, random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.08) and hi == pytest.approx(ref.high, abs=0.08)
    se = x.std(ddof=1) / math.sqrt(x.size)  # normal theory: mean +- 1.96 se, roughly
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.15)


def test_bootstrap_table(df):
    b = bootstrap_table(df, n_boot=5000).set_index(["task", "method"])
    assert b.loc[("task_a", "dsgd"), "mean"] == pytest.approx(85.0)
    assert (b.loc[("task_a", "dsgd"), "lo"], b.loc[("task_a", "dsgd"), "hi"]) == (80.0, 90.0)


# ------------------------------------------------------------------ cost
def test_cost_relative_to_fft(df):
    c = cost_table(df).set_index("method")
    # fixture: s/step fft 0.10, dsgd 0.11, pcgrad 0.20; s/epoch 5.0, 5.5, 10.0
    assert c.loc["dsgd", "s_per_step_rel"] == pytest.approx(1.1)
    assert c.loc["pcgrad", "s_per_step_rel"] == pytest.approx(2.0)
    assert c.loc["pcgrad", "s_per_epoch"] == pytest.approx(10.0)
    per_task = cost_table(df, group_by="task")
    assert len(per_task) == 6 and per_task["s_per_epoch_rel"].max() == pytest.approx(2.0)


# ------------------------------------------------------------------ figures
def test_strip_plot(df):
    fig = strip_plot(df, order=["fft", "dsgd", "pcgrad"])
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["task_a", "task_b"]
    a = axes[0]
    pts = [c.get_offsets() for c in a.collections]
    assert [len(p) for p in pts] == [3, 3, 3]
    assert sorted(pts[0][:, 1]) == pytest.approx([60, 85, 90])  # fft on task_a
    assert abs(pts[0][:, 0]).max() < 0.5  # jitter stays within the method's slot
    # collapsed run drawn in the collapsed colour
    colours = a.collections[0].get_facecolors()
    y = pts[0][:, 1]
    assert matplotlib.colors.to_hex(colours[list(y).index(60)]) == "#212529"
    # dashed majority line at 60% for task_a
    assert [ln.get_ydata()[0] for ln in a.lines] == [pytest.approx(60.0)]
    matplotlib.pyplot.close(fig)


def test_cost_plot(df):
    fig = cost_plot(df[df.task == "task_a"], min_size=20, size_per_std=40)
    ax = fig.axes[0]
    by_x = {round(float(c.get_offsets()[0][0]), 3): c for c in ax.collections}
    fft = by_x[5.0]
    assert fft.get_offsets()[0][1] == pytest.approx(235 / 3)
    assert fft.get_sizes()[0] == pytest.approx(20 + 40 * math.sqrt(775 / 3))
    assert by_x[5.5].get_sizes()[0] == pytest.approx(20 + 40 * 5)
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------ ensembles
def test_ensemble_vote_by_hand():
    preds = [[0, 1, 2, 1],
             [0, 2, 2, 0],
             [1, 1, 0, 2]]
    # columns: (0,0,1)->0, (1,2,1)->1, (2,2,0)->2, (1,0,2): a three-way tie -> smallest, 0
    assert ensemble_predictions(preds).tolist() == [0, 1, 2, 0]


def test_ensemble_tie_rule_smallest_class_and_order_free():
    assert ensemble_predictions([[1], [0]]).tolist() == [0]
    assert ensemble_predictions([[2], [1]]).tolist() == [1]
    assert ensemble_predictions([[2, 2], [1, 1], [1, 2], [2, 1]]).tolist() == [1, 1]
    rng = np.random.default_rng(0)
    p = rng.integers(0, 4, size=(6, 50))
    assert (ensemble_predictions(p) == ensemble_predictions(p[::-1])).all()
    assert (ensemble_predictions(p) == ensemble_predictions(p[[3, 0, 5, 1, 4, 2]])).all()


@pytest.mark.parametrize("bad", [[], [[0, 1], [1]], [[0, -1]], [[0.5, 1]]])
def test_ensemble_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        ensemble_predictions(bad)


def test_ensemble_num_labels_range():
    with pytest.raises(ValueError, match="num_labels"):
        ensemble_predictions([[0, 3]], num_labels=3)
    assert ensemble_predictions([[0, 2]], num_labels=3).tolist() == [0, 2]


def vote_by_hand(member_preds):
    out = []
    for col in zip(*member_preds):
        c = Counter(col)
        top = max(c.values())
        out.append(min(k for k, v in c.items() if v == top))
    return out


def test_ensemble_table_first_seeds():
    recs = ResultStore(FIXTURE).records()
    ens = ensemble_table(recs, sizes={"fft": (3, 5), "dsgd": (3,)}, methods=("fft", "dsgd"))
    ens = ens.set_index(["task", "method"])
    assert sorted(ens.index.get_level_values("method").unique()) == ["DSGD(×3)", "ENS(×3)"]
    for task in ("task_a", "task_b"):
        for m, name in (("fft", "ENS(×3)"), ("dsgd", "DSGD(×3)")):
            members = raw(task, m, key=None)
            y = members[0]["labels"]
            vote = vote_by_hand([r["predictions"] for r in members])
            acc = sum(p == t for p, t in zip(vote, y)) / len(y)
            assert ens.loc[(task, name), "accuracy"] == pytest.approx(acc)
            assert ens.loc[(task, name), "members"] == [42, 52, 62]
    # ensemble rows feed the same table as single runs
    both = pd.concat([ResultStore(FIXTURE).to_frame(), ens.reset_index()], ignore_index=True)
    t = table1(both)
    assert "ENS(×3)" in t.index and t.loc["ENS(×3)", ("task_a", "n")] == 1


def test_ensemble_table_random_subsets():
    recs = ResultStore(FIXTURE).records(task="task_a")
    ens = ensemble_table(recs, sizes=(2,), methods=("pcgrad",), labels={"pcgrad": "PC"},
                         n_subsets=5, seed=7)
    assert list(ens["method"].unique()) == ["PC(×2)"] and len(ens) == 5
    assert list(ens["seed"]) == [0, 1, 2, 3, 4]
    by_seed = {r["config"]["seed"]: r for r in recs if r["config"]["method"] == "pcgrad"}
    for _, row in ens.iterrows():
        assert len(set(row["members"])) == 2 and set(row["members"]) <= {42, 52, 62}
        sub = [by_seed[s]["predictions"] for s in row["members"]]
        y = by_seed[42]["labels"]
        acc = np.mean(np.array(vote_by_hand(sub)) == np.array(y))
        assert row["accuracy"] == pytest.approx(acc)
    again = ensemble_table(recs, sizes=(2,), methods=("pcgrad",), n_subsets=5, seed=7)
    assert list(again["members"]) == list(ens["members"])


def test_ensemble_needs_same_labels():
    recs = ResultStore(FIXTURE).records(task="task_a", method="fft")
    recs[1] = dict(recs[1], labels=list(reversed(recs[1]["labels"])))
    with pytest.raises(ValueError, match="different labels"):
        ensemble_table(recs, sizes=(3,))


def test_cost_points_by_hand():
    """Mean time, mean accuracy (%) and sample std per row, in the given order."""
    from dsgd.report import cost_points

    d = pd.DataFrame({"method": ["fft", "fft", "dsgd", "dsgd", "x"],
                      "accuracy": [0.60, 0.80, 0.70, 0.70, None],
                      "t": [10.0, 12.0, 11.0, 13.0, 5.0]})
    pts = cost_points(d, "accuracy", "method", "t", order=["dsgd", "fft"])
    assert [p[0] for p in pts] == ["dsgd", "fft"]  # "x" has no finite accuracy: left out
    lab, x, y, s, n = pts[1]
    assert (x, n) == (11.0, 2) and abs(y - 70.0) < 1e-9
    assert abs(s - (200 ** 0.5)) < 1e-9  # values 60 and 80: sample variance 200
    assert pts[0][3] == 0.0 and abs(pts[0][2] - 70.0) < 1e-9
