"""One library, one book: the layout rules of ``dsgd/`` and the chapters' code budgets.

* The library (every module under ``dsgd/`` outside ``dsgd/chapters/``) never imports a
  chapter module; a chapter module imports the library and ``dsgd.chapters._common``,
  never another chapter module.
* ``dsgd.__all__`` names library objects only.
* Each chapter listed in ``_toc.yml`` shows at most ``PER_CHAPTER`` non-blank code lines
  (cells without a hide/remove tag, the ``parameters`` cell not counted), all chapters
  together at most ``TOTAL``; every folded code cell follows a markdown cell (which says
  what the folded cell does), and tags come from a known list.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.test_hygiene import _resolve, _toc_files

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dsgd"
CHAPTERS = "dsgd.chapters"
SHARED = "dsgd.chapters._common"
PER_CHAPTER = 80
TOTAL = 200
FOLDED = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
KNOWN_TAGS = FOLDED | {"parameters", "full-width",  # sphinx-book-theme: content spans the margin
                       "injected-parameters", "hide-output", "remove-output",
                       "raises-exception", "skip-execution"}


# ------------------------------------------------------------------ import rules
def module_name(path: Path) -> str:
    """``dsgd/chapters/nlp.py`` -> ``dsgd.chapters.nlp``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an import statement of ``source`` (anywhere, also inside functions)
    names, absolute; ``from dsgd.chapters import nlp`` counts as ``dsgd.chapters.nlp``
    (it may import the submodule)."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.add(prefix)
            out |= {f"{prefix}.{a.name}" for a in node.names}
    return out


def chapter_of(name: str) -> str | None:
    """The chapter module a dotted name belongs to (``dsgd.chapters.nlp.x`` ->
    ``dsgd.chapters.nlp``), ``dsgd.chapters`` for the package itself, None outside it."""
    if name == CHAPTERS:
        return CHAPTERS
    if not name.startswith(CHAPTERS + "."):
        return None
    return ".".join(name.split(".")[:3])


def layout_problems(modules: dict[str, tuple[str, bool]]) -> list[str]:
    """Broken import rules among ``{module name: (source, is_package)}``."""
    problems = []
    for mod, (src, is_pkg) in sorted(modules.items()):
        own = chapter_of(mod)
        for imp in sorted(imported_modules(src, mod, is_pkg)):
            target = chapter_of(imp)
            if target is None:
                continue
            if own is None:
                problems.append(f"library module {mod} imports {imp}")
            elif target not in (own, SHARED, CHAPTERS):
                problems.append(f"chapter module {mod} imports {imp}")
    return problems


def _package_modules() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted(PKG.rglob("*.py"))}


def test_import_rules_on_hand_made_modules():
    mods = {
        "dsgd.report": ("import math\nfrom dsgd.store import ResultStore", False),
        "dsgd.engine": ("def f():\n    from dsgd.chapters import nlp\n", False),  # hidden in a function
        "dsgd.theory.plots": ("from ..chapters.vision import x", False),  # relative, two levels up
        "dsgd.chapters.nlp": ("from dsgd.chapters._common import method_variants\nimport dsgd.report", False),
        "dsgd.chapters.vision": ("from dsgd.chapters import nlp", False),
        "dsgd.chapters.multitask": ("from . import _common\nfrom .phenomenon import arm_label", False),
    }
    assert layout_problems(mods) == [
        "chapter module dsgd.chapters.multitask imports dsgd.chapters.phenomenon",
        "chapter module dsgd.chapters.multitask imports dsgd.chapters.phenomenon.arm_label",
        "chapter module dsgd.chapters.vision imports dsgd.chapters.nlp",
        "library module dsgd.engine imports dsgd.chapters",
        "library module dsgd.engine imports dsgd.chapters.nlp",
        "library module dsgd.theory.plots imports dsgd.chapters.vision",
        "library module dsgd.theory.plots imports dsgd.chapters.vision.x",
    ]


