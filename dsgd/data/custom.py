"""Your own classification data, reached by name like the built-in tasks.

Task names (wherever a task name goes: ``RunConfig.task``, a sweep file, a chapter):

* ``"csv:FILE"`` — a CSV file with a header row (read as text, so ``007`` stays ``007``);
* ``"jsonl:FILE"`` — a JSON-lines file, one object per line;
* ``"bigbench:TASK"`` or ``"bigbench:TASK:SUBTASK"`` — any BIG-bench 1.0.0 JSON task whose
  examples carry ``target_scores`` (read from the archive the set-up step keeps, see
  :func:`dsgd.data.prepare.ensure_bigbench_task`);
* a name given to :func:`register_frame` (a pandas DataFrame) or :func:`register_dataset`
  (a Hugging Face ``datasets.Dataset``); both save the rows under
  ``<data cache>/frames/<name>.csv``, so sweep workers in other processes find them too.

A task name starts the run id, which names the stored record's file, so it holds no
``/``: ``FILE`` is a file name, looked up in the folder ``task_kwargs["dir"]`` (default
the working directory of the process that loads the task; a relative ``dir`` is relative
to it too). :func:`save_frame` writes a file and returns both.

Options, through ``RunConfig.task_kwargs``:

* ``dir``: the folder of ``FILE`` (csv / jsonl);
* ``text`` (default ``"text"``), ``text_pair`` (default none: single texts; a second
  column makes every example a pair), ``label`` (default ``"label"``);
* ``label_names``: the classes in label-index order. Default: the distinct labels, sorted
  (integers numerically, anything else as text). With ``label_names`` given, labels
  must be among its names, or else be integers, read as indices into it;
* ``eval_fraction``: share of the examples held out (default 0.2, at most 500 examples);
  an exact count goes in ``RunConfig.eval_size`` instead (give one of the two);
* ``metric`` ("accuracy", "mcc" or "f1"); ``sha256``: the file's content hash — a file
  that changed since the config was written is refused (:func:`save_frame` fills it in, so
  new data get new run ids instead of silently reusing stored runs).

The split is the built-in tasks' stable split (:func:`dsgd.data.offline.stable_split`):
rows in file order, shuffled once by ``split_seed``; the first ``eval_size`` are held out.

Every check runs on the raw rows, before anything is tokenised (and so before the engine
builds the model): a missing column, an empty text or label, rows mixing single texts and
pairs, fewer than two classes, a label outside ``label_names``, too few examples for the
split, a label that occurs only in the held-out split, a BIG-bench task that is not
multiple choice. :func:`describe_task` runs them without a tokenizer and shows the split.

BIG-bench: when every example offers the same options, the options are the classes
(single text = the example's ``input``; label = the option with the highest score, which
must be unique). When the options differ from example to example but their number does
not, the example becomes the pair ``(input, "(A) ... (B) ...")`` with its options in an
order shuffled by the example's position (``RandomState(i)``, fixed, so the right answer
is not always listed first) and the classes are the letters.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dsgd.data import TaskData
from dsgd.data.offline import Example, make_text_task, stable_split
from dsgd.data.prepare import data_dir, ensure_bigbench_task

PREFIXES = ("csv", "jsonl", "bigbench")
DEFAULT_EVAL_FRACTION = 0.2
DEFAULT_EVAL_CAP = 500  # the default held-out set never exceeds this many examples
_OPTIONS = ("dir", "text", "text_pair", "label", "label_names", "eval_fraction", "metric", "sha256")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_INT = re.compile(r"^[+-]?\d+$")


class DataError(ValueError):
    """Own data that cannot make a classification task; the message says what to change."""


@dataclass
class Rows:
    """Raw examples of a task, before the split: ``(text_a, text_b | None, label index)``."""

    examples: list[Example]
    label_names: list[str]
    source: str
    info: dict[str, Any]


# ---------------------------------------------------------------------- tables
def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _plain(v: Any) -> Any:
    """numpy / pandas scalars -> Python values."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


def _rows_list(bad: list[int], limit: int = 5) -> str:
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{bad[:limit]}{more}"


