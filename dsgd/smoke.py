"""Smoke mode: run a chapter's GPU profile (``paper.yaml``) end to end on a CPU in seconds.

With ``DSGD_SMOKE=1`` in the environment the library replaces only what a paper profile
would download, and shortens every run:

* **models** (:func:`substitute_model`, used by :func:`dsgd.models.load_model` and
  :func:`dsgd.models.load_tokenizer`): each hub model of :data:`dsgd.models.HUB_MODELS`
  becomes a random model of the *same architecture* built offline from a config
  (:data:`MODEL_SUBSTITUTES`: 2 layers, hidden 32), with the offline MiniLM tokenizer
  (text) or a 32-pixel image preprocessor (ViT);
* **data** (:func:`substitute_task_kwargs`, used by :func:`dsgd.data.load_task`): a hub
  text task (``source="hub"``, the default) reads its hand-written fixture
  (``dsgd/data/fixtures/<task>.json``), CIFAR-10/100 read random CIFAR-shaped images
  (``source="synthetic"``, :data:`SMOKE_IMAGES_PER_CLASS` per class);
* **budget** (:func:`cap_steps`, used by :func:`dsgd.engine.train_run`): every run stops
  after at most ``$DSGD_SMOKE_MAX_STEPS`` optimizer steps (default 2). The run's config and
  run id are left as they are, so a chapter finds its records where it expects them; the
  record says ``"smoke": true`` and must never enter a stored result set.

Seeds, grid sizes and the other parameter cuts are not made here but in each chapter's
``notebooks/params/<chapter>/smoke.yaml``, merged over ``paper.yaml`` by
``python3 make.py smoke``.

Every substitution prints one line starting with ``[smoke]`` (to stderr, once per process
and subject) and appends it to the file ``$DSGD_SMOKE_LOG`` when that is set, so a build
can list what was replaced.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any

ENV = "DSGD_SMOKE"
MAX_STEPS_ENV = "DSGD_SMOKE_MAX_STEPS"
LOG_ENV = "DSGD_SMOKE_LOG"
DEFAULT_MAX_STEPS = 2
SMOKE_IMAGES_PER_CLASS = 10  # synthetic CIFAR: train images per class (eval: a fifth)

# hub model -> the offline tiny model of the same architecture (dsgd.models registry names)
MODEL_SUBSTITUTES = {"roberta-large": "tiny-roberta", "llama-3.2-1b": "tiny-llama", "vit-base": "tiny-vit"}
CIFAR_TASKS = ("cifar10", "cifar100")

_logged: set[str] = set()


def active() -> bool:
    """Whether smoke mode is on (``DSGD_SMOKE`` is 1/true/yes/on)."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def max_steps() -> int:
    """The step cap of smoke mode (``$DSGD_SMOKE_MAX_STEPS``, default 2)."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_STEPS
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_STEPS_ENV} must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{MAX_STEPS_ENV} must be a positive integer, got {raw!r}")
    return n


def log(message: str, key: str | None = None) -> None:
    """Print ``[smoke] message`` once per process for ``key`` (default: the message)."""
    key = message if key is None else key
    if key in _logged:
        return
    _logged.add(key)
    line = f"[smoke] {message}"
    print(line, file=sys.stderr, flush=True)
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


# ---------------------------------------------------------------------------- models
def describe_model(model: Any) -> str:
    """``"RobertaForSequenceClassification (2 layers, hidden 32)"``."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", None)
    hidden = getattr(cfg, "hidden_size", None)
    size = f" ({layers} layers, hidden {hidden})" if layers is not None and hidden is not None else ""
    return f"{type(model).__name__}{size}"


