"""DSGD for Hugging Face ``Trainer`` and for plain PyTorch loops.

Three entry points, one behaviour (the maths lives in :mod:`dsgd.weighting`):

* :class:`DSGDLoss` — a small object for a custom loop: ``crit.loss(logits, labels, step)``
  returns ``sum_i v_i * loss_i / m`` with ``v_i = 1`` (misclassified) or ``gamma_t``
  (correct), ``gamma_t = schedule(t, T)``. Plain PyTorch, five lines::

      crit = DSGDLoss("linear", tau=1.0, total_steps=num_optimizer_steps)
      for step, (inputs, labels) in enumerate(loader):
          logits = model(**inputs).logits
          crit.loss(logits, labels, step).backward()
          optimizer.step(); optimizer.zero_grad()

  With gradient accumulation pass ``normalizer=<examples in the whole optimizer step>``
  to every micro-batch's ``loss`` and use the optimizer-step index as ``step``.

* :class:`DSGDTrainer` — a ``transformers.Trainer`` subclass: ``t`` is
  ``state.global_step`` (optimizer steps, so gradient accumulation does not speed the
  schedule up), ``T`` is ``state.max_steps``; every micro-batch is divided by the number
  of examples in the whole optimizer step (``num_items_in_batch``) so accumulated
  micro-batches give exactly the gradient of one big batch; weights and loss are computed
  in float32 for half-precision (float16/bfloat16) logits and in the logits' own precision
  otherwise (float64 stays float64); ``dsgd_gamma``, ``dsgd_correct_weight_share``
  (``gamma |C| / (|W| + gamma |C|)``), ``dsgd_correct_frac`` and ``dsgd_ce`` (the
  unweighted cross-entropy) join the Trainer's training logs.

* :class:`DSGDCallback` — for an existing ``Trainer`` (or subclass) that cannot be
  replaced: pass the :class:`DSGDLoss` object as ``compute_loss_func`` and
  ``DSGDCallback(crit)`` as a callback that keeps its step counter in sync.

Written against transformers 5.x (CI pins 5.23.0); the Trainer must have the
``loss_is_scaled_for_ga`` switch, which tells it not to divide our loss by the number of
accumulation steps a second time.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Union

import torch

from .schedules import ScheduleLike
from .schedules import schedule as make_schedule
from .weighting import PerExampleLoss, correct_mask, dsgd_loss, get_loss, upcast_half

LOG_KEYS = ("dsgd_gamma", "dsgd_correct_weight_share", "dsgd_correct_frac", "dsgd_ce")


def _logits_of(outputs: Any) -> torch.Tensor:
    """The logits of a model output: ``.logits`` / ``["logits"]``, a tuple's first item, or a tensor."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        if "logits" in outputs:
            return outputs["logits"]
        raise ValueError(f"the model output has no 'logits' (keys: {list(outputs)})")
    if hasattr(outputs, "logits"):
        return outputs.logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise ValueError(f"cannot find logits in a model output of type {type(outputs).__name__}")


