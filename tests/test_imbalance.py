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
