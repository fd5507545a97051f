"""Multitask fine-tuning: label blocks, per-task heads, per-task DSGD loss, per-task
metrics, the Table-6 layout, and the paper profile (tiny RoBERTa on the hub fixtures)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from dsgd.config import RunConfig
from dsgd.methods import StepContext, get_method
from dsgd.chapters.multitask import PAPER_TABLE6, PAPER_TABLE6_AVERAGE, table6
from dsgd.multitask import (FILL, TaskHeads, block_offsets, build_multitask_model, load_multitask,
                            multitask_frame, parse_tasks, per_task_metrics, task_of_label, train_run)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


# ----------------------------------------------------------------------------- names, blocks
def test_parse_tasks():
    assert parse_tasks("mrpc+rte") == ["mrpc", "rte"]
    assert parse_tasks("a + b + c") == ["a", "b", "c"]
    for bad in ("mrpc", "mrpc+", "mrpc+mrpc"):
        with pytest.raises(ValueError):
            parse_tasks(bad)


def test_blocks_and_task_of_label():
    assert block_offsets([3, 2, 4]) == [0, 3, 5]
    assert task_of_label([0, 2, 3, 4, 5, 8], [3, 2, 4]).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        task_of_label([9], [3, 2, 4])


# ----------------------------------------------------------------------------- heads
def _tiny(num_labels, model="tiny-bert", seed=0):
    model, tok = build_multitask_model(model, num_labels, names=[f"t{k}" for k in range(len(num_labels))],
                                       seed=seed, **NO_DROPOUT)
    return model, tok


def _batch(tok, tids, labels):
    texts = ["the cat sat on the mat", "a dog ran", "green ideas sleep", "is this right",
             "stocks fell sharply today", "they won the match"][: len(tids)]
    enc = tok(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "token_type_ids": enc["token_type_ids"], "task_id": torch.tensor(tids),
            "labels": torch.tensor(labels)}


def _pooled(model, batch):
    """BERT's classifier input, computed without the multitask code."""
    return model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"]).pooler_output


def test_each_example_goes_through_its_own_head():
    model, tok = _tiny([3, 2])
    model.eval()
    b = _batch(tok, [0, 1, 1, 0], [0, 3, 4, 2])
    with torch.no_grad():
        logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
        feats = _pooled(model, b)
        h0, h1 = model.task_heads.heads
        assert logits.shape == (4, 5)
        for i, k in enumerate([0, 1, 1, 0]):
            own = (h0 if k == 0 else h1)(feats[i:i + 1])[0]
            block = slice(0, 3) if k == 0 else slice(3, 5)
            torch.testing.assert_close(logits[i, block], own)
            rest = torch.ones(5, dtype=torch.bool)
            rest[block] = False
            assert torch.all(logits[i, rest] == FILL)


def test_heads_are_distinct_and_freshly_initialised():
    model, _ = _tiny([2, 2])
    h0, h1 = model.task_heads.heads
    assert not torch.equal(h0.weight, h1.weight)
    assert torch.count_nonzero(h0.bias) == 0 and torch.count_nonzero(h1.bias) == 0
    # HF initialisation: N(0, 0.02^2)
    assert abs(float(h0.weight.detach().std()) - 0.02) < 0.006
    # the same seed gives the same heads
    again, _ = _tiny([2, 2])
    torch.testing.assert_close(again.task_heads.heads[1].weight, h1.weight)


def test_missing_task_id_is_a_clear_error():
    model, tok = _tiny([2, 2])
    b = _batch(tok, [0, 1], [0, 2])
    with pytest.raises(ValueError, match="task_id"):
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    with pytest.raises(ValueError, match="task_id values"):
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], task_id=torch.tensor([0, 2]))


