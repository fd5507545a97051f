"""DSGD's per-example weights and loss.

For a mini-batch of m examples split by the current predictions into wrongly (W) and
correctly (C) classified ones, DSGD descends along ``(G_W + gamma * G_C) / m`` where
``G_W`` and ``G_C`` are the summed per-example loss gradients. Because the gradient is
linear in the per-example losses, this is the gradient of

    sum_i v_i * loss_i / m,    v_i = 1 if i in W, gamma if i in C,

with the weights v_i held constant (no gradient flows through them). One backward pass,
like plain fine-tuning.

"Correct" means ``argmax(logits) == label`` where argmax breaks ties towards the lowest
class index, exactly as :func:`torch.argmax` does. So an all-equal logit row counts as a
prediction of class 0.

Beyond the paper, :func:`soft_example_weights` replaces the hard correct/wrong split by a
weight that depends on each example's own loss (``weighting="soft"`` in :func:`dsgd_loss`
and in the ``dsgd`` method's settings); the default stays the paper's hard split.

Precision: losses and weights are computed in the logits' own precision, except that half
precision (float16, bfloat16) is upcast to float32 first (:func:`upcast_half`), so a
float64 model gets a float64 loss and gradient, and a float32 one exactly what it got
before this rule was written down.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import torch
import torch.nn.functional as F

PerExampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
HALF_DTYPES = (torch.float16, torch.bfloat16)


def upcast_half(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16/bfloat16; any other dtype (float32, float64) as is."""
    return x.float() if x.dtype in HALF_DTYPES else x


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, num_classes), got {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {logits.shape[1]}) (num_classes={logits.shape[1]}), "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )


def correct_mask(logits: torch.Tensor, labels: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Boolean mask of correctly classified examples (ties resolved as argmax does)."""
    if check:
        _check(logits, labels)
    return logits.detach().argmax(dim=-1) == labels


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return gamma


def example_weights(logits: torch.Tensor, labels: torch.Tensor, gamma: float,
                    check: bool = True) -> torch.Tensor:
    """Per-example DSGD weights: 1 for misclassified, ``gamma`` for correctly classified.

    Returned without gradient, in the logits' dtype and device. ``check=False`` skips the
    label-range check (it reads the labels on the host, a sync on a GPU); a training loop
    that validated its labels once can turn it off.
    """
    gamma = _check_gamma(gamma)
    correct = correct_mask(logits, labels, check=check)
    one = torch.ones((), dtype=logits.dtype, device=logits.device)
    return torch.where(correct, one * gamma, one)


WEIGHTINGS = ("hard", "soft")


def soft_example_weights(logits: torch.Tensor, labels: torch.Tensor, gamma: float,
                         check: bool = True) -> torch.Tensor:
    """Loss-driven DSGD weights: ``v_i = min(1, gamma + (1 - gamma) * loss_i / ln 2)``.

    ``loss_i`` is the example's cross-entropy, ``-ln p_i`` with ``p_i`` the softmax
    probability of its label. An example whose label gets probability 1/2 or less (every
    misclassified one, and in a two-class task exactly the misclassified ones) keeps weight
    1, as in DSGD; a correct example's weight falls continuously towards ``gamma`` as it
    becomes confident (``p_i -> 1``). So the weight has no jump at the decision boundary: an
    example that barely crosses it is not suddenly down-weighted to gamma. ``gamma = 1``
    gives plain fine-tuning. Returned without gradient, in float32 (float64 for float64
    logits).
    """
    gamma = _check_gamma(gamma)
    if check:
        _check(logits, labels)
    with torch.no_grad():
        ce = F.cross_entropy(upcast_half(logits.detach()), labels, reduction="none")
        return torch.clamp(gamma + (1.0 - gamma) * ce / math.log(2.0), max=1.0)


def weights_for(weighting: str, logits: torch.Tensor, labels: torch.Tensor, gamma: float,
                check: bool = True) -> torch.Tensor:
    """Per-example weights of the named scheme: "hard" (the paper's split) or "soft"."""
    if weighting == "hard":
        return example_weights(logits, labels, gamma, check=check)
    if weighting == "soft":
        return soft_example_weights(logits, labels, gamma, check=check)
    raise ValueError(f"unknown weighting {weighting!r}; choose one of {list(WEIGHTINGS)}")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy (computed in float32 for half-precision logits)."""
    return F.cross_entropy(upcast_half(logits), labels, reduction="none")


def focal(alpha: float = 0.25, gamma: float = 2.0) -> PerExampleLoss:
    """Per-example focal loss -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017).

    ``alpha`` weights every class equally here (alpha_t = alpha); with ``alpha=1, gamma=0``
    it is cross-entropy.
    """

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(upcast_half(logits), dim=-1).gather(1, labels[:, None]).squeeze(1)
        p = logp.exp()
        return -alpha * (1.0 - p).pow(gamma) * logp

    return loss


LOSSES: dict[str, Callable[..., PerExampleLoss]] = {
    "ce": lambda: cross_entropy,
    "cross_entropy": lambda: cross_entropy,
    "focal": focal,
}


def get_loss(loss: Union[str, PerExampleLoss] = "ce", **kw: float) -> PerExampleLoss:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a callable")
    return LOSSES[loss](**kw)


def dsgd_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float,
    loss: Union[str, PerExampleLoss] = "ce",
    normalizer: float | int | torch.Tensor | None = None,
    weights_from: torch.Tensor | None = None,
    check: bool = True,
    weighting: str = "hard",
) -> torch.Tensor:
    """Scalar whose gradient is ``(G_W + gamma * G_C) / m``.

    loss: "ce" (default), "focal" or a callable giving per-example losses.
    normalizer: the ``m`` to divide by; defaults to the batch size. With gradient
      accumulation pass the number of examples in the whole optimizer step (Hugging Face's
      ``num_items_in_batch``) so the accumulated gradient matches one big batch.
    weights_from: logits that decide correct/wrong (e.g. an extra no-dropout pass);
      defaults to ``logits`` (the training pass).
    check: validate shapes and label range (one host read of the labels); pass False in a
      GPU loop whose labels were checked once.
    weighting: "hard" (the paper: 1 for wrong, gamma for correct) or "soft"
      (:func:`soft_example_weights`, driven by each example's loss).
    """
    if check:
        _check(logits, labels)
        if weights_from is not None and weights_from.shape != logits.shape:
            raise ValueError(f"weights_from must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(weights_from.shape)}")
    decide = logits if weights_from is None else weights_from
    # weights in the upcast precision: gamma rounded to float16/bfloat16 would shift them
    w = weights_for(weighting, upcast_half(decide), labels, gamma, check=False)
    per_example = get_loss(loss)(logits, labels)
    m = labels.shape[0] if normalizer is None else normalizer
    return (w.to(per_example.dtype) * per_example).sum() / m


def correct_weight_share(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> float:
    """Share of the batch's total weight carried by correctly classified examples.

    ``gamma |C| / (|W| + gamma |C|)``: 0 when nothing is correct or gamma = 0. This is the
    'effective batch' argument of the paper: with small gamma the update is driven by the
    misclassified examples alone.
    """
    w = example_weights(logits, labels, gamma)
    c = correct_mask(logits, labels)
    total = float(w.sum())
    return float(w[c].sum()) / total if total > 0 else 0.0
