"""The failure phenomenon, measured: outcomes over seeds, representations, gradient conflict.

What the "phenomenon" chapter needs beyond :func:`dsgd.train_run`, as small functions:

* **outcomes** — :func:`outcome_frame` (one row per run: arm, seed, accuracy, verdict,
  predicted-class shares), :func:`outcome_summary` (per arm: successes, failures by kind,
  mean and sample std) and :func:`paired_outcomes` (the same seed under two arms: rescued,
  lost, both failed, both succeeded);
* **which runs to look at** — :func:`pick_seeds`: the lowest-numbered seed whose plain
  fine-tuning run failed and the lowest-numbered one whose run succeeded (a fixed rule,
  decided before looking, so the pictures are not hand-picked);
* **representations** — :func:`run_with_representations` is a drop-in run function for
  :func:`dsgd.run_sweep`: the ordinary run plus the pairwise cosine similarity of pooled
  ([CLS]) representations of a fixed set of eval examples (:func:`representation_examples`,
  a few per class), before and after fine-tuning;
* **gradient conflict** — :func:`probe_frame` and :func:`cosine_shares`: the cosine between
  the summed gradients of the correctly and the wrongly classified examples of a batch (the
  engine's diagnostic probe, ``cfg.probe_every > 0``), and the share of probed iterations
  where it is negative or below -0.5 (the statistics the paper quotes for its Figure 2);
* **the mechanism** — :func:`history_frame` and :func:`swing_stats`: per step the share of
  the batch predicted as each class, gamma_t and the weight share of the correct group, and
  per run how often whole batches were predicted as one class, as which class, and how often
  that class switched;
* **build runs and the stored set** — :func:`ensure_runs` computes configs into a store and
  recomputes records that lack the diagnostics this chapter needs (a run another chapter
  stored without probes); :func:`compare_with_stored` checks runs computed in a build
  against a stored result set (same verdict, accuracy within half a point), the criterion
  of :func:`dsgd.sweep.verify_sample`.
"""
from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dsgd.config import RunConfig

SUCCESS = "success"
NON_SUCCESS = ("collapsed", "failed", "degenerate", "diverged")
from dsgd.reproduce import VERIFY_TOLERANCE, compare_runs  # half a point of accuracy


# =========================================================================== arms
def arm_label(config: dict[str, Any]) -> str:
    """A short name for a run's method and the settings that distinguish it.

    ``"FFT"`` for plain fine-tuning; ``"DSGD"`` for DSGD with the paper's default (linear
    gamma_t from 0, tau = 1, "correct" decided by the training pass); variants add what
    differs, e.g. ``"DSGD (eval pass)"``, ``"DSGD (floor 0.5)"``, ``"DSGD (tau 0.5)"``,
    ``"DSGD (cosine)"``. Other methods keep their registry name.
    """
    method = str(config.get("method", "fft"))
    if method == "fft":
        return "FFT"
    if method != "dsgd":
        return method
    extra = []
    if config.get("schedule", "linear") != "linear":
        extra.append(str(config["schedule"]))
    if float(config.get("tau", 1.0)) != 1.0:
        extra.append(f"tau {float(config['tau']):g}")
    for k, v in sorted((config.get("schedule_kwargs") or {}).items()):
        extra.append(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}")
    if config.get("correct_from", "train") == "eval":
        extra.append("eval pass")
    return "DSGD" + (f" ({', '.join(extra)})" if extra else "")


def _is_success(verdict: Any) -> bool:
    return verdict == SUCCESS


# =========================================================================== configs
ARMS: dict[str, dict[str, Any]] = {
    "FFT": {"method": "fft"},
    "DSGD": {"method": "dsgd", "schedule": "linear", "schedule_kwargs": {}, "correct_from": "train"},
}
CONFIG_PARAMETERS = ("task", "task_kwargs", "model", "model_kwargs", "train_size", "eval_size",
                     "max_length", "batch_size", "grad_accum", "lr", "epochs", "warmup_ratio",
                     "tau", "probe_every")


def chapter_config(params: dict[str, Any]) -> RunConfig:
    """The chapter's run settings (its papermill parameters) as a :class:`RunConfig`.

    Reads the keys in :data:`CONFIG_PARAMETERS`; ``train_size`` / ``eval_size`` of 0 mean
    "the whole split"; ``per_class`` (optional) goes into ``tags`` for
    :func:`run_with_representations`. The method is left at FFT: :func:`arm_configs` sets it
    per arm.
    """
    missing = [k for k in CONFIG_PARAMETERS if k not in params]
    if missing:
        raise ValueError(f"chapter parameters lack {missing}")
    d = {k: params[k] for k in CONFIG_PARAMETERS}
    for k in ("train_size", "eval_size"):
        d[k] = int(d[k]) or None
    d["task_kwargs"] = dict(d["task_kwargs"] or {})
    d["model_kwargs"] = dict(d["model_kwargs"] or {})
    d["lr"], d["epochs"], d["warmup_ratio"], d["tau"] = (float(d["lr"]), float(d["epochs"]),
                                                         float(d["warmup_ratio"]), float(d["tau"]))
    tags = {"per_class": int(params["per_class"])} if "per_class" in params else {}
    return RunConfig(method="fft", tags=tags, **d)