class DSGDLoss:
    """DSGD's loss for any training loop.

    schedule, tau, schedule_kwargs: ``gamma_t = dsgd.schedule(schedule, tau, **schedule_kwargs)``
      evaluated at ``(step, total_steps)``; see :func:`dsgd.schedule`.
    total_steps: ``T``, the number of optimizer steps of the whole run (may be given later
      per call, or set by :class:`DSGDCallback`).
    loss, loss_kwargs: per-example loss, "ce" (default), "focal" (``alpha``, ``gamma``) or a
      callable ``(logits, labels) -> per-example losses``.

    Also usable as a Hugging Face ``compute_loss_func`` (see :meth:`__call__`). Statistics of
    the calls since the last :meth:`pop_stats` (gamma, correct-group weight share, training
    accuracy, plain cross-entropy) are collected for logging.
    """

    def __init__(
        self,
        schedule: ScheduleLike = "linear",
        tau: float = 1.0,
        total_steps: int | None = None,
        *,
        schedule_kwargs: dict[str, Any] | None = None,
        loss: Union[str, PerExampleLoss] = "ce",
        loss_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.gamma_fn: Callable[[float, float], float] = make_schedule(schedule, tau, **(schedule_kwargs or {}))
        self.tau = float(tau)
        self.per_example_loss: PerExampleLoss = get_loss(loss, **(loss_kwargs or {}))
        if total_steps is not None and int(total_steps) < 1:
            raise ValueError(f"total_steps must be a positive number of optimizer steps, got {total_steps}")
        self.total_steps = None if total_steps is None else int(total_steps)
        self.step = 0  # used by __call__ (kept in sync by DSGDCallback)
        self._reset_stats()

    # ------------------------------------------------------------------ maths
    def gamma(self, step: int | None = None, total_steps: int | None = None) -> float:
        """``gamma_t`` at optimizer step ``step`` (default: ``self.step``) of ``total_steps``."""
        t = self.step if step is None else step
        T = self.total_steps if total_steps is None else total_steps
        if T is None:
            raise ValueError("DSGD needs the total number of optimizer steps T: pass total_steps=... "
                             "to DSGDLoss(...) or to loss(), or use DSGDCallback with a Trainer")
        if T < 1:
            raise ValueError(f"total_steps must be >= 1, got {T}")
        g = float(self.gamma_fn(t, T))
        if not 0.0 <= g <= 1.0 or math.isnan(g):
            raise ValueError(f"the schedule returned gamma={g} at t={t}, T={T}; it must lie in [0, 1]")
        return g

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        step: int | None = None,
        *,
        total_steps: int | None = None,
        normalizer: float | int | torch.Tensor | None = None,
        weights_from: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``sum_i v_i loss_i / normalizer``, ``v_i = 1`` if wrong else ``gamma_step``; in
        float32 for half-precision logits, else in the logits' precision.

        normalizer: examples per optimizer step (default: this batch's size). With gradient
          accumulation give the size of the whole optimizer step to every micro-batch.
        weights_from: logits that decide correct/wrong (e.g. a no-dropout pass); default
          ``logits``.
        """
        g = self.gamma(step, total_steps)
        # float32 for half precision, weights included (gamma rounded to bf16 would shift
        # every weight); float64 stays float64.
        logits_up = upcast_half(logits)
        decide_up = None if weights_from is None else upcast_half(weights_from.detach())
        out = dsgd_loss(logits_up, labels, g, loss=self.per_example_loss, normalizer=normalizer,
                        weights_from=decide_up)
        self._record(logits_up, labels, g, decide_up)
        return out

    def __call__(self, outputs: Any, labels: torch.Tensor,
                 num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
        """Hugging Face ``compute_loss_func(outputs, labels, num_items_in_batch)``.

        Uses ``self.step`` / ``self.total_steps`` (set by :class:`DSGDCallback`) and divides by
        ``num_items_in_batch`` (examples in the optimizer step) when the Trainer gives it.
        """
        return self.loss(_logits_of(outputs), labels, normalizer=num_items_in_batch)

    # ------------------------------------------------------------ statistics
    def _reset_stats(self) -> None:
        self._w_correct = 0.0
        self._w_total = 0.0
        self._n = 0
        self._n_correct = 0
        self._ce_sum = 0.0
        self._last_gamma: float | None = None

    @torch.no_grad()
    def _record(self, logits_up: torch.Tensor, labels: torch.Tensor, g: float,
                decide_up: torch.Tensor | None) -> None:
        c = correct_mask(logits_up if decide_up is None else decide_up, labels)
        n_c = int(c.sum())
        n = int(labels.shape[0])
        self._w_correct += g * n_c
        self._w_total += (n - n_c) + g * n_c
        self._n += n
        self._n_correct += n_c
        self._ce_sum += float(torch.nn.functional.cross_entropy(logits_up, labels, reduction="sum"))
        self._last_gamma = g

    def pop_stats(self) -> dict[str, float]:
        """Aggregates since the last call (empty dict if there were no loss calls), then reset.

        ``dsgd_gamma``: gamma of the latest call; ``dsgd_correct_weight_share``:
        ``sum gamma|C| / sum (|W| + gamma|C|)`` over the calls (0 if the total weight is 0);
        ``dsgd_correct_frac``: share of correctly classified examples; ``dsgd_ce``: mean
        unweighted cross-entropy.
        """
        if self._n == 0:
            return {}
        out = {
            "dsgd_gamma": float(self._last_gamma),
            "dsgd_correct_weight_share": self._w_correct / self._w_total if self._w_total > 0 else 0.0,
            "dsgd_correct_frac": self._n_correct / self._n,
            "dsgd_ce": self._ce_sum / self._n,
        }
        self._reset_stats()
        return out


# --------------------------------------------------------------------------- HF Trainer
try:  # transformers is a dependency, but keep `import dsgd.trainer` cheap to fail clearly
    from transformers import Trainer, TrainerCallback
except ImportError as _e:  # pragma: no cover - transformers is a hard dependency
    raise ImportError("dsgd.trainer needs transformers (pip install 'transformers>=5')") from _e


class DSGDCallback(TrainerCallback):
    """Keeps a :class:`DSGDLoss` used as ``compute_loss_func`` in step with a ``Trainer``.

    Sets the loss object's ``total_steps = state.max_steps`` at the start of training and
    ``step = state.global_step`` at the start of every optimizer step, and keeps one
    row of :meth:`DSGDLoss.pop_stats` per optimizer step in ``self.history``::

        crit = DSGDLoss("linear", tau=1.0)
        trainer = Trainer(model, args, train_dataset=ds, compute_loss_func=crit,
                          callbacks=[DSGDCallback(crit)])

    (The Trainer then also uses ``crit`` for its evaluation loss. ``correct_from="eval"``
    needs the model and is only offered by :class:`DSGDTrainer`.)
    """

    def __init__(self, dsgd: DSGDLoss) -> None:
        self.dsgd = dsgd
        self.history: list[dict[str, float]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.dsgd.total_steps = int(state.max_steps)
        self.dsgd.step = int(state.global_step)
        self.dsgd._reset_stats()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.dsgd.step = int(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        stats = self.dsgd.pop_stats()
        if stats:
            self.history.append({"step": int(state.global_step), **stats})

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.dsgd._reset_stats()  # evaluation batches went through the loss too: drop them

    on_predict = on_evaluate


class DSGDTrainer(Trainer):
    """``transformers.Trainer`` that trains with DSGD.

    Extra arguments (everything else goes to ``Trainer``):

    schedule, tau, schedule_kwargs: ``gamma_t`` (see :func:`dsgd.schedule`), evaluated at
      ``t = state.global_step`` (optimizer steps) and ``T = state.max_steps``.
    correct_from: "train" (default: the training forward pass, dropout on, decides who is
      correct) or "eval" (one extra no-grad forward pass in eval mode decides).
    loss, loss_kwargs: per-example loss ("ce", "focal", or a callable).

    Each micro-batch contributes ``sum_i v_i loss_i / N`` where ``N`` is the number of
    examples in the whole optimizer step (the Trainer's ``num_items_in_batch``: the count of
    labels != -100, i.e. the examples for sequence classification). If the Trainer gives no
    count, ``N = micro-batch size x accumulation steps`` (the Trainer's own convention).
    Evaluation losses are the model's ordinary loss. Single-label classification only.
    """

    # Our loss is already divided by the whole optimizer step's size.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        schedule: ScheduleLike = "linear",
        tau: float = 1.0,
        schedule_kwargs: dict[str, Any] | None = None,
        correct_from: str = "train",
        loss: Union[str, PerExampleLoss] = "ce",
        loss_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # validate before the (expensive) Trainer set-up
        if correct_from not in ("train", "eval"):
            raise ValueError(f"correct_from must be 'train' or 'eval', got {correct_from!r}")
        if "loss_is_scaled_for_ga" not in vars(Trainer):
            raise RuntimeError(
                "DSGDTrainer needs a transformers Trainer with the `loss_is_scaled_for_ga` switch "
                "(transformers 5.x); upgrade transformers or use dsgd.DSGDLoss in your own loop")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("DSGDTrainer computes its own loss; do not pass compute_loss_func")
        self.dsgd = DSGDLoss(schedule, tau, schedule_kwargs=schedule_kwargs, loss=loss, loss_kwargs=loss_kwargs)
        self.correct_from = correct_from
        super().__init__(*args, **kwargs)
        if self.label_smoother is not None:
            raise ValueError("DSGDTrainer does not apply label smoothing; set label_smoothing_factor=0 "
                             "or pass a smoothed per-example loss as loss=...")

    # ------------------------------------------------------------------ loss
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if not model.training or "labels" not in inputs:
            # evaluation / prediction: the model's ordinary loss, as with the plain Trainer
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        if labels.dim() != 1 or labels.is_floating_point():
            raise ValueError("DSGDTrainer supports single-label classification: labels must be a 1-D "
                             f"integer tensor, got shape {tuple(labels.shape)} dtype {labels.dtype}")
        outputs = model(**inputs)
        logits = _logits_of(outputs)
        decide = self._eval_logits(model, inputs) if self.correct_from == "eval" else None
        normalizer, scale = self._normalizer(labels, num_items_in_batch)
        loss = self.dsgd.loss(logits, labels, step=self.state.global_step, total_steps=self.state.max_steps,
                              normalizer=normalizer, weights_from=decide)
        if scale != 1:
            loss = loss * scale
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _eval_logits(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """Logits of a no-dropout pass (model mode restored afterwards)."""
        was_training = model.training
        model.eval()
        try:
            return _logits_of(model(**inputs)).detach()
        finally:
            model.train(was_training)

    def _normalizer(self, labels: torch.Tensor,
                    num_items_in_batch: torch.Tensor | int | None) -> tuple[Any, float]:
        """(examples in the optimizer step, extra factor) for this micro-batch's loss."""
        if num_items_in_batch is None or self.args.n_gpu > 1:
            # No count from the Trainer (or DataParallel, where the count is split per GPU
            # but the loss sees the gathered batch): assume equal micro-batches.
            k = int(getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps))
            return labels.shape[0] * max(k, 1), 1.0
        scale = 1.0
        # Mirror Trainer.compute_loss: with average_tokens_across_devices the count is summed
        # over processes, and DDP averages gradients, so multiply back by the process count.
        if self.args.average_tokens_across_devices and (
            self.model_accepts_loss_kwargs or self.compute_loss_func is not None
        ):
            tp = self.get_tp_size() if hasattr(self, "get_tp_size") else 1
            scale = float(self.accelerator.num_processes // max(tp, 1))
        return num_items_in_batch, scale

    # --------------------------------------------------------------- logging
    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log (evaluation logs use eval_* keys)
            logs.update(self.dsgd.pop_stats())
        super().log(logs, *args, **kwargs)


__all__ = ["DSGDLoss", "DSGDTrainer", "DSGDCallback", "LOG_KEYS"]
