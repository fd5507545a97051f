"""Tests of dsgd.theory: exact maths against independent computations, and the key number
behind each verdict of the theory chapter (notebooks/theory.ipynb), recomputed with the
chapter's own default parameters (read from its ``parameters`` cell)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, special, stats

from dsgd.theory import model as lm
from dsgd.theory.cancellation import cancellation_point, escape_run, escape_summary
from dsgd.theory.collapse import collapse_study
from dsgd.theory.convergence import step_conditions, summarize_conditions
from dsgd.theory.data import make_blobs, is_separable
from dsgd.theory.lemmas import (
    LW_COUNTEREXAMPLE_X, LW_COUNTEREXAMPLE_Y, find_lw_counterexample, gd_group_summary,
    grad_dot_theta, lemma43_example, lw_stationary_rate)
from dsgd.theory.optimum import minimize_ce
from dsgd.theory.stability import seed_study
from dsgd.theory.stats import mean_ci, paired_ci
from dsgd.theory.updates import batch_order, dsgd_step, gamma_value, gd_on_group, run, run_sgd
from dsgd.theory import verdicts

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks" / "theory.ipynb"


@pytest.fixture(scope="module")
def P() -> dict:
    """The chapter's embedded default parameters (its ``parameters`` cell, executed)."""
    nb = json.loads(NB.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns: dict = {}
    exec("".join(cell["source"]), {}, ns)
    return ns


def rand_problem(n=12, d=3, K=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((K, d + 1)), rng.standard_normal((n, d)), rng.integers(0, K, n)


# ----------------------------------------------------------------------------- model maths
def test_loss_matches_log_softmax():
    th, X, y = rand_problem()
    o = X @ th[:, :-1].T + th[:, -1]
    expected = -special.log_softmax(o, axis=1)[np.arange(len(y)), y]
    np.testing.assert_allclose(lm.example_losses(th, X, y), expected, rtol=1e-12)


def test_gradient_hand_worked_binary():
    # theta: class 0 -> 0, class 1 -> x; at x = 0.5 the logits are (0, 0.5)
    th = np.array([[0.0, 0.0], [1.0, 0.0]])
    X, y = np.array([[0.5]]), np.array([0])
    p1 = 1 / (1 + np.exp(-0.5))
    expected = np.array([[(1 - p1 - 1) * 0.5, 1 - p1 - 1], [p1 * 0.5, p1]])
    np.testing.assert_allclose(lm.group_grad(th, X, y), expected, rtol=1e-12)
    assert lm.misclassified(th, X, y).tolist() == [True]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_finite_differences(seed):
    th, X, y = rand_problem(seed=seed)
    h = 1e-6
    for S in (None, np.array([0, 3, 5])):
        g = lm.group_grad(th, X, y, S)
        fd = np.zeros_like(th)
        for idx in np.ndindex(th.shape):
            e = np.zeros_like(th)
            e[idx] = h
            fd[idx] = (lm.group_loss(th + e, X, y, S) - lm.group_loss(th - e, X, y, S)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # per-example gradients sum to the group gradient; G_W + G_C = G
    gw, gc, wrong = lm.split_grads(th, X, y)
    np.testing.assert_allclose(gw + gc, lm.group_grad(th, X, y), atol=1e-12)
    np.testing.assert_allclose(gw, lm.group_grad(th, X, y, np.flatnonzero(wrong)), atol=1e-12)


def test_hessian_matches_finite_differences_of_gradient():
    th, X, y = rand_problem(n=8, d=2, K=3, seed=4)
    Hm = lm.hessian(th, X)
    h = 1e-6
    fd = np.zeros_like(Hm)
    for j, idx in enumerate(np.ndindex(th.shape)):
        e = np.zeros_like(th)
        e[idx] = h
        fd[:, j] = ((lm.group_grad(th + e, X, y) - lm.group_grad(th - e, X, y)) / (2 * h)).ravel()
    np.testing.assert_allclose(Hm, fd, rtol=1e-5, atol=1e-7)


def test_lipschitz_constant_bounds_every_gradient_and_is_tight():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    H = lm.lipschitz_constant(X)
    for _ in range(20):
        th = 20 * rng.standard_normal((4, 4))
        y = rng.integers(0, 4, 50)
        norms = np.linalg.norm(lm.example_grads(th, X, y).reshape(50, -1), axis=1)
        assert norms.max() <= H + 1e-12
    assert lm.grad_ratio_sup(K=3, d=4) > 1.414  # sqrt(2) is approached
    assert lm.grad_ratio_sup(K=3, d=4) <= np.sqrt(2) + 1e-12


def test_smoothness_constant_bounds_hessian_and_gradient_changes():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 2))
    S = np.arange(0, 30, 2)
    M = lm.smoothness_constant(X, S)
    y = rng.integers(0, 3, 30)
    for _ in range(20):
        a, b = 3 * rng.standard_normal((3, 3)), 3 * rng.standard_normal((3, 3))
        assert np.linalg.eigvalsh(lm.hessian(a, X, idx=S))[-1] <= M + 1e-9
        dg = np.linalg.norm(lm.group_grad(a, X, y, S) - lm.group_grad(b, X, y, S))
        assert dg <= M * np.linalg.norm(a - b) + 1e-9
    # binary, one example, p = 1/2: the Hessian's top eigenvalue equals the bound
    x = np.array([[1.0, 2.0]])
    assert np.isclose(np.linalg.eigvalsh(lm.hessian(np.zeros((2, 3)), x))[-1],
                      lm.smoothness_constant(x))


def test_argmax_ties_go_to_lowest_class():
    X = np.zeros((3, 2))
    assert lm.predict(np.zeros((3, 3)), X).tolist() == [0, 0, 0]
    assert lm.misclassified(np.zeros((3, 3)), X, np.array([0, 1, 2])).tolist() == [False, True, True]


# ---------------------------------------------------------------------------- updates
def test_dsgd_step_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    th, X, y = rand_problem(n=16, d=4, K=3, seed=3)
    eta, gamma = 0.3, 0.4
    t = torch.tensor(th, dtype=torch.float64, requires_grad=True)
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y)
    logits = Xt @ t[:, :-1].T + t[:, -1]
    wrong = logits.argmax(dim=1) != yt
    v = torch.where(wrong, torch.tensor(1.0, dtype=torch.float64), torch.tensor(gamma, dtype=torch.float64))
    loss = (v * torch.nn.functional.cross_entropy(logits, yt, reduction="none")).sum() / len(y)
    loss.backward()
    expected = th - eta * t.grad.numpy()
    np.testing.assert_allclose(dsgd_step(th, X, y, eta, gamma), expected, rtol=1e-12, atol=1e-14)
    # and the explicit form theta - eta/m (G_W + gamma G_C)
    gw, gc, _ = lm.split_grads(th, X, y)
    np.testing.assert_allclose(dsgd_step(th, X, y, eta, gamma), th - eta / len(y) * (gw + gamma * gc))


