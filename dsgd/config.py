"""Explicit, validated configuration of one fine-tuning run.

A :class:`RunConfig` names everything that changes a run's numbers (task, model, method,
seed, optimiser and schedule settings, budget). Its :meth:`RunConfig.run_id` is a stable
hash of those fields plus :data:`RESULTS_VERSION`, so a result store can recognise a run
that was already computed, and any change of setting is a different run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

# Bump when a library change alters the numbers a given config produces.
RESULTS_VERSION = 1

# Fields that do not change a run's numbers and are left out of its id.
_NON_RESULT_FIELDS = {"tags", "probe_every", "progress", "device"}
# Switches that only add evaluations or records to a run (its weights and its final
# evaluation stay the same: tests/test_engine.py checks it). They stay in the run id, which
# names a record's contents, but not in :meth:`RunConfig.training_id`.
_RECORD_ONLY_FIELDS = {"eval_each_epoch": True, "record_history": True}


@dataclass
class RunConfig:
    """Everything one fine-tuning run depends on.

    task, model: registry names (see ``dsgd.data`` / ``dsgd.models``).
    method: a name from ``dsgd.METHODS``; ``method_kwargs`` its own settings
      (e.g. ``{"alpha": 0.25, "gamma": 2.0}`` for focal loss).
    schedule, tau, schedule_kwargs: DSGD's gamma_t (used by methods that weight examples).
    correct_from: which forward pass decides "correctly classified": ``"train"`` (the
      training pass, dropout on; the default) or ``"eval"`` (an extra no-dropout pass).
    epochs / max_steps: budget; ``max_steps`` (optimizer steps) wins when set.
    train_size / eval_size: optional subsets of the task's splits (stable split seed).
    """

    task: str = "epistemic_reasoning"
    model: str = "minilm"
    method: str = "fft"
    seed: int = 0
    lr: float = 1e-4
    epochs: float = 2.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    adam_bias_correction: bool = True
    max_length: int = 128
    schedule: str = "linear"
    tau: float = 1.0
    schedule_kwargs: dict[str, Any] = field(default_factory=dict)
    correct_from: Literal["train", "eval"] = "train"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    train_size: int | None = None
    eval_size: int | None = None
    split_seed: int = 0
    eval_each_epoch: bool = True
    record_history: bool = True
    probe_every: int = 0  # gradient-cancellation probe every N steps (0 = off); diagnostic only
    threads: int | None = None
    device: str | None = None  # "cpu", "cuda", "cuda:1"...; None = cuda if available else cpu
    tags: dict[str, Any] = field(default_factory=dict)
    progress: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message for impossible settings (a value of
        the wrong type first, e.g. ``epochs="two"``, so later checks never hit a bare
        ``TypeError``)."""
        check_field_types(self)
        if not 0.0 <= float(self.tau) <= 1.0:
            raise ValueError(f"tau must lie in [0, 1], got {self.tau}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("set epochs > 0 or max_steps")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.correct_from not in ("train", "eval"):
            raise ValueError(f"correct_from must be 'train' or 'eval', got {self.correct_from!r}")

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def result_dict(self) -> dict[str, Any]:
        """The fields that determine the numbers (what the run id hashes)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NON_RESULT_FIELDS}
        d["results_version"] = RESULTS_VERSION
        return d

    def run_id(self) -> str:
        """Stable id: ``<task>-<model>-<method>-s<seed>-<12 hex of the settings hash>``."""
        blob = json.dumps(self.result_dict(), sort_keys=True, default=str)
        h = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return f"{self.task}-{self.model}-{self.method}-s{self.seed}-{h}"

    def training_id(self) -> str:
        """The run id of the same run with the record-only switches (``eval_each_epoch``,
        ``record_history``) at their defaults. Two configs with one training id train the
        same weights and end with the same final evaluation, so a cheaper build run (no
        evaluation after each epoch) can verify a stored record of the full one."""
        return self.replace(**_RECORD_ONLY_FIELDS).run_id()


# --------------------------------------------------------------------------- type checks
def _type_names(annotation: Any) -> list[str]:
    """``"int | None"`` -> ``["int", "None"]``; ``"dict[str, Any]"`` -> ``["dict"]``;
    ``Literal[...]`` -> ``["str"]`` (its values are checked by :meth:`RunConfig.validate`)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    out = []
    for part in text.split("|"):
        part = part.strip()
        out.append("str" if part.startswith("Literal[") else part.split("[", 1)[0])
    return out


def _is_type(value: Any, name: str) -> bool:
    """Whether ``value`` fits the annotation name (bools are not numbers here)."""
    if name == "None":
        return value is None
    if name == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name == "int":
        return isinstance(value, numbers.Integral)
    if name == "float":
        return isinstance(value, numbers.Real)
    if name == "str":
        return isinstance(value, str)
    if name == "dict":
        return isinstance(value, dict)
    return True  # an annotation this check does not know: accept


_WHAT = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
         "dict": "a mapping (e.g. {alpha: 0.25})", "None": "null (unset)"}


def check_field_types(cfg: Any) -> None:
    """``ValueError`` naming the field when a :class:`RunConfig` value has the wrong type."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        names = _type_names(f.type)
        if not any(_is_type(value, n) for n in names):
            want = " or ".join(_WHAT.get(n, n) for n in names)
            raise ValueError(
                f"RunConfig field {f.name!r} must be {want}, got {value!r} "
                f"({type(value).__name__}); fix it in the config or parameter file "
                f"(default: {_default_text(f)})"
            )


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "none"
