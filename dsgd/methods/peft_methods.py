"""Parameter-efficient fine-tuning through the ``peft`` library: LoRA, AdaLoRA, IA3.

Defaults follow the paper's PEFT table (reported by the paper): LoRA r = 8 (or 16),
alpha = 16 on the query and value projections; AdaLoRA initial rank 64, target rank 16
on query and value; IA3 with peft's defaults. The paper's learning rates (3e-4 for LoRA,
5e-3 for AdaLoRA and IA3) are *not* applied silently: set ``RunConfig.lr``
(see ``RECOMMENDED_LR``). For LoRA and AdaLoRA ``target_modules=None`` means the
attention query and value projections, found by name: ``query``/``value`` (BERT, RoBERTa)
or ``q_proj``/``v_proj`` (Llama, ViT); IA3 uses peft's per-architecture defaults and, for
architectures peft does not know (ViT), the keys, values and the feed-forward output layer
as in Liu et al. (2022). Any other keyword is passed to the peft config class.

The model must be a Hugging Face ``PreTrainedModel`` (peft reads ``config.model_type``);
with ``task_type="SEQ_CLS"`` peft keeps the classification head trainable.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dsgd.methods.base import Method, StepContext, check_logits, model_inputs

RECOMMENDED_LR = {"lora": 3e-4, "adalora": 5e-3, "ia3": 5e-3}


def _require_hf(model: nn.Module, name: str) -> None:
    if getattr(getattr(model, "config", None), "model_type", None) is None:
        raise ValueError(f"method {name!r} wraps the model with peft, which needs a Hugging Face "
                         f"transformers model; {type(model).__name__} is not one "
                         "(try model='tiny-bert' or 'minilm').")


def query_value_modules(model: nn.Module) -> list[str] | None:
    """``["query", "value"]`` or ``["q_proj", "v_proj"]``, whichever names the model uses."""
    leaf = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for pair in (["query", "value"], ["q_proj", "v_proj"]):
        if set(pair) <= leaf:
            return pair
    return None


class _PeftMethod(Method):
    peft_kwargs: dict[str, Any]
    query_value_default = False  # LoRA-family: target query/value unless told otherwise

    def settings(self) -> dict[str, Any]:
        return dict(self.peft_kwargs)

    def _config(self, total_steps: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_model(self, model: nn.Module, cfg: Any, *, total_steps: int) -> nn.Module:
        _require_hf(model, self.name)
        from peft import get_peft_model

        if self.query_value_default and self.peft_kwargs.get("target_modules") is None:
            self.peft_kwargs["target_modules"] = query_value_modules(model)
        return get_peft_model(model, self._config(total_steps))


class LoRA(_PeftMethod):
    name = "lora"
    query_value_default = True

    def __init__(self, r: int = 8, lora_alpha: int = 16, target_modules: list[str] | None = None,
                 **kw: Any) -> None:
        self.peft_kwargs = {"r": int(r), "lora_alpha": lora_alpha, "target_modules": target_modules, **kw}

    def _config(self, total_steps: int) -> Any:
        from peft import LoraConfig

        return LoraConfig(task_type="SEQ_CLS", **self.peft_kwargs)


class AdaLoRA(_PeftMethod):
    """AdaLoRA: ranks start at ``init_r`` and are pruned towards ``target_r`` during training.

    Its orthogonality regulariser is added by peft to the model's own loss, so this
    method passes the labels to the model and uses that (mean cross-entropy) loss.
    """

    name = "adalora"
    query_value_default = True

    def __init__(self, init_r: int = 64, target_r: int = 16,
                 target_modules: list[str] | None = None, **kw: Any) -> None:
        self.peft_kwargs = {"init_r": int(init_r), "target_r": int(target_r),
                            "target_modules": target_modules, **kw}
        self.model: nn.Module | None = None

    def _config(self, total_steps: int) -> Any:
        from peft import AdaLoraConfig

        return AdaLoraConfig(task_type="SEQ_CLS", total_step=int(total_steps), **self.peft_kwargs)

    def prepare_model(self, model: nn.Module, cfg: Any, *, total_steps: int) -> nn.Module:
        self.model = super().prepare_model(model, cfg, total_steps=total_steps)
        return self.model

    def backward(self, model: nn.Module, batch: dict[str, torch.Tensor],
                 ctx: StepContext) -> dict[str, Any]:
        labels = batch["labels"]
        out = model(**model_inputs(batch), labels=labels)
        check_logits(out.logits, labels, ctx.num_labels)
        # out.loss = mean CE over this micro-batch + orthogonality penalty
        loss = out.loss * (labels.shape[0] / ctx.n_items)
        loss.backward()
        return {"loss": loss.detach(), "logits": out.logits.detach(), "gamma": 1.0}

    def after_step(self, model: nn.Module, ctx: StepContext) -> None:
        model.base_model.update_and_allocate(ctx.t)


class IA3(_PeftMethod):
    name = "ia3"

    def __init__(self, target_modules: list[str] | None = None,
                 feedforward_modules: list[str] | None = None, **kw: Any) -> None:
        self.peft_kwargs = {"target_modules": target_modules,
                            "feedforward_modules": feedforward_modules, **kw}

    def prepare_model(self, model: nn.Module, cfg: Any, *, total_steps: int) -> nn.Module:
        _require_hf(model, self.name)
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as known

        if self.peft_kwargs.get("target_modules") is None and model.config.model_type not in known:
            leaf = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
            pick = [next((n for n in names if n in leaf), None)
                    for names in (("key", "k_proj"), ("value", "v_proj"), ("down_proj", "fc2"))]
            if None in pick:
                raise ValueError(f"ia3: cannot find key/value/feed-forward layers in "
                                 f"{type(model).__name__}; pass target_modules and feedforward_modules")
            self.peft_kwargs["target_modules"] = pick
            self.peft_kwargs["feedforward_modules"] = [pick[2]]
        return super().prepare_model(model, cfg, total_steps=total_steps)

    def _config(self, total_steps: int) -> Any:
        from peft import IA3Config

        return IA3Config(task_type="SEQ_CLS", **self.peft_kwargs)
