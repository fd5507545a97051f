"""Diagnostics for the failure modes DSGD targets: verdicts, metrics, gradient probes, representations.

Verdicts (checked in this order, first match wins):

* ``"diverged"`` — the run reported non-finite values (``status="diverged"`` or a NaN metric).
* ``"collapsed"`` — every eval prediction is the same class (zero predictive variance).
* ``"failed"`` — the metric is at or below the majority-class classifier's on the same
  eval labels (Dodge et al. 2020; Mosbach et al. 2020). Ties count as failed.
* ``"degenerate"`` — predictions vary and beat the majority baseline, but carry almost no
  information about the labels: **informedness** ``<= margin`` (default 0.1). Informedness
  is balanced accuracy rescaled so that chance is 0 and perfect is 1,
  ``(mean_k recall_k - 1/K) / (1 - 1/K)`` over the K classes present in the labels; for two
  classes it is Youden's J = TPR + TNR - 1. Why this statistic: it does not depend on how
  imbalanced the eval set is, and it is what a run that mostly predicts the majority class
  lacks. A model that finds 1 of 30 minority examples and nothing else beats the
  majority baseline (71% vs 70%) with MCC 0.15, but its informedness is 0.03: it has no
  usable decision boundary. On a balanced task a near-random predictor can beat 50% by
  luck; informedness <= 0.1 (balanced accuracy <= 55% for two classes) catches that too.
* ``"success"`` — otherwise.

The gradient-cancellation probe (:func:`gradient_probe`) computes, with
``torch.autograd.grad`` only (no ``.grad`` written, no optimizer touched, model mode
restored), the summed loss gradients of the wrongly (``G_W``) and correctly (``G_C``)
classified examples of a batch restricted to a few dense layers, and their cosine.
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import nn

from .weighting import PerExampleLoss, get_loss

VERDICTS = ("diverged", "collapsed", "failed", "degenerate", "success")
DEGENERATE_MARGIN = 0.1  # informedness at or below this (and above-majority accuracy) -> "degenerate"
_TIE_TOL = 1e-12

ArrayLike = Union[np.ndarray, Sequence[int], torch.Tensor]


# --------------------------------------------------------------------------- metrics
def _ints(x: ArrayLike, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D class indices, got shape {a.shape}")
    if a.size and not np.all(np.equal(np.mod(a, 1), 0)):
        raise ValueError(f"{what} must be integer class indices (argmax the logits first)")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError(f"{what} must be >= 0, got {a.min()}")
    return a


def _pair(predictions: ArrayLike, labels: ArrayLike, num_labels: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    p, y = _ints(predictions, "predictions"), _ints(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"predictions and labels differ in length: {p.shape[0]} vs {y.shape[0]}")
    if p.size == 0:
        raise ValueError("no predictions: the eval set is empty")
    k = int(max(p.max(), y.max())) + 1
    if num_labels is not None:
        if k > num_labels:
            raise ValueError(f"class index {k - 1} >= num_labels={num_labels}")
        k = int(num_labels)
    return p, y, k


def confusion_matrix(predictions: ArrayLike, labels: ArrayLike, num_labels: int | None = None) -> np.ndarray:
    """Counts ``C[true, predicted]`` (shape ``(K, K)``)."""
    p, y, k = _pair(predictions, labels, num_labels)
    c = np.zeros((k, k), dtype=np.int64)
    np.add.at(c, (y, p), 1)
    return c


def majority_rate(labels: ArrayLike) -> float:
    """Accuracy of always predicting the most frequent label (the majority-class baseline)."""
    y = _ints(labels, "labels")
    if y.size == 0:
        raise ValueError("no labels")
    return float(np.bincount(y).max() / y.size)


def metrics(predictions: ArrayLike, labels: ArrayLike, num_labels: int | None = None) -> dict[str, Any]:
    """Classification metrics of hard predictions against labels.

    accuracy; mcc (multi-class Matthews correlation, Gorodkin's R_K, 0 when undefined);
    macro_f1 (mean F1 over classes present in labels or predictions); f1 (F1 of class 1,
    MRPC-style; NaN unless K = 2); balanced_accuracy (mean recall over classes present in
    the labels); informedness (balanced accuracy rescaled: chance 0, perfect 1; NaN with one
    class); kappa (Cohen's, NaN when undefined); pred_share (share of predictions per
    class, length K); majority_rate.
    """
    p, y, k = _pair(predictions, labels, num_labels)
    c = np.zeros((k, k), dtype=np.float64)
    np.add.at(c, (y, p), 1.0)
    n = c.sum()
    tp = np.diag(c)
    t = c.sum(axis=1)  # true counts per class
    q = c.sum(axis=0)  # predicted counts per class
    acc = tp.sum() / n

    den = math.sqrt((n * n - (q * q).sum()) * (n * n - (t * t).sum()))
    mcc = float((tp.sum() * n - (q * t).sum()) / den) if den > 0 else 0.0

    f1_den = t + q  # = 2TP + FP + FN
    seen = f1_den > 0
    f1_per = np.divide(2 * tp, f1_den, out=np.zeros(k), where=seen)
    macro_f1 = float(f1_per[seen].mean())
    f1_pos = float(f1_per[1]) if k == 2 else float("nan")

    present = t > 0
    recall = tp[present] / t[present]
    bal = float(recall.mean())
    kp = int(present.sum())
    informedness = (bal - 1.0 / kp) / (1.0 - 1.0 / kp) if kp > 1 else float("nan")

    pe = float((t * q).sum() / (n * n))
    kappa = (acc - pe) / (1.0 - pe) if pe < 1.0 else float("nan")

    return {
        "accuracy": float(acc),
        "mcc": mcc,
        "macro_f1": macro_f1,
        "f1": f1_pos,
        "balanced_accuracy": bal,
        "informedness": float(informedness),
        "kappa": float(kappa),
        "pred_share": (q / n).tolist(),
        "majority_rate": float(t.max() / n),
    }


def majority_metrics(labels: ArrayLike, num_labels: int | None = None) -> dict[str, Any]:
    """:func:`metrics` of the majority-class classifier: the baseline for any metric."""
    y = _ints(labels, "labels")
    return metrics(np.full_like(y, np.bincount(y).argmax()), y, num_labels)


def verdict(
    predictions: ArrayLike,
    labels: ArrayLike,
    *,
    num_labels: int | None = None,
    metric_value: float | None = None,
    majority_rate: float | None = None,  # noqa: F811 - the baseline value, shadows the function by design
    status: str = "ok",
    margin: float = DEGENERATE_MARGIN,
) -> str:
    """Classify a finished run: "diverged", "collapsed", "failed", "degenerate" or "success".

    metric_value: the run's metric (default: accuracy of ``predictions``).
    majority_rate: the majority-class classifier's value *of the same metric* on these labels
      (default: the majority rate, i.e. its accuracy). For MCC pass 0; for other metrics see
      :func:`majority_metrics`.
    status: "ok" or "diverged" (e.g. the training loss became NaN).
    margin: informedness at or below which an above-baseline run is "degenerate".
    See the module docstring for the definitions.
    """
    if status not in ("ok", "diverged"):
        raise ValueError(f"status must be 'ok' or 'diverged', got {status!r}")
    if status == "diverged" or (metric_value is not None and not math.isfinite(float(metric_value))):
        return "diverged"
    m = metrics(predictions, labels, num_labels)
    p = _ints(predictions, "predictions")
    if np.unique(p).size == 1:
        return "collapsed"
    value = m["accuracy"] if metric_value is None else float(metric_value)
    base = m["majority_rate"] if majority_rate is None else float(majority_rate)
    if value <= base + _TIE_TOL:
        return "failed"
    inf = m["informedness"]
    if not math.isnan(inf) and inf <= margin:
        return "degenerate"
    return "success"


FAILURE_KINDS = {"collapsed": "collapsed", "failed": "degenerate", "degenerate": "degenerate",
                 "diverged": "diverged"}


def failure_kind(verdict_name: str | None) -> str | None:
    """The book's one vocabulary for a run's outcome, from its :func:`verdict`.

    A run **fails** when it does no better than always predicting the majority class, and
    succeeds otherwise. A failed run is of one of three kinds:

    * ``"collapsed"`` — one class for every held-out example (accuracy = that class's share);
    * ``"degenerate"`` — several classes predicted but no better than the majority
      classifier: accuracy at or below the majority rate (verdict ``"failed"``, the paper's
      definition), or above it by luck with informedness ≤ :data:`DEGENERATE_MARGIN`
      (verdict ``"degenerate"``);
    * ``"diverged"`` — non-finite loss or metric.

    Returns the kind, or ``None`` for a success. Tables that need the paper's strict count
    (accuracy ≤ majority rate) report it beside this one and say so.
    """
    if verdict_name in (None, "success"):
        return None
    try:
        return FAILURE_KINDS[verdict_name]
    except KeyError:
        raise ValueError(f"unknown verdict {verdict_name!r}; verdicts are {VERDICTS}") from None


# ------------------------------------------------------------------ batches and outputs
def _logits_of(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping) and "logits" in outputs:
        return outputs["logits"]
    if hasattr(outputs, "logits"):
        return outputs.logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise ValueError(f"cannot find logits in a model output of type {type(outputs).__name__}")


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _split_batch(model: nn.Module, batch: Any) -> tuple[tuple, dict, torch.Tensor | None]:
    """``(args, kwargs, labels)``: a dict batch (HF style, "labels" removed) or ``(inputs, labels)``."""
    dev = _device(model)

    def mv(x: Any) -> Any:
        return x.to(dev) if isinstance(x, torch.Tensor) else x

    if isinstance(batch, Mapping):
        kw = {k: mv(v) for k, v in batch.items() if k not in ("labels", "label")}
        labels = batch.get("labels", batch.get("label"))
        return (), kw, mv(labels)
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
        if isinstance(x, Mapping):
            return (), {k: mv(v) for k, v in x.items()}, mv(y)
        return (mv(x),), {}, mv(y)
    if isinstance(batch, torch.Tensor):
        return (mv(batch),), {}, None
    raise ValueError("batch must be a dict with 'labels' (Hugging Face style), an (inputs, labels) pair, "
                     f"or an input tensor; got {type(batch).__name__}")


# -------------------------------------------------------------------- gradient probe
def _dense_weights(model: nn.Module) -> list[str]:
    """Names of trainable 2-D weights of Linear (or HF Conv1D) layers, embeddings excluded, in model order."""
    names = {id(p): n for n, p in model.named_parameters()}
    embed = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out: list[str] = []
    for mod_name, mod in model.named_modules():
        if not (isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"):
            continue
        w = getattr(mod, "weight", None)
        if w is None or w.dim() != 2 or not w.requires_grad or id(w) in embed or id(w) not in names:
            continue
        if "embed" in mod_name.lower():
            continue
        if names[id(w)] not in out:
            out.append(names[id(w)])
    return out


def pick_dense_layers(model: nn.Module, k: int = 10, seed: int = 0) -> list[str]:
    """``k`` randomly chosen (seeded) dense-layer weights: trainable 2-D weights of Linear layers.

    Embeddings (and weights tied to them, and modules named ``*embed*``) are excluded.
    Returns all of them if the model has fewer than ``k``; names are in model order.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cands = _dense_weights(model)
    if not cands:
        raise ValueError("the model has no trainable Linear weights to probe")
    if k >= len(cands):
        return cands
    idx = sorted(random.Random(seed).sample(range(len(cands)), k))
    return [cands[i] for i in idx]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float(torch.dot(a, b) / (na * nb))


def gradient_probe(
    model: nn.Module,
    batch: Any,
    layer_names: Sequence[str],
    loss: Union[str, PerExampleLoss] = "ce",
    *,
    train_mode: bool = False,
) -> dict[str, Any]:
    """Gradients of the wrong and correct groups of ``batch`` on ``layer_names`` (diagnostic only).

    ``G_W = grad sum_{i in W} loss_i`` and ``G_C = grad sum_{i in C} loss_i`` (summed, not
    averaged), restricted to the named parameters and flattened together. Computed with
    ``torch.autograd.grad`` in two backward passes: parameters' ``.grad`` and the optimizer
    are untouched. The forward pass runs in eval mode (no dropout, so no random numbers are
    drawn and training is not perturbed) unless ``train_mode=True``; the model's mode is
    restored either way.

    Returns ``cos_wc`` (cosine of G_W and G_C; NaN if a group is empty or its gradient is 0),
    ``norm_w``, ``norm_c``, ``norm_total`` (= ||G_W + G_C||, the plain fine-tuning gradient
    times the batch size), ``n_wrong``, ``n_correct``, ``cancellation``
    (``1 - norm_total / (norm_w + norm_c)``: 0 when the groups point the same way, 1 when
    they cancel exactly), and ``cos_wc_layer_mean`` (mean over layers of the per-layer cosine,
    the paper's way of averaging over layers).
    """
    named = dict(model.named_parameters())
    missing = [n for n in layer_names if n not in named]
    if missing:
        raise ValueError(f"unknown parameter name(s) {missing}; see pick_dense_layers(model, k)")
    frozen = [n for n in layer_names if not named[n].requires_grad]
    if frozen:
        raise ValueError(f"parameter(s) {frozen} do not require gradients")
    if not layer_names:
        raise ValueError("layer_names is empty")
    params = [named[n] for n in layer_names]
    args, kw, labels = _split_batch(model, batch)
    if labels is None:
        raise ValueError("the batch has no labels")
    per_example_loss = get_loss(loss)

    was_training = model.training
    model.train(train_mode)
    try:
        with torch.enable_grad():
            logits = _logits_of(model(*args, **kw)).float()
            labels = labels.long()
            per = per_example_loss(logits, labels)
            correct = logits.detach().argmax(-1) == labels
            n_c = int(correct.sum())
            n_w = int(labels.shape[0]) - n_c

            def group_grad(mask: torch.Tensor, n: int, retain: bool) -> list[torch.Tensor]:
                if n == 0:
                    return [torch.zeros_like(p) for p in params]
                gs = torch.autograd.grad(per[mask].sum(), params, retain_graph=retain, allow_unused=True)
                return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]

            g_w = group_grad(~correct, n_w, retain=True)
            g_c = group_grad(correct, n_c, retain=False)
    finally:
        model.train(was_training)

    gw = torch.cat([g.detach().reshape(-1).double() for g in g_w])
    gc = torch.cat([g.detach().reshape(-1).double() for g in g_c])
    nw, nc, nt = float(gw.norm()), float(gc.norm()), float((gw + gc).norm())
    per_layer = [_cos(a.detach().reshape(-1).double(), b.detach().reshape(-1).double()) for a, b in zip(g_w, g_c)]
    finite = [c for c in per_layer if not math.isnan(c)]
    return {
        "cos_wc": _cos(gw, gc),
        "norm_w": nw,
        "norm_c": nc,
        "norm_total": nt,
        "n_wrong": n_w,
        "n_correct": n_c,
        "cancellation": 1.0 - nt / (nw + nc) if (nw + nc) > 0 else float("nan"),
        "cos_wc_layer_mean": float(np.mean(finite)) if finite else float("nan"),
    }


def batch_grad_norm(model: nn.Module) -> float:
    """L2 norm of the parameters' current ``.grad`` (all parameters together; 0 if none)."""
    sq = 0.0
    for p in model.parameters():
        if p.grad is not None:
            sq += float(p.grad.detach().double().pow(2).sum())
    return math.sqrt(sq)


# ------------------------------------------------------------------- representations
def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(getattr(model, "config"), "model_type")


def _is_decoder(model: nn.Module) -> bool:
    """Decoder-only Hugging Face model (Llama, GPT-2, ...): a causal LM that is not also a masked LM."""
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # pragma: no cover
        return False
    mt = model.config.model_type
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


@torch.no_grad()
def pooled_representations(model: nn.Module, batch: Any, *, pooling: str = "auto") -> torch.Tensor:
    """One vector per example (float32, CPU), from a no-grad eval-mode pass (mode restored).

    pooling:
    * "first" — last hidden layer at the first token: [CLS] for BERT, <s> for RoBERTa (the
      representation the paper's Figure 2 compares; taken before the classification head);
    * "last" — last hidden layer at the last non-padding token (rightmost 1 of the
      attention mask; left or right padding), what Llama-style classifiers read;
    * "head_input" — the input of the model's last ``nn.Linear`` (the penultimate features:
      e.g. pooled EfficientNet features before ``_fc``), for any non-Hugging-Face model;
    * "auto" (default) — "last" for decoder-only Hugging Face models, "first" for other
      Hugging Face models, "head_input" otherwise.
    """
    if pooling == "auto":
        pooling = ("last" if _is_decoder(model) else "first") if _is_hf(model) else "head_input"
    if pooling not in ("first", "last", "head_input"):
        raise ValueError(f"pooling must be 'auto', 'first', 'last' or 'head_input', got {pooling!r}")
    args, kw, _ = _split_batch(model, batch)
    was_training = model.training
    model.eval()
    try:
        if pooling == "head_input":
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ValueError("pooling='head_input' needs a model with an nn.Linear head")
            seen: list[torch.Tensor] = []
            h = linears[-1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
            try:
                model(*args, **kw)
            finally:
                h.remove()
            reps = seen[-1].reshape(seen[-1].shape[0], -1)
        else:
            out = model(*args, **kw, output_hidden_states=True)
            hs = getattr(out, "hidden_states", None)
            if hs is None:
                raise ValueError("the model returned no hidden_states; use pooling='head_input'")
            last = hs[-1]
            if pooling == "first":
                reps = last[:, 0]
            else:
                mask = kw.get("attention_mask")
                if mask is None:
                    idx = torch.full((last.shape[0],), last.shape[1] - 1, device=last.device)
                else:
                    idx = mask.shape[1] - 1 - mask.flip(1).long().argmax(dim=1)
                reps = last[torch.arange(last.shape[0], device=last.device), idx]
    finally:
        model.train(was_training)
    return reps.detach().float().cpu()


def _np2d(reps: Any) -> np.ndarray:
    if isinstance(reps, torch.Tensor):
        reps = reps.detach().double().cpu().numpy()
    a = np.asarray(reps, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"representations must be (n, d), got shape {a.shape}")
    return a


def pairwise_cosine(reps: Any) -> np.ndarray:
    """``(n, n)`` cosine similarities of the rows of ``reps`` (a zero row has cosine 0 with all)."""
    a = _np2d(reps)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    u = np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
    return u @ u.T


def class_separation(reps: Any, labels: ArrayLike) -> float:
    """Mean within-class cosine minus mean between-class cosine (pairs i != j).

    Near 0 when representations do not depend on the class (e.g. a collapsed run whose
    vectors are all alike); positive when same-class examples are closer. NaN if there are
    no within-class or no between-class pairs.
    """
    s = pairwise_cosine(reps)
    y = _ints(labels, "labels")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"{s.shape[0]} representations but {y.shape[0]} labels")
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    w, b = s[same & off], s[~same]
    if w.size == 0 or b.size == 0:
        return float("nan")
    return float(w.mean() - b.mean())


__all__ = [
    "VERDICTS", "DEGENERATE_MARGIN", "FAILURE_KINDS", "failure_kind", "verdict", "majority_rate", "majority_metrics", "metrics",
    "confusion_matrix", "pick_dense_layers", "gradient_probe", "batch_grad_norm",
    "pooled_representations", "pairwise_cosine", "class_separation",
]