def _texts(col: list[Any], column: str, where: str) -> list[str]:
    bad = [i for i, v in enumerate(col) if _blank(v)]
    if bad:
        raise DataError(f"{where}: column {column!r} is empty in rows {_rows_list(bad)} "
                        "(0-based data rows); fill or drop those rows")
    return [str(_plain(v)).strip() for v in col]


def _label_indices(col: list[Any], column: str, label_names: Sequence[str] | None,
                   where: str) -> tuple[list[int], list[str]]:
    bad = [i for i, v in enumerate(col) if _blank(v)]
    if bad:
        raise DataError(f"{where}: column {column!r} has no label in rows {_rows_list(bad)} "
                        "(0-based data rows)")
    vals = [_plain(v) for v in col]
    vals = [str(v) if isinstance(v, bool) else v for v in vals]
    if all(isinstance(v, int) or (isinstance(v, str) and _INT.match(v.strip())) for v in vals):
        vals = [int(v) for v in vals]
        integers = True
    else:
        vals = [str(v).strip() for v in vals]
        integers = False
    if label_names is None:
        names_sorted = sorted(set(vals))
        index = {v: i for i, v in enumerate(names_sorted)}
        names = [str(v) for v in names_sorted]
        labels = [index[v] for v in vals]
    else:
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names):
            raise DataError(f"{where}: label_names {names} repeat a name")
        as_text = [str(v).strip() for v in vals]
        if set(as_text) <= set(names):  # labels spelled as the names (also "1", "2" ...)
            labels = [names.index(v) for v in as_text]
        elif integers:
            out = [v for v in vals if not 0 <= v < len(names)]
            if out:
                raise DataError(f"{where}: integer labels are indices into label_names {names}, "
                                f"so they must lie in [0, {len(names)}); got {sorted(set(out))[:5]}")
            labels = vals
        else:
            unknown = sorted(set(as_text) - set(names))
            raise DataError(f"{where}: label(s) {unknown[:5]} are not in label_names {names}")
    if len(names) < 2:
        raise DataError(f"{where}: a classification task needs at least 2 classes, "
                        f"column {column!r} holds only {names}")
    return labels, names


def rows_from_frame(df: Any, *, text: str = "text", label: str = "label", text_pair: str | None = None,
                    label_names: Sequence[str] | None = None, where: str = "data") -> tuple[list[Example], list[str]]:
    """Examples and class names from a DataFrame's columns, with the checks of the module."""
    if len(df) == 0:
        raise DataError(f"{where}: no rows")
    wanted = [c for c in (text, text_pair, label) if c is not None]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(
            f"{where}: no column(s) {missing}; its columns are {[str(c) for c in df.columns]}. "
            "Name yours with task_kwargs, e.g. {'text': 'review', 'label': 'stars'} "
            "(and 'text_pair' for a second text)")
    a = _texts(df[text].tolist(), text, where)
    b = None
    if text_pair is not None:
        col = df[text_pair].tolist()
        empty = [i for i, v in enumerate(col) if _blank(v)]
        if len(empty) == len(col):
            raise DataError(f"{where}: column {text_pair!r} (text_pair) is empty in every row; "
                            "leave text_pair out for single texts")
        if empty:
            raise DataError(
                f"{where}: mixed single texts and pairs: column {text_pair!r} (text_pair) is empty "
                f"in rows {_rows_list(empty)} but not in the others; fill those rows, drop them, "
                "or leave text_pair out")
        b = _texts(col, text_pair, where)
    labels, names = _label_indices(df[label].tolist(), label, label_names, where)
    ex = [(a[i], None if b is None else b[i], labels[i]) for i in range(len(a))]
    return ex, names


def read_csv(path: str | Path) -> Any:
    """A CSV file (header row) as a DataFrame of strings; empty cells are ``""``."""
    import pandas as pd

    p = _existing(path)
    try:
        return pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not a readable CSV file with a header row ({e})") from None


def read_jsonl(path: str | Path) -> Any:
    """A JSON-lines file (one object per non-empty line) as a DataFrame."""
    import pandas as pd

    p = _existing(path)
    records = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{p}, line {n}: expected a JSON object, got {type(obj).__name__}")
        records.append(obj)
    return pd.DataFrame.from_records(records)


