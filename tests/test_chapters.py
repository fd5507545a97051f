"""Chapters stop early on bad parameters, and a failing cell fails the book build."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

papermill = pytest.importorskip("papermill")


def _first_failing_cell(out: Path) -> int:
    cells = json.loads(out.read_text())["cells"]
    for i, c in enumerate(cells):
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                return i
    raise AssertionError("no cell failed")


def _code_index_of_check(nb: Path) -> int:
    cells = json.loads(nb.read_text())["cells"]
    for i, c in enumerate(cells):
        if c["cell_type"] == "code" and "check_parameters(" in "".join(c["source"]):
            return i
    raise AssertionError("no check_parameters cell")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("bad", [{"no_such_parameter": 1}, "wrong_type"])
def test_bad_parameter_stops_chapter_in_its_first_cells(nb, bad, tmp_path):
    if bad == "wrong_type":
        from tests.test_hygiene import parameters_of

        name, value = next(iter(parameters_of(nb).items()))
        bad = {name: {"not": "valid"}}  # a dict is valid for no parameter
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as e:
        papermill.execute_notebook(str(nb), str(out), parameters=bad, cwd=str(nb.parent),
                                   progress_bar=False, kernel_name="python3")
    assert "ParameterError" in str(e.value.ename)
    msg = str(e.value.evalue)
    assert ("unknown parameter" in msg) or ("wrong type" in msg), msg
    # papermill inserts one cell (injected-parameters) right after the parameters cell
    assert _first_failing_cell(out) == _code_index_of_check(nb) + 1


def _load_make():
    spec = importlib.util.spec_from_file_location("make_entry", ROOT / "make.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_entry"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_failing_cell_fails_the_book_build(tmp_path, monkeypatch):
    make = _load_make()
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 1",
             "outputs": [], "execution_count": None},
            {"cell_type": "code", "metadata": {}, "source": "raise RuntimeError('deliberate')",
             "outputs": [], "execution_count": None},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (tmp_path / "notebooks").mkdir()
    bad = tmp_path / "notebooks" / "broken.ipynb"
    bad.write_text(json.dumps(nb))
    monkeypatch.setattr(make, "ROOT", tmp_path)
    monkeypatch.setattr(make, "EXECUTED", tmp_path / "_build" / "executed")
    monkeypatch.setattr(make, "toc_notebooks", lambda: [bad])
    monkeypatch.setattr(make, "py", lambda: sys.executable)
    with pytest.raises(SystemExit, match="broken"):
        make.execute()