def substitute_model(name: str, num_labels: int, *, seed: int = 0, **kw: Any) -> tuple[Any, Any]:
    """The smoke stand-in for hub model ``name``: ``(tiny random model, its tokenizer or
    preprocessor)``, built offline; ``kw`` are passed on (the tiny factories read them as
    config overrides)."""
    from dsgd.models import load_model

    tiny = MODEL_SUBSTITUTES[name]
    model, tok = load_model(tiny, num_labels, seed=seed, **kw)
    log(f"{name} -> tiny random {describe_model(model)} ('{tiny}', built from a config, no "
        f"weights downloaded), {describe_tokenizer(tok)}", key=f"model:{name}")
    return model, tok


def substitute_tokenizer(name: str, **kw: Any) -> Any:
    """The tokenizer (or image preprocessor) of ``name``'s smoke stand-in."""
    from dsgd.models import load_tokenizer

    tok = load_tokenizer(MODEL_SUBSTITUTES[name], **kw)
    log(f"tokenizer of {name} -> {describe_tokenizer(tok)}", key=f"tokenizer:{name}")
    return tok


def describe_tokenizer(tok: Any) -> str:
    if hasattr(tok, "vocab_size"):
        return f"the offline MiniLM tokenizer (vocabulary {tok.vocab_size:,})"
    size = getattr(tok, "size", None)
    return f"a {size}-pixel image preprocessor" if size else type(tok).__name__


def uses_substitute(name: str) -> bool:
    """Whether smoke mode is on and model ``name`` is replaced."""
    return active() and name in MODEL_SUBSTITUTES


# ------------------------------------------------------------------------------ data
def substitute_task_kwargs(task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The loader options of ``task`` with a hub source replaced (a copy; others unchanged).

    Hub text tasks read their fixture; CIFAR reads synthetic images, with ``n_max`` and
    ``eval_size`` dropped (they are sized for the real sets). Files given with
    ``data_files`` and every non-hub source are left alone."""
    from dsgd.data.hub import HUB_TASKS, fixture_path, fixture_records

    kw = dict(kwargs)
    if task in HUB_TASKS and kw.get("source", "hub") == "hub" and kw.get("data_files") is None:
        kw["source"] = "fixture"
        spec = HUB_TASKS[task]
        rec = fixture_records(task)
        log(f"{task}: hub dataset {spec.path}/{spec.config} -> fixture {fixture_path(task).name} "
            f"({len(rec['train'])} train, {len(rec['validation'])} validation records)", key=f"task:{task}")
    elif task in CIFAR_TASKS and kw.get("source", "hub") == "hub":
        dropped = {k: kw.pop(k) for k in ("n_max", "eval_size") if kw.get(k) is not None}
        kw.update(source="synthetic", synthetic_per_class=SMOKE_IMAGES_PER_CLASS)
        extra = f"; {dropped} dropped" if dropped else ""
        log(f"{task}: hub dataset -> synthetic CIFAR-shaped images ({SMOKE_IMAGES_PER_CLASS} train, "
            f"{max(1, SMOKE_IMAGES_PER_CLASS // 5)} eval per class){extra}", key=f"task:{task}")
    return kw


# ---------------------------------------------------------------------------- budget
def cap_steps(T: int, epoch_ends: list[int]) -> tuple[int, list[int]]:
    """``(T, epoch_ends)`` cut at :func:`max_steps` (unchanged when smoke mode is off)."""
    if not active():
        return T, epoch_ends
    cap = max_steps()
    if T <= cap:
        return T, epoch_ends
    ends = [e for e in epoch_ends if e < cap] + [cap]
    log(f"training capped at {cap} optimizer steps per run (e.g. a run set to {T})", key="steps")
    return cap, ends


def is_missing(value: Any) -> bool:
    """A value a results file must not hold after a smoke run: None, NaN or "n/a"/"nan"."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in ("n/a", "nan")
    return False


def missing_values(obj: Any, prefix: str = "") -> list[str]:
    """Paths (``key.sub[2]``) of every missing value (:func:`is_missing`) inside ``obj``."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += missing_values(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += missing_values(v, f"{prefix}[{i}]")
    elif is_missing(obj):
        out.append(prefix or "(value)")
    return out