def test_schedules_match_formulas():
    T, tau = 10, 0.8
    for t in range(T + 1):
        assert np.isclose(gamma_value("linear", t, T, tau), tau * t / T)
        assert np.isclose(gamma_value("descending", t, T, tau), tau * (1 - t / T))
        assert np.isclose(gamma_value("cosine", t, T, tau), tau / 2 * (1 - np.cos(np.pi * t / T)))
        assert gamma_value("constant", t, T, tau) == tau
    with pytest.raises(ValueError):
        gamma_value("nope", 0, 1, 1.0)


def test_schedules_agree_with_library_if_present():
    try:
        from dsgd import schedule
    except (ImportError, AttributeError):
        pytest.skip("dsgd.schedules not available yet")
    for name in ("linear", "descending", "cosine", "constant"):
        g = schedule(name, 0.7)
        for t in (0, 3, 10):
            assert np.isclose(float(g(t, 10)), gamma_value(name, t, 10, 0.7))


def test_trajectory_records_and_sgd_equals_gamma_one():
    X, y = make_blobs(40, d=2, K=3, seed=0)
    th0 = lm.init_params(3, 2, 0.5, np.random.default_rng(0))
    tr = run(th0, X, y, eta=0.2, epochs=2, batch_size=8, schedule="linear", tau=1.0, order_seed=1)
    assert tr.T == 10 and tr.thetas.shape == (11, 3, 3)
    # replay the steps by hand
    th = th0.copy()
    for t, b in enumerate(tr.batches):
        th = dsgd_step(th, X[b], y[b], 0.2, t / 10)
    np.testing.assert_allclose(tr.thetas[-1], th)
    assert np.all((tr.rho >= tr.gamma - 1e-12) & (tr.rho <= 1 + 1e-12))
    sgd = run_sgd(th0, X, y, eta=0.2, batches=tr.batches)
    th = th0.copy()
    for b in tr.batches:
        th = th - 0.2 / len(b) * lm.group_grad(th, X[b], y[b])
    np.testing.assert_allclose(sgd.thetas[-1], th)


