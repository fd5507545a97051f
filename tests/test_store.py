"""The result store: atomic one-file-per-run records, filters, frames, provenance."""
from __future__ import annotations

import json
import math
import os

import pytest

from dsgd.config import RunConfig
from dsgd.store import CorruptRecordError, ResultStore, default_store_path, records_to_frame


def make_record(status="ok", acc=0.8, **cfg):
    c = RunConfig(task="toy", model="none", **cfg)
    return {
        "run_id": c.run_id(),
        "config": c.to_dict(),
        "status": status,
        "metrics": {"accuracy": acc, "mcc": 0.5},
        "predictions": [0, 1, 1, 0],
        "labels": [0, 1, 0, 0],
        "majority_rate": 0.75,
        "verdict": "success",
        "timings": {"total_s": 10.0, "s_per_step": 0.25, "s_per_epoch": 5.0},
    }


def test_put_get_roundtrip_and_layout(tmp_path):
    store = ResultStore(tmp_path / "s")
    rec = make_record(seed=3)
    assert not store.has(rec["run_id"]) and store.status(rec["run_id"]) is None
    p = store.put(rec)
    assert p == tmp_path / "s" / "runs" / f"{rec['run_id']}.json"
    assert json.loads(p.read_text()) == rec  # plain JSON, readable without the library
    assert store.get(rec["run_id"]) == rec
    assert store.has(rec["run_id"]) and store.finished(rec["run_id"])
    assert len(store) == 1 and store.temp_files() == []
    with pytest.raises(KeyError):
        store.get("nope")


def test_nan_metric_survives(tmp_path):
    store = ResultStore(tmp_path)
    rec = make_record(status="diverged", acc=math.nan, seed=1)
    store.put(rec)
    assert math.isnan(store.get(rec["run_id"])["metrics"]["accuracy"])
    assert store.finished(rec["run_id"])  # diverged is a finished outcome


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    rec = make_record(seed=2)

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.put(rec)
    monkeypatch.undo()
    assert not store.has(rec["run_id"])
    assert list(store.runs_dir.iterdir()) == []  # the temp file was removed too


def test_stray_temp_files_are_ignored(tmp_path):
    store = ResultStore(tmp_path)
    rec = make_record(seed=4)
    store.put(rec)
    # what a process killed between mkstemp and os.replace would leave behind
    stray = store.runs_dir / f".{rec['run_id']}.abc123.tmp"
    stray.write_text('{"run_id": "half')
    assert store.run_ids() == [rec["run_id"]]
    assert store.temp_files() == [stray]
    assert store.records() == [rec]


def test_corrupt_file_is_reported_not_used(tmp_path):
    store = ResultStore(tmp_path)
    good = make_record(seed=5)
    bad = make_record(seed=6)
    store.put(good)
    store.file(bad["run_id"]).write_text(json.dumps(bad)[:40])  # truncated
    with pytest.raises(CorruptRecordError, match=bad["run_id"]) as e:
        store.get(bad["run_id"])
    assert "Delete the file" in str(e.value)
    assert store.status(bad["run_id"]) == "corrupt"
    assert not store.finished(bad["run_id"])
    with pytest.raises(CorruptRecordError):
        store.records()
    assert store.check()["corrupt"] == [str(store.file(bad["run_id"]))]
    assert store.remove_corrupt() == [store.file(bad["run_id"])]
    assert store.records() == [good]


def test_record_under_wrong_name_is_corrupt(tmp_path):
    store = ResultStore(tmp_path)
    rec = make_record(seed=7)
    store.runs_dir.mkdir(parents=True)
    (store.runs_dir / "other-id.json").write_text(json.dumps(rec))
    assert store.status("other-id") == "corrupt"


def test_put_rejects_non_records(tmp_path):
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match="status"):
        store.put({"run_id": "x", "config": {}})
    with pytest.raises(ValueError, match="status"):
        store.put({"run_id": "x", "config": {}, "status": "fine"})


def test_records_filters(tmp_path):
    store = ResultStore(tmp_path)
    a = make_record(seed=1, method="fft")
    b = make_record(seed=2, method="dsgd")
    c = make_record(seed=3, method="dsgd")
    e = make_record(status="error", seed=4, method="dsgd")
    for r in (a, b, c, e):
        store.put(r)
    ids = lambda rs: sorted(r["run_id"] for r in rs)  # noqa: E731
    assert ids(store.records()) == ids([a, b, c])  # errors are not finished
    assert ids(store.records(status=None)) == ids([a, b, c, e])
    assert ids(store.records(status="error")) == [e["run_id"]]
    assert ids(store.records(method="dsgd")) == ids([b, c])
    assert ids(store.records(seed=[1, 3])) == ids([a, c])
    assert ids(store.records(where=lambda r: r["config"]["seed"] > 1)) == ids([b, c])


