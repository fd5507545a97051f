"""Attribution of records written by older code (dsgd.audit) and the repair that records it,
on stores built by hand: the expected session of each run is worked out from the rules."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from dsgd.audit import analyse, repair_provenance
from dsgd.config import RunConfig
from dsgd.store import ResultStore, dumps, validate_record

T0 = 1_800_000_000  # session start times are T0 + offsets


def stamp_at(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def cfg(seed: int) -> RunConfig:
    return RunConfig(task="toy", model="none", seed=seed)


def legacy_record(seed: int, total_s: float = 10.0) -> dict:
    c = cfg(seed)
    return {"run_id": c.run_id(), "config": c.to_dict(), "status": "ok",
            "metrics": {"accuracy": 0.5 + seed / 100}, "timings": {"total_s": total_s},
            "versions": {"dsgd": "0.1.0", "torch": "2.14.1+cpu"}}


def legacy_session(start: float, seeds: list[int] | None, end: float | None = None,
                   computed: list[int] = ()) -> dict:
    """A session entry as the old code wrote it (no id, no pid)."""
    params = None if seeds is None else f"base: {{task: toy, model: none}}\ngrid: {{seed: {seeds}}}\n"
    return {"start": stamp_at(start), "end": None if end is None else stamp_at(end),
            "command": ["dsgd", "sweep", "p.yaml"], "params_text": params, "settings": {},
            "versions": {"dsgd": "0.1.0", "torch": "2.14.1"}, "machine": {},
            "computed": [cfg(s).run_id() for s in computed], "errors": [], "skipped": 0,
            "interrupted": None if end is None else False}


def make_legacy_store(path, sessions, seeds) -> ResultStore:
    store = ResultStore(path)
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        store.put(legacy_record(s))
    store.provenance.path.write_text(dumps({"sessions": sessions, "runs": {}}))
    old = time.time() - 3600  # written an hour ago: no sweep is running
    for p in [store.provenance.path, *store.runs_dir.iterdir()]:
        os.utime(p, (old, old))
    return store


def rid(seed: int) -> str:
    return cfg(seed).run_id()


@pytest.fixture
def legacy(tmp_path):
    """Session 0 ended and lists seed 0; sessions 1 (grid 0-2) and 2 (grid 2-3) were
    killed. Seed 1: only session 1's grid has it -> inferred session 1. Seed 2: both open
    sessions -> unknown. Seed 5: no grid has it -> unknown, no candidate."""
    sessions = [legacy_session(T0, [0], end=T0 + 50, computed=[0]),
                legacy_session(T0 + 100, [0, 1, 2]),
                legacy_session(T0 + 200, [2, 3])]
    return make_legacy_store(tmp_path / "s", sessions, [0, 1, 2, 5])


def test_analyse_by_hand(legacy):
    a = analyse(legacy)
    assert (a[rid(0)]["kind"], a[rid(0)]["session"]) == ("listed", "legacy-0")
    assert (a[rid(1)]["kind"], a[rid(1)]["session"]) == ("inferred", "legacy-1")
    assert (a[rid(2)]["kind"], a[rid(2)]["session"]) == ("unknown", None)
    assert a[rid(2)]["candidates"] == ["legacy-1", "legacy-2"]
    assert a[rid(5)]["candidates"] == [] and "no recorded session" in a[rid(5)]["attribution"]
    acc = legacy.accounting()
    assert acc["unaccounted"] == sorted([rid(1), rid(2), rid(5)])
    assert [s["id"] for s in acc["open_sessions"]] == ["legacy-1", "legacy-2"]


def test_repair_adds_fields_only_closes_open_sessions_and_is_idempotent(legacy):
    before = {r: legacy.get(r) for r in legacy.run_ids()}
    summary = repair_provenance(legacy, command=["test"])
    assert summary["records_attributed"] == 4 and summary["sessions_closed"] == ["legacy-1", "legacy-2"]
    for r, old in before.items():
        new = legacy.get(r)
        validate_record(new, r)
        assert {k: v for k, v in new.items() if k in old} == old  # nothing changed ...
        assert set(new) - set(old) == {"session", "attribution"}  # ... fields only added
    assert [legacy.get(rid(s))["session"] for s in (0, 1, 2, 5)] == ["legacy-0", "legacy-1", None, None]
    data = legacy.provenance.load()
    assert [s["id"] for s in data["sessions"]] == ["legacy-0", "legacy-1", "legacy-2"]
    for s in data["sessions"][1:]:
        assert s["end"] is None and s["closed_by_repair"]
        assert s["interrupted"].startswith("interrupted (closed afterwards by repair, reason")
    assert data["sessions"][1]["repair"] == {"runs_inferred": [rid(1)], "runs_possibly_produced": [rid(2)]}
    acc = legacy.accounting()
    assert acc["unaccounted"] == [] and acc["open_sessions"] == []
    assert acc["unknown"] == sorted([rid(2), rid(5)])
    texts = {p: p.read_text() for p in legacy.runs_dir.iterdir()}
    again = repair_provenance(legacy, command=["test"])
    assert again["records_attributed"] == 0 and again["sessions_closed"] == []
    assert {p: p.read_text() for p in legacy.runs_dir.iterdir()} == texts


def test_git_history_excludes_sessions_that_started_later(tmp_path):
    """The record of seed 2 was committed before session 2 started: only session 1 remains."""
    sessions = [legacy_session(T0 + 100, [2]), legacy_session(T0 + 200, [2])]
    store = make_legacy_store(tmp_path / "s", sessions, [2])
    env = dict(os.environ, GIT_AUTHOR_DATE=f"{T0 + 150} +0000", GIT_COMMITTER_DATE=f"{T0 + 150} +0000",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for args in (["init", "-q"], ["add", "s"], ["commit", "-q", "-m", "runs"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)
    a = analyse(store)[rid(2)]
    assert (a["kind"], a["session"]) == ("inferred", "legacy-0")
    # a run that took longer than the time between session 1's start and the commit
    store.put(legacy_record(2, total_s=60.0))  # 100 + 60 > 150: session 1 is excluded too
    assert analyse(store)[rid(2)]["candidates"] == []


def test_copied_runs_name_their_source(tmp_path):
    src = make_legacy_store(tmp_path / "src", [legacy_session(T0, [1, 2], end=T0 + 9, computed=[1, 2])], [1, 2])
    repair_provenance(src)
    dst = make_legacy_store(tmp_path / "dst", [], [])
    dst.put(legacy_record(1))  # an exact copy of the source record (before its repair)
    changed = legacy_record(2)
    changed["metrics"] = {"accuracy": 0.99}  # a copy that differs from its source
    dst.put(changed)
    mapping = {r: str(src.file(r)) for r in (rid(1), rid(2))}
    repair_provenance(dst, copied_from=mapping, force=True)
    one, two = dst.get(rid(1)), dst.get(rid(2))
    assert one["session"] is None and one["copied_from"]["session"] == "legacy-0"
    assert one["copied_from"]["identical"] is True
    assert one["attribution"].startswith("copied from") and "produced there by session legacy-0" in one["attribution"]
    assert two["copied_from"]["identical"] is False and "differs" in two["attribution"]
    assert dst.accounting()["attribution"]["copied"] == 2


def test_repair_refuses_a_store_being_written(legacy):
    legacy.put(legacy_record(9))  # a write just now, with open sessions
    with pytest.raises(ValueError, match="may still be running"):
        repair_provenance(legacy)
    assert "session" not in legacy.get(rid(9))
    assert repair_provenance(legacy, dry_run=True)["records_attributed"] == 5  # a dry run is fine
    assert "session" not in legacy.get(rid(9))


def test_cli_status_and_repair(legacy, capsys):
    from dsgd.cli import main

    assert main(["status", str(legacy.path)]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"] == {"ok": 4} and len(st["unaccounted"]) == 3 and len(st["open_sessions"]) == 2
    assert main(["repair-provenance", str(legacy.path)]) == 0
    assert json.loads(capsys.readouterr().out)["records_attributed"] == 4
    assert main(["status", str(legacy.path)]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["unaccounted"] == [] and st["open_sessions"] == [] and len(st["unknown"]) == 2
    assert legacy.provenance.load()["repairs"][0]["command"] == ["dsgd", "repair-provenance", str(legacy.path)]
