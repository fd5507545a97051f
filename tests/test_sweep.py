"""Grid expansion, resumable sweeps (incl. SIGKILL mid-sweep), errors, verification."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from fakerun import fake_grid, fake_run  # noqa: E402

from dsgd.config import RunConfig  # noqa: E402
from dsgd.store import ResultStore  # noqa: E402
from dsgd.sweep import (  # noqa: E402
    configs_from_params,
    expand_grid,
    run_sweep,
    strip_volatile,
    verify_sample,
)


def logged(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# ------------------------------------------------------------------ grids
def test_expand_grid_order_and_product():
    cfgs = expand_grid({"task": "toy", "lr": 1e-3}, seeds=[1, 2, 3], method=["fft", "dsgd"])
    assert [(c.seed, c.method) for c in cfgs] == [
        (1, "fft"), (1, "dsgd"), (2, "fft"), (2, "dsgd"), (3, "fft"), (3, "dsgd")]
    assert all(c.task == "toy" and c.lr == 1e-3 for c in cfgs)
    assert len({c.run_id() for c in cfgs}) == 6


def test_expand_grid_dedupes_and_accepts_runconfig():
    base = RunConfig(task="toy", epochs=3.0)
    cfgs = expand_grid(base, seed=[1, 1, 2], tasks=["toy"])
    assert [c.seed for c in cfgs] == [1, 2]
    assert all(c.epochs == 3.0 for c in cfgs)
    # tags do not change results, so they do not make a new run
    assert len(expand_grid(base, tags=[{"a": 1}, {"a": 2}])) == 1


def test_expand_grid_variants():
    cfgs = expand_grid({}, seed=[0, 1], variants=[
        {"method": "fft"}, {"method": "focal", "method_kwargs": {"alpha": 0.25}}])
    assert [(c.seed, c.method, c.method_kwargs) for c in cfgs] == [
        (0, "fft", {}), (0, "focal", {"alpha": 0.25}), (1, "fft", {}), (1, "focal", {"alpha": 0.25})]


@pytest.mark.parametrize("bad", [
    {"sed": [1]},            # unknown field
    {"seed": 3},             # not a list
    {"seed": []},            # empty
    {"seed": [1], "seeds": [2]},
    {"variants": [{"metod": "x"}]},
])
def test_expand_grid_rejects(bad):
    with pytest.raises(ValueError):
        expand_grid({}, **bad)


def test_configs_from_params_union_of_grids():
    params = {
        "base": {"model": "none"},
        "grid": [{"task": ["a"], "epochs": [10.0], "seed": [1, 2]},
                 {"task": ["b"], "epochs": [3.0], "seed": [1]}],
    }
    cfgs = configs_from_params(params)
    assert [(c.task, c.epochs, c.seed) for c in cfgs] == [("a", 10.0, 1), ("a", 10.0, 2), ("b", 3.0, 1)]
    with pytest.raises(ValueError, match="unknown top-level"):
        configs_from_params({"grdi": {}})


def test_yaml_numbers_without_dot(tmp_path):
    from dsgd.sweep import load_params

    p = tmp_path / "p.yaml"
    p.write_text("base: {lr: 2e-5, max_steps: '10'}\ngrid: {seed: [1]}\n")  # YAML: '2e-5' is a str
    [cfg] = configs_from_params(load_params(p))
    assert cfg.lr == 2e-5 and cfg.max_steps == 10
    with pytest.raises(ValueError, match="must be a number"):
        expand_grid({"lr": "fast"}, seed=[1])


# ------------------------------------------------------------------ sweeps
def test_sweep_stores_records_in_order_and_rerun_computes_nothing(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_RUN_LOG", str(log))
    grid = fake_grid(2)
    store = ResultStore(tmp_path / "s")
    recs = run_sweep(grid, store, run_fn=fake_run, progress=False)
    assert [r["run_id"] for r in recs] == [c.run_id() for c in grid]
    assert sorted(logged(log)) == sorted(c.run_id() for c in grid)
    for c, r in zip(grid, recs):
        assert strip_volatile(r) == strip_volatile(fake_run(c))
    mtimes = {p: p.stat().st_mtime_ns for p in store.runs_dir.iterdir()}
    log.unlink()
    again = run_sweep(grid + grid[:1], store, run_fn=fake_run, progress=False)
    assert logged(log) == []  # nothing recomputed
    assert again == recs
    assert {p: p.stat().st_mtime_ns for p in store.runs_dir.iterdir()} == mtimes
    # the provenance holds one session only: the rerun had nothing to compute
    assert len(store.provenance.load()["sessions"]) == 1


def test_errors_are_stored_and_retried_next_time(tmp_path):
    store = ResultStore(tmp_path)
    grid = expand_grid({"task": "toy"}, seed=[1, 2], method=["dsgd", "boom"])
    recs = run_sweep(grid, store, run_fn=fake_run, progress=False)
    status = {(r["config"]["seed"], r["config"]["method"]): r["status"] for r in recs}
    assert status == {(1, "dsgd"): "ok", (1, "boom"): "error", (2, "dsgd"): "ok", (2, "boom"): "error"}
    err = store.get(grid[1].run_id())
    assert "RuntimeError: boom for seed 1" in err["traceback"] and err["error"].startswith("RuntimeError")
    assert len(store.records()) == 2  # errors are not finished runs
    run_sweep(grid, store, run_fn=fake_run, progress=False)  # retries the two errors only
    sessions = store.provenance.load()["sessions"]
    assert len(sessions) == 2
    assert sessions[1]["skipped"] == 2 and sorted(sessions[1]["errors"]) == sorted(
        c.run_id() for c in grid if c.method == "boom")
    run_sweep(grid, store, run_fn=fake_run, progress=False, retry_errors=False)
    assert len(store.provenance.load()["sessions"]) == 2  # nothing left to do


def test_dead_worker_becomes_error_and_sweep_goes_on(tmp_path):
    """A run that kills its worker process is an error; runs that happened to share the
    broken pool are rerun and finish."""
    store = ResultStore(tmp_path)
    grid = expand_grid({"task": "toy"}, seed=[0, 1, 2], method=["die", "dsgd"])
    recs = run_sweep(grid, store, run_fn=fake_run, workers=2, progress=False)
    status = {(r["config"]["method"], r["config"]["seed"]): r["status"] for r in recs}
    assert status == {("die", s): "error" for s in range(3)} | {("dsgd", s): "ok" for s in range(3)}
    assert "died while running this config alone" in recs[0]["error"]
    for r in recs[1::2]:
        assert strip_volatile(r) == strip_volatile(fake_run(RunConfig.from_dict(r["config"])))


def test_bad_record_from_run_fn_becomes_error(tmp_path):
    store = ResultStore(tmp_path)
    [rec] = run_sweep(expand_grid({}, seed=[1]), store, run_fn="fakerun:fake_labels", progress=False)
    assert rec["status"] == "error"  # fake_labels(cfg) raises / returns a list, not a record


def test_corrupt_record_is_quarantined_and_recomputed(tmp_path, monkeypatch):
    """A truncated record is detected, moved to quarantine/ (kept) and recomputed; the
    good record next to it is not touched."""
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_RUN_LOG", str(log))
    grid = fake_grid(1)  # 2 runs
    store = ResultStore(tmp_path / "s")
    run_sweep(grid[1:], store, run_fn=fake_run, progress=False)
    good = store.file(grid[1].run_id())
    mtime = good.stat().st_mtime_ns
    store.file(grid[0].run_id()).write_text('{"run_id": ')
    assert store.status(grid[0].run_id()) == "corrupt"
    log.unlink()
    recs = run_sweep(grid, store, run_fn=fake_run, progress=False)
    assert logged(log) == [grid[0].run_id()]  # only the corrupt one was recomputed
    assert strip_volatile(recs[0]) == strip_volatile(fake_run(grid[0]))
    [q] = (store.path / "quarantine").glob("*.json")
    assert q.read_text() == '{"run_id": ' and q.name.startswith(grid[0].run_id())
    assert good.stat().st_mtime_ns == mtime
    assert store.check()["corrupt"] == [] and store.check()["quarantined"] == [str(q)]


def test_unpicklable_run_fn_rejected_for_pool(tmp_path):
    with pytest.raises(ValueError, match="module-level"):
        run_sweep(fake_grid(1), tmp_path, run_fn=lambda c: fake_run(c), workers=2, progress=False)


def test_kill_and_resume(tmp_path, monkeypatch):
    """SIGKILL a 2-worker sweep mid-way; the restart completes it, each run stored once."""
    store_dir, log = tmp_path / "store", tmp_path / "log"
    grid = fake_grid(4)  # 8 runs
    all_ids = sorted(c.run_id() for c in grid)
    env = dict(os.environ, FAKE_RUN_SLEEP="0.3", FAKE_RUN_LOG=str(log))
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "sweep_child.py"), str(store_dir)],
                            env=env, start_new_session=True)
    store = ResultStore(store_dir)
    deadline = time.time() + 60
    try:
        while len(store.run_ids()) < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "the sweep made no progress"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # child and its worker processes
        proc.wait()
    before = set(store.run_ids())
    assert 2 <= len(before) < len(grid), "the kill did not land mid-sweep"
    # no partial or corrupt files under final names; any temp files are ignored
    for rid in before:
        rec = json.loads(store.file(rid).read_text())
        assert rec["run_id"] == rid and rec["status"] == "ok"
    assert store.check()["corrupt"] == []
    session = store.provenance.load()["sessions"][0]
    assert session["end"] is None  # no handler runs on SIGKILL ...
    assert {store.get(r)["session"] for r in before} == {session["id"]}  # ... yet each run names it
    assert store.accounting()["unaccounted"] == []
    assert [s["id"] for s in store.accounting()["open_sessions"]] == [session["id"]]

    log.unlink()
    monkeypatch.setenv("FAKE_RUN_SLEEP", "0.05")
    monkeypatch.setenv("FAKE_RUN_LOG", str(log))
    resumed = run_sweep(grid, store, run_fn=fake_run, workers=2, progress=False)
    # the restart computed exactly the missing runs, each once
    assert sorted(logged(log)) == sorted(set(all_ids) - before)
    assert store.run_ids() == all_ids
    assert [r["run_id"] for r in resumed] == [c.run_id() for c in grid]

    monkeypatch.delenv("FAKE_RUN_SLEEP")
    reference = run_sweep(grid, tmp_path / "ref", run_fn=fake_run, progress=False)
    assert [strip_volatile(r) for r in resumed] == [strip_volatile(r) for r in reference]
    # timings are real (they differ), so the comparison above is not vacuous there
    assert all(r["timings"]["total_s"] > 0 for r in resumed)

    log.unlink()
    run_sweep(grid, store, run_fn=fake_run, workers=2, progress=False)
    assert logged(log) == []  # a finished sweep computes nothing


def test_ctrl_c_keeps_finished_runs(tmp_path):
    """SIGINT (Ctrl-C) to the whole process group: finished runs stay, session marked."""
    store_dir = tmp_path / "store"
    env = dict(os.environ, FAKE_RUN_SLEEP="0.3")
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "sweep_child.py"), str(store_dir)],
                            env=env, start_new_session=True, stderr=subprocess.PIPE)
    store = ResultStore(store_dir)
    deadline = time.time() + 60
    while len(store.run_ids()) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    ids = store.run_ids()
    assert 2 <= len(ids) < 8 and all(store.finished(r) for r in ids)
    assert store.records(status="error") == []  # an interrupted run is not an error
    session = store.provenance.load()["sessions"][0]
    assert session["interrupted"] == "SIGINT (KeyboardInterrupt)" and session["end"]
    # every stored run is listed, and names the session itself
    assert sorted(session["computed"]) == ids
    assert {store.get(r)["session"] for r in ids} == {session["id"]}


# ------------------------------------------------------------------ verification
def test_verify_sample(tmp_path):
    store = ResultStore(tmp_path)
    grid = fake_grid(3)
    run_sweep(grid, store, run_fn=fake_run, progress=False)
    table = verify_sample(store, k=3, seed=1, run_fn=fake_run)
    assert list(table.columns) == ["run_id", "stored", "recomputed", "diff", "stored_verdict",
                                   "recomputed_verdict", "same_predictions", "stored_processor",
                                   "recomputed_processor", "same_processor", "ok"]
    assert len(table) == 3 and table["ok"].all() and (table["diff"] == 0).all()
    assert set(table["run_id"]) <= {c.run_id() for c in grid}
    # same seed, same sample
    assert list(verify_sample(store, k=3, seed=1, run_fn=fake_run)["run_id"]) == list(table["run_id"])

    # the set as read before a sweep added runs keeps its draw; the grown store draws anew
    read = store.records()
    drawn = [sorted(r["run_id"] for r in read)[i] for i in __import__("random").Random(5).sample(range(len(read)), 2)]
    run_sweep(fake_grid(12), store, run_fn=fake_run, progress=False)
    assert list(verify_sample(store, k=2, seed=5, run_fn=fake_run, records=read)["run_id"]) == drawn
    assert len(store.records()) == 24 > len(read) == 6
    assert list(verify_sample(store, k=2, seed=5, run_fn=fake_run)["run_id"]) != drawn  # drawn from 24 now
    for rid in set(store.run_ids()) - {r["run_id"] for r in read}:
        store.path.joinpath("runs", f"{rid}.json").unlink()  # back to the six runs of the checks below

    # tamper with every stored record: accuracy off by 0.004 passes, 0.006 fails
    for rid in store.run_ids():
        rec = store.get(rid)
        rec["metrics"]["accuracy"] += 0.004
        store.put(rec)
    assert verify_sample(store, k=2, seed=1, run_fn=fake_run)["ok"].all()
    for rid in store.run_ids():
        rec = store.get(rid)
        rec["metrics"]["accuracy"] += 0.002
        store.put(rec)
    assert not verify_sample(store, k=2, seed=1, run_fn=fake_run)["ok"].any()
    # a different verdict fails even when the accuracy agrees
    for rid in store.run_ids():
        rec = store.get(rid)
        rec["metrics"]["accuracy"] -= 0.006
        rec["verdict"] = "degenerate"
        store.put(rec)
    assert not verify_sample(store, k=2, seed=1, run_fn=fake_run)["ok"].any()


# ------------------------------------------------------------------ command line
PARAMS = """\
name: tiny
base: {task: toy, model: none}
grid:
  seed: [0, 1, 2]
  method: [fft, dsgd]