def _existing(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"no data file {str(path)!r} (looked for {p.resolve()}; relative "
                                "paths are relative to the working directory)")
    return p


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------- BIG-bench
def bigbench_rows(task: str, label_names: Sequence[str] | None = None) -> Rows:
    """The examples of a multiple-choice BIG-bench task ``TASK`` or ``TASK:SUBTASK``."""
    where = f"bigbench:{task}"
    if not re.match(r"^[A-Za-z0-9_]+(:[A-Za-z0-9_]+)?$", task):
        raise DataError(f"{where}: a BIG-bench name is a task folder, optionally with a subtask "
                        "(bigbench:anachronisms, bigbench:arithmetic:1_digit_addition)")
    folder = task.replace(":", "/")
    doc = json.loads(ensure_bigbench_task(folder).read_text(encoding="utf-8"))
    examples = doc.get("examples")
    if not examples:
        from dsgd.data.prepare import bigbench_index

        subs = [n.replace("/", ":") for n in bigbench_index() if n.startswith(folder + "/")]
        hint = (f"it is split into subtasks; name one, e.g. bigbench:{subs[0]} ({len(subs)}: "
                f"{', '.join(s.split(':', 1)[1] for s in subs[:8])}{' ...' if len(subs) > 8 else ''})"
                if subs else "it has no examples")
        raise DataError(f"{where}: no examples of its own: {hint}")
    no_scores = [i for i, e in enumerate(examples) if not e.get("target_scores")]
    if no_scores:
        raise DataError(f"{where} is not a multiple-choice task: {len(no_scores)} of {len(examples)} "
                        "examples have no target_scores (a generative task?)")
    option_sets = {tuple(sorted(e["target_scores"])) for e in examples}
    best = []
    for i, e in enumerate(examples):
        scores = e["target_scores"]
        top = max(scores.values())
        winners = [k for k, v in scores.items() if v == top]
        if len(winners) != 1:
            raise DataError(f"{where}: example {i} has {len(winners)} options with the top score "
                            f"{top} ({winners[:4]}); a class label needs exactly one")
        best.append(winners[0])
    texts = [str(e.get("input", "")).strip() for e in examples]
    if any(not t for t in texts):
        raise DataError(f"{where}: some examples have no input text")
    if len(option_sets) == 1:
        names = list(label_names) if label_names is not None else sorted(option_sets.pop())
        unknown = sorted(set(best) - set(names))
        if unknown:
            raise DataError(f"{where}: answers {unknown[:5]} are not in label_names {names}")
        ex = [(t, None, names.index(y)) for t, y in zip(texts, best)]
        fmt = "classes"
    else:
        sizes = {len(s) for s in option_sets}
        if len(sizes) != 1:
            raise DataError(f"{where}: the examples offer between {min(sizes)} and {max(sizes)} "
                            "options; a classification task needs the same options, or at least "
                            "the same number of them, in every example")
        if label_names is not None:
            raise DataError(f"{where}: its options differ between examples, so the classes are "
                            "the letters of the listed options; leave label_names out")
        k = sizes.pop()
        names = [chr(ord("A") + j) for j in range(k)] if k <= 26 else [str(j + 1) for j in range(k)]
        ex = []
        for i, (t, e, y) in enumerate(zip(texts, examples, best)):
            opts = list(e["target_scores"])
            order = np.random.RandomState(i).permutation(k)
            shown = [opts[j] for j in order]
            listed = " ".join(f"({names[j]}) {o}" for j, o in enumerate(shown))
            ex.append((t, listed, shown.index(y)))
        fmt = "choices"
    return Rows(ex, names, f"BIG-bench 1.0.0 {folder}", {"format": fmt})


# -------------------------------------------------------------------- registered
def frames_dir() -> Path:
    """Where :func:`register_frame` keeps named frames: ``<data cache>/frames``."""
    return data_dir() / "frames"


def _frame_spec(name: str) -> dict[str, Any] | None:
    p = frames_dir() / f"{name}.json"
    return json.loads(p.read_text()) if _NAME.match(name) and p.exists() else None