def test_batch_order_is_a_permutation_per_epoch():
    bs = batch_order(10, 3, 2, np.random.default_rng(0))
    assert len(bs) == 6 and all(len(b) == 3 for b in bs)
    assert len(set(np.concatenate(bs[:3]).tolist())) == 9
    with pytest.raises(ValueError):
        run(np.zeros((2, 2)), np.zeros((4, 1)), np.zeros(4, int), eta=0.1, tau=1.5)


# ------------------------------------------------------------------------------- data
def test_data_generators():
    for K in (2, 3):
        X, y = make_blobs(150, d=2, K=K, separable=True, seed=K)
        assert is_separable(X, y)
        X, y = make_blobs(300, d=2, K=K, separable=False, separation=1.0, seed=K)
        assert not is_separable(X, y)
    X, y = make_blobs(2000, d=2, K=2, class_probs=[0.9, 0.1], seed=0)
    assert abs(np.mean(y == 1) - 0.1) < 0.03
    with pytest.raises(ValueError):
        make_blobs(10, K=2, class_probs=[0.5, 0.6])


def test_stats_match_hand_computation():
    m, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0]))
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert m == 2.0 and np.isclose(hi - m, half) and np.isclose(m - lo, half)
    assert np.isclose(paired_ci(np.array([3.0, 5, 7]), np.array([2.0, 3, 4]))[0], 2.0)
    assert verdicts.compare_word((-1, -2, -0.5)) == "smaller"
    assert verdicts.compare_word((1, 0.5, 2)) == "larger"
    assert verdicts.compare_word((0, -1, 1)) == "not distinguishable"


def test_minimize_ce_against_scipy():
    X, y = make_blobs(60, d=2, K=3, separation=1.0, seed=3)
    th, info = minimize_ce(X, y)
    f = lambda v: lm.group_loss(v.reshape(3, 3), X, y)
    g = lambda v: lm.group_grad(v.reshape(3, 3), X, y).ravel()
    res = optimize.minimize(f, np.zeros(9), jac=g, method="BFGS", options={"gtol": 1e-10})
    assert info["finite"] and info["grad_norm"] < 1e-8
    assert np.isclose(res.fun, lm.group_loss(th, X, y), rtol=1e-9)


# ------------------------------------------------------------------------ Lemma 4.2
def test_binary_LW_never_stationary_with_errors():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    for _ in range(50):
        th = 2 * rng.standard_normal((2, 3))
        y = rng.integers(0, 2, 40)
        W, C = lm.partition(th, X, y)
        if len(W):
            assert grad_dot_theta(th, X, y, W) > 0
            assert np.linalg.norm(lm.group_grad(th, X, y, W)) > 1e-6
        if len(C):  # any K: <grad L_C, theta> < 0
            assert grad_dot_theta(th, X, y, C) < 0