def test_library_never_imports_a_chapter_and_chapters_not_each_other():
    mods = _package_modules()
    assert any(chapter_of(m) not in (None, CHAPTERS) for m in mods), "no chapter modules found"
    assert layout_problems(mods) == []


def test_dsgd_all_lists_library_names_only():
    import importlib

    import dsgd

    chapter_names = {m.rpartition(".")[2] for m in _package_modules() if chapter_of(m) not in (None, CHAPTERS)}
    chapter_names.add("chapters")
    assert not set(dsgd.__all__) & chapter_names
    for name, module in dsgd._EXPORTS.items():
        assert chapter_of(module) is None, f"dsgd.{name} comes from the chapter module {module}"
        obj = getattr(importlib.import_module(module), name)
        defined_in = getattr(obj, "__module__", module) or module
        assert chapter_of(defined_in) is None, f"dsgd.{name} is defined in {defined_in}"


# ------------------------------------------------------------------ code budgets
def _source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def visible_lines(nb: dict) -> int:
    """Non-blank lines of the code cells a reader sees: not folded or removed, and not the
    ``parameters`` cell."""
    return sum(sum(1 for line in _source(c).splitlines() if line.strip())
               for c in nb["cells"]
               if c["cell_type"] == "code" and not _tags(c) & (FOLDED | {"parameters"}))


def _toc_notebooks() -> list[Path]:
    out = []
    for entry in _toc_files():
        p = _resolve(entry)
        if p is not None and p.suffix == ".ipynb":
            out.append(p)
    return out


TOC_NOTEBOOKS = _toc_notebooks()


def test_visible_lines_of_a_hand_made_notebook():
    cell = lambda src, tags=(), kind="code": {"cell_type": kind, "metadata": {"tags": list(tags)}, "source": src}  # noqa: E731
    nb = {"cells": [
        cell("# a title", kind="markdown"),
        cell("seeds = [0, 1]\n\nlr = 1e-3", ["parameters"]),   # not counted
        cell(["import dsgd\n", "\n", "   \n", "x = dsgd.schedule('linear')\n"]),  # 2
        cell("a = 1\nb = 2\nc = 3", ["hide-input"]),           # folded
        cell("d = 4", ["remove-cell"]),                        # removed
        cell("e = 5\nf = 6", ["hide-output"]),                 # 2: only the output is folded
        cell("g = 7", ["hide-cell"]),
        cell("h = 8", ["remove-input"]),
    ]}
    assert visible_lines(nb) == 4


def test_toc_lists_chapters():
    assert len(TOC_NOTEBOOKS) >= 7, [p.name for p in TOC_NOTEBOOKS]


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_shows_at_most_its_budget_of_code(path):
    n = visible_lines(json.loads(path.read_text()))
    assert n <= PER_CHAPTER, (f"{path.name} shows {n} code lines (at most {PER_CHAPTER}): move helpers "
                              f"into dsgd/chapters/{path.stem}.py or fold plumbing cells (hide-input)")


def test_all_chapters_together_stay_within_the_total_budget():
    counts = {p.stem: visible_lines(json.loads(p.read_text())) for p in TOC_NOTEBOOKS}
    assert sum(counts.values()) <= TOTAL, f"{sum(counts.values())} visible code lines in all: {counts}"


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=lambda p: p.stem)
def test_folded_cells_follow_a_note_and_tags_are_known(path):
    cells = json.loads(path.read_text())["cells"]
    for i, c in enumerate(cells):
        unknown = _tags(c) - KNOWN_TAGS
        assert not unknown, f"{path.name} cell {i}: unknown tag(s) {sorted(unknown)} (Jupyter Book ignores them)"
        if c["cell_type"] == "code" and _tags(c) & FOLDED:
            assert i > 0 and cells[i - 1]["cell_type"] == "markdown", (
                f"{path.name} cell {i} is folded: the markdown right before it should say what it does")
