"""Own data (dsgd.data.custom): CSV / JSONL / DataFrame / Dataset / BIG-bench by name.

Splits are checked against numpy's fixed RandomState stream written out by hand:
``RandomState(0).permutation(10) == [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]``, so with
``eval_size=2`` the held-out rows are 2 and 8 and the training rows 4, 9, 1, 6, 7, 3, 0, 5.
Every error is checked for its message and for being raised before a model is built.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsgd.data import describe_task, load_task, register_dataset, register_frame, save_frame
from dsgd.data.custom import DataError

torch.set_num_threads(1)
PERM10 = [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]  # numpy.random.RandomState(0).permutation(10)


@pytest.fixture(scope="module")
def tok():
    from dsgd.models import minilm_tokenizer

    return minilm_tokenizer()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private data cache per test (registered frames, BIG-bench files); the data files
    are written to tmp_path, the working directory, so "csv:<file>" finds them."""
    d = tmp_path / "cache"
    monkeypatch.setenv("DSGD_DATA_DIR", str(d))
    monkeypatch.chdir(tmp_path)
    return d


TEXTS = ["good film", "bad plot", "great cast", "dull", "loved it", "boring",
         "superb", "awful", "fine acting", "weak end"]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg"]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def reviews(tmp_path) -> Path:
    return write_csv(tmp_path / "reviews.csv", "text,label",
                     [f"{t},{y}" for t, y in zip(TEXTS, LABELS)])


def _decoded(tok, feats) -> list[str]:
    return [tok.decode(f["input_ids"], skip_special_tokens=True) for f in feats]


# --------------------------------------------------------------------------- CSV
def test_csv_split_and_sorted_labels_by_hand(tok, reviews):
    data = load_task(f"csv:{reviews.name}", tok, eval_size=2)
    assert data.label_names == ["neg", "pos"]  # sorted
    assert data.info["eval_ids"] == [2, 8] and data.info["train_ids"] == [4, 9, 1, 6, 7, 3, 0, 5]
    assert _decoded(tok, data.eval) == ["great cast", "fine acting"]
    assert [f["labels"] for f in data.eval] == [1, 1]  # both "pos"
    # training labels in split order: rows 4 9 1 6 7 3 0 5 = pos neg neg pos neg neg pos neg
    assert [f["labels"] for f in data.train] == [1, 0, 0, 1, 0, 0, 1, 0]
    assert data.num_labels == 2 and not data.info["pairs"]


def test_default_eval_fraction_and_train_size(tok, reviews):
    d = describe_task(f"csv:{reviews.name}")  # 20% of 10 = 2 held out
    assert (d["n"], d["n_train"], d["n_eval"]) == (10, 8, 2)
    assert d["eval_counts"] == [0, 2] and d["train_counts"] == [5, 3]
    d = describe_task(f"csv:{reviews.name}", eval_fraction=0.3, train_size=4)  # rows 2 8 4 held out
    assert (d["n_train"], d["n_eval"]) == (4, 3)
    assert d["eval_counts"] == [0, 3]          # rows 2, 8, 4: pos pos pos
    assert d["train_counts"] == [3, 1]         # rows 9, 1, 6, 7: neg neg pos neg

def test_integer_labels_sorted_numerically_and_given_names(tok, tmp_path):
    p = write_csv(tmp_path / "n.csv", "sentence,stars",
                  ["a,10", "b,2", "c,2", "d,10", "e,2", "f,10"])
    d = describe_task(f"csv:{p.name}", text="sentence", label="stars", eval_size=1)
    assert d["label_names"] == ["2", "10"]  # numeric order, not "10" < "2"
    p2 = write_csv(tmp_path / "i.csv", "text,label", ["a,0", "b,1", "c,2", "d,0", "e,1", "f,2"])
    data = load_task(f"csv:{p2.name}", tok, eval_size=1, label_names=["neg", "neutral", "pos"])
    assert data.label_names == ["neg", "neutral", "pos"]
    # RandomState(0).permutation(6) = [5, 2, 1, 3, 0, 4]: row 5 ("f", label 2) held out
    assert [f["labels"] for f in data.eval] == [2]
    # names given in a non-sorted order decide the indices
    p3 = write_csv(tmp_path / "s.csv", "text,label", ["a,yes", "b,no", "c,yes", "d,no", "e,yes"])
    data = load_task(f"csv:{p3.name}", tok, eval_size=1, label_names=["yes", "no"])
    # RandomState(0).permutation(5) = [2, 0, 1, 3, 4]: row 2 ("yes") held out, then 0 1 3 4
    assert [f["labels"] for f in data.eval] == [0]
    assert [f["labels"] for f in data.train] == [0, 1, 1, 0]  # yes no no yes (sorted would flip them)