def test_to_frame_flattens(tmp_path):
    store = ResultStore(tmp_path)
    rec = make_record(seed=1, method="focal", method_kwargs={"alpha": 0.25, "gamma": 2.0})
    store.put(rec)
    df = store.to_frame()
    assert len(df) == 1
    row = df.iloc[0]
    assert row["method"] == "focal" and row["seed"] == 1 and row["task"] == "toy"
    assert row["method_kwargs.alpha"] == 0.25 and row["method_kwargs.gamma"] == 2.0
    assert row["accuracy"] == 0.8 and row["mcc"] == 0.5
    assert row["verdict"] == "success" and row["majority_rate"] == 0.75
    assert row["timings.s_per_step"] == 0.25 and row["n_eval"] == 4
    assert records_to_frame([]).empty


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("DSGD_STORE", str(tmp_path / "x"))
    assert default_store_path() == tmp_path / "x"
    assert ResultStore().path == tmp_path / "x"
    monkeypatch.delenv("DSGD_STORE")
    assert default_store_path().parts[-2:] == ("_build", "store")


def test_provenance_sessions(tmp_path):
    store = ResultStore(tmp_path)
    params = tmp_path / "p.yaml"
    params.write_text("grid: {seed: [1]}\n")
    prov = store.provenance
    s0 = prov.start_session(command=["dsgd", "sweep", "p.yaml"], params_file=params, workers=2)
    data = prov.load()
    assert data["sessions"][0]["end"] is None  # what a killed session leaves
    assert data["sessions"][0]["params_text"] == "grid: {seed: [1]}\n"
    assert data["sessions"][0]["settings"] == {"workers": 2}
    assert data["sessions"][0]["versions"]["dsgd"]
    r1, r2 = make_record(seed=1), make_record(status="error", seed=2)
    prov.end_session(s0, [r1, r2], skipped=3)
    s1 = prov.start_session(command="again")
    data = prov.load()
    assert s1 == 1 and len(data["sessions"]) == 2
    s = data["sessions"][0]
    assert s["computed"] == [r1["run_id"]] and s["errors"] == [r2["run_id"]]
    assert s["skipped"] == 3 and s["interrupted"] is False and s["end"]
    assert data["runs"][r1["run_id"]]["timings"]["s_per_step"] == 0.25


def test_session_entry_names_its_parameters_and_process(tmp_path):
    import hashlib

    prov = ResultStore(tmp_path).provenance
    text = "grid: {seed: [1, 2]}\n"
    a = prov.new_session(command=["x"], params_text=text)
    b = prov.new_session(command=["y"])
    assert a["id"] != b["id"] and (a["index"], b["index"]) == (0, 1)
    [s0, s1] = prov.load()["sessions"]
    assert s0["params_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert s1["params_sha256"] is None and s0["pid"] == os.getpid()
    assert s0["id"] == a["id"]


def test_end_session_lists_records_naming_it_and_stamps_imports(tmp_path):
    store = ResultStore(tmp_path)
    sid = store.provenance.new_session(command="sweep")["id"]
    by_worker = make_record(seed=1) | {"session": sid}  # stored by a worker; parent never heard
    store.put(by_worker)
    imported = make_record(seed=2) | {"session": "other-store-session"}
    store.put(imported)
    store.provenance.end_session(sid, [imported], skipped=0, interrupted="SIGTERM")
    s = store.provenance.load()["sessions"][0]
    assert s["computed"] == sorted([by_worker["run_id"], imported["run_id"]])
    assert s["interrupted"] == "SIGTERM"
    rec = store.get(imported["run_id"])
    assert rec["session"] == sid and rec["copied_from"]["session"] == "other-store-session"
    assert rec["metrics"] == imported["metrics"]


def test_accounting_kinds(tmp_path):
    store = ResultStore(tmp_path)
    s = store.provenance.start_session(command="old")  # an open session, as SIGKILL leaves it
    sid = store.provenance.load()["sessions"][s]["id"]
    recs = {
        "by_session": make_record(seed=1) | {"session": sid},
        "unknown": make_record(seed=2) | {"session": None, "attribution": "unknown: ..."},
        "copied": make_record(seed=3) | {"session": None, "attribution": "copied",
                                         "copied_from": {"store": "x"}},
        "dangling": make_record(seed=4) | {"session": "nowhere"},
        "unaccounted": make_record(seed=5),  # old code, in no list
    }
    for r in recs.values():
        store.put(r)
    acc = store.accounting()
    assert acc["attribution"] == {"by_session": 1, "copied": 1, "listed": 0, "unknown": 1,
                                  "unaccounted": 1, "dangling": 1}
    assert sorted(acc["unaccounted"]) == sorted([recs["unaccounted"]["run_id"], recs["dangling"]["run_id"]])
    assert acc["unknown"] == [recs["unknown"]["run_id"]]
    assert [o["id"] for o in acc["open_sessions"]] == [sid]
    with pytest.raises(ValueError, match="session"):
        store.put(make_record(seed=6) | {"session": 3})
