"""The paper's text tasks from the Hugging Face Hub (SuperGLUE, GLUE), plus Hub checks.

Tasks (hub dataset, config; train split = hub ``train``, eval = hub ``validation``):

| task | hub | text_a | text_b | label 0 / 1 |
|---|---|---|---|---|
| rte | aps/super_glue, rte | premise | hypothesis | entailment / not_entailment |
| copa | aps/super_glue, copa | premise + question phrase | both choices | choice 1 / choice 2 |
| boolq | aps/super_glue, boolq | question | passage | False / True |
| multirc | aps/super_glue, multirc | paragraph | question + " " + answer | False / True |
| mrpc | nyu-mll/glue, mrpc | sentence1 | sentence2 | not_equivalent / equivalent |
| cola | nyu-mll/glue, cola | sentence | — | unacceptable / acceptable |

COPA as a binary task: the paper lists COPA with 2 classes, 400 training and 100
validation examples (its Table 3), so each COPA question is *one* example whose label says
which choice is right. We write it as the pair ``("<premise> What was the cause?"`` (or
``"What happened as a result?"`` for ``question == "effect"``),
``"Option 1: <choice1> Option 2: <choice2>")``. (The alternative, one binary
example per choice, would give 800 training examples and is not what the paper counts.)
MultiRC likewise has one example per (paragraph, question, answer) triple, labelled by
whether the answer is right (27,243 / 4,848 in the paper's Table 3).

The formatting functions (:data:`FORMATTERS`) are pure functions of one hub-schema record,
so they are tested offline on the hand-written fixtures in ``dsgd/data/fixtures/``. Load a
task from those fixtures with ``load_task("copa", tok, source="fixture")``, or from local
files in the hub schema with ``data_files={"train": ..., "validation": ...}`` (JSON/JSONL).

Without network, ``source="hub"`` (the default) fails at once with
:class:`HubUnavailableError` unless the dataset is already in the local ``datasets``
cache (then it is read from there in offline mode).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple
from urllib.parse import urlparse

from dsgd.data import TaskData, register_task

FIXTURES = Path(__file__).parent / "fixtures"
OFFLINE_TEXT_TASKS = ("epistemic_reasoning", "formal_fallacies_syllogisms_negation",
                      "presuppositions_as_nli", "winowhy", "strategyqa", "bbc_news")


# --------------------------------------------------------------------- Hub checks
class HubUnavailableError(RuntimeError):
    """Something needs the Hugging Face Hub, which cannot be reached (or offline mode is on)."""


def hub_offline_mode() -> bool:
    """True when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE asks for offline mode."""
    vals = [os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")]
    if any(v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in vals):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub can be used now: not in offline mode, and its host answers on TCP."""
    if hub_offline_mode():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    u = urlparse(endpoint)
    try:
        with socket.create_connection((u.hostname or "huggingface.co", u.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_message(what: str, alternatives: str) -> str:
    reason = ("offline mode is on (HF_HUB_OFFLINE=1)" if hub_offline_mode()
              else "the Hugging Face Hub cannot be reached")
    return (f"{what} needs the Hugging Face Hub, but {reason} and it is not in the local cache. "
            f"Run it where the Hub is reachable (the GPU `paper` profile), or use {alternatives}.")


@contextlib.contextmanager
def _offline_datasets():
    """Temporarily switch the ``datasets`` library to offline mode (read the local cache)."""
    import datasets
    from huggingface_hub import constants

    old = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = old


def _dataset_in_cache(path: str) -> bool:
    try:
        import datasets

        root = Path(datasets.config.HF_DATASETS_CACHE)
    except Exception:  # pragma: no cover
        return False
    return (root / path.replace("/", "___")).exists()


def load_hub_dataset(path: str, config: str | None, task: str, alternatives: str | None = None) -> Any:
    """``datasets.load_dataset(path, config)``, failing fast and clearly without the Hub."""
    if alternatives is None:
        alternatives = (f'load_task("{task}", tok, source="fixture") (tiny hand-written sample) or the '
                        f"offline tasks {', '.join(OFFLINE_TEXT_TASKS)}")
    what = f"task {task!r} (hub dataset {path}{'/' + config if config else ''})"
    online = hub_reachable()
    if not online and not _dataset_in_cache(path):
        raise HubUnavailableError(hub_message(what, alternatives))
    import datasets

    try:
        if online:
            return datasets.load_dataset(path, config)
        with _offline_datasets():
            return datasets.load_dataset(path, config)
    except (ConnectionError, OSError) as e:
        raise HubUnavailableError(hub_message(what, alternatives) + f" [{type(e).__name__}: {e}]") from e


# --------------------------------------------------------------------- formatting
class Formatted(NamedTuple):
    text_a: str
    text_b: str | None
    label: int


COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def format_rte(r: dict[str, Any]) -> Formatted:
    return Formatted(r["premise"], r["hypothesis"], int(r["label"]))


def format_copa(r: dict[str, Any]) -> Formatted:
    q = COPA_QUESTIONS[r["question"]]
    return Formatted(f"{r['premise']} {q}", f"Option 1: {r['choice1']} Option 2: {r['choice2']}", int(r["label"]))


def format_boolq(r: dict[str, Any]) -> Formatted:
    return Formatted(r["question"], r["passage"], int(r["label"]))


def format_multirc(r: dict[str, Any]) -> Formatted:
    return Formatted(r["paragraph"], f"{r['question']} {r['answer']}", int(r["label"]))


def format_mrpc(r: dict[str, Any]) -> Formatted:
    return Formatted(r["sentence1"], r["sentence2"], int(r["label"]))


def format_cola(r: dict[str, Any]) -> Formatted:
    return Formatted(r["sentence"], None, int(r["label"]))


class HubTask(NamedTuple):
    path: str
    config: str
    format: Callable[[dict[str, Any]], Formatted]
    label_names: list[str]
    max_length: int  # the paper's (Table 4)
    metrics: tuple[str, ...] = ("accuracy",)


HUB_TASKS: dict[str, HubTask] = {
    "rte": HubTask("aps/super_glue", "rte", format_rte, ["entailment", "not_entailment"], 512),
    "copa": HubTask("aps/super_glue", "copa", format_copa, ["choice1", "choice2"], 256),
    "boolq": HubTask("aps/super_glue", "boolq", format_boolq, ["False", "True"], 512),
    "multirc": HubTask("aps/super_glue", "multirc", format_multirc, ["False", "True"], 512, ("accuracy", "f1")),
    "mrpc": HubTask("nyu-mll/glue", "mrpc", format_mrpc, ["not_equivalent", "equivalent"], 256, ("accuracy", "f1")),
    "cola": HubTask("nyu-mll/glue", "cola", format_cola, ["unacceptable", "acceptable"], 256, ("accuracy", "mcc")),
}
FORMATTERS = {name: t.format for name, t in HUB_TASKS.items()}


# ------------------------------------------------------------------------ loading
def _read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a JSON list, a ``{"data": [...]}`` object, or JSON lines."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return json.loads(text)
    if text.startswith("{") and "\n{" not in text:
        obj = json.loads(text)
        return obj["data"] if isinstance(obj, dict) and "data" in obj else [obj]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def fixture_path(task: str) -> Path:
    return FIXTURES / f"{task}.json"


def fixture_records(task: str) -> dict[str, list[dict[str, Any]]]:
    """The hand-written fixture of a hub task: ``{"train": [...], "validation": [...]}``."""
    obj = json.loads(fixture_path(task).read_text(encoding="utf-8"))
    return {"train": obj["train"], "validation": obj["validation"]}


def _subset(n: int, size: int | None, seed: int) -> list[int]:
    """First ``size`` of a RandomState(seed) permutation of range(n), or all in order."""
    import numpy as np

    if size is None or size >= n:
        return list(range(n))
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    return [int(i) for i in np.random.RandomState(seed).permutation(n)[:size]]


def load_hub_task(task: str, tokenizer: Any, *, max_length: int | None = None, train_size: int | None = None,
                  eval_size: int | None = None, split_seed: int = 0, source: str = "hub",
                  data_files: dict[str, str] | None = None, metric: str = "accuracy", **kw: Any) -> TaskData:
    """Load a paper task (see the module docstring); ``train_size``/``eval_size`` take
    seeded random subsets of the hub train/validation splits (all by default)."""
    from dsgd.data.offline import tokenize_examples

    if kw:
        raise ValueError(f"task {task!r} got unknown options {sorted(kw)}")
    spec = HUB_TASKS[task]
    if metric not in spec.metrics:
        raise ValueError(f"task {task!r}: metric must be one of {spec.metrics}, got {metric!r}")
    if tokenizer is None:
        raise ValueError("a text task needs a tokenizer (see dsgd.models.load_model)")
    if data_files is not None:
        source = "files"
        splits = {s: _read_records(data_files[s]) for s in ("train", "validation")}
    elif source == "fixture":
        splits = fixture_records(task)
    elif source == "hub":
        ds = load_hub_dataset(spec.path, spec.config, task)
        splits = {s: ds[s] for s in ("train", "validation")}
    else:
        raise ValueError(f"source must be 'hub', 'fixture' (or pass data_files=), got {source!r}")

    def formatted(records: Iterable[dict[str, Any]], size: int | None, seed: int):
        records = [r for r in records if int(r["label"]) >= 0]  # hub test splits carry label -1
        keep = _subset(len(records), size, seed)
        return [records[i] for i in keep], [spec.format(records[i]) for i in keep]

    train_rec, train_ex = formatted(splits["train"], train_size, split_seed)
    eval_rec, eval_ex = formatted(splits["validation"], eval_size, split_seed + 1)
    max_length = spec.max_length if max_length is None else max_length
    train = tokenize_examples(tokenizer, train_ex, max_length)
    evals = tokenize_examples(tokenizer, eval_ex, max_length)
    info = {
        "source": f"{source}:{spec.path}/{spec.config}",
        "split_seed": split_seed,
        "eval_texts": [e[:2] if e[1] is not None else e[0] for e in eval_ex],
        "eval_ids": [r.get("idx") for r in eval_rec],
        "train_ids": [r.get("idx") for r in train_rec],
        "pairs": spec.format is not format_cola,
        "max_length": max_length,
        "truncated_train": sum(len(f["input_ids"]) >= max_length for f in train),
    }
    return TaskData(name=task, num_labels=len(spec.label_names), train=train, eval=evals,
                    label_names=list(spec.label_names), metric=metric, kind="text", info=info)


def _register(task: str) -> None:
    def loader(tokenizer: Any, **kw: Any) -> TaskData:
        return load_hub_task(task, tokenizer, **kw)

    loader.__name__ = f"load_{task}"
    loader.__doc__ = (f"{task.upper()} ({HUB_TASKS[task].path}/{HUB_TASKS[task].config}); "
                      "see dsgd.data.hub.load_hub_task for the options.")
    register_task(task)(loader)


for _name in HUB_TASKS:
    _register(_name)
