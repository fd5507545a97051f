"""Small helpers that every executable chapter uses.

* :func:`check_parameters` — validate the papermill parameters of a chapter in its first
  cells: an unknown name or a value of the wrong type stops the chapter with one clear
  message, before any expensive work.
* :class:`Results` — the chapter's machine-readable results file; every headline number
  goes through it and is glued (myst-nb ``glue``) so the prose cites it, not a hand copy.
* :func:`device_summary` — what this run executes on, for the page.

These are library utilities rather than chapter glue: every chapter uses them, and
:mod:`dsgd.store` finds the book's root with :func:`repo_root`.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import platform
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """A chapter was given an unknown or ill-typed parameter."""


def _type_ok(value: Any, spec: Any) -> bool:
    if isinstance(spec, tuple):  # a set of allowed values
        return value in spec
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(spec, list):  # [elem_type]: a list of that type
        return isinstance(value, (list, tuple)) and all(_type_ok(v, spec[0]) for v in value)
    if spec is None:
        return True
    if isinstance(spec, type):
        return isinstance(value, spec)
    if callable(spec):
        return bool(spec(value))
    raise TypeError(f"bad parameter spec {spec!r}")


def _describe(spec: Any) -> str:
    if isinstance(spec, tuple):
        return "one of " + ", ".join(repr(s) for s in spec)
    if isinstance(spec, list):
        return f"a list of {_describe(spec[0])}"
    if isinstance(spec, type):
        return spec.__name__
    return getattr(spec, "__doc__", None) or repr(spec)


def optional(spec: Any) -> Any:
    """A parameter spec that also accepts None: ``n_max=optional(float)``."""

    def ok(value: Any) -> bool:
        return value is None or _type_ok(value, spec)

    ok.__doc__ = f"{_describe(spec)} or None"
    return ok


def check_parameters(namespace: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """Validate a chapter's parameters and return them as a dict.

    ``namespace`` is the notebook's ``globals()`` right after the ``parameters`` cell
    (and papermill's injected cell). ``spec`` maps each parameter name to a type
    (``int``, ``float``, ``str``, ``bool``), a list ``[type]`` for lists, a tuple of
    allowed values, or ``None`` for anything. Names in the namespace that are not in
    ``spec`` are unknown parameters (a typo in a parameter file) and are rejected.
    """
    problems = []
    user = {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and k not in _IPYTHON_NAMES
        and not isinstance(v, ModuleType)
        and not inspect.isfunction(v)
        and not inspect.isclass(v)
        and not inspect.isbuiltin(v)
    }
    unknown = sorted(set(user) - set(spec))
    if unknown:
        problems.append(f"unknown parameter(s) {unknown}; this chapter takes {sorted(spec)}")
    missing = sorted(set(spec) - set(user))
    if missing:
        problems.append(f"parameter(s) {missing} are not defined (the parameters cell was edited?)")
    for name, s in spec.items():
        if name in user and not _type_ok(user[name], s):
            problems.append(
                f"parameter {name!r} = {user[name]!r} has the wrong type: expected {_describe(s)}"
            )
    if problems:
        raise ParameterError("Bad chapter parameters:\n  - " + "\n  - ".join(problems))
    return {k: user[k] for k in spec}


def repo_root(start: Path | None = None) -> Path:
    """The book's root (the folder holding ``_toc.yml``), or the working directory."""
    p = (start or Path.cwd()).resolve()
    for q in [p, *p.parents]:
        if (q / "_toc.yml").exists():
            return q
    return p


def results_dir() -> Path:
    d = os.environ.get("DSGD_RESULTS_DIR")
    return Path(d) if d else repo_root() / "_build" / "results"


FINDING_VERDICTS = ("supported", "contradicted", "not resolved", "not testable at this scale")


class Results:
    """A chapter's headline numbers, written to ``<results_dir>/<chapter>.json``.

    ``put`` stores a value, writes the file at once (nothing is lost if a later cell
    fails) and glues it under the same key for the text to cite with ``{glue:text}``.
    """

    def __init__(self, chapter: str, parameters: dict[str, Any] | None = None):
        self.chapter = chapter
        self.path = results_dir() / f"{chapter}.json"
        self.data: dict[str, Any] = {
            "chapter": chapter,
            "parameters": parameters or {},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": device_summary(),
            "values": {},
        }
        self._write()

    def put(self, key: str, value: Any, fmt: str | None = None, glue: bool = True) -> Any:
        if hasattr(value, "item") and callable(value.item):
            try:
                value = value.item()
            except (ValueError, RuntimeError):
                pass
        self.data["values"][key] = value
        self._write()
        if glue:
            shown = format(value, fmt) if fmt and isinstance(value, (int, float)) else value
            try:
                from myst_nb import glue as _glue

                _glue(key, shown, display=False)
            except ImportError:  # plain Python / Colab without myst-nb
                pass
        return value

    def put_number(self, key: str, value: Any, fmt: str | None = None, missing: str = "–") -> Any:
        """:meth:`put`, but a number that does not exist (None or NaN: e.g. the standard
        deviation of one run) is written as ``missing``; anything else is put as it is."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return self.put(key, missing)
        return self.put(key, value, fmt)

    def get(self, key: str) -> Any:
        return self.data["values"][key]

    def finding(self, key: str, *, claim: str, measured: str, setting: str, verdict: str,
                section: str = "", source: str = "paper") -> dict[str, Any]:
        """Record one row of the book's findings page (``notebooks/findings.ipynb``).

        claim: what the paper (``source="paper"``) or this book (``"beyond the paper"``)
          asserts; measured: what this chapter computed, numbers with intervals; setting:
          model, data and scale; verdict: one of :data:`FINDING_VERDICTS`, decided by the
          chapter's code from the numbers; section: the anchor of the section that shows it.
        """
        if verdict not in FINDING_VERDICTS:
            raise ValueError(f"verdict must be one of {FINDING_VERDICTS}, got {verdict!r}")
        row = {"chapter": self.chapter, "claim": claim, "measured": measured, "setting": setting,
               "verdict": verdict, "section": section, "source": source}
        self.data.setdefault("findings", {})[key] = row
        self._write()
        return row

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable))
        os.replace(tmp, self.path)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def device_summary() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def first(items: Iterable[Any]) -> Any:
    for x in items:
        return x
    return None
