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


def _failing_cell_source(out: Path) -> str:
    """Source of the (only) cell that raised in an executed notebook."""
    cells = json.loads(out.read_text())["cells"]
    failed = [c for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1, f"{len(failed)} cells raised"
    src = failed[0]["source"]
    return "".join(src) if isinstance(src, list) else src


def _executed_after_check(out: Path) -> int:
    """Number of code cells after the check_parameters cell that were executed."""
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    idx = next(i for i, c in enumerate(cells) if "check_parameters(" in "".join(c["source"]))
    return sum(1 for c in cells[idx + 1:] if c.get("execution_count") is not None)


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
    # the chapter stops at its parameter check: that cell raised and nothing after it ran
    assert "check_parameters(" in _failing_cell_source(out)
    assert _executed_after_check(out) == 0


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