def test_lp_search_rates(P):
    assert lw_stationary_rate(2, 2, P["LP_THETAS"], seed=P["SEED"]) == 0.0
    assert lw_stationary_rate(3, 2, P["LP_THETAS"], seed=P["SEED"]) > 0.0
    assert lw_stationary_rate(3, 2, 10, seed=P["SEED"], group="C") == 0.0


def test_lw_counterexample_fixture_checked_with_scipy():
    X, y = LW_COUNTEREXAMPLE_X, LW_COUNTEREXAMPLE_Y
    f = lambda v: lm.group_loss(v.reshape(3, 2), X, y)
    res = optimize.minimize(f, np.zeros(6), method="BFGS", options={"gtol": 1e-10})
    th = res.x.reshape(3, 2)
    assert lm.misclassified(th, X, y).all()          # every point wrong at the minimiser
    assert lm.margins(th, X, y).max() < -0.1          # by a clear margin
    assert np.linalg.norm(lm.group_grad(th, X, y)) < 1e-5  # = grad L_W since W = everything
    # a linear rule with one error exists: class 1 for x < 1, class 0 on (1, 1.75), class 2
    # beyond (only the class-2 point at x = -1 is lost)
    th_good = np.array([[2.0, -2.0], [0.0, 0.0], [6.0, -9.0]])
    assert lm.misclassified(th_good, X, y).sum() == 1


def test_counterexample_search_reproduces_fixture(P):
    cx = find_lw_counterexample(K=3, d=1, max_trials=P["CX_TRIALS"], seed=P["CX_SEED"])
    assert cx is not None and len(cx["y"]) == 7
    assert sorted(zip(cx["X"][:, 0], cx["y"])) == sorted(zip(LW_COUNTEREXAMPLE_X[:, 0], LW_COUNTEREXAMPLE_Y))
    assert cx["grad_norm"] < 1e-9 and cx["margin"] > 0.1


def test_gd_on_LW_chapter_problems(P):
    for sep in (True, False):
        for K in (2, 3):
            X, y = make_blobs(P["L42_N"], d=2, K=K, separable=sep, seed=P["SEED"] + 10 * K + sep)
            Xt, yt = make_blobs(200, d=2, K=K, separable=sep, seed=P["SEED"] + 10 * K + sep + 1)
            th0 = lm.init_params(K, 2, 1.0, np.random.default_rng(P["SEED"]))
            r = gd_group_summary(X, y, Xt, yt, th0, eta=P["L42_ETA"], steps=P["L42_STEPS"])["W"]
            if sep:   # zero training error, stopped on the boundary with zero gradient
                assert r["errors_end"] == 0 and r["grad_norm_end"] == 0.0
                assert 0 <= r["min_margin_end"] < 0.01
            else:     # never settles
                assert r["errors_min_late"] < r["errors_max_late"] and r["grad_norm_end"] > 1.0


# ------------------------------------------------------------------------ Lemma 4.3
def test_lemma43_example_stalls_with_an_error(P):
    X, y, th0 = lemma43_example()
    h = gd_on_group(th0, X, y, "C", eta=1.0, steps=P["L43_STEPS"], record_every=100)
    assert (h["errors"] == 1).all()
    assert h["grad_norm"][-1] < 1e-3 * h["grad_norm"][0]
    assert abs(h["theta"][1, 1] - h["theta"][0, 1]) < 1e-12  # boundary stays at 0
    assert gd_on_group(th0, X, y, "all", eta=1.0, steps=2000)["errors"][-1] == 0


