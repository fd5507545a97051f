"""Reproduction checks: the criterion, the processors beside it, and the sentence that explains a mismatch."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from dsgd.config import RunConfig
from dsgd.reproduce import (compare_pairs, compare_runs, mismatch_sentence, processor, recompute_with_capability,
                            same_processor)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EPYC = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": "AVX512"}
XEON = {"device": "cpu", "cpu_model": "Intel Xeon", "cpu_capability": "AVX2"}


def rec(acc, machine=None, verdict="success", run_id="r", preds=(0, 1)):
    r = {"run_id": run_id, "status": "ok", "verdict": verdict, "metrics": {"accuracy": acc},
         "predictions": list(preds), "config": {"seed": 0}}
    if machine is not None:
        r["machine"] = machine
    return r


def test_processor_names_cpu_model_and_instruction_set_or_nothing():
    assert processor(rec(0.5, EPYC)) == "AMD EPYC (AVX512)"
    assert processor(rec(0.5, {"device": "cuda:0", "gpu": "NVIDIA H200"})) == "NVIDIA H200"
    # records made before the processor was recorded: platform and cores only
    assert processor(rec(0.5, {"device": "cpu", "processor": "", "cpu_count": 2})) is None
    assert processor(rec(0.5)) is None
    assert same_processor(rec(0.5, EPYC), rec(0.6, dict(EPYC))) is True
    assert same_processor(rec(0.5, EPYC), rec(0.6, {**EPYC, "cpu_capability": "AVX2"})) is False
    assert same_processor(rec(0.5), rec(0.6, EPYC)) is None


def test_compare_runs_matches_twins_and_keeps_the_half_point_criterion():
    stored = [rec(0.800, XEON, run_id="a"), rec(0.700, None, run_id="b"), rec(0.9, EPYC, run_id="c")]
    now = [rec(0.805, EPYC, run_id="a"), rec(0.750, EPYC, run_id="b", preds=(1, 1)),
           rec(0.9, EPYC, run_id="c"), rec(0.1, EPYC, run_id="new")]
    t = compare_runs(stored, now).set_index("run_id")
    assert list(t.index) == ["a", "b", "c"]  # "new" has no twin
    assert t.loc["a", "ok"] and not t.loc["b", "ok"] and t.loc["c", "ok"]  # 0.5 points passes, 5 does not
    assert t.loc["b", "diff"] == pytest.approx(0.05)
    assert t.loc["a", "same_processor"] is False and t.loc["b", "same_processor"] is None
    assert t.loc["c", "same_predictions"] and not t.loc["b", "same_predictions"]


def test_mismatch_sentence_tells_hardware_from_a_real_failure():
    assert mismatch_sentence(pd.DataFrame()) == ""
    ok = compare_pairs([(rec(0.8, EPYC), rec(0.8, EPYC))])
    assert mismatch_sentence(ok) == ""
    other = compare_pairs([(rec(0.8, XEON), rec(0.6, EPYC)), (rec(0.8, XEON), rec(0.7, EPYC))])
    s = mismatch_sentence(other)
    assert s.startswith("2 runs that differ were stored on another processor (Intel Xeon (AVX2); "
                        "this computation: AMD EPYC (AVX512))")
    assert "failure to reproduce" not in s
    unknown = compare_pairs([(rec(0.8), rec(0.6, EPYC))])
    assert mismatch_sentence(unknown).startswith(
        "1 run that differs has a record that does not name its processor")  # singular by count
    same = compare_pairs([(rec(0.8, EPYC), rec(0.6, EPYC)), (rec(0.8), rec(0.6, EPYC))])
    s = mismatch_sentence(same)
    assert "1 run differs on the same processor as its record (AMD EPYC (AVX512)): that is a failure to reproduce" in s
    assert "does not name its processor" in s


def test_recompute_with_capability_refuses_unknown_names_before_training():
    with pytest.raises(ValueError, match="capability must be one of"):
        recompute_with_capability(RunConfig().to_dict(), "sse9")


def test_recompute_with_capability_runs_in_a_process_restricted_to_that_instruction_set():
    cfg = RunConfig(task="synthetic_blobs", model="tiny-mlp", lr=1e-2, epochs=1, batch_size=16, threads=1,
                    seed=3).to_dict()
    a = recompute_with_capability(cfg, "default")
    assert a["machine"]["cpu_capability"] == "DEFAULT" and a["status"] == "ok"
    b = recompute_with_capability(cfg, "default")
    assert a["metrics"] == b["metrics"]  # same process setup, same numbers