def arm_configs(base: RunConfig, seeds: Sequence[int], arms: Sequence[str] = ("FFT", "DSGD")) -> list[RunConfig]:
    """``base`` under each arm of :data:`ARMS` and each seed (arm-major order)."""
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known: {sorted(ARMS)}")
    return [base.replace(seed=int(s), **ARMS[a]) for a in arms for s in seeds]


# =========================================================================== outcomes
def outcome_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run: ``arm, method, seed, accuracy, balanced_accuracy`` (the mean
    of the classes' recalls: 0.5 for a two-class run that predicts one class, whatever the
    imbalance), ``verdict, success,
    majority_rate, pred_share_<k>`` (share of eval predictions per class), ``lr``,
    ``epochs``, ``steps``, ``s_per_step``, ``run_id``. Error records are skipped."""
    rows = []
    for r in records:
        if r.get("status") not in ("ok", "diverged"):
            continue
        cfg = r["config"]
        m = r.get("metrics") or {}
        row = {
            "arm": arm_label(cfg), "method": cfg["method"], "seed": int(cfg["seed"]),
            "accuracy": m.get("accuracy", math.nan),
            "balanced_accuracy": m.get("balanced_accuracy", math.nan), "verdict": r.get("verdict"),
            "success": _is_success(r.get("verdict")),
            "majority_rate": r.get("majority_rate", math.nan),
            "lr": cfg.get("lr"), "epochs": cfg.get("epochs"),
            "steps": (r.get("timings") or {}).get("steps"),
            "s_per_step": (r.get("timings") or {}).get("s_per_step"),
            "run_id": r["run_id"],
        }
        for k, v in enumerate(m.get("pred_share") or []):
            row[f"pred_share_{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df["accuracy"] = pd.to_numeric(df["accuracy"], errors="coerce")
        df["balanced_accuracy"] = pd.to_numeric(df["balanced_accuracy"], errors="coerce")
        df = df.sort_values(["arm", "seed"], kind="stable").reset_index(drop=True)
    return df


def _sample_std(v: np.ndarray) -> float:
    return float(np.std(v, ddof=1)) if v.size >= 2 else math.nan


def outcome_summary(df: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per arm: ``runs``, ``success``, ``not_success`` and the count of each failure kind
    (collapsed, failed, degenerate, diverged), ``failure_share``, accuracy ``mean`` and
    sample ``std`` (ddof=1) over all its seeds, the same of the balanced accuracy beside them
    (``bal_mean``, ``bal_std``: on an imbalanced task a run that predicts the majority class
    scores the majority share in accuracy but 0.5 in balanced accuracy), and the
    ``mean_success`` of its successful runs only. ``order`` fixes the row order (arms not
    listed follow)."""
    arms = list(dict.fromkeys(df["arm"])) if len(df) else []
    if order is not None:
        arms = [a for a in order if a in arms] + [a for a in arms if a not in order]
    rows = []
    for a in arms:
        sub = df[df["arm"] == a]
        acc = sub["accuracy"].dropna().to_numpy(dtype=float)
        ok = sub[sub["success"]]["accuracy"].dropna().to_numpy(dtype=float)
        row = {"arm": a, "runs": len(sub), "success": int(sub["success"].sum()),
               "not_success": int((~sub["success"]).sum())}
        for v in NON_SUCCESS:
            row[v] = int((sub["verdict"] == v).sum())
        row["failure_share"] = row["not_success"] / len(sub) if len(sub) else math.nan
        row["mean"] = float(acc.mean()) if acc.size else math.nan
        row["std"] = _sample_std(acc)
        bal = (sub["balanced_accuracy"].dropna().to_numpy(dtype=float) if "balanced_accuracy" in sub
               else np.zeros(0))
        row["bal_mean"] = float(bal.mean()) if bal.size else math.nan
        row["bal_std"] = _sample_std(bal)
        row["mean_success"] = float(ok.mean()) if ok.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm") if rows else pd.DataFrame()


def paired_outcomes(df: pd.DataFrame, a: str = "FFT", b: str = "DSGD") -> pd.DataFrame:
    """Seeds run under both arms ``a`` and ``b``: one row per seed with both verdicts and
    accuracies and a ``change`` column: ``"rescued"`` (a failed, b succeeded), ``"lost"``
    (a succeeded, b failed), ``"both failed"`` or ``"both succeeded"``."""
    left = df[df["arm"] == a].set_index("seed")
    right = df[df["arm"] == b].set_index("seed")
    seeds = sorted(set(left.index) & set(right.index))
    rows = []
    for s in seeds:
        sa, sb = bool(left.loc[s, "success"]), bool(right.loc[s, "success"])
        change = {(False, True): "rescued", (True, False): "lost",
                  (False, False): "both failed", (True, True): "both succeeded"}[(sa, sb)]
        rows.append({"seed": s, f"{a} verdict": left.loc[s, "verdict"],
                     f"{a} accuracy": left.loc[s, "accuracy"],
                     f"{b} verdict": right.loc[s, "verdict"],
                     f"{b} accuracy": right.loc[s, "accuracy"], "change": change})
    return pd.DataFrame(rows)


