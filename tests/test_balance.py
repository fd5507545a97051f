"""Class-balanced tasks (dsgd.data.balance), checked on small hand-made splits."""
from __future__ import annotations

import numpy as np
import pytest

from dsgd.data import TaskData
from dsgd.data.balance import balance_classes, first_per_class, split_balance


def _data(train_labels, eval_labels):
    tr = [{"input_ids": [i], "labels": y} for i, y in enumerate(train_labels)]
    ev = [{"input_ids": [100 + i], "labels": y} for i, y in enumerate(eval_labels)]
    info = {"train_ids": list(range(len(tr))), "eval_ids": [100 + i for i in range(len(ev))],
            "eval_texts": [f"e{i}" for i in range(len(ev))], "pairs": False}
    return TaskData(name="toy", num_labels=2, train=tr, eval=ev, info=info)


def test_first_per_class_keeps_order():
    # labels 1 1 0 1 0 0 1: first two of class 0 are positions 2, 4; of class 1: 0, 1
    assert first_per_class(np.array([1, 1, 0, 1, 0, 0, 1]), 2, 2).tolist() == [0, 1, 2, 4]


def test_balanced_splits_by_hand():
    d = _data([1, 1, 0, 1, 0, 0, 1, 1], [0, 1, 1, 1, 0, 1])
    b = balance_classes(d, 4)
    # train: first two 0s (positions 2, 4) and first two 1s (0, 1)
    assert [x["input_ids"][0] for x in b.train] == [0, 1, 2, 4]
    assert b.train_labels.tolist() == [1, 1, 0, 0]
    # eval: class 0 occurs twice (positions 0, 4), so two of each: 0, 1, 2, 4
    assert [x["input_ids"][0] for x in b.eval] == [100, 101, 102, 104]
    assert b.majority_rate == 0.5
    assert b.info["train_ids"] == [0, 1, 2, 4]
    assert b.info["eval_texts"] == ["e0", "e1", "e2", "e4"]
    assert b.info["pool_train_class_counts"] == [3, 5] and b.info["eval_class_counts"] == [2, 2]


def test_train_size_none_uses_rarest_class():
    b = balance_classes(_data([1, 1, 0, 1, 0, 0, 1, 1], [0, 1]), None)
    assert np.bincount(b.train_labels).tolist() == [3, 3]


@pytest.mark.parametrize("size, match", [(5, "multiple of the 2 classes"), (8, "use train_size <= 6")])
def test_impossible_sizes_say_what_to_do(size, match):
    with pytest.raises(ValueError, match=match):
        balance_classes(_data([1, 1, 0, 1, 0, 0, 1, 1], [0, 1]), size)


def test_missing_class_and_bad_mode():
    with pytest.raises(ValueError, match="every class in both splits"):
        balance_classes(_data([1, 0], [1, 1]), None)
    with pytest.raises(ValueError, match="class_balance"):
        split_balance({"class_balance": "oversample"})
    assert split_balance({"a": 1}) == ({"a": 1}, None)


def test_regimes_names_a_balanced_run_as_its_own_task():
    from dsgd.chapters.regimes import task_label

    assert task_label({"task": "epistemic_reasoning", "task_kwargs": {}}) == "epistemic_reasoning"
    assert task_label({"task": "epistemic_reasoning", "task_kwargs": {"class_balance": "downsample"}}) \
        == "epistemic_reasoning (class-balanced)"