run: {workers: 1}
"""


def test_cli_sweep_table_verify(tmp_path, capsys):
    from statistics import mean, stdev

    from dsgd.cli import main

    params = tmp_path / "p.yaml"
    params.write_text(PARAMS)
    store = tmp_path / "results" / "tiny"
    base = ["--store", str(store), "--run-fn", "fakerun:fake_run"]
    assert main(["sweep", str(params), *base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 runs in the grid; 0 finished") and out.count("to run") == 6
    assert not ResultStore(store).run_ids()

    assert main(["sweep", str(params), *base, "--quiet"]) == 0
    assert "done: 6 finished, 0 errors" in capsys.readouterr().out
    prov = json.loads((store / "provenance.json").read_text())
    assert prov["sessions"][0]["params_text"] == PARAMS
    assert prov["sessions"][0]["settings"]["name"] == "tiny"
    assert prov["sessions"][0]["command"][:2] == ["dsgd", "sweep"]
    assert len(prov["runs"]) == 6

    assert main(["table", str(store), "--order", "fft,dsgd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| method | toy | ACC | STD | failed |"
    # the expected cells, from fake_run's records directly
    cfgs = expand_grid({"task": "toy", "model": "none"}, seed=[0, 1, 2], method=["fft", "dsgd"])
    for line, m in zip(lines[2:], ["fft", "dsgd"]):
        recs = [fake_run(c) for c in cfgs if c.method == m]
        accs = [100 * r["metrics"]["accuracy"] for r in recs]
        failed = sum(r["metrics"]["accuracy"] <= r["majority_rate"] for r in recs)
        assert line == (f"| {m} | {mean(accs):.2f} ± {stdev(accs):.2f} | {mean(accs):.2f} "
                        f"| {stdev(accs):.2f} | {failed}/3 |")
    assert "| fft |" in lines[2] and lines[2].endswith("| 1/3 |")  # seed 0 collapses

    assert main(["verify", str(store), "-k", "2", "--run-fn", "fakerun:fake_run"]) == 0
    out = capsys.readouterr().out
    assert "2/2 re-verified within 0.005" in out

    assert main(["table", str(store), "--where", "method=dsgd", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("dsgd,")


def test_cli_rejects_bad_params(tmp_path, capsys):
    from dsgd.cli import main

    params = tmp_path / "p.yaml"
    params.write_text("base: {task: toy}\ngrid: {sed: [1]}\n")
    assert main(["sweep", str(params), "--store", str(tmp_path / "s"), "--dry-run"]) == 2
    assert "unknown grid axis 'sed'" in capsys.readouterr().err


def test_cli_module_entry_point(tmp_path):
    run_sweep(fake_grid(1), tmp_path, run_fn=fake_run, progress=False)
    out = subprocess.run([sys.executable, "-m", "dsgd.cli", "table", str(tmp_path), "--format", "text"],
                         capture_output=True, text=True, check=True).stdout
    assert "toy" in out and "dsgd" in out and "fft" in out


def test_verify_and_table_with_diverged_runs(tmp_path):
    from dsgd.report import table1

    store = ResultStore(tmp_path)
    grid = expand_grid({"task": "toy"}, seed=[1, 2], method=["nan", "dsgd"])
    run_sweep(grid, store, run_fn=fake_run, progress=False)
    t = verify_sample(store, k=4, seed=0, run_fn=fake_run)
    assert t["ok"].all() and t["stored"].isna().sum() == 2
    tab = table1(store.to_frame())
    assert tab.loc["nan", ("toy", "n")] == 0 and tab.loc["nan", ("runs", "failed")] == 2
    assert tab.loc["dsgd", ("toy", "n")] == 2


def test_reproduces_criterion_by_hand():
    """Same status and verdict, accuracy within half a point (inclusive), NaN == NaN."""
    from dsgd.sweep import reproduces

    def rec(acc, verdict="success", status="ok"):
        return {"status": status, "verdict": verdict, "metrics": {"accuracy": acc}}

    # exactly half a point apart: 0.655 - 0.65 is 0.0050000000000000044 in binary floating point
    assert reproduces(rec(0.65), rec(0.655))[0]
    assert not reproduces(rec(0.65), rec(0.6551))[0]
    ok, a, b, diff = reproduces(rec(0.90), rec(0.898))
    assert ok and (a, b) == (0.90, 0.898) and abs(diff - 0.002) < 1e-12
    assert not reproduces(rec(0.65, "collapsed"), rec(0.65, "degenerate"))[0]  # verdict differs
    assert not reproduces(rec(0.65), rec(0.65, status="error"))[0]
    nan = float("nan")
    assert reproduces(rec(nan, "diverged", "diverged"), rec(nan, "diverged", "diverged"))[0]
    assert not reproduces(rec(0.7), rec(nan))[0]