def test_masked_cross_entropy_equals_each_heads_own_cross_entropy():
    model, tok = _tiny([3, 2])
    model.eval()
    b = _batch(tok, [0, 1, 1, 0], [1, 3, 4, 2])
    with torch.no_grad():
        logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
        ce = F.cross_entropy(logits, b["labels"], reduction="none")
        feats = _pooled(model, b)
        h0, h1 = model.task_heads.heads
        expected = torch.stack([
            F.cross_entropy(h0(feats[0:1]), torch.tensor([1]))[()],
            F.cross_entropy(h1(feats[1:2]), torch.tensor([0]))[()],
            F.cross_entropy(h1(feats[2:3]), torch.tensor([1]))[()],
            F.cross_entropy(h0(feats[3:4]), torch.tensor([2]))[()],
        ])
    torch.testing.assert_close(ce, expected)


def test_loss_of_one_task_leaves_the_other_head_untouched():
    model, tok = _tiny([2, 2])
    b = _batch(tok, [0, 0, 0], [0, 1, 0])
    out = model(**{k: v for k, v in b.items() if k != "labels"}).logits
    F.cross_entropy(out, b["labels"]).backward()
    h0, h1 = model.task_heads.heads
    assert h0.weight.grad is not None and float(h0.weight.grad.abs().sum()) > 0
    assert h1.weight.grad is None or float(h1.weight.grad.abs().sum()) == 0.0


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_dsgd_step_is_per_task_weighted_gradient():
    """The engine's DSGD method on a mixed batch equals, by hand, (1/m) sum over tasks of
    (G_W^k + gamma G_C^k) with correctness judged by each task's own head."""
    gamma = 0.3
    model, tok = _tiny([3, 2], seed=1)
    model.train()  # dropout is off, so the training pass is deterministic
    labels = [0, 3, 4, 2, 1, 3]
    tids = [0, 1, 1, 0, 0, 1]
    b = _batch(tok, tids, labels)
    cfg = RunConfig(task="a+b", model="tiny-bert", method="dsgd")
    ctx = StepContext(t=3, T=10, gamma=gamma, micro=0, n_micro=1, n_items=6, epoch=0, cfg=cfg, num_labels=5)
    get_method("dsgd").backward(model, b, ctx)
    got = _grads(model)

    model.zero_grad(set_to_none=True)
    feats = _pooled(model, b)
    h = model.task_heads.heads
    total = 0.0
    n_correct = 0
    for i, (k, y) in enumerate(zip(tids, labels)):
        local = y - (0 if k == 0 else 3)
        lg = h[k](feats[i:i + 1])
        correct = int(lg.argmax()) == local
        n_correct += correct
        w = gamma if correct else 1.0
        total = total + w * F.cross_entropy(lg, torch.tensor([local]))
    (total / 6).backward()
    want = _grads(model)
    assert 0 < n_correct < 6  # both groups present, so gamma matters
    assert set(got) == set(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], atol=1e-6, rtol=1e-5, msg=n)


