"""The regimes chapter's glue (dsgd.chapters.regimes) on small records worked out by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from dsgd.chapters import regimes as rg
from dsgd.diagnostics import failure_kind


def _rec(method, seed, verdict, acc, steps=150, floor=None, task="t", correct=None, ce=None, pcs=None):
    cfg = {"task": task, "model": "m", "method": method, "seed": seed, "lr": 1e-4, "schedule": "linear",
           "tau": 1.0, "schedule_kwargs": {"floor": floor} if floor else {}, "method_kwargs": {},
           "adam_bias_correction": True, "correct_from": "train"}
    hist = {}
    if correct is not None:
        hist = {"correct_share": list(correct), "ce": list(ce if ce is not None else [0.69] * len(correct)),
                "pred_class_share": list(pcs if pcs is not None else [[0.0, 1.0]] * len(correct))}
    return {"run_id": f"{method}-{seed}-{steps}-{floor}", "status": "ok", "config": cfg, "verdict": verdict,
            "metrics": {"accuracy": acc, "balanced_accuracy": 0.5}, "majority_rate": 0.65,
            "timings": {"total_steps": steps}, "history": hist, "labels": [1, 1, 0]}


def test_vocabulary():
    assert failure_kind("success") is None
    assert failure_kind("collapsed") == "collapsed"
    assert failure_kind("failed") == failure_kind("degenerate") == "degenerate"
    with pytest.raises(ValueError):
        failure_kind("bogus")


def test_arm_labels():
    assert rg.arm_label({"method": "dsgd", "schedule_kwargs": {"floor": 0.5}}) == "DSGD, floor 0.5"
    assert rg.arm_label({"method": "fft"}) == "FFT"
    assert rg.arm_label({"method": "pcgrad", "method_kwargs": {"variant": "paper"}}) == "PCGrad, paper's Algorithm 1"
    assert rg.arm_label({"method": "dsgd", "correct_from": "eval"}) == "DSGD, correct from eval pass"
    assert rg.optimiser_label({"method": "fft-nobc"}) == "AdamW w/o bias corr."
    assert rg.optimiser_label({"method": "dsgd", "adam_bias_correction": False}) == "AdamW w/o bias corr."


def _main_frame():
    # FFT fails on seeds 0, 2; DSGD on all four; 4 shared seeds -> discordant (DSGD only) = 2
    recs = [_rec("fft", s, v, a) for s, v, a in
            [(0, "collapsed", 0.65), (1, "success", 0.9), (2, "degenerate", 0.66), (3, "success", 0.85)]]
    recs += [_rec("dsgd", s, "collapsed", 0.65) for s in range(4)]
    return rg.run_frame(recs)


def test_failure_table_and_paired_test_by_hand():
    df = _main_frame()
    t = rg.failure_table(df).set_index("arm")
    assert t.loc["FFT", "failed"] == 2 and t.loc["DSGD", "failed"] == 4
    assert t.loc["FFT", "collapsed"] == 1 and t.loc["FFT", "degenerate"] == 1
    assert t.loc["FFT", "acc ≤ majority"] == 1  # the paper's strict count: only the 0.65 run
    assert t.loc["DSGD", "accuracy 95% CI"].endswith("no spread")
    c = rg.paired_comparisons(df).iloc[0]
    assert (c["only arm failed"], c["only reference failed"]) == (2, 0)
    assert c["p"] == pytest.approx(2 * 0.5 ** 2)  # exact McNemar, two discordant seeds
    assert c["direction"] == "more often" and not c["significant"]
    s = rg.comparison_sentence(c)
    assert "more often" in s and "not significant" in s


def test_escape_verdict_by_hand():
    recs = [_rec("dsgd", s, "collapsed", 0.65) for s in range(4)]
    recs += [_rec("dsgd", 0, "success", 0.9, steps=300), _rec("dsgd", 1, "collapsed", 0.65, steps=300),
             _rec("dsgd", 1, "success", 0.8, steps=600)]
    df = rg.run_frame(recs)
    v = rg.escape_verdict(df, "t")
    # seeds 0 and 1 failed at 150 and were run longer; at their longest budget both succeeded,
    # but 2/2 has the exact interval [0.16, 1]: not resolved
    assert (v["n"], v["escaped"], v["kind"]) == (2, 2, "mostly late escapes (not resolved)")
    # 6 of 6 escaped: Clopper-Pearson lower bound 0.025**(1/6) = 0.54 > 0.5 -> late escapes
    many = [_rec("dsgd", s, "collapsed", 0.65) for s in range(6)] + [_rec("dsgd", s, "success", 0.9, steps=300)
                                                                      for s in range(6)]
    assert rg.escape_verdict(rg.run_frame(many), "t")["kind"] == "late escapes"
    none_ = [_rec("dsgd", s, "collapsed", 0.65) for s in range(6)] + [_rec("dsgd", s, "collapsed", 0.65, steps=300)
                                                                       for s in range(6)]
    assert rg.escape_verdict(rg.run_frame(none_), "t")["kind"] == "dead ends"
    recs2 = [_rec("dsgd", s, "collapsed", 0.65) for s in range(2)] + [_rec("dsgd", 0, "collapsed", 0.65, steps=300)]
    assert rg.escape_verdict(rg.run_frame(recs2), "t")["kind"] == "mostly dead ends (not resolved)"
    assert rg.escape_verdict(rg.run_frame(recs2[:2]), "t")["kind"] == "not testable"


def test_mechanism_frame_on_a_boundary_run():
    T = 150
    # DSGD pinned on the boundary: CE = ln 2 exactly; the batch is predicted as the minority
    # class at steps 0, 2, 4, 6, 8 and as the majority otherwise: F T F T F T F T F T T ...,
    # nine changes of side
    pcs = [[1.0, 0.0] if (t % 2 == 0 and t < 10) else [0.0, 1.0] for t in range(T)]
    r = _rec("dsgd", 0, "collapsed", 0.65, correct=[0.6] * T, ce=[math.log(2)] * T, pcs=pcs)
    mf = rg.mechanism_frame([r], pi=0.6)
    row = mf.iloc[0]
    # gamma_t = t/150 exceeds 0.4/0.6 first at t = 101 (100/150 = 0.6667 is not above 2/3)
    assert row["crossing_step"] == 101
    assert row["ce_gap"] == pytest.approx(0.0) and row["ce_sd"] == pytest.approx(0.0)
    assert row["switches"] == 9
    assert row["minority_steps"] == pytest.approx(5 / 101)
    assert math.isnan(row["exit_step"])


def test_verification_configs_choose_short_runs_reproducibly():
    recs = [_rec("fft", s, "success", 0.9, steps=150) for s in range(5)]
    recs += [_rec("fft", s, "success", 0.9, steps=600) for s in range(5)]
    for r in recs:
        r["config"].update({"model": "minilm", "task": "epistemic_reasoning"})
    a = rg.verification_configs(recs, 2, seed=0)
    b = rg.verification_configs(recs, 2, seed=0)
    assert [c.run_id() for c in a] == [c.run_id() for c in b]
    assert len(a) == 2 and all(c.epochs == 2.0 for c in a)  # the default epochs: only short records
    assert rg.verification_configs(recs, 0) == []


def test_grid_and_bad_arm():
    P = dict(task="epistemic_reasoning", task_kwargs={}, model="minilm", model_kwargs={}, train_size=800,
             eval_size=0, max_length=64, batch_size=8, grad_accum=1, lr=1e-4, warmup_ratio=0.1,
             tau=1.0, arms=["fft", "dsgd-floor-0.5"], budgets=[1.5, 3.0], seeds=[0, 1, 2])
    g = rg.grid(P)
    assert len(g) == 2 * 2 * 3
    assert g[0].eval_size is None and {c.schedule_kwargs.get("floor") for c in g} == {None, 0.5}
    with pytest.raises(ValueError, match="unknown arm"):
        rg.grid({**P, "arms": ["fft", "dsgd-flor"]})


def test_balanced_setting_is_found_by_its_task_label():
    from types import SimpleNamespace

    recs = [_rec("fft", s, "success", 0.9) for s in range(2)]
    bal = [_rec("fft", s, "collapsed", 0.5) for s in range(2)] + [_rec("dsgd", s, "success", 0.8) for s in range(2)]
    for r in bal:
        r["config"]["task_kwargs"] = {"class_balance": "downsample"}
        r["run_id"] += "-bal"
    df = rg.run_frame(recs + bal)
    ch = SimpleNamespace(df=df, main_task="t")
    assert rg.balanced_setting(ch) == "t (class-balanced), 150 steps"
    c = rg.paired_comparisons(df)
    row = c[(c["setting"] == "t (class-balanced), 150 steps") & (c["arm"] == "DSGD")].iloc[0]
    assert (row["only arm failed"], row["only reference failed"]) == (0, 2) and row["direction"] == "less often"
    assert rg.balanced_setting(SimpleNamespace(df=rg.run_frame(recs), main_task="t")) is None


def test_candidate_verdict_says_whether_a_difference_is_significant():
    recs = [_rec("pcgrad", s, "success", 0.9) for s in range(4)]
    recs += [_rec("fft", s, v, a) for s, v, a in [(0, "collapsed", 0.65), (1, "collapsed", 0.65),
                                                  (2, "success", 0.9), (3, "success", 0.9)]]
    recs += [_rec("pcgrad-head", s, v, a) for s, v, a in [(0, "collapsed", 0.65), (1, "collapsed", 0.65),
                                                          (2, "success", 0.9), (3, "success", 0.9)]]
    df = rg.run_frame(recs)
    t = rg.candidates_table(df, "t, 150 steps", {})
    s = rg.candidate_verdict(t, "PCGrad, head only")
    # 2 seeds where only the candidate failed: exact McNemar p = 2 * 0.5**2 = 0.5
    assert s.startswith("PCGrad, head only failed more often than PCGrad")
    assert "p = 0.5" in s and "not significant" in s
    assert "against FFT it failed as often (2 vs 2" in s


@pytest.mark.parametrize("arm, ref, sig, want", [(5, 5, False, "holds"), (6, 5, False, "not resolved"),
                                                 (19, 8, True, "does not hold"), (2, 5, False, "holds")])
def test_harm_gone_reads_the_paired_test(arm, ref, sig, want):
    row = pd.Series({"arm failed": arm, "reference failed": ref, "significant": sig})
    assert rg._harm_gone(row).startswith(want)


def test_failure_table_shows_balanced_accuracy_beside_accuracy():
    recs = [_rec("fft", 0, "success", 0.9), _rec("fft", 1, "collapsed", 0.65)]
    recs[0]["metrics"]["balanced_accuracy"], recs[1]["metrics"]["balanced_accuracy"] = 0.8, 0.5
    t = rg.failure_table(rg.run_frame(recs)).set_index("arm")
    assert t.loc["FFT", "accuracy %"] == pytest.approx(77.5)
    assert t.loc["FFT", "balanced accuracy %"] == pytest.approx(65.0)


def test_mechanism_reads_the_main_task_only():
    from types import SimpleNamespace

    main = [_rec("fft", 0, "success", 0.9), _rec("dsgd", 0, "collapsed", 0.65),
            _rec("dsgd", 1, "success", 0.9, steps=300)]
    bal = _rec("dsgd", 2, "success", 0.8)
    bal["config"]["task_kwargs"] = {"class_balance": "downsample"}
    nobc = _rec("dsgd", 3, "collapsed", 0.65)
    nobc["config"]["adam_bias_correction"] = False
    recs = main + [bal, nobc]
    ch = SimpleNamespace(records=recs, df=rg.run_frame(recs), main_task="t")
    assert [r["config"]["seed"] for r in rg.mechanism_records(ch)] == [0, 0]
    assert [r["config"]["seed"] for r in rg.mechanism_records(ch, short_only=False)] == [0, 0, 1]


def _cand_frame(n_cand_fail, n_fft_fail, n=10):
    # PCGrad never fails; FFT fails on the first n_fft_fail seeds; the candidate on the first n_cand_fail
    recs = [_rec("pcgrad", s, "success", 0.9) for s in range(n)]
    recs += [_rec("fft", s, "collapsed" if s < n_fft_fail else "success", 0.65 if s < n_fft_fail else 0.9)
             for s in range(n)]
    recs += [_rec("balanced", s, "collapsed" if s < n_cand_fail else "success", 0.65 if s < n_cand_fail else 0.9)
             for s in range(n)]
    return rg.candidates_table(rg.run_frame(recs), "t, 150 steps", {})


def test_candidates_verdict_needs_a_significant_gain_over_fft():
    # 0 vs 8 failures on 10 seeds: McNemar p = 2 * 0.5**8 = 0.0078; Holm over the table's
    # three tests (PCGrad vs FFT, candidate vs FFT, candidate vs PCGrad) keeps it below 0.05
    assert rg.candidates_verdict(_cand_frame(0, 8))[0] == "supported"
    # 0 vs 3: p = 0.25, matching PCGrad proves nothing yet
    assert rg.candidates_verdict(_cand_frame(0, 3))[0] == "not resolved"
    # 8 of 10 failed where PCGrad never did: p = 0.0078 against PCGrad
    assert rg.candidates_verdict(_cand_frame(8, 8))[0] == "contradicted"


def test_open_choices_compare_each_variant_with_its_default():
    rows = []
    for s in range(6):
        rows.append({"setting": "S", "arm": "DSGD", "seed": s, "failed": True})
        rows.append({"setting": "S", "arm": "DSGD, correct from eval pass", "seed": s, "failed": s < 2})
        rows.append({"setting": "S", "arm": "PCGrad", "seed": s, "failed": False})
    out = rg.open_choices(pd.DataFrame(rows), "S")
    # eval pass: 2 of 6 failed, DSGD 6 of 6; the 4 discordant seeds all favour the eval pass:
    # exact McNemar p = 2 * 0.5**4 = 0.125
    assert "failed on 2/6" in out["choice_eval"] and "6/6" in out["choice_eval"]
    assert "less often than DSGD (2 vs 6" in out["choice_eval"] and "p = 0.125" in out["choice_eval"]
    assert "not stored yet" in out["choice_pcgrad"]


def test_second_task_sentence_says_what_is_missing():
    assert "no class-balanced task" in rg.second_task_sentence(None, None)
    t = pd.DataFrame([{"method": "FFT", "seeds": 10, "failed": 3}, {"method": "DSGD", "seeds": 10, "failed": 0}])
    assert "block 2g" in rg.second_task_sentence(t, "S")


def test_longer_setting_is_the_main_tasks_next_budget():
    from types import SimpleNamespace

    recs = [_rec("fft", s, "success", 0.9) for s in range(2)]
    ch = SimpleNamespace(df=rg.run_frame(recs), main_task="t")
    assert rg.longer_setting(ch) is None
    assert "no longer budget" in rg.longer_budget_sentence(None, None)
    recs += [_rec("fft", s, "collapsed", 0.6, steps=600) for s in range(2)]
    recs += [_rec("fft", s, "success", 0.8, steps=300) for s in range(2)]
    ch = SimpleNamespace(df=rg.run_frame(recs), main_task="t")
    assert rg.short_setting(ch) == "t, 150 steps" and rg.longer_setting(ch) == "t, 300 steps"
    t = rg.candidates_table(ch.df, "t, 300 steps", {})
    assert list(t["method"]) == ["FFT"] and "block 9" in rg.longer_budget_sentence(t, "t, 300 steps")


def test_balanced_prediction_names_each_budget_once():
    from types import SimpleNamespace

    recs = [_rec(m, s, "success", 0.9) for m in ("fft", "dsgd") for s in range(2)]
    recs += [_rec(m, s, "collapsed", 0.5, steps=n, task="b") for m in ("fft", "dsgd") for s in range(2)
             for n in (150, 300)]
    df = rg.run_frame(recs)
    ch = SimpleNamespace(df=df, main_task="t", pi={"t": 0.65, "b": 0.5}, comparisons=rg.paired_comparisons(df))
    out = rg.mechanism_verdicts(ch, pd.DataFrame(), pd.DataFrame(columns=rg.MECHANISM_COLUMNS))
    text = out["pred_balanced"]
    # one sentence per budget of the balanced task, each naming its setting
    assert text.count("On the balanced task") == 2
    assert "b, 150 steps" in text and "b, 300 steps" in text and "every one of its 4 runs failed" in text


def test_verification_table_and_sentence_name_the_processors():
    epyc = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": "AVX512"}
    stored = [_rec("fft", 0, "success", 0.80), {**_rec("dsgd", 0, "collapsed", 0.65), "machine": epyc}]
    new = [{**_rec("fft", 0, "success", 0.86), "machine": epyc}, {**_rec("dsgd", 0, "collapsed", 0.65), "machine": epyc}]
    t = rg.verification_table(stored, new)
    assert list(t["reproduces"]) == [False, True]  # 6 points apart; identical
    assert list(t["run"]) == ["FFT, seed 0, 150 steps", "DSGD, seed 0, 150 steps"]
    s = rg.verification_sentence(t)
    assert s.startswith("1 of the 2 recomputed runs reproduce their stored record. 1 run that differs has a record "
                        "that does not name its processor")
    assert rg.verification_sentence(t.iloc[1:]) == "The recomputed run reproduces its stored record."
    assert rg.verification_sentence(pd.DataFrame()) == "This build recomputed no stored run."


def test_persistence_table_and_regime_sentence_by_hand():
    # AdamW: FFT fails on seeds 0-1 at 150 steps, both succeed at 300 -> 0 of 2 persisted.
    # Without bias correction: FFT fails on seeds 0-5 at 150 and at 300 -> 6 of 6 persisted,
    # Clopper-Pearson lower bound 0.025**(1/6) = 0.54 > 1/2: dead ends, a persistent regime.
    recs = [_rec("fft", s, "collapsed", 0.65) for s in (0, 1)] + [_rec("fft", s, "success", 0.9, steps=300)
                                                                  for s in (0, 1)]
    recs += [_rec("fft-nobc", s, "collapsed", 0.65, steps=st) for s in range(6) for st in (150, 300)]
    nobc = [_rec("dsgd", s, "collapsed" if s < 5 else "success", 0.65, steps=st) for s in range(6) for st in (150, 300)]
    for r in nobc:
        r["config"]["adam_bias_correction"] = False
        r["run_id"] += "-nobc"
    df = rg.run_frame(recs + nobc)
    t = rg.persistence_table(df).set_index(["optimiser", "arm"])
    assert t.loc[("AdamW", "FFT"), "still failed"] == 0 and t.loc[("AdamW", "FFT"), "of those, run longer"] == 2
    row = t.loc[("AdamW w/o bias corr.", "FFT")]
    assert (row["still failed"], row["failures are"]) == (6, "dead ends")
    assert row["CI low"] == pytest.approx(0.025 ** (1 / 6), abs=1e-6)
    s = rg.persistent_regime_sentence(df, rg.paired_comparisons(df))
    assert "A regime of persistent failures" in s and "t with AdamW w/o bias corr." in s
    # DSGD without bias correction failed on 5 of the 6 seeds where FFT failed on 6: "less often"
    assert "DSGD failed less often than FFT: 5 vs 6" in s
    import types
    ch = types.SimpleNamespace(df=df, comparisons=rg.paired_comparisons(df))
    f = rg.persistent_regime_finding(ch, "m on t; stored runs")
    # 5 vs 6 failures on 6 shared seeds at 300 steps: one discordant seed, p = 1 -> not resolved
    assert f["verdict"] == "not resolved" and f["setting"].endswith("t, 300 steps, AdamW w/o bias corr.")
    only_adamw = rg.run_frame(recs[:4])
    assert "None of these is yet a regime" in rg.persistent_regime_sentence(only_adamw, rg.paired_comparisons(only_adamw))


def test_pending_sentence_by_hand():
    progress = pd.DataFrame({"setting": ["t, 150 steps", "t, 300 steps"], "arm": ["FFT", "PCGrad"],
                             "planned": [4, 4], "stored": [4, 1]})
    progress["to run"] = progress["planned"] - progress["stored"]
    s = rg.pending_sentence(progress)
    assert s.startswith("The stored set holds 5 of the 8 runs") and "PCGrad on t, 300 steps (1 of 4 stored)" in s
    assert "FFT on" not in s
    assert "every run" in rg.pending_sentence(progress.assign(stored=4, **{"to run": 0}))
