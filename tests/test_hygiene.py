"""Repository hygiene: notebooks, table of contents, parameter files, environment files."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb"))


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("parts", toc.get("chapters", [])))
    return out


def _resolve(entry: str) -> Path | None:
    for suffix in ("", ".md", ".ipynb"):
        p = ROOT / (entry + suffix)
        if p.is_file():
            return p
    return None


def parameters_of(nb: Path) -> dict[str, object]:
    """Names and literal values assigned in a notebook's `parameters` cell."""
    cells = [c for c in _cells(nb) if "parameters" in c.get("metadata", {}).get("tags", [])]
    tree = ast.parse(_src(cells[0]))
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            raise AssertionError(f"{nb.name}: parameters cell may hold assignments only")
        for t in node.targets:
            out[t.id] = ast.literal_eval(node.value)
    return out


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(nb):
    for i, c in enumerate(_cells(nb)):
        if c["cell_type"] == "code":
            assert not c.get("outputs"), f"{nb.name} cell {i} has outputs"
            assert c.get("execution_count") is None, f"{nb.name} cell {i} has an execution count"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_exactly_one_parameters_cell_then_check(nb):
    cells = _cells(nb)
    idx = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(idx) == 1, f"{nb.name}: {len(idx)} cells tagged 'parameters'"
    params = parameters_of(nb)
    assert params, f"{nb.name}: empty parameters cell"
    following = [c for c in cells[idx[0] + 1:] if c["cell_type"] == "code"][0]
    assert "check_parameters(" in _src(following), (
        f"{nb.name}: the code cell after 'parameters' must validate them with check_parameters"
    )
    # every parameter is named in the check
    for name in params:
        assert re.search(rf"\b{name}\s*=", _src(following)), f"{nb.name}: {name} not checked"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_running_box_and_colab_install_cell(nb):
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    cells = _cells(nb)
    text = "\n".join(_src(c) for c in cells)
    assert "Running this chapter" in text, f"{nb.name}: no 'Running this chapter' box"
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "import dsgd" in _src(first_code) and "%pip install" in _src(first_code)
    assert f"git+{url}" in _src(first_code), f"{nb.name}: install cell must use {url}"


def test_every_notebook_is_in_toc_and_every_toc_entry_exists():
    entries = _toc_files()
    resolved = []
    for e in entries:
        p = _resolve(e)
        assert p is not None, f"_toc.yml entry {e!r} does not exist"
        resolved.append(p.resolve())
    for nb in NOTEBOOKS:
        assert nb.resolve() in resolved, f"{nb.name} is not listed in _toc.yml"


def test_parameter_files_name_known_parameters():
    files = sorted((ROOT / "notebooks" / "params").glob("*/*.yaml"))
    assert files, "no parameter files"
    for f in files:
        nb = ROOT / "notebooks" / f"{f.parent.name}.ipynb"
        assert nb.exists(), f"{f} belongs to no notebook"
        known = parameters_of(nb)
        given = yaml.safe_load(f.read_text()) or {}
        unknown = set(given) - set(known)
        assert not unknown, f"{f}: unknown parameters {sorted(unknown)}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_a_paper_profile(nb):
    assert (ROOT / "notebooks" / "params" / nb.stem / "paper.yaml").exists()


def _req_name(req: str) -> str:
    return re.split(r"[\s<>=!\[;~]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    import tomllib

    pp = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_req_name(r) for r in pp["dependencies"]}
    for extra, reqs in pp["optional-dependencies"].items():
        names |= {_req_name(r) for r in reqs if not r.startswith("dsgd[")}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    env_names = {_req_name(r) for r in pip if not r.startswith("-e")}
    assert env_names == names, (
        f"only in environment.yml: {sorted(env_names - names)}; "
        f"only in pyproject.toml: {sorted(names - env_names)}"
    )
    # the torch/torchvision pair is the one CI pins
    cons = (ROOT / "constraints" / "ci.txt").read_text()
    for r in pip:
        if _req_name(r) in ("torch", "torchvision"):
            assert r in cons.splitlines(), f"{r} in environment.yml but not in constraints/ci.txt"
