"""Write a chapter notebook from a compact Python description (cells as strings).

Usage in a one-off script:  from tools.nbtool import md, code, params, write
Cells are stored without outputs; tags mark the parameters cell.
"""
from __future__ import annotations

import json
from pathlib import Path

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def _lines(s: str) -> list[str]:
    s = s.strip("\n")
    parts = s.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def md(s: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(s)}


def code(s: str, tags: list[str] | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "metadata": meta, "source": _lines(s), "outputs": [],
            "execution_count": None}


def params(s: str) -> dict:
    return code(s, ["parameters"])


INSTALL = '''try:
    import dsgd
except ImportError:  # e.g. on Colab: install the library first
    %pip install -q "dsgd[all] @ git+https://github.com/dsgd-book/dsgd-book.git"'''


def write(path: str | Path, cells: list[dict]) -> None:
    nb = {"cells": cells, "metadata": KERNEL, "nbformat": 4, "nbformat_minor": 5}
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"c{i:03d}"
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
