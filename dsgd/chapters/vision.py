"""Imbalanced image classification: settings, class-wise (head vs tail) accuracy, Table 2.

The paper's Table 2 fine-tunes ViT-base on CIFAR-10/100 made imbalanced as in Cao et al.
(2019): long-tailed (exponential) and step imbalance, columns labelled "100" and "50".
:func:`dsgd.data.vision.paper_table5_setting` shows that the "50" columns were built with
imbalance *factor* 0.5, i.e. ratio rho = n_max / n_min = 2. This module

* names a setting by ``"<kind>:<rho>"`` (``"lt:100"``, ``"step:2"``) and turns a list of
  settings x methods x seeds into run configs (:func:`vision_grid`), for the offline
  Fashion-MNIST tasks and for CIFAR (Hub, or synthetic arrays for tests);
* computes class-wise accuracy from a stored record (predictions and labels are kept in
  every record), and the accuracy on the *head* and *tail* classes (:func:`head_tail`):
  head = the ``C - C // 2`` classes with the most training images, tail = the ``C // 2``
  with the fewest. For step imbalance these are exactly its majority and minority
  classes; for long-tailed sets the split is at the median class size. The evaluation
  sets are balanced, so the head (tail) accuracy is the mean recall over those classes;
* holds the paper's Table 2 (reported by the paper) for comparison (:func:`paper_table2`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dsgd.chapters._common import method_variants, search_frame, search_table  # noqa: F401 (search_* re-exported)
from dsgd.config import RunConfig

KIND_NAMES = {"lt": "long-tailed", "step": "step"}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "digits": "digits"}
NUM_CLASSES = {"fashion_mnist": 10, "digits": 10, "cifar10": 10, "cifar100": 100}
DEFAULT_N_MAX = {"fashion_mnist": 500.0, "digits": None, "cifar10": 5000.0, "cifar100": 500.0}


# ============================================================================ settings
def parse_setting(setting: str) -> tuple[str, float]:
    """``"lt:100"`` -> ``("lt", 100.0)``; the number is the ratio rho = n_max / n_min."""
    try:
        kind, ratio = str(setting).split(":")
        rho = float(ratio)
    except ValueError:
        raise ValueError(f"a setting is '<kind>:<ratio>' such as 'lt:100' or 'step:2', got {setting!r}") from None
    if kind not in KIND_NAMES:
        raise ValueError(f"imbalance kind must be one of {sorted(KIND_NAMES)}, got {kind!r} in {setting!r}")
    if rho < 1:
        raise ValueError(f"the ratio in {setting!r} is n_max / n_min >= 1 (a factor 0.5 is the ratio 2)")
    return kind, rho


def paper_column(kind: str, ratio: float) -> str | None:
    """The paper's Table-2/5 column label of a setting ("100" or "50"), or None."""
    from dsgd.data.vision import paper_table5_setting

    for label in ("100", "50"):
        if paper_table5_setting(kind, label) == (kind, float(ratio)):
            return label
    return None


def setting_label(dataset: str, kind: str, ratio: float, with_dataset: bool = True) -> str:
    """A column title such as ``"CIFAR-10 long-tailed ρ=2 (paper: 50)"``."""
    col = paper_column(kind, ratio)
    r = f"{ratio:g}"
    text = f"{KIND_NAMES[kind]} ρ={r}" + (f" (paper: {col})" if col and col != r else "")
    return f"{DATASET_NAMES.get(dataset, dataset)} {text}" if with_dataset else text


def task_for(dataset: str, setting: str, *, n_max: float | None = None, source: str | None = None,
             image_size: int | None = None) -> tuple[str, dict[str, Any]]:
    """``(task name, task_kwargs)`` of a dataset and setting.

    dataset: ``"fashion_mnist"`` (offline; ``source="digits"`` for scikit-learn's digits),
    ``"cifar10"`` or ``"cifar100"`` (``source="hub"`` or ``"synthetic"``). ``n_max``:
    images of the largest class (None: the loader's default; 300-500 for a CPU-sized set).
    """
    kind, rho = parse_setting(setting)
    kw: dict[str, Any] = {"imbalance_ratio": rho}
    if n_max is not None:
        kw["n_max"] = float(n_max)
    if image_size is not None:
        kw["image_size"] = int(image_size)
    if dataset in ("fashion_mnist", "digits"):
        if dataset == "digits":
            source = "digits"
        if source not in (None, "fashion_mnist"):
            kw["source"] = source
        return f"fashion_mnist_{kind}", kw
    if dataset in ("cifar10", "cifar100"):
        kw["imbalance"] = kind
        if source not in (None, "hub"):
            kw["source"] = source
        return dataset, kw
    raise ValueError(f"dataset must be one of {sorted(NUM_CLASSES)}, got {dataset!r}")


def vision_grid(datasets: Sequence[str], settings: Sequence[str], methods: Sequence[str],
                seeds: Sequence[int], base: dict[str, Any], *, n_max: float | None = None,
                source: str | None = None, method_kwargs: dict[str, dict[str, Any]] | None = None) -> list[RunConfig]:
    """Run configs for every (dataset, setting, method, seed), in that order.

    ``base``: RunConfig fields shared by all runs (model, lr, epochs, batch_size, ...).
    ``method_kwargs``: per method name, its settings (e.g. focal's alpha and gamma).
    """
    from dsgd.sweep import expand_grid

    variants = method_variants(methods, method_kwargs)
    configs: list[RunConfig] = []
    for ds in datasets:
        for st in settings:
            task, kw = task_for(ds, st, n_max=n_max, source=source)
            b = dict(base, task=task, task_kwargs={**base.get("task_kwargs", {}), **kw})
            configs += expand_grid(b, variants=variants, seed=list(seeds))
    return configs


def chapter_grid(P: dict[str, Any]) -> list[RunConfig]:
    """The runs of the imbalanced-vision chapter from its parameters (the notebook's
    ``parameters`` cell, or a profile such as ``notebooks/params/vision/paper.yaml``):
    ``datasets, settings, methods, seeds, model, model_kwargs, source, n_max, eval_size,
    eval_each_epoch, lr, batch_size, grad_accum, epochs, method_kwargs``. The chapter reads
    only the final evaluation, so its profiles turn ``eval_each_epoch`` off (five passes
    over 10,000 test images would cost more than the training on a CPU)."""
    base = {"model": P["model"], "model_kwargs": dict(P.get("model_kwargs") or {}), "lr": float(P["lr"]),
            "epochs": float(P["epochs"]), "batch_size": int(P["batch_size"]),
            "grad_accum": int(P.get("grad_accum", 1)),
            "eval_size": None if P.get("eval_size") is None else int(P["eval_size"]),
            "eval_each_epoch": bool(P.get("eval_each_epoch", True))}
    n_max = P.get("n_max")
    return vision_grid(P["datasets"], P["settings"], P["methods"], P["seeds"], base,
                       n_max=None if n_max is None else float(n_max), source=P.get("source"),
                       method_kwargs=P.get("method_kwargs"))