def pick_seeds(df: pd.DataFrame, arm: str = "FFT") -> tuple[int | None, int | None]:
    """``(failed_seed, successful_seed)`` of ``arm``: the lowest-numbered seed whose run did
    not succeed, and the lowest-numbered seed whose run succeeded (``None`` where there is
    none). A fixed rule, so the runs shown in detail are not chosen by how they look."""
    sub = df[df["arm"] == arm].sort_values("seed")
    bad = sub[~sub["success"]]["seed"].tolist()
    good = sub[sub["success"]]["seed"].tolist()
    return (int(bad[0]) if bad else None, int(good[0]) if good else None)


def build_plan(stored: pd.DataFrame, base: RunConfig, build_seeds: Sequence[int] = (),
               fallback_seeds: Sequence[int] = ()) -> tuple[list[RunConfig], str]:
    """Which runs a build computes, and the rule that chose them (a sentence).

    * ``build_seeds`` given: every one of them under FFT and DSGD;
    * else, from the stored outcomes (:func:`outcome_frame` of a stored set): FFT on the
      failed and on the successful seed of :func:`pick_seeds`, and DSGD on the failed one —
      the three runs parts 2-4 of the chapter look at;
    * else (no stored set): the same three runs on ``fallback_seeds[0]`` (expected to fail)
      and ``fallback_seeds[1]`` (expected to succeed).
    """
    if build_seeds:
        return arm_configs(base, list(build_seeds)), "the seeds named by build_seeds, under FFT and DSGD"
    if len(stored):
        failed, ok = pick_seeds(stored, "FFT")
        rule = ("picked from the stored set by a fixed rule: the lowest-numbered seed whose FFT run "
                "failed (FFT and DSGD) and the lowest-numbered seed whose FFT run succeeded (FFT)")
    elif len(fallback_seeds) >= 2:
        failed, ok = int(fallback_seeds[0]), int(fallback_seeds[1])
        rule = "the fallback seeds (no stored set to pick from): FFT on both, DSGD on the first"
    else:
        raise ValueError("no stored runs to pick seeds from: give build_seeds or two fallback_seeds")
    fft, dsgd = ARMS["FFT"], ARMS["DSGD"]
    cfgs = [base.replace(seed=int(failed), **fft)] if failed is not None else []
    if ok is not None:
        cfgs.append(base.replace(seed=int(ok), **fft))
    if failed is not None:
        cfgs.append(base.replace(seed=int(failed), **dsgd))
    return cfgs, rule


# =========================================================================== gradient probe
def probe_frame(record: dict[str, Any]) -> pd.DataFrame:
    """The engine's gradient probe of one run: ``step, cos_wc, norm_w, norm_c`` (NaN where a
    group was empty). Empty frame when the run was made without probes."""
    p = (record.get("history") or {}).get("probe") or {}
    if not p or not p.get("step"):
        return pd.DataFrame(columns=["step", "cos_wc", "norm_w", "norm_c"])
    df = pd.DataFrame({k: p.get(k) for k in ("step", "cos_wc", "norm_w", "norm_c")})
    for k in ("cos_wc", "norm_w", "norm_c"):
        df[k] = pd.to_numeric(df[k], errors="coerce")
    return df


def cosine_shares(cos: Sequence[float] | pd.Series | np.ndarray,
                  thresholds: Sequence[float] = (0.0, -0.5)) -> dict[str, Any]:
    """Shares of probed iterations whose cosine lies strictly below each threshold.

    Iterations where the cosine is undefined (NaN: the batch was all correct or all wrong)
    are left out of the denominator and counted in ``n_undefined``. Returns ``n`` (defined
    iterations), ``n_undefined``, ``below_<t>`` per threshold (e.g. ``below_0``,
    ``below_-0.5``), ``median`` and ``min``.
    """
    c = np.asarray(pd.to_numeric(pd.Series(list(cos), dtype=object), errors="coerce"), dtype=float)
    ok = c[~np.isnan(c)]
    out: dict[str, Any] = {"n": int(ok.size), "n_undefined": int(c.size - ok.size)}
    for t in thresholds:
        out[f"below_{t:g}"] = float((ok < t).mean()) if ok.size else math.nan
    out["median"] = float(np.median(ok)) if ok.size else math.nan
    out["min"] = float(ok.min()) if ok.size else math.nan
    return out