def _columns_only(df: Any, text: str, label: str, text_pair: str | None, label_names, where: str) -> Any:
    rows_from_frame(df, text=text, label=label, text_pair=text_pair, label_names=label_names, where=where)
    return df[[c for c in (text, text_pair, label) if c is not None]]


def _spec(text: str, label: str, text_pair: str | None, label_names) -> dict[str, Any]:
    spec: dict[str, Any] = {"text": text, "label": label}
    if text_pair is not None:
        spec["text_pair"] = text_pair
    if label_names is not None:
        spec["label_names"] = [str(n) for n in label_names]
    return spec


def register_frame(name: str, df: Any, *, text: str = "text", label: str = "label",
                   text_pair: str | None = None, label_names: Sequence[str] | None = None,
                   overwrite: bool = False) -> str:
    """Make a pandas DataFrame a task named ``name``; returns the name.

    The rows are checked now (columns, empty cells, labels) and saved, with the column
    choice, under ``<data cache>/frames/``; every process with the same cache (sweep
    workers included) can then load ``task=name``. The run id hashes the name, not the
    rows, so registering *different* rows under a name already taken is refused unless
    ``overwrite=True`` (stored runs of the old rows would otherwise pass for the new).
    """
    from dsgd.data import TASKS, _import_builtin_loaders

    _import_builtin_loaders()
    if not _NAME.match(name) or dict.__contains__(TASKS, name):
        raise DataError(f"cannot register {name!r}: use letters, digits, '_', '-' or '.', and "
                        f"not a built-in task name")
    sub = _columns_only(df, text, label, text_pair, label_names, where=f"frame {name!r}")
    body = sub.to_csv(index=False).encode("utf-8")
    sha = hashlib.sha256(body).hexdigest()
    spec = {**_spec(text, label, text_pair, label_names), "sha256": sha}
    old = _frame_spec(name)
    if old is not None and old != spec and not overwrite:
        raise DataError(f"a different frame is already registered as {name!r} "
                        f"({frames_dir() / (name + '.csv')}); pick a new name, or pass "
                        "overwrite=True if no stored run refers to the old rows")
    d = frames_dir()
    d.mkdir(parents=True, exist_ok=True)
    from dsgd.store import atomic_write_text

    atomic_write_text(d / f"{name}.csv", body.decode("utf-8"))
    atomic_write_text(d / f"{name}.json", json.dumps(spec, indent=1))
    return name


def register_dataset(name: str, dataset: Any, *, text: str = "text", label: str = "label",
                     text_pair: str | None = None, label_names: Sequence[str] | None = None,
                     overwrite: bool = False) -> str:
    """Make a Hugging Face ``datasets.Dataset`` a task named ``name`` (see :func:`register_frame`).

    A ``ClassLabel`` label column gives the class names unless ``label_names`` is given.
    """
    feat = getattr(dataset, "features", {}).get(label) if hasattr(dataset, "features") else None
    if label_names is None and feat is not None and hasattr(feat, "names"):
        label_names = list(feat.names)
    return register_frame(name, dataset.to_pandas(), text=text, label=label, text_pair=text_pair,
                          label_names=label_names, overwrite=overwrite)


def save_frame(df: Any, path: str | Path, *, text: str = "text", label: str = "label",
               text_pair: str | None = None, label_names: Sequence[str] | None = None,
               eval_fraction: float | None = None, metric: str | None = None) -> dict[str, Any]:
    """Write the used columns of ``df`` to ``path`` (``.csv`` or ``.jsonl``) and return the
    config fields that name it: ``{"task": "csv:<file name>", "task_kwargs": {"dir": <its
    folder, as given>, ..., "sha256": ...}}`` (``eval_fraction`` / ``metric`` join the
    options when given).

    Splice them into a base config (``{**save_frame(df, p), "model": "minilm"}``) or a
    sweep file. The hash ties the stored runs to these rows.
    """
    extra = {k: v for k, v in (("eval_fraction", eval_fraction), ("metric", metric)) if v is not None}
    p = Path(path)
    kind = {".csv": "csv", ".jsonl": "jsonl"}.get(p.suffix.lower())
    if kind is None:
        raise DataError(f"save_frame writes .csv or .jsonl files, not {p.name!r}")
    sub = _columns_only(df, text, label, text_pair, label_names, where=str(p))
    if kind == "csv":
        body = sub.to_csv(index=False)
    else:
        buf = io.StringIO()
        for rec in sub.to_dict(orient="records"):
            buf.write(json.dumps({k: _plain(v) for k, v in rec.items()}, ensure_ascii=False) + "\n")
        body = buf.getvalue()
    p.parent.mkdir(parents=True, exist_ok=True)
    from dsgd.store import atomic_write_text

    atomic_write_text(p, body)
    return {"task": f"{kind}:{p.name}",
            "task_kwargs": {"dir": str(p.parent), **_spec(text, label, text_pair, label_names),
                            **extra, "sha256": file_sha256(p)}}