def config_setting(cfg: dict[str, Any]) -> tuple[str, str, float, float | None]:
    """``(dataset, kind, ratio, n_max)`` of a stored run's config (``n_max`` None = default)."""
    task, kw = cfg["task"], cfg.get("task_kwargs") or {}
    if task.startswith("fashion_mnist_"):
        ds = "digits" if kw.get("source") == "digits" else "fashion_mnist"
        kind = task.rsplit("_", 1)[1]
        n_max = kw.get("n_max", DEFAULT_N_MAX["fashion_mnist"])
    elif task in ("cifar10", "cifar100"):
        ds, kind = task, kw.get("imbalance", "lt")
        n_max = kw.get("n_max")
    else:
        raise ValueError(f"{task!r} is not an imbalanced image task")
    if kind is None:
        raise ValueError(f"run on balanced {task!r}: no imbalance setting")
    return ds, kind, float(kw.get("imbalance_ratio", 100.0)), n_max


def train_class_counts(dataset: str, kind: str, ratio: float, n_max: float | None) -> list[int]:
    """Training images per class of a setting (:func:`dsgd.data.vision.class_counts`);
    ``n_max=None`` means the full class (Cao et al.: 5,000 for CIFAR-10, 500 for CIFAR-100)."""
    from dsgd.data.vision import CIFAR_SHAPE, class_counts

    C = NUM_CLASSES[dataset]
    if n_max is None:
        if dataset in CIFAR_SHAPE:
            n_max = CIFAR_SHAPE[dataset][1]
        elif dataset == "fashion_mnist":
            n_max = 6000
        else:
            raise ValueError(f"give n_max for {dataset!r}")
    return class_counts(kind, C, ratio, n_max)


# ============================================================================ class-wise
def classwise_accuracy(predictions: Sequence[int], labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class absent from the labels)."""
    p = np.asarray(predictions, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if p.shape != y.shape:
        raise ValueError(f"predictions and labels differ in length: {p.shape} vs {y.shape}")
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        sel = y == c
        if sel.any():
            out[c] = float((p[sel] == c).mean())
    return out


def head_classes(counts: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(head, tail)`` class indices: the ``C - C//2`` largest classes and the ``C//2``
    smallest (ties broken by class index, as the constructions order classes by size)."""
    c = np.asarray(counts)
    order = sorted(range(len(c)), key=lambda i: (-c[i], i))
    n_head = len(c) - len(c) // 2
    return sorted(order[:n_head]), sorted(order[n_head:])


def head_tail(predictions: Sequence[int], labels: Sequence[int], counts: Sequence[int]) -> dict[str, float]:
    """Mean recall over the head classes, over the tail classes, and over all classes
    (balanced accuracy); on a balanced evaluation set the head value is the accuracy on
    the head classes' images."""
    acc = classwise_accuracy(predictions, labels, len(counts))
    head, tail = head_classes(counts)
    return {"head_accuracy": float(np.nanmean(acc[head])), "tail_accuracy": float(np.nanmean(acc[tail])),
            "balanced_accuracy": float(np.nanmean(acc))}


def vision_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: ``dataset, kind, ratio, setting`` (column title), ``paper_column``,
    ``method, seed, accuracy, head_accuracy, tail_accuracy, balanced_accuracy,
    majority_rate, verdict, status, run_id, n_train, n_eval`` (training images, test images
    evaluated) and timings (``total_s``, ``s_per_step``)."""
    rows = []
    for r in records:
        cfg = r["config"]
        ds, kind, rho, n_max = config_setting(cfg)
        counts = train_class_counts(ds, kind, rho, n_max)
        ht = head_tail(r["predictions"], r["labels"], counts) if r.get("predictions") else {}
        t = r.get("timings") or {}
        rows.append({"dataset": ds, "kind": kind, "ratio": rho, "n_max": n_max,
                     "setting": setting_label(ds, kind, rho), "paper_column": paper_column(kind, rho),
                     "method": cfg["method"], "seed": cfg["seed"], "model": cfg["model"],
                     "accuracy": (r.get("metrics") or {}).get("accuracy"), **ht,
                     "majority_rate": r.get("majority_rate"), "verdict": r.get("verdict"),
                     "status": r["status"], "run_id": r["run_id"], "n_train": sum(counts),
                     "n_eval": len(r.get("labels") or []),
                     "total_s": t.get("total_s"), "s_per_step": t.get("s_per_step")})
    return pd.DataFrame(rows)


def head_tail_table(frame: pd.DataFrame, order: Sequence[str] | None = None, scale: float = 100.0) -> pd.DataFrame:
    """Mean over seeds of overall, head and tail accuracy per (setting, method), percent."""
    cols = ["accuracy", "head_accuracy", "tail_accuracy", "balanced_accuracy"]
    g = frame.groupby(["setting", "method"], sort=False)[cols].mean() * scale
    g["n"] = frame.groupby(["setting", "method"], sort=False).size()
    if order is not None:
        g = g.reindex(sorted(g.index, key=lambda k: (list(dict.fromkeys(frame["setting"])).index(k[0]),
                                                      list(order).index(k[1]) if k[1] in order else 99)))
    return g.round(2)


def classwise_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Long frame: one row per (run, class) with ``setting, method, seed, cls, n_train,
    recall``."""
    rows = []
    for r in records:
        cfg = r["config"]
        ds, kind, rho, n_max = config_setting(cfg)
        counts = train_class_counts(ds, kind, rho, n_max)
        acc = classwise_accuracy(r["predictions"], r["labels"], len(counts))
        for c, (n, a) in enumerate(zip(counts, acc)):
            rows.append({"setting": setting_label(ds, kind, rho), "method": cfg["method"],
                         "seed": cfg["seed"], "cls": c, "n_train": n, "recall": a})
    return pd.DataFrame(rows)


