"""The Ray backend gives the same records as the local one (one local Ray session)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]  # one local Ray instance at a time

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from fakerun import fake_grid, fake_run  # noqa: E402

from dsgd.store import ResultStore  # noqa: E402
from dsgd.sweep import expand_grid, run_sweep, strip_volatile  # noqa: E402


def test_ray_backend_matches_local(tmp_path):
    import ray

    assert not ray.is_initialized()
    grid = fake_grid(4) + expand_grid({"task": "toy"}, seed=[1], method=["boom"])
    local = run_sweep(grid, tmp_path / "local", run_fn=fake_run, workers=1, progress=False)
    # starts a local Ray instance with 2 CPUs (2 workers x 1 thread) and stops it again
    store = ResultStore(tmp_path / "ray")
    remote = run_sweep(grid, store, run_fn=fake_run, backend="ray", workers=2, progress=False)
    assert not ray.is_initialized()
    assert [r["run_id"] for r in remote] == [c.run_id() for c in grid]
    ok_local = [strip_volatile(r) for r in local if r["status"] == "ok"]
    ok_remote = [strip_volatile(r) for r in remote if r["status"] == "ok"]
    assert len(ok_remote) == 8 and ok_remote == ok_local
    # the failing run is an error record on Ray too, with the same message
    assert remote[-1]["status"] == "error" and remote[-1]["error"] == local[-1]["error"]
    assert "boom for seed 1" in remote[-1]["traceback"]
    # Ray ran the work in other processes than this one
    pids = lambda rs: {r["machine"]["pid"] for r in rs if r["status"] == "ok"}  # noqa: E731
    assert pids(remote).isdisjoint(pids(local))
    assert store.provenance.load()["sessions"][0]["settings"]["backend"] == "ray"
