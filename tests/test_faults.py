"""Faults with real processes: signals to a sweep's parent, a killed worker, two sweeps on
one store, a claim whose owner died. The run function is the fake one (no model)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from fakerun import fake_grid, fake_run  # noqa: E402

from dsgd.store import ResultStore  # noqa: E402
from dsgd.sweep import run_sweep, strip_volatile  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and signals")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_for(cond, timeout=60.0, what="condition"):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_child(store_dir: Path, env: dict, workers: int = 2, n_seeds: int = 4) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(FIXTURES / "sweep_child.py"), str(store_dir),
                             str(workers), str(n_seeds)], env=dict(os.environ, **env),
                            start_new_session=True, stderr=subprocess.PIPE)


def held_setup(tmp_path: Path) -> tuple[dict, Path, Path, Path]:
    """Seeds 0-1 run fast; seeds 2-3 wait while ``hold`` exists."""
    log, started, hold = tmp_path / "log", tmp_path / "started", tmp_path / "hold"
    hold.write_text("")
    env = {"FAKE_RUN_LOG": str(log), "FAKE_RUN_STARTED": str(started), "FAKE_RUN_HOLD": str(hold),
           "FAKE_RUN_HOLD_SEEDS": "2,3", "FAKE_RUN_SLEEP": "0.05"}
    return env, log, started, hold


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_to_parent(tmp_path, monkeypatch, sig):
    """The parent alone gets the signal while two runs are in flight: the 4 finished runs
    stay (each once, naming the session), the workers are gone within seconds, the session
    is closed as interrupted where a handler can run, and a resume computes the rest once."""
    env, log, started, hold = held_setup(tmp_path)
    grid = fake_grid(4)  # 8 runs; the first 4 (seeds 0, 1) finish, the next 2 are held
    store = ResultStore(tmp_path / "store")
    proc = start_child(store.path, env)
    try:
        wait_for(lambda: len(store.run_ids()) == 4 and len(lines(started)) >= 6, what="4 stored, 2 held")
        workers = {int(x.split()[1]) for x in lines(started)}
        assert len(workers) == 2 and proc.pid not in workers
        in_flight = {x.split()[0] for x in lines(started)} - set(store.run_ids())
        assert in_flight == {c.run_id() for c in grid[4:6]}  # seed 2: held
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        assert proc.returncode != 0
        wait_for(lambda: not any(running(p) for p in workers), timeout=10, what="workers to exit")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    fast = sorted(c.run_id() for c in grid[:4])
    assert store.run_ids() == fast and sorted(lines(log)) == fast
    assert in_flight.isdisjoint(store.run_ids())
    [session] = store.provenance.load()["sessions"]
    assert {store.get(r)["session"] for r in fast} == {session["id"]}
    if sig == signal.SIGKILL:
        assert session["end"] is None
        assert [s["id"] for s in store.accounting()["open_sessions"]] == [session["id"]]
    else:
        expected = {signal.SIGINT: "SIGINT (KeyboardInterrupt)", signal.SIGTERM: "SIGTERM"}[sig]
        assert session["interrupted"] == expected and session["end"]
        assert sorted(session["computed"]) == fast and store.accounting()["open_sessions"] == []
    assert store.accounting()["unaccounted"] == []
    assert not any(c["alive"] for c in store.claims())

    hold.unlink()
    log.unlink()
    monkeypatch.setenv("FAKE_RUN_LOG", str(log))
    recs = run_sweep(grid, store, run_fn=fake_run, workers=2, progress=False)
    assert sorted(lines(log)) == sorted(c.run_id() for c in grid[4:])  # the rest, each once
    assert [strip_volatile(r) for r in recs] == [strip_volatile(fake_run(c)) for c in grid]


def test_sigkill_of_a_worker(tmp_path):
    """A worker killed mid-run: the sweep goes on, reruns what was in flight, and ends
    with every run stored once and no error record."""
    env, log, started, hold = held_setup(tmp_path)
    grid = fake_grid(4)
    store = ResultStore(tmp_path / "store")
    proc = start_child(store.path, env)
    try:
        wait_for(lambda: len(lines(started)) >= 6, what="2 held runs")
        stored = set(store.run_ids())
        victim_rid, victim = next(x.split() for x in lines(started) if x.split()[0] not in stored)
        os.kill(int(victim), signal.SIGKILL)
        wait_for(lambda: not running(int(victim)), timeout=10, what="the worker to die")
        hold.unlink()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ids = sorted(c.run_id() for c in grid)
    assert store.run_ids() == ids
    assert Counter(lines(log)) == Counter(ids)  # each computed to the end exactly once
    assert all(store.get(r)["status"] == "ok" for r in ids)
    [session] = store.provenance.load()["sessions"]
    assert session["interrupted"] is False and sorted(session["computed"]) == ids
    assert victim_rid in ids


def test_two_sweeps_on_one_store(tmp_path):
    """Two sweeps of the same grid at once: no run computed twice, no record corrupt,
    two closed sessions whose computed lists split the grid."""
    log = tmp_path / "log"
    env = {"FAKE_RUN_LOG": str(log), "FAKE_RUN_SLEEP": "0.15"}
    store = ResultStore(tmp_path / "store")
    procs = [start_child(store.path, env, workers=2, n_seeds=6) for _ in range(2)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    ids = sorted(c.run_id() for c in fake_grid(6))
    assert Counter(lines(log)) == Counter(ids)
    assert store.run_ids() == ids and store.check()["corrupt"] == []
    sessions = store.provenance.load()["sessions"]
    assert len(sessions) == 2 and all(s["end"] and s["interrupted"] is False for s in sessions)
    a, b = (set(s["computed"]) for s in sessions)
    assert a.isdisjoint(b) and sorted(a | b) == ids
    assert {store.get(r)["session"] for r in ids} <= {s["id"] for s in sessions}
    assert store.accounting()["unaccounted"] == []


def test_claim_of_a_killed_owner_is_free(tmp_path):
    store = ResultStore(tmp_path)
    code = ("import sys, time; from dsgd.store import ResultStore; "
            "c = ResultStore(sys.argv[1]).claim('some-run'); print('held', flush=True); time.sleep(120)")
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert owner.stdout.readline().strip() == b"held"
        assert store.claim("some-run") is None  # a live owner holds it
        [info] = store.claims()
        assert info["pid"] == owner.pid and info["alive"] is True
    finally:
        owner.kill()
        owner.wait()
    [info] = store.claims()
    assert info["alive"] is False  # the file is left over, but its lock died with the owner
    claim = store.claim("some-run")
    assert claim is not None
    claim.release()
    assert store.claims() == []
