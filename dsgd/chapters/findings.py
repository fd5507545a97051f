"""Glue of the findings page (notebooks/findings.ipynb): collect the rows every chapter
recorded with :meth:`dsgd.book.Results.finding` in its results file and lay them out as one
table. Nothing here decides a verdict; the chapters did, from their numbers.

The page is executed after every other chapter (``make.py`` runs it last), so it reads the
results files of this build.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

VERDICT_STYLE = {"supported": "#2b8a3e", "contradicted": "#c92a2a", "not resolved": "#e67700",
                 "not testable at this scale": "#495057"}


def collect(results_dir: Path, chapters: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """``(findings table, chapters without a results file)``: one row per recorded finding,
    in the order of ``chapters`` (book order) and, within a chapter, the order recorded."""
    rows, missing = [], []
    for ch in chapters:
        p = Path(results_dir) / f"{ch}.json"
        if not p.exists():
            missing.append(ch)
            continue
        data = json.loads(p.read_text())
        for key, f in (data.get("findings") or {}).items():
            rows.append({"key": key, **f, "started": data.get("started")})
    cols = ["chapter", "key", "source", "claim", "measured", "setting", "verdict", "section", "started"]
    return pd.DataFrame(rows, columns=cols), missing


def counts(df: pd.DataFrame) -> dict[str, int]:
    """How many findings have each verdict (every verdict listed, zeros included)."""
    return {v: int((df["verdict"] == v).sum()) for v in VERDICT_STYLE}


def to_html(df: pd.DataFrame) -> str:
    """The findings table as HTML, with a link from each row to the section that shows it
    (chapters are pages beside this one in ``notebooks/``)."""
    head = ("<table class='findings' style='width:100%;font-size:0.85em;table-layout:fixed'>"
            "<colgroup><col style='width:22%'><col style='width:44%'><col style='width:18%'>"
            "<col style='width:9%'><col style='width:7%'></colgroup>"
            "<thead><tr><th>claim</th><th>what this book measured</th>"
            "<th>setting and scale</th><th>verdict</th><th>where</th></tr></thead><tbody>")
    body = []
    for _, r in df.iterrows():
        src = "" if r["source"] == "paper" else " <em>(beyond the paper)</em>"
        colour = VERDICT_STYLE.get(r["verdict"], "#000")
        href = f"{r['chapter']}.html" + (f"#{r['section']}" if r["section"] else "")
        body.append(
            f"<tr style='vertical-align:top'><td>{html.escape(r['claim'])}{src}</td><td>{html.escape(r['measured'])}</td>"
            f"<td>{html.escape(r['setting'])}</td>"
            f"<td><strong style='color:{colour}'>{html.escape(r['verdict'])}</strong></td>"
            f"<td><a href='{href}'>{html.escape(r['chapter'])}</a></td></tr>")
    return head + "".join(body) + "</tbody></table>"


def verdict_plot(df: pd.DataFrame, ax: Any = None) -> Any:
    """Verdicts per chapter as stacked horizontal bars (one colour per verdict)."""
    import matplotlib.pyplot as plt

    chapters = list(dict.fromkeys(df["chapter"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * max(len(chapters), 1) + 1.1))
    left = [0] * len(chapters)
    for verdict, colour in VERDICT_STYLE.items():
        n = [int(((df["chapter"] == c) & (df["verdict"] == verdict)).sum()) for c in chapters]
        ax.barh(chapters, n, left=left, color=colour, label=verdict)
        left = [a + b for a, b in zip(left, n)]
    ax.invert_yaxis()
    ax.set_xlabel("findings")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    return ax
