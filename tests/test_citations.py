"""Every method, data set and model the book uses is cited, and every citation resolves.

* ``book/references.bib`` parses (pybtex, which sphinxcontrib-bibtex uses) and holds no
  key twice; every entry has an author, a title and a year.
* Every ``{cite}`` role (``{cite}``, ``{cite:p}``, ``{cite:t}``, ...) in the markdown cells of
  ``notebooks/*.ipynb`` and in ``book/*.md`` names a key of ``references.bib``, and every
  entry of ``references.bib`` is cited somewhere (the bibliography lists what the book uses).
* The section "Where each method, data set and model comes from" of ``book/reference.md``
  has a row, with a citation, for every registered method (``dsgd.METHODS``), task
  (``dsgd.data.TASKS``) and model (``dsgd.models.MODELS``); the registries are imported,
  not copied here, so a newly registered name without a row fails this test.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
REFERENCE = ROOT / "book" / "reference.md"
SECTION = "## Where each method, data set and model comes from"
SUBSECTIONS = {"methods": "### Methods", "tasks": "### Tasks", "models": "### Models"}

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
ENTRY = re.compile(r"^\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


# ------------------------------------------------------------------ helpers
def cite_keys(text: str) -> list[str]:
    """Keys named by the cite roles in ``text``, in order (``{cite:p}`a,b``` gives a, b)."""
    return [k.strip() for group in CITE.findall(text) for k in group.split(",") if k.strip()]


def bib_keys(text: str) -> list[str]:
    """Entry keys of a BibTeX source, in order, duplicates kept (``@comment`` etc. skipped)."""
    return [key for kind, key in ENTRY.findall(text)
            if kind.lower() not in ("comment", "preamble", "string")]


def duplicates(keys: list[str]) -> list[str]:
    """Keys that occur more than once, compared without case as BibTeX does."""
    counts = Counter(k.lower() for k in keys)
    return sorted(k for k, n in counts.items() if n > 1)


def markdown_sources() -> dict[str, str]:
    """``{"notebooks/x.ipynb#cell-id": markdown, "book/y.md": text}`` for every place a
    citation may appear."""
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                src = cell["source"]
                out[f"{nb.relative_to(ROOT)}#{cell.get('id', i)}"] = "".join(src) if isinstance(src, list) else src
    for md in sorted((ROOT / "book").glob("*.md")):
        out[str(md.relative_to(ROOT))] = md.read_text(encoding="utf-8")
    return out


def section_tables(text: str) -> dict[str, list[tuple[list[str], str]]]:
    """The rows of the "where from" section's tables: ``{"methods": [(names, source cell),
    ...], "tasks": [...], "models": [...]}``. ``names`` are the backticked names of a row's
    first cell (a cell may list several: `` `ENS(×N)`, `DSGD(×N)` ``)."""
    if SECTION not in text:
        return {}
    body = text.split(SECTION, 1)[1]
    body = re.split(r"^## ", body, maxsplit=1, flags=re.MULTILINE)[0]
    tables: dict[str, list[tuple[list[str], str]]] = {}
    current = None
    for line in body.splitlines():
        for kind, heading in SUBSECTIONS.items():
            if line.startswith(heading):
                current = kind
                tables[current] = []
        if line.startswith("### ") and not any(line.startswith(h) for h in SUBSECTIONS.values()):
            current = None
        if current is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[0]) <= set("-: ") or cells[0] == "name":
            continue
        tables[current].append((re.findall(r"`([^`]+)`", cells[0]), cells[-1]))
    return tables


def uncited(registered: list[str], rows: list[tuple[list[str], str]], known_keys: set[str]) -> list[str]:
    """Registered names without a row, or whose row's source cell cites no known key."""
    cited = {}
    for names, source in rows:
        keys = cite_keys(source)
        for name in names:
            cited[name] = bool(keys) and all(k in known_keys for k in keys)
    return sorted(n for n in registered if not cited.get(n, False))