# ============================================================================ figures
def class_size_plot(panels: dict[str, Sequence[int]], class_names: Sequence[str] | None = None,
                    log: bool = True, ncols: int = 2):
    """Bar chart of training images per class, one panel per constructed set."""
    import math

    import matplotlib.pyplot as plt

    n = len(panels)
    nc = min(ncols, n) or 1
    nr = math.ceil(n / nc) or 1
    fig, axes = plt.subplots(nr, nc, figsize=(4.8 * nc, 2.9 * nr), squeeze=False)
    for ax, (title, counts) in zip(axes.flat, panels.items()):
        x = np.arange(len(counts))
        head, _ = head_classes(counts)
        colours = ["#1c7ed6" if i in head else "#f08c00" for i in x]
        ax.bar(x, counts, color=colours)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{title}: {sum(counts):,} images", fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("training images")
        if class_names is not None and len(class_names) == len(counts) and len(counts) <= 12:
            ax.set_xticks(x, [str(c) for c in class_names], rotation=60, ha="right", fontsize=7)
        for i, c in enumerate(counts):
            if len(counts) <= 12:
                ax.annotate(str(c), (i, c), ha="center", va="bottom", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color="#1c7ed6", label="head classes"), Patch(color="#f08c00", label="tail classes")],
               loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def classwise_plot(cw: pd.DataFrame, order: Sequence[str] | None = None, ncols: int = 2):
    """Mean recall per class (over seeds) for each method, one panel per setting, classes
    from the largest to the smallest; the training-set size is printed under each class."""
    import math

    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(cw["setting"]))
    methods = list(dict.fromkeys(cw["method"])) if order is None else [m for m in order if m in set(cw["method"])]
    nc = min(ncols, len(settings)) or 1
    nr = math.ceil(len(settings) / nc) or 1
    fig, axes = plt.subplots(nr, nc, figsize=(4.8 * nc, 3.1 * nr), squeeze=False)
    for ax, s in zip(axes.flat, settings):
        sub = cw[cw["setting"] == s]
        sizes = sub.groupby("cls")["n_train"].first()
        for m in methods:
            mean = sub[sub["method"] == m].groupby("cls")["recall"].mean()
            ax.plot(mean.index, 100 * mean.values, marker="o", ms=3, label=m)
        ax.set_xticks(sizes.index, [f"{c}\n{n}" for c, n in sizes.items()], fontsize=6)
        ax.set_ylim(-3, 103)
        ax.set_title(s, fontsize=9)
        ax.set_xlabel("class / training images")
        ax.set_ylabel("recall (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(settings):]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ============================================================================ the paper
# Table 2 of the paper (reported by the paper): ViT-base, mean ± std accuracy (%) over
# 10 seeds. Columns in the printed order: (dataset, kind, label) with the paper's labels.
PAPER_TABLE2_COLUMNS = [("cifar10", "lt", "100"), ("cifar10", "lt", "50"), ("cifar10", "step", "100"),
                        ("cifar10", "step", "50"), ("cifar100", "lt", "100"), ("cifar100", "lt", "50"),
                        ("cifar100", "step", "100"), ("cifar100", "step", "50")]
PAPER_TABLE2: dict[str, list[tuple[float, float]]] = {
    "fft": [(88.47, 1.77), (96.46, 0.44), (83.27, 2.13), (96.09, 0.51), (69.55, 2.71), (85.53, 0.48),
            (56.73, 1.58), (84.30, 0.48)],
    "focal": [(89.32, 0.68), (95.29, 3.58), (70.31, 14.22), (97.15, 0.57), (64.68, 10.70), (87.20, 2.21),
              (57.19, 2.49), (86.60, 4.17)],
    "lnsr": [(88.05, 1.58), (97.27, 0.14), (84.03, 0.98), (96.90, 0.25), (64.90, 1.29), (87.90, 0.28),
             (57.26, 0.78), (87.72, 0.22)],
    "noisytune": [(87.88, 1.67), (88.94, 9.39), (68.86, 15.40), (96.80, 0.24), (68.05, 3.75), (87.89, 0.24),
                  (57.17, 1.11), (87.89, 0.24)],
    "pcgrad": [(86.63, 2.44), (96.85, 0.19), (82.05, 3.57), (96.84, 0.15), (68.13, 1.47), (87.02, 0.37),
               (50.01, 1.18), (87.24, 0.37)],
    "dsgd": [(89.23, 0.95), (97.15, 0.17), (84.18, 0.66), (96.95, 0.42), (70.33, 1.18), (87.72, 0.31),
             (59.91, 0.44), (87.93, 0.37)],
}


def paper_table2(numbers: bool = False) -> pd.DataFrame:
    """The paper's Table 2 (reported by the paper), columns titled with the setting each
    column really holds (the "50" columns are rho = 2). ``numbers=True``: a frame with
    ``(column, "mean")`` / ``(column, "std")`` floats instead of ``"mean ± std"`` strings."""
    from dsgd.data.vision import paper_table5_setting

    titles = []
    for ds, kind, label in PAPER_TABLE2_COLUMNS:
        _, rho = paper_table5_setting(kind, label)
        titles.append(setting_label(ds, kind, rho))
    if numbers:
        data = {}
        for j, t in enumerate(titles):
            data[(t, "mean")] = [PAPER_TABLE2[m][j][0] for m in PAPER_TABLE2]
            data[(t, "std")] = [PAPER_TABLE2[m][j][1] for m in PAPER_TABLE2]
        df = pd.DataFrame(data, index=pd.Index(list(PAPER_TABLE2), name="method"))
    else:
        df = pd.DataFrame({t: [f"{PAPER_TABLE2[m][j][0]:.2f} ± {PAPER_TABLE2[m][j][1]:.2f}" for m in PAPER_TABLE2]
                           for j, t in enumerate(titles)}, index=pd.Index(list(PAPER_TABLE2), name="method"))
    df.attrs["source"] = "reported by the paper (Table 2, ViT-base, 10 seeds)"
    return df


def table5_check() -> pd.DataFrame:
    """The paper's Table-5 training-set sizes (reported by the paper) next to the sizes
    our constructions give for the setting each column label stands for, and for a
    literal reading of the label as the ratio."""
    from dsgd.data.vision import CIFAR_SHAPE, PAPER_TABLE5_SIZES, class_counts, paper_table5_setting

    rows = []
    for (ds, kind, label), size in PAPER_TABLE5_SIZES.items():
        C, n_max = CIFAR_SHAPE[ds]
        _, rho = paper_table5_setting(kind, label)
        ours = sum(class_counts(kind, C, rho, n_max))
        literal = sum(class_counts(kind, C, float(label), n_max))
        rows.append({"dataset": DATASET_NAMES[ds], "imbalance": KIND_NAMES[kind], "paper's label": label,
                     "size reported by the paper": size, "ρ it stands for": rho,
                     "our size at that ρ": ours, f"our size at ρ = label": literal,
                     "match": ours == size})
    return pd.DataFrame(rows)


def paper_comparison(ours: pd.DataFrame, frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """FFT against DSGD per imbalance setting: every column of the paper's Table 2 (reported
    by the paper; CIFAR-10 and CIFAR-100) beside our setting of the same kind and ratio.

    ``ours``: a :func:`dsgd.report.table1` of ``frame`` (settings as columns); ``source``
    names it. Returns the frame (index: setting without the data set, source) and counts:
    ``paper_up`` / ``paper_std_down`` (columns where the paper's DSGD mean is above FFT's /
    its STD below) for all 8 columns and for the 4 at ratio 100 (``..._100``), and
    ``ours_up`` / ``ours_n`` over our settings."""
    from dsgd.data.vision import paper_table5_setting

    def row(setting: str, src: str, f: tuple[float, float], d: tuple[float, float]) -> dict[str, Any]:
        return {"setting": setting, "source": src, "FFT": f"{f[0]:.2f} ± {f[1]:.2f}",
                "DSGD": f"{d[0]:.2f} ± {d[1]:.2f}", "DSGD − FFT (mean)": round(d[0] - f[0], 2),
                "std ratio DSGD/FFT": round(d[1] / f[1], 2) if f[1] > 0 else float("nan")}

    ours_settings = {}
    for label, g in frame.groupby("setting", sort=False):
        ours_settings[(g["kind"].iloc[0], float(g["ratio"].iloc[0]))] = label
    rows, counts = [], {"paper_up": 0, "paper_std_down": 0, "paper_up_100": 0, "paper_std_down_100": 0,
                        "paper_n": 0, "paper_n_100": 0, "ours_up": 0, "ours_n": 0}
    for kind in ("lt", "step"):
        for label in ("100", "50"):
            _, rho = paper_table5_setting(kind, label)
            name = setting_label("", kind, rho, with_dataset=False)
            for j, (ds, k, lab) in enumerate(PAPER_TABLE2_COLUMNS):
                if (k, lab) != (kind, label):
                    continue
                f, d = PAPER_TABLE2["fft"][j], PAPER_TABLE2["dsgd"][j]
                rows.append(row(name, f"{DATASET_NAMES[ds]}, reported by the paper", f, d))
                for suffix in ("", "_100") if label == "100" else ("",):
                    counts["paper_n" + suffix] += 1
                    counts["paper_up" + suffix] += d[0] > f[0]
                    counts["paper_std_down" + suffix] += d[1] < f[1]
            s = ours_settings.get((kind, rho))
            if s is not None and {"fft", "dsgd"} <= set(ours.index):
                f = (ours.loc["fft", (s, "mean")], ours.loc["fft", (s, "std")])
                d = (ours.loc["dsgd", (s, "mean")], ours.loc["dsgd", (s, "std")])
                rows.append(row(name, f"{DATASET_NAMES.get(frame['dataset'].iloc[0], '')}, {source}", f, d))
                counts["ours_n"] += 1
                counts["ours_up"] += d[0] > f[0]
    return pd.DataFrame(rows).set_index(["setting", "source"]), counts


# =========================================================================== page helpers
METHOD_ORDER = ["fft", "focal", "lnsr", "noisytune", "pcgrad", "swa", "dsgd"]  # rows of the tables


def put_numbers(R: Any, prefix: str, frame: pd.DataFrame, table: pd.DataFrame,
                settings: Sequence[str]) -> None:
    """Glue one result set's headline numbers, keyed by the setting's position ``i`` in
    ``settings`` (so the text reads the same for every profile): FFT's and DSGD's mean,
    std, head and tail accuracy (``<prefix>_s<i>_<method>_acc|std|head|tail``), DSGD
    minus FFT (``<prefix>_s<i>_diff``), the number of runs and of failed runs."""
    ht = frame.groupby(["setting", "method"])[["head_accuracy", "tail_accuracy"]].mean() * 100
    for i, s in enumerate(settings):
        for m in ("fft", "dsgd"):
            R.put(f"{prefix}_s{i}_{m}_acc", table.loc[m, (s, "mean")], ".2f")
            R.put_number(f"{prefix}_s{i}_{m}_std", float(table.loc[m, (s, "std")]), ".2f")  # one seed: no std
            R.put(f"{prefix}_s{i}_{m}_head", ht.loc[(s, m), "head_accuracy"], ".1f")
            R.put(f"{prefix}_s{i}_{m}_tail", ht.loc[(s, m), "tail_accuracy"], ".1f")
        R.put(f"{prefix}_s{i}_diff", table.loc["dsgd", (s, "mean")] - table.loc["fft", (s, "mean")], "+.2f")
    R.put(f"{prefix}_n_runs", len(frame))
    R.put(f"{prefix}_n_failed", int(table[("runs", "failed")].sum()))


# ------------------------------------------------------------------ spread and the search
STD_TARGET = 1.5  # points: the smallest FFT seed STD of the paper's Table 2 at ratio 100 (1.58)


def std_interval(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap (BCa) interval of the seed STD: :func:`dsgd.stats.std_ci`."""
    from dsgd.stats import std_ci

    return std_ci(values, level, seed)


def spread_table(frame: pd.DataFrame, n_eval: int | None, order: Sequence[str] | None = None,
                 scale: float = 100.0) -> pd.DataFrame:
    """Per setting and method: seeds, the seed STD of the accuracy (points) with its
    bootstrap 95 % interval, and one run's binomial standard error on ``n_eval`` test
    images at the group's mean accuracy (:func:`dsgd.data.vision.binomial_se`): a seed
    spread well above it is not sampling noise of the test set."""
    from dsgd.data.vision import binomial_se

    rows = []
    for s in dict.fromkeys(frame["setting"]):
        sub = frame[frame["setting"] == s]
        methods = [m for m in (order or []) if m in set(sub["method"])] + \
                  [m for m in dict.fromkeys(sub["method"]) if m not in (order or [])]
        for m in methods:
            v = scale * sub.loc[sub["method"] == m, "accuracy"].to_numpy(float)
            lo, hi = std_interval(v)
            se = scale * binomial_se(float(np.mean(v)) / scale, int(n_eval)) if n_eval else float("nan")
            rows.append({"setting": s, "method": m, "seeds": int(v.size),
                         "std": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"),
                         "std 95% lo": lo, "std 95% hi": hi, "binomial SE of one run": se})
    return pd.DataFrame(rows).set_index(["setting", "method"])


def search_sentence(table: pd.DataFrame, confirmed: pd.DataFrame | None = None, target: float = STD_TARGET) -> str:
    """What the search found, in words chosen from the numbers: how many candidates reach
    the target STD or fail on a seed, and whether the reference's 3-seed lead holds in
    the stored set (``confirmed``: :func:`spread_table` of the main stored set, FFT rows)."""
    if table is None or not len(table):
        return "No search runs are stored."
    leads = table[table["lead"]]
    n = len(table)
    out = (f"{len(leads)} of {n} candidates reach a {int(table['seeds'].max())}-seed FFT standard deviation "
           f"of {target:g} points or fail on a seed")
    ref = table.loc["reference"] if "reference" in table.index else None
    if ref is not None:
        out += (f"; the reference setting {'is' if ref['lead'] else 'is not'} among them "
                f"(STD {ref['std']:.1f} points over {int(ref['seeds'])} seeds)")
    out += "."
    if confirmed is not None and len(confirmed):
        parts = []
        for (s, m), row in confirmed.iterrows():
            if m != "fft" or not np.isfinite(row["std"]):
                continue
            lo, hi, t = row["std 95% lo"], row["std 95% hi"], f"{target:g}"
            reach = (f"above {t} with its whole interval" if lo >= target else
                     f"below {t} with its whole interval" if hi < target else
                     f"at or above {t}, though its interval reaches below" if row["std"] >= target else
                     f"below {t}, though its interval reaches above")
            parts.append(f"{s}: {row['std']:.1f} points [{lo:.1f}, {hi:.1f}] over {int(row['seeds'])} seeds, "
                         f"{reach} (binomial SE of one run {row['binomial SE of one run']:.1f})")
        if parts:
            out += " In the stored Table-2 set, FFT's seed STD is " + "; ".join(parts) + "."
    return out


# ------------------------------------------------------------------ same seed, other processor
_CAP_KEYS = ("setting", "run_id", "task", "method", "seed", "stored_accuracy", "spread", "sd", "stored_matched")


def _book_path(path: str | os.PathLike) -> Path:
    """``path`` as given when absolute, else relative to the book's root (like the stored sets)."""
    from dsgd.book import repo_root

    return Path(path) if Path(path).is_absolute() else repo_root() / path


def capability_frame(path: str | os.PathLike) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The stored output of ``benchmarks/cpu_capability.py`` as one row per run
    (:func:`dsgd.reproduce.capability_table`, accuracies in points, with the run's
    ``setting`` and ``method``) and its header (command, machine, versions); ``(None, {})``
    when the file is absent or ``path`` is empty. A relative path is relative to the book's root."""
    import json

    from dsgd.reproduce import capability_table

    p = _book_path(path) if path else None
    if p is None or not p.is_file():
        return None, {}
    data = json.loads(p.read_text())
    t = capability_table(data["rows"])
    if not len(t):
        return None, data
    settings = {r["run_id"]: setting_label(*config_setting({"task": r["task"], "task_kwargs": r["task_kwargs"]})[:3])
                for r in data["rows"]}
    t.insert(0, "setting", t["run_id"].map(settings))
    caps = [c for c in t.columns if c not in _CAP_KEYS]
    for c in ["stored_accuracy", "spread", "sd", *caps]:
        t[c] = 100 * t[c]
    return t, {k: v for k, v in data.items() if k != "rows"}


def capability_sentence(table: pd.DataFrame | None, header: dict[str, Any], spread: pd.DataFrame | None) -> str:
    """What the instruction-set check measured, in words chosen from the numbers: the
    range of one run's accuracy over the instruction sets, their standard deviation (median
    over the runs) against FFT's seed STD and its bootstrap interval in the same settings
    (``spread``: :func:`spread_table`), and how many stored values any of them reproduced."""
    if table is None or not len(table):
        return ("This page read no instruction-set check (`benchmarks/cpu_capability.py`; the "
                "`capability_check` parameter names its file).")
    caps = [c for c in table.columns if c not in _CAP_KEYS]
    n, big, sd = len(table), float(table["spread"].max()), float(table["sd"].median())
    matched = int(table["stored_matched"].sum())
    text = (f"On one machine ({header.get('cpu_model') or 'CPU not named'}), {n} stored runs recomputed with "
            f"torch restricted to each of {len(caps)} instruction sets ({', '.join(caps)}) give accuracies that "
            f"differ by up to {big:.1f} points within one run; their standard deviation over the instruction sets "
            f"is {sd:.1f} points (median over the runs).")
    fft = None
    if spread is not None and len(spread) and "fft" in spread.index.get_level_values("method"):
        fft = spread.xs("fft", level="method")
        fft = fft[fft.index.isin(list(table["setting"])) & np.isfinite(fft["std"])]
    if fft is not None and len(fft):
        lo = float(fft["std 95% lo"].min()) if "std 95% lo" in fft else float(fft["std"].min())
        hi = float(fft["std 95% hi"].max()) if "std 95% hi" in fft else float(fft["std"].max())
        rel = ("by more than a change of seed does" if sd > hi else "by less than a change of seed does"
               if sd < lo else "about as much as a change of seed does")
        text += (f" FFT's seed standard deviation in the same settings is {fft['std'].min():.1f}–"
                 f"{fft['std'].max():.1f} points (95 % intervals together {lo:.1f}–{hi:.1f}): a change of "
                 f"processor moves a run {rel}.")
    text += (f" {matched} of the {n} stored values is reproduced within half a point by any of them"
             if matched == 1 else f" {matched} of the {n} stored values are reproduced within half a point by any of them")
    text += (": the stored runs were made on a processor whose kernels round differently from all of these."
             if matched == 0 else ".")
    return text


def processor_check(build: Sequence[dict[str, Any]], path: str | os.PathLike,
                    stored: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """The build's runs against the instruction-set check's recomputations of the same
    runs (``benchmarks/cpu_capability.py``'s file at ``path``) made on the build's own
    processor — the comparison that must agree if the code is deterministic — as a table
    (run, this build, the check, difference, agreement within half a point) and a
    sentence. Runs are matched through the stored records' training ids."""
    import json

    from dsgd.reproduce import processor, reproduces

    def as_record(r: dict[str, Any]) -> dict[str, Any]:  # a row of the check, shaped like a run record
        return {"status": "ok", "verdict": r.get("verdict"), "metrics": {"accuracy": r.get("accuracy")},
                "machine": {"device": "cpu", "cpu_model": r.get("cpu_model"), "cpu_capability": r.get("capability")}}

    p = _book_path(path) if path else None
    cols = ["run_id", "this build", "check", "difference", "agrees"]
    if p is None or not p.is_file() or not build:
        return pd.DataFrame(columns=cols), "No instruction-set check is stored to compare this build's runs with."
    data = json.loads(p.read_text())
    train_id = {r["run_id"]: RunConfig.from_dict(r["config"]).training_id() for r in stored}
    here = processor(build[0])
    ref = {train_id.get(r["run_id"]): as_record(r) for r in data["rows"] if processor(as_record(r)) == here}
    rows = []
    for rec in build:
        r = ref.get(RunConfig.from_dict(rec["config"]).training_id())
        if r is None:
            continue
        ok, b, a, diff = reproduces(r, rec)
        rows.append({"run_id": rec["run_id"], "this build": 100 * a, "check": 100 * b, "difference": 100 * diff,
                     "agrees": ok})
    t = pd.DataFrame(rows, columns=cols)
    if not len(t):
        made_on = sorted({str(processor(as_record(r))) for r in data["rows"]})
        return t, (f"This build ran on {here or 'a processor it could not name'}; the instruction-set check was "
                   f"made on {', '.join(made_on)}, so none of its runs can be compared with this build's number "
                   "for number.")
    ok = int(t["agrees"].sum())
    return t, (f"This build ran on {here}, a processor on which the instruction-set check also recomputed "
               f"{len(t)} of this build's runs: {ok} of {len(t)} agree within half a point with the same verdict "
               f"(largest difference {float(t['difference'].max()):.2f} points)"
               + ("." if ok == len(t) else ", so on this processor the runs are not reproducible: that is a "
                  "defect to report, not a difference of hardware."))


def pair_sessions_sentence(records: Sequence[dict[str, Any]], a: str = "fft", b: str = "dsgd") -> str:
    """How many of the (setting, seed) pairs of methods ``a`` and ``b`` in a stored set were
    stored by one sweep session (so on one machine), in a sentence."""
    by: dict[tuple[Any, ...], dict[str, str]] = {}
    for r in records:
        cfg = r["config"]
        if cfg["method"] in (a, b):
            key = (*config_setting(cfg)[:3], cfg["seed"])
            by.setdefault(key, {})[cfg["method"]] = r.get("session") or ""
    pairs = [v for v in by.values() if a in v and b in v]
    if not pairs:
        return ""
    same = sum(bool(v[a]) and v[a] == v[b] for v in pairs)
    n_sessions = len({s for v in pairs for s in v.values()})
    return (f"Of the {len(pairs)} seeds on which both {METHOD_NAMES.get(a, a)} and {METHOD_NAMES.get(b, b)} are "
            f"stored, {same} have both runs from the same sweep session, hence the same machine "
            f"({n_sessions} sessions in all).")


# ------------------------------------------------------------------ findings page
def chapter_findings(stored: pd.DataFrame | None, verify_passed: str, n_eval: Any) -> list[dict[str, Any]]:
    """The vision chapter's rows of the findings page from the stored frame
    (:func:`vision_frame`): DSGD − FFT accuracy per setting on shared seeds (paired t
    interval, Wilcoxon p), and whether any FFT run failed (the paper's stability claim
    needs failures or spread to act on). p-values are Holm-adjusted across the settings, and
    a direction is claimed only where the adjusted p is below 0.05."""
    from dsgd import stats
    from dsgd.diagnostics import failure_kind

    if stored is None or not len(stored):
        return []
    # paired accuracy differences per setting, Holm-adjusted across the settings
    acc = []
    for s in dict.fromkeys(stored["setting"]):
        sub = stored[stored["setting"] == s]
        f = sub[sub["method"] == "fft"].set_index("seed")["accuracy"]
        d = sub[sub["method"] == "dsgd"].set_index("seed")["accuracy"]
        seeds = sorted(set(f.index) & set(d.index))
        if len(seeds) < 2:
            continue
        acc.append((s, len(seeds), stats.paired_difference(100 * d.loc[seeds].to_numpy(), 100 * f.loc[seeds].to_numpy())))
    adj = stats.holm([res["p_value"] for *_, res in acc]) if acc else []
    parts = [f"{s}: DSGD − FFT {res['mean']:+.1f} points [{res['lo']:+.1f}, {res['hi']:+.1f}] on {n} seeds "
             f"(Wilcoxon {stats.p_text(res['p_value'])}, Holm {stats.p_text(a)})" for (s, n, res), a in zip(acc, adj)]
    sig_up = sum(a < 0.05 and res["mean"] > 0 for (_, _, res), a in zip(acc, adj))
    sig_down = sum(a < 0.05 and res["mean"] < 0 for (_, _, res), a in zip(acc, adj))
    tested = len(acc)
    fft_fail = int(sum(failure_kind(v) is not None for v in stored[stored["method"] == "fft"]["verdict"]))
    n_fft = int((stored["method"] == "fft").sum())
    settings = (", ".join(setting_label("", k, r, with_dataset=False)
                          for k, r in dict.fromkeys(zip(stored["kind"], stored["ratio"])))
                if {"kind", "ratio"} <= set(stored.columns) else ", ".join(dict.fromkeys(stored["setting"])))
    setting = (f"EfficientNet-Lite0 on imbalanced Fashion-MNIST ({settings}), {n_eval} held-out images per "
               f"run, stored runs; re-verified in this build: {verify_passed}")
    rows = []
    if tested:
        verdict = ("supported" if sig_up == tested else "contradicted" if sig_down else "not resolved")
        rows.append(dict(key="table2_accuracy", source="paper",
                         claim="Table 2: DSGD raises accuracy over FFT on imbalanced image classification.",
                         measured="; ".join(parts) + ".", setting=setting, verdict=verdict, section=""))
    from dsgd.chapters._common import levene_p
    from dsgd.data.vision import binomial_se

    lev = []
    for s in dict.fromkeys(stored["setting"]):
        sub = stored[stored["setting"] == s]
        f = 100 * sub[sub["method"] == "fft"]["accuracy"].to_numpy(float)
        d = 100 * sub[sub["method"] == "dsgd"]["accuracy"].to_numpy(float)
        p = levene_p(d, f)  # NaN: too few runs or a group at one value, no test
        if np.isfinite(p):
            lev.append((s, f, d, p))
    lev_adj = stats.holm([p for *_, p in lev]) if lev else []
    lev_parts, lev_sig_down, lev_sig_up = [], 0, 0
    for (s, f, d, p), a in zip(lev, lev_adj):
        lev_sig_down += a < 0.05 and d.std(ddof=1) < f.std(ddof=1)
        lev_sig_up += a < 0.05 and d.std(ddof=1) > f.std(ddof=1)
        acc_f = f.mean() / 100
        se = 100 * binomial_se(acc_f, int(n_eval)) if isinstance(n_eval, (int, float)) and n_eval else float("nan")
        lev_parts.append(f"{s}: std DSGD {d.std(ddof=1):.1f} vs FFT {f.std(ddof=1):.1f} points on {len(d)} and "
                         f"{len(f)} seeds (Levene {stats.p_text(p)}, Holm {stats.p_text(a)}; one run's binomial "
                         f"standard error ≈ {se:.1f} points)")
    if lev:
        rows.append(dict(key="table2_stability", source="paper",
                         claim="Table 2: DSGD lowers the seed spread of FFT on imbalanced images.",
                         measured="; ".join(lev_parts) + f"; FFT failed on {fft_fail} of {n_fft} stored runs.",
                         setting=setting,
                         verdict=("supported" if lev_sig_down == len(lev) else "contradicted" if lev_sig_up
                                  else "not resolved"), section=""))
    return rows


# ------------------------------------------------------------------ the page's top and bottom
METHOD_NAMES = {"fft": "FFT", "dsgd": "DSGD", "focal": "focal loss", "lnsr": "LNSR", "noisytune": "NoisyTune",
                "pcgrad": "PCGrad", "swa": "SWA"}


def headline_figure(stored_set: str, order: Sequence[str] | None = None):
    """The page's headline: every run of the stored set, one dot per seed and method per
    setting, coloured by verdict, with the majority-class rate (on these balanced
    evaluation sets 10 %). Returns the figure, or None (printing why) without a stored set."""
    from dsgd.chapters._common import in_order, stored_records_or_note
    from dsgd.report import strip_plot

    records = stored_records_or_note(stored_set)
    if not records:
        return None
    df = vision_frame(records)
    methods = in_order(df["method"], order or METHOD_ORDER)
    fig = strip_plot(df, group_by="setting", order=methods, ncols=2, figsize_per=(5.2, 3.6))
    fig.suptitle(f"Test accuracy of every stored run ({df['seed'].nunique()} seeds per method)", y=1.02)
    return fig


def what_we_found(frame: pd.DataFrame, source: str, n_eval: Any = None) -> dict[str, str]:
    """The closing bullets from one result set (``frame``: :func:`vision_frame` of the
    stored set, or of the build's runs without one; ``source`` says which): DSGD against
    FFT per setting in accuracy and in tail-class accuracy (paired over shared seeds, t
    interval, Wilcoxon), failed runs with exact intervals, the spread over seeds (Levene,
    not run for a group that ended at one value) beside the binomial standard error of one
    run, and the method with the highest mean accuracy against FFT. With several settings
    the p-values of each kind of comparison are Holm-adjusted across them and the direction
    words follow the adjusted values."""
    from dsgd import stats
    from dsgd.chapters._common import compare_values, failure_text, levene_p, spread_sentence, values_sentence
    from dsgd.data.vision import binomial_se
    from dsgd.diagnostics import failure_kind

    keys = ("wwf_accuracy", "wwf_tail", "wwf_failures", "wwf_spread", "wwf_best")
    if frame is None or not len(frame) or not {"fft", "dsgd"} <= set(frame["method"]):
        return {"wwf_source": source, **{k: "Not measured: no FFT and DSGD runs in this profile." for k in keys}}
    settings = list(dict.fromkeys(frame["setting"]))

    def by_seed(m: str, s: str | None, col: str) -> pd.Series:
        g = frame[(frame["method"] == m) & ((frame["setting"] == s) if s else True)]
        if s is None:  # the mean over settings, per seed
            return g.groupby("seed")[col].mean()
        return pd.Series(g[col].to_numpy(float), index=g["seed"].to_numpy())

    def holm_over_settings(col: str) -> dict[str, float]:
        """Holm-adjusted Wilcoxon p of DSGD vs FFT per setting (only with several tested)."""
        raw = {s: compare_values(by_seed("dsgd", s, col), by_seed("fft", s, col))["p"] for s in settings}
        tested = [s for s in settings if np.isfinite(raw[s])]
        return dict(zip(tested, stats.holm([raw[s] for s in tested]))) if len(tested) > 1 else {}

    adj_acc, adj_tail = holm_over_settings("accuracy"), holm_over_settings("tail_accuracy")
    acc, tail = [], []
    for s in settings:
        acc.append(f"{s}: " + values_sentence("DSGD", by_seed("dsgd", s, "accuracy"), "FFT",
                                              by_seed("fft", s, "accuracy"), adjusted=adj_acc.get(s)))
        tail.append(f"{s}: FFT {100 * by_seed('fft', s, 'tail_accuracy').mean():.1f} %, DSGD "
                    f"{100 * by_seed('dsgd', s, 'tail_accuracy').mean():.1f} %; "
                    + values_sentence("DSGD", by_seed("dsgd", s, "tail_accuracy"), "FFT",
                                      by_seed("fft", s, "tail_accuracy"), what="tail-class accuracy",
                                      adjusted=adj_tail.get(s)))
    out = {"wwf_source": source, "wwf_accuracy": " ".join(acc), "wwf_tail": " ".join(tail)}
    failed = {m: [failure_kind(v) is not None for v in frame[frame["method"] == m]["verdict"]]
              for m in dict.fromkeys(frame["method"])}
    others = [m for m in failed if m not in ("fft", "dsgd")]
    out["wwf_failures"] = (f"Failed runs (collapsed or degenerate: no better than the majority class): FFT {failure_text(failed['fft'])}, "
                           f"DSGD {failure_text(failed['dsgd'])}"
                           + (f", the other methods {failure_text(sum((failed[m] for m in others), []))}" if others else "")
                           + (". With no failed FFT run there is no seed-induced failure here for DSGD to remove."
                              if not any(failed["fft"]) else "."))
    groups = {s: (100 * by_seed("dsgd", s, "accuracy").dropna().to_numpy(float),
                  100 * by_seed("fft", s, "accuracy").dropna().to_numpy(float)) for s in settings}
    raw = {s: levene_p(d, f) for s, (d, f) in groups.items()}
    tested = [s for s in settings if np.isfinite(raw[s])]
    adjusted = dict(zip(tested, stats.holm([raw[s] for s in tested]))) if len(tested) > 1 else {}
    spread = []
    for s in settings:
        d, f = groups[s]
        text = spread_sentence(s, d, f, adjusted=adjusted.get(s))
        if len(f) >= 2 and len(d) >= 2 and isinstance(n_eval, (int, float)) and n_eval:
            text += f"; one run's binomial standard error ≈ {100 * binomial_se(f.mean() / 100, int(n_eval)):.1f} points"
        spread.append(text)
    out["wwf_spread"] = "; ".join(spread) + "."
    out["wwf_best"] = best_sentence(frame, settings, by_seed)
    return out


def best_sentence(frame: pd.DataFrame, settings: Sequence[str], by_seed: Any) -> str:
    """The method with the highest mean accuracy, over the settings and in each one, set
    against FFT on shared seeds (Holm over the per-setting tests). Over the settings only
    methods with at least two runs in every setting compete (a method run in the easy
    settings alone would look best); in a setting, those with two runs there. A tie with
    FFT is no gain: FFT keeps it. ``by_seed(method, setting or None, column)`` is
    :func:`what_we_found`'s accessor (None: the mean over settings, per seed)."""
    from dsgd import stats
    from dsgd.chapters._common import compare_values, values_sentence

    def n_runs(m: str, s: str) -> int:
        return int(((frame["method"] == m) & (frame["setting"] == s)).sum())

    def pick(means: pd.Series) -> str:
        return "fft" if "fft" in means and means["fft"] >= means.max() - 1e-12 else str(means.idxmax())

    methods = list(dict.fromkeys(frame["method"]))
    full = [m for m in methods if all(n_runs(m, s) >= 2 for s in settings)]
    if "fft" not in full:
        return "No comparison of methods: FFT lacks two runs in some setting."
    means = pd.Series({m: by_seed(m, None, "accuracy").mean() for m in full})
    best = pick(means)
    name = METHOD_NAMES.get(best, best)
    left = [METHOD_NAMES.get(m, m) for m in methods if m not in full]
    text = (f"Highest mean accuracy over the settings: {name} ({100 * means[best]:.1f} %"
            + (f", FFT {100 * means['fft']:.1f} %)" if best != "fft" else ")")
            + (f", among the {len(full)} methods with runs in every setting"
               f" ({', '.join(left)}: not yet in every setting)" if left else ""))
    if best not in ("fft", "dsgd"):
        text += ". " + values_sentence(name, by_seed(best, None, "accuracy"), "FFT", by_seed("fft", None, "accuracy"),
                                       what="accuracy (mean over the settings)")
    else:
        text += "; DSGD against FFT, setting by setting, is the first point above." if best == "dsgd" else "."
    if len(settings) < 2:
        return text
    picks = {}
    for s in settings:
        here = [m for m in methods if n_runs(m, s) >= 2]
        if "fft" in here:
            picks[s] = pick(pd.Series({m: by_seed(m, s, "accuracy").mean() for m in here}))
    tests = {s: compare_values(by_seed(m, s, "accuracy"), by_seed("fft", s, "accuracy"))["p"]
             for s, m in picks.items() if m != "fft"}
    adj = dict(zip(tests, stats.holm(list(tests.values()))))
    parts = []
    for s, m in picks.items():
        nm = METHOD_NAMES.get(m, m)
        mean = 100 * by_seed(m, s, "accuracy").mean()
        if m == "fft":
            parts.append(f"{s}: FFT ({mean:.1f} %)")
        else:
            parts.append(f"{s}: {nm} ({mean:.1f} %) — " + values_sentence(
                nm, by_seed(m, s, "accuracy"), "FFT", by_seed("fft", s, "accuracy"), adjusted=adj.get(s)).rstrip("."))
    return text + " Highest mean in each setting: " + "; ".join(parts) + "."


def complete_methods(frame: pd.DataFrame, min_runs: int = 2) -> list[str]:
    """The methods with at least ``min_runs`` runs in every setting of ``frame`` (those whose
    means over the settings can be compared), in table order."""
    from dsgd.chapters._common import in_order

    settings = list(dict.fromkeys(frame["setting"]))
    n = frame.groupby(["method", "setting"]).size()
    return [m for m in in_order(frame["method"], METHOD_ORDER)
            if all(n.get((m, st), 0) >= min_runs for st in settings)]


def stored_summary(stored: pd.DataFrame, table: pd.DataFrame) -> dict[str, str]:
    """The stored set's coverage and its best and steadiest method, for the page's text:
    ``stored_n_seeds`` (seeds per method, the fewest over the settings, and which methods
    are not yet stored in every setting), ``stored_best_method`` (highest mean of the
    per-setting means) and ``stored_steadiest_method`` (smallest mean seed STD), both among
    :func:`complete_methods` only; ``table``: a :func:`dsgd.report.table1` of ``stored``."""
    from dsgd.chapters._common import in_order, seeds_phrase

    full = complete_methods(stored)
    partial = [METHOD_NAMES.get(m, m) for m in in_order(stored["method"], METHOD_ORDER) if m not in full]
    seeds = seeds_phrase(stored, ["setting"], METHOD_NAMES, order=METHOD_ORDER)
    if partial:
        seeds += (f" in the settings stored so far ({', '.join(partial)}: not yet two runs in every setting, "
                  "so left out of the best and steadiest below)")
    out = {"stored_n_seeds": seeds}
    if not full:
        out["stored_best_method"] = out["stored_steadiest_method"] = "– (no method has two runs in every setting)"
        return out
    t = table.loc[[m for m in full if m in table.index]]
    best, steadiest = t[("average", "mean")].idxmax(), t[("average", "std")].idxmin()
    out["stored_best_method"] = METHOD_NAMES.get(best, best)
    out["stored_steadiest_method"] = METHOD_NAMES.get(steadiest, steadiest)
    return out
