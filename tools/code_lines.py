#!/usr/bin/env python3
"""Count each chapter's code lines: visible (what a reader sees) and total.

    python3 tools/code_lines.py               # the working tree
    python3 tools/code_lines.py --before REV  # also a git revision, side by side

"Visible" counts non-blank lines of code cells with none of the tags hide-input,
hide-cell, remove-input, remove-cell, excluding the cell tagged ``parameters`` (the
rule tests/test_layout.py enforces). "Total" counts non-blank lines of every code cell.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDED = {"hide-input", "hide-cell", "remove-input", "remove-cell"}


def chapters() -> list[str]:
    """Notebook paths (without suffix) listed in _toc.yml, in book order."""
    files = re.findall(r"file:\s*([^\s#]+)", (ROOT / "_toc.yml").read_text())
    return [f for f in files if (ROOT / f"{f}.ipynb").exists()]


def count(nb: dict) -> tuple[int, int]:
    """(visible, total) non-blank code lines of a notebook."""
    visible = total = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        n = sum(1 for line in src.splitlines() if line.strip())
        total += n
        tags = set(cell.get("metadata", {}).get("tags", []))
        if not tags & FOLDED and "parameters" not in tags:
            visible += n
    return visible, total


def _load(path: str, rev: str | None) -> dict | None:
    if rev is None:
        p = ROOT / path
        return json.loads(p.read_text()) if p.exists() else None
    r = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="git revision to compare with")
    a = ap.parse_args()
    cols = ["chapter"] + (["visible before", "total before"] if a.before else []) + ["visible", "total"]
    rows, sums = [], [0] * (len(cols) - 1)
    for ch in chapters():
        vals: list[int] = []
        for rev in ([a.before] if a.before else []) + [None]:
            nb = _load(f"{ch}.ipynb", rev)
            vals += list(count(nb)) if nb else [0, 0]
        sums = [s + v for s, v in zip(sums, vals)]
        rows.append([Path(ch).name] + vals)
    rows.append(["all"] + sums)
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