# ---------------------------------------------------------------------- Theorem 4.5
def test_bound_chain_holds_pairwise():
    X, y = make_blobs(60, d=3, K=3, separation=2.0, seed=1)
    Xe, ye = make_blobs(300, d=3, K=3, separation=2.0, seed=2)
    st = seed_study(X, y, Xe, ye, n_pairs=6, eta=0.3, epochs=2, batch_size=6, seed=0)
    for m in st.div:
        chain = [st.div[m], st.lip_c[m], st.lip[m], st.path[m], st.eps[m], st.eps_sgd[m]]
        for lo, hi in zip(chain, chain[1:]):
            assert np.all(lo <= hi + 1e-9)
    # eps' does not depend on the method; SGD's eps equals it
    np.testing.assert_allclose(st.eps["sgd"], st.eps_sgd["sgd"])


def test_theorem45_chapter_numbers(P):
    X, y = make_blobs(P["T45_N"], d=P["T45_D"], K=P["T45_K"], separation=P["T45_SEPARATION"], seed=P["SEED"] + 45)
    Xe, ye = make_blobs(P["T45_EVAL"], d=P["T45_D"], K=P["T45_K"], separation=P["T45_SEPARATION"], seed=P["SEED"] + 46)
    words = []
    for eta in (P["T45_ETAS"][0], P["T45_ETAS"][-1]):
        st = seed_study(X, y, Xe, ye, n_pairs=P["T45_PAIRS"], eta=eta, epochs=P["T45_EPOCHS"],
                        batch_size=P["T45_BATCH"], init_scale=P["T45_INIT_SCALE"], seed=P["SEED"])
        assert st.final("eps", "dsgd").mean() / st.final("div", "dsgd").mean() > 100  # vacuous
        assert st.div["dsgd"][:, -1].mean() < st.div["dsgd"][:, 0].mean()  # divergence contracts
        words.append(verdicts.compare_word(paired_ci(st.final("div", "dsgd"), st.final("div", "sgd"))))
    assert words == ["smaller", "larger"]  # the ordering depends on the learning rate


# ---------------------------------------------------------------------- Theorem 4.6
def test_descent_lemma_step_and_theorem46_chapter_numbers(P):
    X, y = make_blobs(P["T45_N"], d=P["T45_D"], K=P["T45_K"], separation=P["T45_SEPARATION"], seed=P["SEED"] + 45)
    worst_reeval = 1.0
    for bs, eta, tau, ep in zip(P["T46_BATCH"], P["T46_ETA"], P["T46_TAU"], P["T46_EPOCHS"]):
        tabs = []
        for r in range(min(P["T46_RUNS"], 5)):
            th0 = lm.init_params(P["T45_K"], P["T45_D"], P["T45_INIT_SCALE"], np.random.default_rng([P["SEED"], 46, r]))
            tr = run(th0, X, y, eta=eta, epochs=ep, batch_size=bs or None, schedule="linear", tau=tau,
                     order_seed=1000 * P["SEED"] + r)
            tabs.append(step_conditions(tr, X, y, schedule="linear", tau=tau))
        s = summarize_conditions(tabs)
        if s["n_all"]:
            assert s["dec_batch_fixed_if_all"] == 1.0 and s["bound_violations"] == 0
            worst_reeval = min(worst_reeval, s["dec_reevaluated_if_all"])
        assert s["runs_all_t"] == 0.0
        assert s["p_cond1"] < 1.0  # gamma_0 = 0 breaks condition (1)
    assert worst_reeval < 0.8  # the monitored L_W often rises on qualifying steps


# ------------------------------------------------------------------- cancellation
def test_cancellation_point_and_escape(P):
    X, y = make_blobs(P["GC_N"], d=2, K=2, separation=P["GC_SEPARATION"], seed=P["SEED"] + 7)
    th, info = cancellation_point(X, y)
    assert info["sum_norm"] < 1e-10 and info["gw_norm"] > 1.0 and np.isclose(info["cos"], -1.0)
    N, eta, g = len(y), P["GC_ETA"], 0.3
    gw, _, _ = lm.split_grads(th, X, y)
    # GD does not move; a DSGD step moves by exactly eta/N (1 - gamma) G_W
    np.testing.assert_allclose(dsgd_step(th, X, y, eta, 1.0), th, atol=1e-14)
    np.testing.assert_allclose(dsgd_step(th, X, y, eta, g) - th, -eta / N * (1 - g) * gw, atol=1e-13)
    s = escape_summary(escape_run(th, X, y, eta=eta, steps=P["GC_STEPS"], schedule="linear", tau=1.0))
    assert s["gd_max_dist"] < 1e-12 and s["max_dist"] > 0.5
    assert s["final_over_max"] < 0.05  # returns as gamma_t -> 1
    assert s["errors_end"] >= s["errors_start"]
    with pytest.raises(ValueError):
        cancellation_point(*make_blobs(40, d=2, K=2, separable=True, seed=0))


