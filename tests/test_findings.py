"""The findings page's glue and Results.finding on hand-made results files."""
import importlib.util
import json
from pathlib import Path

import pytest

from dsgd.book import Results
from dsgd.chapters import findings

ROOT = Path(__file__).resolve().parents[1]


def test_results_finding_round_trip_and_bad_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("DSGD_RESULTS_DIR", str(tmp_path))
    R = Results("alpha", {})
    R.finding("f1", claim="c <1>", measured="3/10", setting="s", verdict="contradicted", section="sec")
    with pytest.raises(ValueError, match="verdict must be one of"):
        R.finding("f2", claim="c", measured="m", setting="s", verdict="probably")
    data = json.loads((tmp_path / "alpha.json").read_text())
    assert data["findings"]["f1"]["verdict"] == "contradicted"
    assert "f2" not in data["findings"]


def test_collect_orders_by_book_and_lists_missing(tmp_path):
    for ch, keys in (("b", ["x", "y"]), ("a", ["z"])):
        (tmp_path / f"{ch}.json").write_text(json.dumps({"findings": {
            k: {"chapter": ch, "claim": k, "measured": "m", "setting": "s", "verdict": "supported",
                "section": "", "source": "paper"} for k in keys}}))
    table, missing = findings.collect(tmp_path, ["a", "b", "c"])
    assert table["key"].tolist() == ["z", "x", "y"]
    assert missing == ["c"]
    assert findings.counts(table) == {"supported": 3, "contradicted": 0, "not resolved": 0,
                                      "not testable at this scale": 0}
    html = findings.to_html(table.assign(claim=["<b>", "x", "y"], section=["", "s1", ""]))
    assert "&lt;b&gt;" in html and "href='b.html#s1'" in html and "href='a.html'" in html


def test_make_executes_the_findings_page_last():
    spec = importlib.util.spec_from_file_location("make", ROOT / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    order = make.execution_order([Path("notebooks/findings.ipynb"), Path("notebooks/a.ipynb"),
                                  Path("notebooks/b.ipynb")])
    assert [p.stem for p in order] == ["a", "b", "findings"]