def test_jsonl_pairs_are_tokenised_as_pairs(tok, tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "y": "entail" if i % 2 else "contra"}
            for i in range(10)]
    p = tmp_path / "nli.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")  # blank line ok
    data = load_task(f"jsonl:{p.name}", tok, eval_size=2, text="premise", text_pair="hypothesis", label="y")
    assert data.info["pairs"] and data.label_names == ["contra", "entail"]
    assert data.info["eval_texts"] == [("p2", "h2"), ("p8", "h8")]
    assert [f["labels"] for f in data.eval] == [0, 0]  # rows 2 and 8 are even: contra
    assert 1 in data.eval[0]["token_type_ids"]  # the second text is segment 1


# --------------------------------------------------------------------------- errors
def test_missing_column_names_the_columns(tok, reviews):
    with pytest.raises(DataError, match=r"no column\(s\) \['review'\]; its columns are \['text', 'label'\]"):
        load_task(f"csv:{reviews.name}", tok, text="review")


def test_label_only_in_held_out_split(tok, tmp_path):
    labels = list(LABELS)
    labels[2] = "meh"  # row 2 is held out with split_seed 0 and eval_size 2
    p = write_csv(tmp_path / "r.csv", "text,label", [f"{t},{y}" for t, y in zip(TEXTS, labels)])
    with pytest.raises(DataError, match=r"\['meh'\] occur only in the held-out split \(\[1\] example"):
        load_task(f"csv:{p.name}", tok, eval_size=2)
    # RandomState(3).permutation(10) starts 5, 4: row 2 is trained on, and the split is fine
    assert describe_task(f"csv:{p.name}", eval_size=2, split_seed=3)["n_train"] == 8


def test_too_few_examples_for_the_split(tok, reviews):
    with pytest.raises(DataError, match="10 examples, and holding out 10 leaves none"):
        load_task(f"csv:{reviews.name}", tok, eval_size=10)
    with pytest.raises(DataError, match="train_size=9 needs more examples than the 8 left"):
        load_task(f"csv:{reviews.name}", tok, eval_size=2, train_size=9)
    with pytest.raises(DataError, match="eval_size .* or eval_fraction .*, not both"):
        load_task(f"csv:{reviews.name}", tok, eval_size=2, eval_fraction=0.5)


def test_mixed_single_and_pair_rows(tok, tmp_path):
    p = write_csv(tmp_path / "m.csv", "a,b,label", ["x,y,0", "x,,1", "x,y,0", "x,y,1", "x,,0"])
    with pytest.raises(DataError, match=r"mixed single texts and pairs: column 'b' .* rows \[1, 4\]"):
        load_task(f"csv:{p.name}", tok, text="a", text_pair="b", eval_size=1)