# ------------------------------------------------------------------------- collapse
def test_collapse_is_the_optimum(P):
    pi = P["COL_PROBS"]
    X, y = make_blobs(P["COL_N"], d=2, K=len(pi), separation=P["COL_SEPARATION"], class_probs=pi, seed=P["SEED"] + 8)
    Xt, yt = make_blobs(2000, d=2, K=len(pi), separation=P["COL_SEPARATION"], class_probs=pi, seed=P["SEED"] + 9)
    r = collapse_study(X, y, Xt, yt, class_probs=pi, separation=P["COL_SEPARATION"], n_inits=2,
                       steps=P["COL_STEPS"], taus=(1.0,), seed=P["SEED"])
    assert r["optimum"]["train"]["n_predicted_classes"] == 1
    assert r["optimum"]["min_eig_hessian"] > 0
    assert max(g["dist"] for g in r["gd"]) < 1e-6
    assert min(g["start"]["train"]["n_predicted_classes"] for g in r["gd"]) >= 2


# ------------------------------------------------------------------------- notebook
def test_notebook_saved_without_outputs_and_params_files_valid(P):
    nb = json.loads(NB.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert c.get("outputs", []) == [] and c.get("execution_count") is None
    yaml = pytest.importorskip("yaml")
    for f in (ROOT / "notebooks" / "params" / "theory").glob("*.yaml"):
        keys = set(yaml.safe_load(f.read_text()))
        assert keys <= set(P), f"{f.name}: unknown keys {keys - set(P)}"


def test_lemma42_under_separability_no_stationary_point_with_errors():
    from dsgd.theory.data import make_blobs
    from dsgd.theory.lemmas import find_lw_counterexample, separable_stationary_rate, stationary_combination
    from dsgd.theory import model as lm

    # separable data: a separating direction lowers every example's loss, so the rate is 0
    X, y = make_blobs(60, d=2, K=3, separable=True, seed=5)
    rate, tried = separable_stationary_rate(X, y, 50, seed=1)
    assert tried > 0 and rate == 0.0
    # hand case: two points on a line, labels 0 and 1, theta predicting the wrong class for
    # both; the separator x -> (class 1 if x > 0) gives <grad l_i, theta*> < 0 for each, so no
    # combination of the two gradients vanishes
    Xh = np.array([[-1.0], [1.0]])
    yh = np.array([0, 1])
    theta = np.array([[1.0, 0.0], [-1.0, 0.0]])  # rows: class logits w*x + b, predicts the opposite
    assert lm.misclassified(theta, Xh, yh).all()
    assert stationary_combination(theta, Xh, yh) is None
    # the counterexample of the chapter is not separable
    cx = find_lw_counterexample(K=3, d=1, max_trials=400, seed=0)
    if cx is not None:
        from dsgd.theory.data import is_separable
        assert not is_separable(cx["X"], cx["y"])


def test_lemma42_verdict_separates_the_three_parts():
    from dsgd.theory import verdicts

    text = verdicts.lemma42(0.0, 0.3, {"y": [0] * 7}, True, 0.0, 120, False)
    assert "holds for any number of classes" in text and "120 random parameters" in text
    assert "wrong for a sum" in text
    assert "without the assumption it fails" in text and "(not linearly separable)" in text
    assert "for two classes it holds even without separability" in text