def registries() -> dict[str, list[str]]:
    from dsgd.data import TASKS, _import_builtin_loaders
    from dsgd.methods import METHODS
    from dsgd.models import MODELS

    _import_builtin_loaders()
    return {"methods": sorted(METHODS), "tasks": sorted(TASKS), "models": sorted(MODELS)}


@pytest.fixture(scope="module")
def bib_text() -> str:
    return BIB.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def known(bib_text) -> set[str]:
    return set(bib_keys(bib_text))


# ------------------------------------------------------------------ the helpers catch what they should
def test_helpers_catch_problems():
    assert cite_keys("see {cite:p}`a, b` and {cite}`c` or {cite:t}`d`; not `e`") == ["a", "b", "c", "d"]
    assert duplicates(bib_keys("@article{x,\n}\n@book{X,\n}\n@misc{y,\n}")) == ["x"]
    md = (f"{SECTION}\n\n### Methods (`m`)\n\n| name | what | source |\n|---|---|---|\n"
          "| `fft` | plain | {cite:t}`known` |\n| `dsgd` | weighted | nothing |\n"
          "| `pcgrad` | surgery | {cite:p}`missing` |\n\n## Next section\n| `lora` | x | {cite}`known` |\n")
    rows = section_tables(md)["methods"]
    assert [names for names, _ in rows] == [["fft"], ["dsgd"], ["pcgrad"]]
    assert uncited(["fft", "dsgd", "pcgrad", "lora"], rows, {"known"}) == ["dsgd", "lora", "pcgrad"]


# ------------------------------------------------------------------ (a) the bibliography
def test_bibliography_parses_without_duplicate_keys(bib_text):
    from pybtex.database import parse_string

    keys = bib_keys(bib_text)
    assert keys, "references.bib holds no entries"
    assert not duplicates(keys), f"keys used twice in references.bib: {duplicates(keys)}"
    db = parse_string(bib_text, "bibtex")
    assert sorted(db.entries) == sorted(keys), "pybtex and the key scan disagree on the entries"
    incomplete = [k for k, e in db.entries.items()
                  if "title" not in e.fields or "year" not in e.fields or not e.persons.get("author")]
    assert not incomplete, f"entries without author, title or year: {incomplete}"


# ------------------------------------------------------------------ (b) every citation resolves
def test_every_cited_key_is_in_the_bibliography(known):
    missing = {where: sorted(set(k for k in cite_keys(text) if k not in known))
               for where, text in markdown_sources().items()}
    missing = {w: ks for w, ks in missing.items() if ks}
    assert not missing, f"cited keys not in references.bib: {missing}"


def test_every_bibliography_entry_is_cited(known):
    used = {k for text in markdown_sources().values() for k in cite_keys(text)}
    assert not sorted(known - used), f"entries of references.bib that no page cites: {sorted(known - used)}"


# ------------------------------------------------------------------ (c) every registered name has a source
def test_reference_page_cites_every_registered_name(known):
    tables = section_tables(REFERENCE.read_text(encoding="utf-8"))
    assert tables, f"book/reference.md has no section {SECTION!r}"
    problems = {}
    for kind, names in registries().items():
        assert kind in tables, f"the section has no {SUBSECTIONS[kind]!r} table"
        bad = uncited(names, tables[kind], known)
        if bad:
            problems[kind] = bad
    assert not problems, f"registered names without a cited row in book/reference.md: {problems}"


def test_reference_page_rows_name_registered_things():
    """A row for a name the library no longer registers is stale (ensembles are formed from
    finished runs, not registered, and are the one exception)."""
    tables = section_tables(REFERENCE.read_text(encoding="utf-8"))
    reg = registries()
    extra = {"methods": {"ENS(×N)", "DSGD(×N)"}, "tasks": set(), "models": set()}
    stale = {kind: sorted(n for names, _ in rows for n in names
                          if n not in reg[kind] and n not in extra[kind])
             for kind, rows in tables.items()}
    stale = {k: v for k, v in stale.items() if v}
    assert not stale, f"rows in book/reference.md for names not registered: {stale}"