def cosine_by_phase(record: dict[str, Any], thresholds: Sequence[float] = (0.0, -0.5)) -> pd.DataFrame:
    """:func:`cosine_shares` of one probed run, overall and split by phase.

    A probed step is *one-class* when the whole batch was predicted as a single class in
    that step's training pass (the state of a collapsed model); the other steps are
    *mixed*. The split matters for reading the cosine: when the model gives every input the
    same output distribution p, an example of class y has logit gradient p - e_y, and with
    two classes p - e_0 = p_1 (-1, 1) and p - e_1 = p_0 (1, -1) point in exactly opposite
    directions. In a one-class batch the wrong group is one class and the correct group the
    other, so their gradients oppose each other by construction (exactly at the head when
    the pooled features are alike, approximately below it). Rows ``all``, ``one-class``,
    ``mixed``.
    """
    pf = probe_frame(record)
    h = history_frame(record).set_index("step")
    pred_cols = [c for c in h.columns if c.startswith("pred_")]
    one = np.isclose(h[pred_cols].max(axis=1).to_numpy(dtype=float), 1.0)
    one_at = dict(zip(h.index.tolist(), one.tolist()))
    phase = np.array([bool(one_at.get(int(s), False)) for s in pf["step"]], dtype=bool)
    rows = []
    for name, mask in (("all", np.ones(len(pf), dtype=bool)), ("one-class", phase), ("mixed", ~phase)):
        out = cosine_shares(pf["cos_wc"].to_numpy(dtype=float)[mask], thresholds)
        rows.append({"phase": name, "probed": int(mask.sum()), **out})
    return pd.DataFrame(rows).set_index("phase")


SAME_IGNORE = ("seed", "method", "schedule", "schedule_kwargs", "tau", "correct_from",
               "method_kwargs", "probe_every", "tags", "progress", "device", "threads")


def same_setting(config: dict[str, Any], base: RunConfig, ignore: Sequence[str] = SAME_IGNORE,
                 also_ignore: Sequence[str] = ()) -> bool:
    """True when a stored run's ``config`` equals ``base`` except for the method and its
    settings (and fields that do not change numbers): another arm of the same experiment.
    ``also_ignore`` adds fields, e.g. ``("epochs",)`` for the same setting at another budget."""
    ignore = tuple(ignore) + tuple(also_ignore)
    b = base.to_dict()
    return all(config.get(k) == v for k, v in b.items() if k not in ignore)


# =========================================================================== the mechanism
def history_frame(record: dict[str, Any]) -> pd.DataFrame:
    """Per optimizer step: ``step, gamma, grad_norm, correct_share, correct_weight_share,
    lr, ce`` and ``pred_<k>`` — the share of the batch predicted as class k."""
    h = record.get("history") or {}
    if not h.get("step"):
        raise ValueError(f"run {record.get('run_id')} has no per-step history "
                         "(it was made with record_history=False)")
    cols = ["step", "gamma", "grad_norm", "correct_share", "correct_weight_share", "lr", "ce"]
    df = pd.DataFrame({k: h[k] for k in cols if k in h})
    shares = np.asarray(h["pred_class_share"], dtype=float)
    for k in range(shares.shape[1]):
        df[f"pred_{k}"] = shares[:, k]
    return df