# ------------------------------------------------------------------ name -> rows
def _table_rows(kind: str, path: str | Path, opts: dict[str, Any], where: str) -> Rows:
    sha = opts.get("sha256")
    if sha is not None and file_sha256(_existing(path)) != sha:
        raise DataError(f"{where}: the file changed since the config was written (its sha256 is "
                        f"not {sha[:12]}...); stored runs of the old rows are not runs of these. "
                        "Write a new config (dsgd.data.save_frame) or drop sha256 on purpose")
    df = read_csv(path) if kind == "csv" else read_jsonl(path)
    ex, names = rows_from_frame(df, text=opts.get("text", "text"), label=opts.get("label", "label"),
                                text_pair=opts.get("text_pair"), label_names=opts.get("label_names"),
                                where=where)
    return Rows(ex, names, f"{kind} file {path}", {})


def rows_for(name: str, opts: dict[str, Any]) -> Rows:
    """Raw rows of an own-data task name (see the module docstring)."""
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise DataError(f"task {name!r} got unknown option(s) {unknown}; it takes {list(_OPTIONS)} "
                        "(and the RunConfig fields train_size, eval_size, split_seed, max_length)")
    check_task_name(name)
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PREFIXES:
        if not rest:
            raise DataError(f"task {name!r}: give what to load after '{prefix}:'")
        if prefix == "bigbench":
            extra = sorted(set(opts) - {"label_names", "eval_fraction", "metric"})
            if extra:
                raise DataError(f"task {name!r} takes only label_names, eval_fraction, metric; got {extra}")
            return bigbench_rows(rest, opts.get("label_names"))
        return _table_rows(prefix, Path(opts.get("dir") or ".") / rest, opts, name)
    spec = _frame_spec(name)
    if spec is None:
        raise KeyError(name)
    merged = {**spec, **{k: v for k, v in opts.items() if k != "sha256"}}
    return _table_rows("csv", str(frames_dir() / f"{name}.csv"), merged, f"frame {name!r}")


def check_task_name(name: str) -> None:
    """``DataError`` for a task name that cannot start a run id (one with a ``/``)."""
    if "/" in name or "\\" in name:
        prefix, sep, rest = name.partition(":")
        if sep and prefix in ("csv", "jsonl"):
            folder, _, file = rest.replace("\\", "/").rpartition("/")
            fix = f"task {prefix + ':' + file!r} with task_kwargs {{'dir': {folder!r}}}"
        elif sep and prefix == "bigbench":
            fix = f"{name.replace('/', ':')!r} (a subtask after a ':')"
        else:
            fix = "a name without '/'"
        raise DataError(f"task name {name!r}: a task name starts the run id, which names the stored "
                        f"record's file, so it cannot hold '/'; use {fix}")


def is_custom_name(name: str) -> bool:
    prefix, sep, _ = name.partition(":")
    return bool(sep and prefix in PREFIXES) or _frame_spec(name) is not None


def held_out_size(n: int, eval_size: int | None, eval_fraction: float | None, where: str) -> int:
    """``eval_size`` if given, else ``eval_fraction`` of ``n`` (default 0.2, capped at 500)."""
    if eval_size is not None and eval_fraction is not None:
        raise DataError(f"{where}: give eval_size (RunConfig) or eval_fraction (task_kwargs), not both")
    if eval_size is not None:
        size = int(eval_size)
    else:
        frac = DEFAULT_EVAL_FRACTION if eval_fraction is None else float(eval_fraction)
        if not 0.0 < frac < 1.0:
            raise DataError(f"{where}: eval_fraction must lie in (0, 1), got {eval_fraction}")
        size = max(1, int(round(frac * n, 9)))
        if eval_fraction is None:
            size = min(size, DEFAULT_EVAL_CAP)
    if size < 1:
        raise DataError(f"{where}: eval_size must be at least 1, got {size}")
    return size