def test_dsgd_weights_follow_each_tasks_own_argmax():
    """An example whose *global* argmax would be another task's class still counts as
    correct when its own head ranks its label first (block masking)."""
    heads = TaskHeads([torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)], [2, 2])
    with torch.no_grad():
        heads.heads[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        heads.heads[1].weight.copy_(torch.tensor([[50.0, 0.0], [0.0, 50.0]]))
    heads.task_id = torch.tensor([0, 1])
    x = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    logits = heads(x)
    from dsgd.weighting import example_weights

    w = example_weights(logits, torch.tensor([0, 3]), 0.25)
    assert w.tolist() == [0.25, 0.25]  # both correct within their blocks


# ----------------------------------------------------------------------------- data
def test_load_multitask_union_from_fixtures():
    from dsgd.models import load_tokenizer

    tok = load_tokenizer("tiny-roberta")
    d = load_multitask(["mrpc", "cola"], tok, max_length=64, source="fixture")
    blocks = d.info["tasks"]
    assert [b["name"] for b in blocks] == ["mrpc", "cola"] and [b["offset"] for b in blocks] == [0, 2]
    assert d.num_labels == 4 and d.name == "mrpc+cola" and d.info["batches"] == "mixed"
    assert len(d.train) == sum(b["n_train"] for b in blocks)
    for row in d.train + d.eval:
        k = row["task_id"]
        assert blocks[k]["offset"] <= row["labels"] < blocks[k]["offset"] + blocks[k]["num_labels"]
    # a task-specific option must name one of the tasks
    with pytest.raises(ValueError, match="per_task"):
        load_multitask(["mrpc", "cola"], tok, source="fixture", per_task={"rte": {}})


# ----------------------------------------------------------------------------- metrics
def test_per_task_metrics_hand_worked():
    blocks = [{"name": "a", "num_labels": 3, "offset": 0}, {"name": "b", "num_labels": 2, "offset": 3}]
    labels = [0, 2, 1, 3, 4, 4]
    preds = [0, 1, 1, 4, 4, 3]
    m = per_task_metrics(preds, labels, blocks)
    assert m["a"]["accuracy"] == pytest.approx(2 / 3) and m["a"]["n_eval"] == 3
    # task b, local labels [0, 1, 1], local predictions [1, 1, 0]: 1 of 3 right, majority 2/3
    assert m["b"]["accuracy"] == pytest.approx(1 / 3)
    assert m["b"]["majority_rate"] == pytest.approx(2 / 3)
    assert m["b"]["verdict"] == "failed"
    # a prediction outside its block counts as wrong
    m2 = per_task_metrics([3, 2, 1, 3, 4, 4], labels, blocks)
    assert m2["a"]["accuracy"] == pytest.approx(2 / 3) and m2["a"]["outside_block"] == 1


def test_table6_layout_hand_computed():
    rows = []
    acc = {("fft", "p: x"): [0.8, 0.6], ("fft", "p: y"): [0.9, 0.9], ("dsgd", "p: x"): [0.7, 0.7],
           ("dsgd", "p: y"): [0.5, 0.9]}
    for (m, col), vals in acc.items():
        for s, v in enumerate(vals):
            rows.append({"method": m, "column": col, "accuracy": v, "majority_rate": 0.5,
                         "verdict": "success", "seed": s})
    t, f = table6(pd.DataFrame(rows), order=["fft", "dsgd"])
    # fft: column means 70, 90 -> ACC 80; sample stds 14.142, 0 -> STD 7.071
    assert t.loc["fft", ("average", "mean")] == pytest.approx(80.0)
    assert t.loc["fft", ("average", "std")] == pytest.approx(math.sqrt(200) / 2)
    assert t.loc["dsgd", ("average", "mean")] == pytest.approx(70.0)
    assert f.loc["fft", "p: x"] == "70.00 ± 14.14"


def test_paper_table6_transcription_is_self_consistent():
    """The printed ACC/STD columns are the means of the six column means/stds; checking
    them catches a mistyped cell in our copy of the table."""
    for m, cells in PAPER_TABLE6.items():
        acc, std = PAPER_TABLE6_AVERAGE[m]
        if m == "swa":  # the paper prints 77.68; its six column means average 77.70
            assert np.mean([c[0] for c in cells]) == pytest.approx(77.70, abs=0.005)
        else:
            assert np.mean([c[0] for c in cells]) == pytest.approx(acc, abs=0.011), m
        assert np.mean([c[1] for c in cells]) == pytest.approx(std, abs=0.011), m


# ----------------------------------------------------------------------------- runs
def _paper_configs(methods=("fft", "dsgd"), seeds=(42,)):
    """The paper profile's runs, with tiny RoBERTa on the hub fixtures for 2 steps."""
    from dsgd.chapters.multitask import chapter_grid
    from tests.test_hygiene import parameters_of

    P = {**parameters_of(ROOT / "notebooks" / "multitask.ipynb"),
         **yaml.safe_load((ROOT / "notebooks" / "params" / "multitask" / "paper.yaml").read_text())}
    assert P["model"] == "roberta-large" and P["epochs"] == 8.0 and len(P["seeds"]) == 10
    assert (P["batch_size"], P["grad_accum"]) == (5, 2)
    configs = chapter_grid(P)
    assert len(configs) == 3 * len(P["methods"]) * 10
    pick = [c for c in configs if c.method in methods and c.seed in seeds]
    return [c.replace(model="tiny-roberta", max_length=64, max_steps=2,
                      task_kwargs={**c.task_kwargs, "source": "fixture"}) for c in pick]


def test_paper_profile_runs_on_fixtures_with_tiny_roberta():
    configs = _paper_configs()
    assert {c.task for c in configs} == {"mrpc+rte", "mrpc+cola", "rte+cola"}
    for cfg in [c for c in configs if c.task == "mrpc+rte"]:
        rec = train_run(cfg)
        assert rec["status"] == "ok" and rec["timings"]["steps"] == 2
        assert set(rec["per_task"]) == {"mrpc", "rte"}
        assert [b["name"] for b in rec["tasks"]] == ["mrpc", "rte"]
        fr = multitask_frame([rec])
        assert fr["column"].tolist() == ["mrpc+rte: mrpc", "mrpc+rte: rte"]


def test_sweep_and_verify_with_the_multitask_run_function(tmp_path):
    from dsgd.store import ResultStore
    from dsgd.sweep import run_sweep, verify_sample

    cfg = RunConfig(task="rte+cola", model="tiny-bert", method="dsgd", seed=3, lr=1e-3, max_steps=2,
                    batch_size=4, max_length=64, task_kwargs={"source": "fixture"})
    store = ResultStore(tmp_path / "s")
    recs = run_sweep([cfg], store, run_fn="dsgd.multitask:train_run", progress=False, provenance=False)
    assert recs[0]["status"] == "ok" and "per_task" in store.get(cfg.run_id())
    v = verify_sample(store, k=1, run_fn="dsgd.multitask:train_run")
    assert bool(v["ok"].all()) and v["diff"].iloc[0] == 0.0


def test_bad_method_fails_before_loading():
    cfg = RunConfig(task="mrpc+rte", model="roberta-large", method="no-such-method")
    with pytest.raises(ValueError, match="unknown method"):
        train_run(cfg)


def test_stored_sweep_file_holds_the_cpu_full_runs():
    """The stored result set is the chapter's cpu-full profile (same run ids), and the
    embedded build's runs train as a subset of it (same training ids: the build only skips
    the mid-training evaluation)."""
    from dsgd.chapters.multitask import chapter_grid
    from dsgd.sweep import configs_from_params, load_params
    from tests.test_hygiene import parameters_of

    defaults = parameters_of(ROOT / "notebooks" / "multitask.ipynb")
    full = yaml.safe_load((ROOT / "notebooks" / "params" / "multitask" / "cpu-full.yaml").read_text())
    sweep = load_params(ROOT / "results" / "multitask" / "sweep_full.yaml")
    stored = {c.run_id() for c in configs_from_params(sweep)}
    assert stored == {c.run_id() for c in chapter_grid({**defaults, **full})}
    build = chapter_grid(defaults)
    assert not any(c.eval_each_epoch for c in build)
    assert {c.training_id() for c in build} <= stored
    assert defaults["stored_set"] == sweep["store"] == "results/multitask_full"
    assert len(full["seeds"]) >= 10 and {"fft", "pcgrad", "lnsr", "noisytune", "swa", "dsgd"} <= set(full["methods"])


def test_interval_table_hand_worked():
    from dsgd.chapters.multitask import failed_counts, interval_table

    rows = [{"column": "a+b: a", "method": "fft", "seed": s, "accuracy": acc, "verdict": v}
            for s, acc, v in ((0, 0.6, "collapsed"), (1, 0.7, "success"), (2, 0.8, "degenerate"))]
    rows += [{"column": "a+b: a", "method": "dsgd", "seed": s, "accuracy": 0.6, "verdict": "collapsed"}
             for s in range(3)]
    t = interval_table(pd.DataFrame(rows))
    f = t.loc[("a+b: a", "FFT")]
    # mean 70 %, sample STD 10 points, t(0.975, 2) = 4.3027: 70 +- 4.3027 * 10 / sqrt(3) = 70 +- 24.84
    assert f["accuracy (%)"] == 70.0 and f["95 % interval"] == "[45.2, 94.8]" and f["STD (points)"] == 10.0
    # 2 of 3 failed (collapsed and degenerate are both failures); Clopper-Pearson [0.0943, 0.9916]
    assert f["failed"] == "2/3" and f["failure rate 95 % interval"] == "[0.09, 0.99]"
    d = t.loc[("a+b: a", "DSGD")]
    assert d["STD 95 % interval"] == "all runs at one value" and d["failed"] == "3/3"
    assert failed_counts(pd.DataFrame(rows)).loc["fft", "a+b: a"] == "2/3"


def test_search_sentence_names_the_leads_and_the_all_failed_candidates():
    import pandas as pd

    from dsgd.chapters import _common as C
    from dsgd.chapters.multitask import search_sentence

    def rec(seed, verdict, **changes):
        cfg = {"task": "a+b", "model": "minilm", "method": "fft", "lr": 1e-4, "epochs": 1.5, "batch_size": 8,
               "seed": seed, **changes}
        return {"config": cfg, "per_task": {"a": {"accuracy": 0.6, "verdict": verdict}}}

    recs = ([rec(s, "failed") for s in range(4)]  # reference: 4 of 4 failed
            + [rec(s, "collapsed", epochs=0.75) for s in range(4)]  # 4 of 4 failed
            + [rec(s, v, batch_size=16) for s, v in enumerate(["failed", "success", "success", "degenerate"])]
            + [rec(s, "success", task_kwargs={"per_task": {"b": {"train_size": 200}}}) for s in range(2)])
    t = C.search_table(C.search_frame(recs, task="a"), lead="mixed")
    assert list(t.index) == ["reference", "epochs 0.75", "batch 16", "b: train_size 200"]
    assert list(t["failed"]) == [4, 4, 2, 0] and list(t["lead"]) == [False, False, True, False]
    assert search_sentence(t, "a") == ("Of 4 candidate settings (FFT, 2-4 seeds each), 1 had both failed and "
                                       "successful a runs: batch 16 (2 of 4 failed). In 2 of them every a run failed.")
    assert search_sentence(None, "a") == "No search runs are stored in this checkout."
    assert isinstance(t, pd.DataFrame)


def test_what_we_found_says_when_a_small_spread_is_a_plateau():
    from dsgd.chapters.multitask import what_we_found

    rows = []
    for s, (fa, fv, da) in enumerate([(0.65, "collapsed", 0.648), (0.90, "success", 0.650),
                                      (0.80, "success", 0.646), (0.92, "success", 0.650)]):
        rows.append({"pair": "a+b", "task": "a", "column": "a+b: a", "method": "fft", "seed": s,
                     "accuracy": fa, "majority_rate": 0.65, "verdict": fv})
        rows.append({"pair": "a+b", "task": "a", "column": "a+b: a", "method": "dsgd", "seed": s,
                     "accuracy": da, "majority_rate": 0.65, "verdict": "collapsed"})
    out = what_we_found(pd.DataFrame(rows), "test")
    assert "every DSGD run failed on a" in out["wwf_spread"] and "not stability" in out["wwf_spread"]
    assert "every FFT run" not in out["wwf_spread"]


def test_put_numbers_writes_a_dash_for_the_std_of_one_seed():
    from dsgd.chapters.multitask import put_numbers
    from tests.test_chapter_helpers import Recorder

    rows = [{"pair": "a+b", "task": t, "column": f"a+b: {t}", "method": m, "seed": 0, "accuracy": acc,
             "majority_rate": 0.5, "verdict": "success"}
            for t, acc in (("a", 0.8), ("b", 0.9)) for m in ("fft", "dsgd")]
    frame = pd.DataFrame(rows)
    table, _ = table6(frame, order=["fft", "dsgd"])
    R = Recorder()
    put_numbers(R, "build", frame, table, ["a+b: a", "a+b: b"])
    assert R.values["build_c0_fft_std"] == "–" and R.values["build_fft_STD"] == "–"
    assert R.values["build_c1_dsgd_acc"] == "90.00" and R.values["build_fft_ACC"] == "85.00"