def test_other_row_errors(tok, tmp_path):
    p = write_csv(tmp_path / "e.csv", "text,label", ["x,a", ",b", "z,a"])
    with pytest.raises(DataError, match=r"column 'text' is empty in rows \[1\]"):
        describe_task(f"csv:{p.name}", eval_size=1)
    p = write_csv(tmp_path / "one.csv", "text,label", ["x,a", "y,a", "z,a"])
    with pytest.raises(DataError, match="at least 2 classes"):
        describe_task(f"csv:{p.name}", eval_size=1)
    p = write_csv(tmp_path / "u.csv", "text,label", ["x,a", "y,b", "z,c"])
    with pytest.raises(DataError, match=r"label\(s\) \['c'\] are not in label_names \['a', 'b'\]"):
        describe_task(f"csv:{p.name}", eval_size=1, label_names=["a", "b"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        describe_task(f"jsonl:{bad.name}")
    with pytest.raises(FileNotFoundError, match="no data file"):
        describe_task("csv:absent.csv")
    with pytest.raises(DataError, match=r"unknown option\(s\) \['colums'\]"):
        describe_task("csv:absent.csv", colums="text")


def test_names_hold_no_slash_and_dir_finds_the_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "sub" / "r.csv", "text,label", [f"{t},{y}" for t, y in zip(TEXTS, LABELS)])
    with pytest.raises(DataError, match=r"cannot hold '/'; use task 'csv:r.csv' with task_kwargs \{'dir': 'sub'\}"):
        describe_task("csv:sub/r.csv")
    with pytest.raises(DataError, match="'bigbench:arithmetic:1_digit_addition'"):
        describe_task("bigbench:arithmetic/1_digit_addition")
    assert describe_task("csv:r.csv", dir="sub")["n"] == 10
    monkeypatch.chdir(tmp_path / "sub")
    assert describe_task("csv:r.csv")["n"] == 10


def test_errors_come_before_the_model_is_built(reviews, monkeypatch):
    import dsgd.models
    from dsgd import RunConfig, train_run

    def no_model(*a, **k):
        raise AssertionError("the model must not be built for bad data")

    monkeypatch.setattr(dsgd.models, "load_model", no_model)
    cfg = RunConfig(task=f"csv:{reviews.name}", model="tiny-bert", task_kwargs={"label": "stars"}, max_steps=1)
    with pytest.raises(DataError, match="no column"):
        train_run(cfg)


# --------------------------------------------------------------- frames / datasets
def test_register_frame_by_name_and_refuse_other_rows(tok, cache):
    import pandas as pd

    df = pd.DataFrame({"review": TEXTS, "sentiment": LABELS, "unused": range(10)})
    assert register_frame("mydata", df, text="review", label="sentiment") == "mydata"
    data = load_task("mydata", tok, eval_size=2)
    assert _decoded(tok, data.eval) == ["great cast", "fine acting"] and data.label_names == ["neg", "pos"]
    assert (cache / "frames" / "mydata.csv").read_text().splitlines()[0] == "review,sentiment"
    register_frame("mydata", df, text="review", label="sentiment")  # the same rows again: fine
    with pytest.raises(DataError, match="a different frame is already registered as 'mydata'"):
        register_frame("mydata", df.iloc[:8], text="review", label="sentiment")
    register_frame("mydata", df.iloc[:8], text="review", label="sentiment", overwrite=True)
    assert describe_task("mydata", eval_size=2)["n"] == 8
    with pytest.raises(DataError, match="not a built-in task name"):
        register_frame("epistemic_reasoning", df, text="review", label="sentiment")
    with pytest.raises(DataError, match="no column"):  # checked at registration
        register_frame("other", df, label="stars")


def test_register_dataset_uses_classlabel_names(tok):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": [1 if y == "pos" else 0 for y in LABELS]},
                                    features=feats)
    register_dataset("hfdata", ds)
    data = load_task("hfdata", tok, eval_size=2)
    assert data.label_names == ["neg", "pos"] and [f["labels"] for f in data.eval] == [1, 1]


def test_save_frame_pins_the_rows(tok, tmp_path):
    import pandas as pd

    df = pd.DataFrame({"text": TEXTS, "label": LABELS})
    part = save_frame(df, Path("d") / "reviews.jsonl")
    assert part["task"] == "jsonl:reviews.jsonl" and part["task_kwargs"]["dir"] == "d"
    assert set(part["task_kwargs"]) == {"dir", "text", "label", "sha256"}
    assert describe_task(part["task"], **part["task_kwargs"])["n"] == 10
    with open(tmp_path / "d" / "reviews.jsonl", "a") as f:
        f.write('{"text": "new", "label": "pos"}\n')
    with pytest.raises(DataError, match="the file changed since the config was written"):
        load_task(part["task"], tok, **part["task_kwargs"])


# ------------------------------------------------------------------------ BIG-bench
def _bigbench(cache: Path, task: str, examples: list[dict]) -> None:
    p = cache / "bigbench" / task / "task.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"name": task, "examples": examples}))


def test_bigbench_fixed_options_are_the_classes(tok, cache):
    ex = [{"input": f"q{i}", "target_scores": {"True": float(i % 3 == 0), "False": float(i % 3 != 0)}}
          for i in range(10)]
    _bigbench(cache, "toy", ex)
    data = load_task("bigbench:toy", tok, eval_size=2)
    assert data.label_names == ["False", "True"]
    # held-out rows 2 and 8: 2 % 3 != 0 and 8 % 3 != 0 -> both "False" (index 0)
    assert _decoded(tok, data.eval) == ["q2", "q8"] and [f["labels"] for f in data.eval] == [0, 0]
    # rows 4 9 1 6 7 3 0 5 -> True iff multiple of 3: 9, 6, 3, 0
    assert [f["labels"] for f in data.train] == [0, 1, 0, 1, 0, 1, 1, 0]


def test_bigbench_varying_options_become_lettered_choices(tok, cache):
    ex = [{"input": "q0", "target_scores": {"x": 1, "y": 0, "z": 0}},
          {"input": "q1", "target_scores": {"u": 0, "v": 1, "w": 0}},
          {"input": "q2", "target_scores": {"a": 1, "b": 0, "c": 0}},
          {"input": "q3", "target_scores": {"d": 1, "e": 0, "f": 0}}]
    _bigbench(cache, "mc", ex)
    d = describe_task("bigbench:mc", eval_size=1)
    assert d["label_names"] == ["A", "B", "C"] and d["format"] == "choices" and d["pairs"]
    data = load_task("bigbench:mc", tok, eval_size=1)
    # RandomState(0).permutation(4) = [2, 3, 1, 0]: example 2 held out. Its options are shown
    # in the order RandomState(2).permutation(3) = [2, 1, 0]: c, b, a -> the answer a is (C).
    assert data.info["eval_texts"] == [("q2", "(A) c (B) b (C) a")]
    assert [f["labels"] for f in data.eval] == [2]
    # training: q3, q1, q0 shown as RandomState(3|1|0).permutation(3) = [1, 0, 2] | [0, 2, 1] |
    # [2, 1, 0]: "e d f" (d is B), "u w v" (v is C), "z y x" (x is C)
    assert [f["labels"] for f in data.train] == [1, 2, 2]