def checked_split(rows: Rows, *, eval_size: int, train_size: int | None, split_seed: int,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
    """The stable split, or a :class:`DataError` saying why this data cannot be split so."""
    n = len(rows.examples)
    if eval_size >= n:
        raise DataError(f"{where}: {n} examples, and holding out {eval_size} leaves none to train "
                        "on; lower eval_size / eval_fraction or add examples")
    if train_size is not None and not 0 < train_size <= n - eval_size:
        raise DataError(f"{where}: train_size={train_size} needs more examples than the "
                        f"{n - eval_size} left after holding out {eval_size} (of {n})")
    tr, ev = stable_split(n, eval_size, train_size, split_seed)
    y = np.array([e[2] for e in rows.examples])
    only_eval = sorted(set(y[ev].tolist()) - set(y[tr].tolist()))
    if only_eval:
        names = [rows.label_names[i] for i in only_eval]
        counts = [int((y == i).sum()) for i in only_eval]
        raise DataError(f"{where}: label(s) {names} occur only in the held-out split "
                        f"({counts} example(s) in all), so training never sees them; add examples "
                        "of those classes, drop them, or change split_seed / eval_size")
    return tr, ev


def _prepared(name: str, *, train_size: int | None, eval_size: int | None, split_seed: int,
              opts: dict[str, Any]) -> tuple[Rows, int]:
    rows = rows_for(name, opts)
    size = held_out_size(len(rows.examples), eval_size, opts.get("eval_fraction"), name)
    checked_split(rows, eval_size=size, train_size=train_size, split_seed=split_seed, where=name)
    return rows, size


def load_custom(name: str, tokenizer: Any, *, max_length: int = 128, train_size: int | None = None,
                eval_size: int | None = None, split_seed: int = 0, **opts: Any) -> TaskData:
    """Load an own-data task (the loader behind every name of the module docstring)."""
    opts = {k: v for k, v in opts.items() if not (k == "source" and v in (None, "offline"))}
    rows, size = _prepared(name, train_size=train_size, eval_size=eval_size, split_seed=split_seed, opts=opts)
    data = make_text_task(name, rows.examples, rows.label_names, tokenizer, max_length=max_length,
                          train_size=train_size, eval_size=size, split_seed=split_seed,
                          metric=opts.get("metric", "accuracy"), source=rows.source)
    data.info.update(rows.info)
    return data


def describe_task(name: str, *, train_size: int | None = None, eval_size: int | None = None,
                  split_seed: int = 0, **opts: Any) -> dict[str, Any]:
    """Run every check of an own-data task without a tokenizer; the split's class counts.

    Returns ``{"n": ..., "n_train": ..., "n_eval": ..., "pairs": ..., "label_names": [...],
    "train_counts": [...], "eval_counts": [...]}`` (counts in label-index order).
    """
    if not is_custom_name(name):
        raise DataError(f"describe_task covers own data (csv:, jsonl:, bigbench:, registered "
                        f"frames), not {name!r}")
    rows, size = _prepared(name, train_size=train_size, eval_size=eval_size, split_seed=split_seed, opts=opts)
    tr, ev = stable_split(len(rows.examples), size, train_size, split_seed)
    y = np.array([e[2] for e in rows.examples])
    k = len(rows.label_names)
    return {"n": len(y), "n_train": len(tr), "n_eval": len(ev),
            "pairs": rows.examples[0][1] is not None, "label_names": rows.label_names,
            "train_counts": np.bincount(y[tr], minlength=k).tolist(),
            "eval_counts": np.bincount(y[ev], minlength=k).tolist(), **rows.info}


def custom_loader(name: str) -> Callable[..., TaskData] | None:
    """The loader for an own-data name, or None when the name is not one."""
    return partial(load_custom, name) if is_custom_name(name) else None