def swing_stats(record: dict[str, Any], majority_class: int | None = None,
                window: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
    """How a run's batch predictions moved between classes during training.

    A *one-class step* is an optimizer step in which every example of the batch was
    predicted as the same class (from the pass that decided "correct"). Over the steps in
    ``window`` (fractions of training, default all of it) returns: ``one_class`` (share of
    steps that were one-class), ``one_class_majority`` / ``one_class_minority`` (share of
    steps in which the whole batch went to the majority class / to another class),
    ``switches`` (how often consecutive one-class steps named different classes: each is a
    swing of the whole model's output from one class to another), ``last_switch`` (the step
    of the last switch as a fraction of training, NaN without any) and
    ``mean_correct_weight`` (mean share of the update's weight on correct examples) and
    ``mean_correct_share`` (mean training-batch accuracy).
    ``majority_class``: default the most frequent label of the record's eval labels.
    """
    h = history_frame(record)
    if majority_class is None:
        labels = np.asarray(record.get("labels") or [], dtype=int)
        majority_class = int(np.bincount(labels).argmax()) if labels.size else 0
    T = max(1, int((record.get("timings") or {}).get("total_steps") or len(h)))
    lo, hi = window
    sel = h[(h["step"] >= lo * T) & (h["step"] < hi * T)] if (lo, hi) != (0.0, 1.0) else h
    pred_cols = [c for c in h.columns if c.startswith("pred_")]
    shares = sel[pred_cols].to_numpy(dtype=float)
    n = len(sel)
    one = np.isclose(shares.max(axis=1), 1.0) if n else np.zeros(0, dtype=bool)
    cls = shares.argmax(axis=1) if n else np.zeros(0, dtype=int)
    seq = cls[one]
    steps = sel["step"].to_numpy()[one]
    sw = np.nonzero(seq[1:] != seq[:-1])[0]
    return {
        "steps": n,
        "one_class": float(one.mean()) if n else math.nan,
        "one_class_majority": float((one & (cls == majority_class)).mean()) if n else math.nan,
        "one_class_minority": float((one & (cls != majority_class)).mean()) if n else math.nan,
        "switches": int(sw.size),
        "last_switch": float(steps[sw[-1] + 1] / T) if sw.size else math.nan,
        "mean_correct_weight": float(sel["correct_weight_share"].mean()) if n else math.nan,
        "mean_correct_share": float(sel["correct_share"].mean()) if n else math.nan,
    }


def plateau_exit(record: dict[str, Any], level: float = 0.8, window: int = 10) -> float:
    """The first optimizer step at which the ``window``-step running mean of the training
    batches' accuracy reaches ``level``: when the run left the majority-class plateau
    (a batch of the task is about 65% majority, so predicting one class scores ~0.65).
    NaN if it never did."""
    h = history_frame(record)
    acc = h["correct_share"].rolling(window, min_periods=window).mean().to_numpy(dtype=float)
    hit = np.nonzero(acc >= level)[0]
    return float(h["step"].iloc[hit[0]]) if hit.size else math.nan


def mechanism_frame(records: Iterable[dict[str, Any]],
                    windows: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One row per run: arm, seed, verdict, the collapsed class (if collapsed),
    ``plateau_exit`` (:func:`plateau_exit` as a fraction of training; NaN: never) and
    :func:`swing_stats` for each named window (columns ``<window>:<stat>``). Default
    windows: ``early`` (first 30% of steps) and ``all``."""
    windows = windows or {"early": (0.0, 0.3), "all": (0.0, 1.0)}
    rows = []
    for r in records:
        if r.get("status") not in ("ok", "diverged") or not (r.get("history") or {}).get("step"):
            continue
        cfg = r["config"]
        labels = np.asarray(r["labels"], dtype=int)
        maj = int(np.bincount(labels).argmax())
        preds = np.asarray(r["predictions"], dtype=int)
        row: dict[str, Any] = {"arm": arm_label(cfg), "seed": int(cfg["seed"]),
                               "verdict": r["verdict"], "success": _is_success(r["verdict"])}
        row["collapsed_to"] = ("majority" if int(preds[0]) == maj else "minority") \
            if r["verdict"] == "collapsed" else ""
        T = int((r.get("timings") or {}).get("total_steps") or len(r["history"]["step"]))
        row["plateau_exit"] = plateau_exit(r) / T
        for name, w in windows.items():
            for k, v in swing_stats(r, maj, w).items():
                if k != "steps":
                    row[f"{name}:{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(["arm", "seed"], kind="stable").reset_index(drop=True) if len(df) else df


# =========================================================================== representations
def representation_examples(labels: Sequence[int], per_class: int = 5, seed: int = 0) -> list[int]:
    """Indices of ``per_class`` examples of each class (seeded choice), grouped by class in
    ascending class order, each group in ascending index order. ``ValueError`` if a class
    has fewer examples than asked for."""
    y = np.asarray(labels, dtype=int)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = random.Random(seed)
    out: list[int] = []
    for k in sorted(set(y.tolist())):
        idx = np.nonzero(y == k)[0].tolist()
        if len(idx) < per_class:
            raise ValueError(f"class {k} has only {len(idx)} examples, fewer than per_class={per_class}")
        out.extend(sorted(rng.sample(idx, per_class)))
    return out


def _representation_block(model: Any, examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    from dsgd.data import collate
    from dsgd.diagnostics import class_separation, pairwise_cosine, pooled_representations

    batch = collate(examples, pad_token_id=pad_id)
    dev = next(model.parameters()).device
    batch = {k: v.to(dev) if hasattr(v, "to") else v for k, v in batch.items()}
    reps = pooled_representations(model, batch)
    labels = [int(e["labels"]) for e in examples]
    return {"cosine": pairwise_cosine(reps).tolist(), "separation": class_separation(reps, labels)}


def run_with_representations(cfg: RunConfig | dict[str, Any], per_class: int = 5,
                             example_seed: int = 0) -> dict[str, Any]:
    """:func:`dsgd.train_run` plus pooled-representation similarities, as one record.

    Use as ``run_fn`` of :func:`dsgd.run_sweep` (``"dsgd.chapters.phenomenon:run_with_representations"``);
    there ``per_class`` / ``example_seed`` come from ``cfg.tags`` (tags are not part of the
    run id), e.g. ``cfg.replace(tags={"per_class": 5})``.
    The model and the task are loaded exactly as the engine loads them and handed to it, so
    the run's numbers are those of ``train_run(cfg)``. Adds ``record["representations"]``:
    ``index`` and ``labels`` of the eval examples (:func:`representation_examples`;
    ``per_class`` is lowered to the size of the smallest eval class when that is smaller), and
    ``before`` / ``after`` fine-tuning: ``cosine`` (their pairwise cosine matrix, pooled
    first-token / [CLS] vectors of the last layer) and ``separation``
    (:func:`dsgd.diagnostics.class_separation`).
    """
    from dsgd.data import load_task
    from dsgd.engine import _load_tokenizer, seed_everything, train_run
    from dsgd.models import load_model

    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    cfg.validate()
    per_class = requested = int(cfg.tags.get("per_class", per_class))
    example_seed = int(cfg.tags.get("example_seed", example_seed))
    if cfg.threads:
        import torch

        torch.set_num_threads(int(cfg.threads))
    seed_everything(cfg.seed)
    tok = _load_tokenizer(cfg)
    data = load_task(cfg.task, tok, max_length=cfg.max_length, train_size=cfg.train_size,
                     eval_size=cfg.eval_size, split_seed=cfg.split_seed, **cfg.task_kwargs)
    model, _ = load_model(cfg.model, int(data.num_labels), seed=cfg.seed, **cfg.model_kwargs)
    pad = getattr(tok, "pad_token_id", None)
    pad = 0 if pad is None else int(pad)
    eval_labels = [int(r["labels"]) for r in data.eval]
    per_class = max(1, min(per_class, min(np.bincount(eval_labels)[sorted(set(eval_labels))])))
    idx = representation_examples(eval_labels, per_class, example_seed)
    examples = [data.eval[i] for i in idx]
    before = _representation_block(model, examples, pad)
    record, model = train_run(cfg, model=model, tokenizer=tok, data=data, keep_model=True)
    after = _representation_block(model, examples, pad)
    record["representations"] = {"index": idx, "labels": [int(e["labels"]) for e in examples],
                                 "per_class": per_class, "per_class_requested": requested,
                                 "example_seed": example_seed,
                                 "label_names": list(getattr(data, "label_names", None) or []),
                                 "before": before, "after": after}
    return record


# =========================================================================== runs and stores
def _has(record: dict[str, Any] | None, need: Sequence[str], cfg: RunConfig | None = None) -> bool:
    """Does a stored record carry the diagnostics in ``need``, as ``cfg`` asks for them?"""
    if record is None or record.get("status") not in ("ok", "diverged"):
        return False
    for n in need:
        if n == "probe":
            steps = ((record.get("history") or {}).get("probe") or {}).get("step")
            if not steps or (cfg is not None and cfg.probe_every > 0 and len(steps) > 1
                             and steps[1] - steps[0] != cfg.probe_every):
                return False
        elif n not in record:
            return False
        elif n == "representations" and cfg is not None:
            rep = record["representations"]
            if "per_class" in cfg.tags and rep.get("per_class_requested") != int(cfg.tags["per_class"]):
                return False
    return True


def ensure_runs(configs: Sequence[RunConfig], store: Any = None, *, workers: int = 2,
                threads_per_worker: int = 1,
                run_fn: str = "dsgd.chapters.phenomenon:run_with_representations",
                need: Sequence[str] = ("representations", "probe"),
                progress: bool = False) -> list[dict[str, Any]]:
    """Compute ``configs`` into ``store`` (default: the build store, ``$DSGD_STORE``) with
    :func:`dsgd.run_sweep` and return their records in order.

    A run stored earlier without the diagnostics in ``need`` (e.g. by another chapter,
    without probes: ``probe_every`` is not part of the run id), or with a different probe
    interval or number of examples per class, is recomputed with ``run_fn`` and its record
    replaced (the run's numbers are the same).
    """
    from dsgd.store import ResultStore
    from dsgd.sweep import run_sweep

    st = store if isinstance(store, ResultStore) else ResultStore(store)
    stale = [c for c in configs if st.finished(c.run_id()) and not _has(st.get(c.run_id()), need, c)]
    for c in stale:
        st.delete(c.run_id())
    return run_sweep(list(configs), st, run_fn=run_fn, workers=min(workers, max(1, len(configs))),
                     threads_per_worker=threads_per_worker, progress=progress)


def load_stored(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Finished records and provenance of a stored result set; ``([], None)`` if absent."""
    from dsgd.store import ResultStore

    p = Path(folder)
    if not (p / "runs").is_dir():
        return [], None
    st = ResultStore(p)
    recs = st.records()
    prov = st.provenance.load() if (p / "provenance.json").exists() else None
    return recs, prov


def compare_with_stored(computed: Iterable[dict[str, Any]], stored: Iterable[dict[str, Any]],
                        tolerance: float = VERIFY_TOLERANCE) -> pd.DataFrame:
    """Runs computed now against the stored records with the same run id.

    A run passes when its status and verdict are the same and ``|accuracy_now -
    accuracy_stored| <= tolerance`` (:func:`dsgd.reproduce.reproduces`, the criterion of
    :func:`dsgd.sweep.verify_sample`). Also reports whether every eval prediction is
    identical and on which processors the two ran (:func:`dsgd.reproduce.compare_runs`).
    Runs without a stored twin are listed with ``ok = None``.
    """
    computed = list(computed)
    table = compare_runs(stored, computed, tolerance=tolerance).set_index("run_id")
    cols = ["stored", "diff", "stored_verdict", "same_predictions", "stored_processor", "recomputed_processor",
            "same_processor", "ok"]
    rows = []
    for r in computed:
        row = {"run_id": r["run_id"], "arm": arm_label(r["config"]), "seed": r["config"]["seed"],
               "recomputed": (r.get("metrics") or {}).get("accuracy"), "recomputed_verdict": r.get("verdict")}
        twin = table.loc[r["run_id"]] if r["run_id"] in table.index else None
        row.update({c: None if twin is None else twin[c] for c in cols})
        if twin is not None:
            row["ok"], row["same_predictions"] = bool(twin["ok"]), bool(twin["same_predictions"])
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "arm", "seed", "stored", "recomputed", "diff",
                                       "stored_verdict", "recomputed_verdict", "same_predictions",
                                       "stored_processor", "recomputed_processor", "same_processor", "ok"])


# =========================================================================== setting search
SEARCH_KEYS = ("lr", "epochs", "max_steps", "batch_size", "max_length", "train_size", "warmup_ratio",
               "model_kwargs", "max_grad_norm", "adam_bias_correction")


def search_rows(records: Iterable[dict[str, Any]], keys: Sequence[str] = SEARCH_KEYS) -> pd.DataFrame:
    """The setting search as a table: one row per (setting, arm) with the settings in
    ``keys``, the optimizer steps, the seeds tried, the verdict of each (``seed:verdict``
    pairs), the accuracies, the step at which each run left the majority-class plateau
    (:func:`plateau_exit`; "-": never), the number of successes and failures and the mean
    seconds per run. Used to write the committed
    record of how the chapter's setting was found."""
    rows = []
    for r in records:
        if r.get("status") not in ("ok", "diverged"):
            continue
        cfg = r["config"]
        setting = {k: (str(cfg.get(k)) if isinstance(cfg.get(k), dict) else cfg.get(k)) for k in keys}
        has_history = bool((r.get("history") or {}).get("step"))
        rows.append({**setting, "arm": arm_label(cfg), "seed": int(cfg["seed"]),
                     "verdict": r["verdict"], "accuracy": (r.get("metrics") or {}).get("accuracy"),
                     "steps": (r.get("timings") or {}).get("total_steps"),
                     "exit": plateau_exit(r) if has_history else math.nan,
                     "seconds": (r.get("timings") or {}).get("total_s")})
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    group = list(keys) + ["arm"]
    out = []
    for k, sub in df.groupby(group, dropna=False, sort=False):
        sub = sub.sort_values("seed")
        out.append({**dict(zip(group, k)), "steps": int(sub["steps"].max()), "runs": len(sub),
                    "success": int((sub["verdict"] == SUCCESS).sum()),
                    "not_success": int((sub["verdict"] != SUCCESS).sum()),
                    "outcomes": " ".join(f"{s}:{v}" for s, v in zip(sub["seed"], sub["verdict"])),
                    "accuracies": " ".join(f"{a:.3f}" for a in sub["accuracy"]),
                    "plateau_exit": " ".join("-" if math.isnan(e) else str(int(e)) for e in sub["exit"]),
                    "mean_seconds": float(sub["seconds"].mean())})
    return pd.DataFrame(out)


__all__ = [
    "ARMS", "chapter_config", "arm_configs", "arm_label", "outcome_frame", "outcome_summary", "paired_outcomes", "pick_seeds", "build_plan",
    "probe_frame", "cosine_shares", "cosine_by_phase", "same_setting", "SAME_IGNORE", "history_frame", "swing_stats", "plateau_exit", "mechanism_frame",
    "representation_examples", "run_with_representations", "ensure_runs", "load_stored",
    "compare_with_stored", "search_rows",
]


# =========================================================================== page helpers
def seed_outcomes(outcomes: str) -> dict[str, str]:
    """``"0:success 3:collapsed"`` (a row of the setting-search table) -> ``{"0": "success",
    "3": "collapsed"}``."""
    return dict(o.split(":", 1) for o in str(outcomes).split())


def rolling_mean(values: Sequence[float], window: int = 10) -> pd.Series:
    """Trailing mean over ``window`` steps (shorter at the start), for smoothed curves."""
    return pd.Series(values, dtype=float).rolling(window, min_periods=1).mean()


def with_budget(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """:func:`outcome_frame` with the training budget in the arm's name (``"FFT, 150 steps"``),
    so that runs of one arm at two budgets are told apart."""
    df = outcome_frame(records)
    if len(df):
        df["arm"] = df["arm"] + ", " + df["steps"].astype(int).astype(str) + " steps"
    return df


def budget_arm_key(label: str) -> tuple[int, int, str]:
    """Sort key of a :func:`with_budget` arm: budget first, then FFT, DSGD, other arms."""
    name, steps = label.rsplit(", ", 1)
    return int(steps.split()[0]), {"FFT": 0, "DSGD": 1}.get(name, 2), name


def put_pairs(put: Any, prefix: str, frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Glue the paired comparison of arms ``a`` and ``b`` (:func:`paired_outcomes`) with
    ``put(key, value)``: ``<prefix>_rescued``, ``_lost``, ``_both_failed``,
    ``_both_succeeded``, ``_pairs`` (seeds with both arms) and ``_same`` (same outcome).
    Returns the pairs."""
    pairs = paired_outcomes(frame, a, b) if len(frame) else pd.DataFrame(columns=["change"])
    cnt = pairs["change"].value_counts()
    for k in ("rescued", "lost", "both failed", "both succeeded"):
        put(f"{prefix}_{k.replace(' ', '_')}", int(cnt.get(k, 0)))
    put(f"{prefix}_pairs", len(pairs))
    put(f"{prefix}_same", int(cnt.get("both failed", 0) + cnt.get("both succeeded", 0)))
    return pairs


# ============================================================ parts a profile does not run
NOT_RUN = "not run in this profile"
# glue keys of the setting-search paragraph (cell reading ``search_table``)
SEARCH_GLUE = ("search_settings", "search_start_steps", "search_start_fail", "search_start_runs",
               "search_start_exits", "search_chosen_steps", "search_chosen_fail", "search_chosen_runs",
               "search_chosen_ok_range", "search_late_seeds")
# per shown seed ("fail" / "ok"): its representation and gradient-cosine keys
SEED_GLUE = ("sep_after", "sep_before", "cos_min_after", "cos_mean_after", "cos_mean_before",
             "all_neg", "all_below_half", "all_probed", "oneclass_neg", "oneclass_below_half",
             "oneclass_probed", "mixed_neg", "mixed_below_half", "mixed_probed", "min_cos")


def seed_glue(name: str) -> list[str]:
    """The glue keys of the shown ``name`` seed ("fail" or "ok")."""
    return [f"{name}_{k}" for k in SEED_GLUE]


def gradient_glue() -> list[str]:
    """Keys of the mean early gradient norm per arm and outcome (``gn_fft_ok_first_half``...)."""
    return [f"gn_{arm}_{ok}_first_half" for arm in ("fft", "dsgd") for ok in ("ok", "fail")]


def put_unset(R: Any, keys: Iterable[str], text: str) -> list[str]:
    """Glue ``text`` under each of ``keys`` that ``R`` (a :class:`dsgd.book.Results`) has not
    set: the sentences of a part this profile skipped (no search table, no successful seed)
    still render, and say why. Returns the keys it set."""
    unset = [k for k in keys if k not in R.data["values"]]
    for k in unset:
        R.put(k, text)
    return unset


# ------------------------------------------------------------ closing sentences
def checks_sentence(floor: pd.DataFrame, longer: pd.DataFrame) -> str:
    """What this chapter's stored set says about its two checks, with exact intervals, and
    where the full checks are (the regimes chapter)."""
    from dsgd import stats

    parts = []
    f = floor[floor["arm"] == "DSGD (floor 0.5)"] if len(floor) else floor
    if len(f):
        parts.append(f"DSGD with the floor failed on "
                     f"{stats.format_rate(stats.rate_ci(int((~f['success']).sum()), len(f)))} seeds")
    else:
        parts.append("no DSGD run with a floor is stored here")
    if len(longer):
        for arm in ("FFT", "DSGD"):
            g = longer[longer["arm"] == arm]
            if len(g):
                parts.append(f"with {int(g['steps'].max())} steps {arm} failed on "
                             f"{stats.format_rate(stats.rate_ci(int((~g['success']).sum()), len(g)))}")
    else:
        parts.append("no run with a longer budget is stored here")
    return ("In this chapter's stored set " + "; ".join(parts) + ". The chapter *When does DSGD "
            "help?* repeats both checks with more seeds and longer budgets (it says how many are "
            "stored) and derives why DSGD's loss rests on the decision boundary while γ_t is small.")


def summary_values(main: pd.DataFrame) -> dict[str, str]:
    """The closing summary's computed sentences: failure rates with exact intervals and the
    exact paired test of FFT against DSGD on this chapter's seeds."""
    from dsgd import stats

    out: dict[str, str] = {}
    rates = {}
    for arm in ("FFT", "DSGD"):
        g = main[main["arm"] == arm]
        rates[arm] = g.set_index("seed")["success"]
        out[f"sum_{arm.lower()}"] = (stats.format_rate(stats.rate_ci(int((~g["success"]).sum()), len(g)))
                                     if len(g) else NOT_RUN)
    seeds = sorted(set(rates["FFT"].index) & set(rates["DSGD"].index))
    if seeds:
        a = ~rates["DSGD"].loc[seeds].to_numpy(bool)
        b = ~rates["FFT"].loc[seeds].to_numpy(bool)
        res = stats.mcnemar_exact(a, b)
        word = "more often" if a.sum() > b.sum() else "less often" if a.sum() < b.sum() else "as often"
        sig = "significant" if res["p_value"] < 0.05 else "not significant"
        out["sum_test"] = (f"On the {len(seeds)} shared seeds DSGD failed {word} than FFT "
                           f"({int(a.sum())} vs {int(b.sum())}; exact McNemar {stats.p_text(res['p_value'])}, "
                           f"{sig} at the 5 % level).")
        out["sum_dsgd_direction"] = word
    else:
        out["sum_test"] = "FFT and DSGD share no seed here: no paired test."
        out["sum_dsgd_direction"] = "not compared"
    return out