def test_bigbench_errors(cache):
    _bigbench(cache, "gen", [{"input": "2+2", "target": "4"}] * 5)
    with pytest.raises(DataError, match="not a multiple-choice task: 5 of 5 examples have no target_scores"):
        describe_task("bigbench:gen")
    _bigbench(cache, "tie", [{"input": "q", "target_scores": {"a": 1, "b": 1}}] * 3)
    with pytest.raises(DataError, match="example 0 has 2 options with the top score"):
        describe_task("bigbench:tie")
    _bigbench(cache, "ragged", [{"input": "q", "target_scores": {"a": 1, "b": 0}},
                                {"input": "r", "target_scores": {"c": 1, "d": 0, "e": 0}}])
    with pytest.raises(DataError, match="between 2 and 3 options"):
        describe_task("bigbench:ragged")
    from dsgd.data.prepare import DataMissingError

    with pytest.raises(DataMissingError, match="python -m dsgd.data.prepare --bigbench nothere"):
        describe_task("bigbench:nothere")  # no cached file, no archive in this cache
    with pytest.raises(DataError, match="a BIG-bench name is a task folder"):
        describe_task("bigbench:..:etc")


def test_bigbench_task_from_the_archive(tmp_path, cache):
    """Any task is extracted from the kept archive on first use (a hand-built archive)."""
    import io
    import tarfile

    archive = cache / "downloads" / "bigbench-1.0.0.tar.gz"
    archive.parent.mkdir(parents=True)
    doc = json.dumps({"examples": [{"input": f"s{i}", "target_scores": {"no": i % 2, "yes": 1 - i % 2}}
                                   for i in range(6)]}).encode()
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in {"bigbench-1.0.0/bigbench/benchmark_tasks/fam/sub/task.json": doc,
                           "bigbench-1.0.0/bigbench/benchmark_tasks/fam/task.json": b'{"name": "fam"}'}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    d = describe_task("bigbench:fam:sub", eval_size=1)
    assert d["label_names"] == ["no", "yes"] and d["n"] == 6
    assert (cache / "bigbench" / "fam" / "sub" / "task.json").exists()
    with pytest.raises(DataError, match="split into subtasks; name one, e.g. bigbench:fam:sub"):
        describe_task("bigbench:fam")
    with pytest.raises(ValueError, match="no JSON task 'fam/sup'.*similar names: fam/sub"):
        describe_task("bigbench:fam:sup")


# ------------------------------------------------------------------ through a sweep
def test_sweep_yaml_names_a_csv_and_trains(tmp_path, reviews):
    from dsgd.sweep import configs_from_params, run_sweep

    params = {"base": {"task": f"csv:{reviews.name}", "model": "tiny-bert", "max_steps": 2, "batch_size": 4,
                       "eval_size": 2, "task_kwargs": {"text": "text", "label": "label"}},
              "grid": {"seed": [0], "method": ["fft", "dsgd"]}}
    recs = run_sweep(configs_from_params(params), store=tmp_path / "store", progress=False)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert all(r["labels"] == [1, 1] for r in recs)  # the held-out rows 2 and 8, both "pos"


def test_own_names_count_as_known_tasks_and_check_task(reviews):
    from dsgd.data import TASKS, check_task

    assert "csv:reviews.csv" in TASKS and "bigbench:anachronisms" in TASKS
    assert "nope" not in TASKS and "csv:reviews.csv" not in list(TASKS)
    check_task("csv:reviews.csv", eval_size=2)
    check_task("epistemic_reasoning")
    with pytest.raises(DataError, match="no column"):
        check_task("csv:reviews.csv", label="stars")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        check_task("nope")


def test_save_frame_passes_split_options(tmp_path):
    import pandas as pd

    part = save_frame(pd.DataFrame({"text": TEXTS, "label": LABELS}), "r.csv", eval_fraction=0.3)
    assert part["task_kwargs"]["eval_fraction"] == 0.3 and part["task_kwargs"]["dir"] == "."
    assert describe_task(part["task"], **part["task_kwargs"])["n_eval"] == 3
