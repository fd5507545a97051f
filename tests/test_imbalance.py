"""Imbalanced image sets (Cao et al., 2019): class sizes, the paper's Table 5, determinism,
balanced evaluation sets, image tasks."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dsgd.data import collate, load_task
from dsgd.data.prepare import fashion_mnist_cache, find_fashion_mnist_idx
from dsgd.data.vision import (PAPER_TABLE5_SIZES, class_counts, imbalanced_indices, paper_table5_setting,
                              synthetic_images)

torch.set_num_threads(1)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_FASHION = fashion_mnist_cache().exists() or find_fashion_mnist_idx() is not None
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION and not IN_CI,
    reason="Fashion-MNIST missing: apt-get install -y dataset-fashion-mnist (a failure in CI)")

CIFAR = {"cifar10": (10, 5000), "cifar100": (100, 500)}


def _cifar_labels(name):
    C, n = CIFAR[name]
    return np.tile(np.arange(C), n)  # interleaved, like a real data order


def test_long_tailed_counts_hand_computed():
    # 5000 * 0.01 ** (i / 9) truncated, worked out separately: 5000, 2997.4, 1796.6, 1077.2, ...
    assert class_counts("lt", 10, 100, 5000) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_step_counts_half_minority():
    assert class_counts("step", 10, 100, 5000) == [5000] * 5 + [50] * 5
    assert class_counts("step", 4, 10, 100) == [100, 100, 10, 10]


@pytest.mark.parametrize("key", sorted(PAPER_TABLE5_SIZES))
def test_paper_table5_sizes_exact(key):
    name, kind, label = key
    kind, ratio = paper_table5_setting(kind, label)
    idx = imbalanced_indices(_cifar_labels(name), kind, ratio, seed=0)
    assert len(idx) == PAPER_TABLE5_SIZES[key]
    assert len(np.unique(idx)) == len(idx)


def test_columns_labelled_50_are_not_ratio_50():
    # a true 50:1 ratio gives other sizes than the paper's "50" columns
    assert sum(class_counts("lt", 10, 50, 5000)) == 13996 != PAPER_TABLE5_SIZES[("cifar10", "lt", "50")]
    assert sum(class_counts("step", 10, 50, 5000)) == 25500 != PAPER_TABLE5_SIZES[("cifar10", "step", "50")]
    assert paper_table5_setting("lt", "50") == ("lt", 2.0)
    # round() instead of int() misses the long-tailed sizes
    assert sum(round(5000 * 0.01 ** (i / 9)) for i in range(10)) != 12406


def test_same_seed_same_subset_matches_reference_recipe():
    y = _cifar_labels("cifar10")
    a = imbalanced_indices(y, "lt", 100, seed=0)
    b = imbalanced_indices(y, "lt", 100, seed=0)
    c = imbalanced_indices(y, "lt", 100, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # Cao et al.'s gen_imbalanced_data: np.random.seed(0), shuffle each class's indices in turn
    np.random.seed(0)
    ref = []
    for cls, n in zip(range(10), class_counts("lt", 10, 100, 5000)):
        idx = np.where(y == cls)[0]
        np.random.shuffle(idx)
        ref.append(idx[:n])
    assert np.array_equal(a, np.concatenate(ref))


def test_subset_counts_per_class():
    y = _cifar_labels("cifar100")
    idx = imbalanced_indices(y, "step", 100, seed=3)
    assert np.bincount(y[idx]).tolist() == [500] * 50 + [5] * 50


def test_invalid_ratio_and_too_few_images():
    with pytest.raises(ValueError, match="ratio"):
        class_counts("lt", 10, 0.5, 100)
    with pytest.raises(ValueError, match="n_max"):
        imbalanced_indices(np.repeat(np.arange(3), 10), "lt", 10, n_max=20)


def test_synthetic_cifar_task_balanced_eval():
    td = load_task("cifar10", source="synthetic", synthetic_per_class=200, imbalance="lt",
                   imbalance_ratio=100, split_seed=0)
    assert len(td.train) == sum(class_counts("lt", 10, 100, 200))
    assert np.bincount(td.train_labels).tolist() == class_counts("lt", 10, 100, 200)
    assert len(set(np.bincount(td.eval_labels))) == 1  # balanced
    b = collate([td.train[0], td.train[-1]])
    assert b["pixel_values"].shape == (2, 3, 32, 32) and b["labels"].tolist() == [0, 9]


def test_synthetic_images_shape_and_determinism():
    x1, y1 = synthetic_images(3, 4, seed=5)
    x2, _ = synthetic_images(3, 4, seed=5)
    assert x1.shape == (12, 32, 32, 3) and x1.dtype == np.uint8 and np.array_equal(x1, x2)
    assert y1.tolist() == [0] * 4 + [1] * 4 + [2] * 4


@needs_fashion
def test_fashion_mnist_lt_task():
    td = load_task("fashion_mnist_lt", imbalance_ratio=100, n_max=500, eval_size=1000, image_size=32)
    # 500 * 0.01 ** (i / 9), truncated; 1,236 images (FEASIBILITY.md's probe)
    assert td.info["train_class_counts"] == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    assert len(td.train) == 1236
    assert np.bincount(td.eval_labels).tolist() == [100] * 10
    assert td.majority_rate == pytest.approx(0.1)
    x = td.train[0]["pixel_values"]
    assert x.shape == (3, 32, 32) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0


@needs_fashion
def test_fashion_mnist_step_task_and_seed():
    a = load_task("fashion_mnist_step", imbalance_ratio=10, n_max=100, eval_size=200, split_seed=0)
    b = load_task("fashion_mnist_step", imbalance_ratio=10, n_max=100, eval_size=200, split_seed=1)
    assert a.info["train_class_counts"] == [100] * 5 + [10] * 5
    assert a.info["train_ids"] != b.info["train_ids"]


def test_digits_fallback_is_balanced_on_eval():
    td = load_task("fashion_mnist_lt", source="digits", n_max=100, imbalance_ratio=10)
    assert td.info["train_class_counts"][0] == 100 and td.info["train_class_counts"][-1] == 10
    assert len(set(np.bincount(td.eval_labels))) == 1


@needs_fashion
def test_fashion_mnist_full_test_set_by_size():
    """eval_size=FULL_TEST_SIZE (10000) is every Fashion-MNIST test image, 1,000 per class,
    whatever the imbalance and split seed; it is the real test split, not a resample."""
    from dsgd.data.vision import FULL_TEST_SIZE, load_fashion_mnist

    _, _, x_test, y_test = load_fashion_mnist()
    assert len(y_test) == FULL_TEST_SIZE and np.bincount(y_test).tolist() == [1000] * 10
    for task, seed in (("fashion_mnist_lt", 0), ("fashion_mnist_step", 3)):
        td = load_task(task, imbalance_ratio=2.0, n_max=150, eval_size=FULL_TEST_SIZE, split_seed=seed)
        assert len(td.eval) == 10000
        assert np.bincount(td.eval_labels).tolist() == [1000] * 10
        assert td.info["eval_class_counts"] == [1000] * 10 and td.info["eval_full_split"]
        ids = np.asarray(td.info["eval_ids"])
        assert sorted(ids.tolist()) == list(range(10000))  # each test image exactly once
        assert np.array_equal(td.eval.images, x_test[ids]) and np.array_equal(td.eval_labels, y_test[ids])
    # a smaller size stays a balanced strict subset
    small = load_task("fashion_mnist_lt", n_max=150, eval_size=500)
    assert np.bincount(small.eval_labels).tolist() == [50] * 10 and not small.info["eval_full_split"]


@needs_fashion
@pytest.mark.parametrize("size, match", [(20000, "2,000 test images per class"), (10005, "not a multiple"),
                                         (5, "whole number >= the 10 classes")])
def test_fashion_mnist_impossible_eval_size_is_a_clear_error(size, match):
    with pytest.raises(ValueError, match=match) as e:
        load_task("fashion_mnist_lt", n_max=150, eval_size=size)
    assert "the test split has 10,000 images" in str(e.value) and "eval_size=10000" in str(e.value)


def test_eval_per_class_and_binomial_se():
    from dsgd.data.vision import binomial_se, eval_per_class

    y = np.repeat(np.arange(3), [4, 5, 6])
    assert eval_per_class(y, None, 3) is None and eval_per_class(y, 12, 3) == 4
    with pytest.raises(ValueError, match="eval_size=12 is the largest balanced subset$"):
        eval_per_class(y, 15, 3)  # unbalanced split: 12 is not the whole split
    assert binomial_se(0.5, 10000) == pytest.approx(0.005)
    assert binomial_se(0.5, 500) == pytest.approx(0.02236, abs=1e-5)
    with pytest.raises(ValueError):
        binomial_se(1.2, 10)


def test_split_labels_reads_image_labels_without_preprocessing():
    """The engine reads an image split's labels from ``.labels`` (no 10,000 resizes) and
    gets the same array as iterating the rows."""
    from dsgd.data.vision import ImageFeatures, ImagePreprocessor
    from dsgd.engine import split_labels

    x, y = synthetic_images(3, 4, seed=1)
    feats = ImageFeatures(x, y, ImagePreprocessor(size=8))
    got = split_labels(feats)
    assert got.dtype == np.int64 and np.array_equal(got, [int(r["labels"]) for r in feats])
    assert split_labels([{"labels": 2}, {"labels": 0}]).tolist() == [2, 0]


def test_digits_eval_size_lowered_with_a_warning_only_when_asked():
    import warnings

    with pytest.warns(UserWarning, match="eval_size lowered to 440"):
        td = load_task("fashion_mnist_lt", source="digits", n_max=100, imbalance_ratio=10, eval_size=10000)
    assert len(td.eval) == 440
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_task("fashion_mnist_lt", source="digits", n_max=100, imbalance_ratio=10,
                             eval_size=440).eval) == 440


def test_full_test_set_sweep_files():
    """results/vision/sweep_table2.yaml (Table 2's four settings x 10 seeds x FFT, the
    baselines and DSGD; FFT/DSGD first) and results/vision/search.yaml (FFT only, 3 seeds
    per candidate) expand as their headers say, on the full test set, into new stores."""
    from pathlib import Path

    from dsgd.sweep import configs_from_params, load_params

    root = Path(__file__).resolve().parents[1] / "results" / "vision"
    table = load_params(root / "sweep_table2.yaml")
    cfgs = configs_from_params(table)
    assert len(cfgs) == 240 and table["store"] == "results/vision_full"
    settings = {(c.task, c.task_kwargs["imbalance_ratio"]) for c in cfgs}
    assert settings == {(f"fashion_mnist_{k}", r) for k in ("lt", "step") for r in (100.0, 2.0)}
    assert {c.method for c in cfgs} == {"fft", "focal", "lnsr", "noisytune", "pcgrad", "dsgd"}
    assert {c.seed for c in cfgs} == set(range(42, 133, 10))
    assert {c.method for c in cfgs[:80]} == {"fft", "dsgd"} and cfgs[0].task_kwargs["imbalance_ratio"] == 100.0
    assert all(c.eval_size == 10000 and not c.eval_each_epoch for c in cfgs)
    search = load_params(root / "search.yaml")
    s = configs_from_params(search)
    assert len(s) == 30 and search["store"] == "results/vision_search"
    assert {c.method for c in s} == {"fft", "fft-nobc"} and {c.seed for c in s} == {42, 52, 62}
    assert all(c.eval_size == (440 if c.task_kwargs.get("source") == "digits" else 10000) for c in s)
