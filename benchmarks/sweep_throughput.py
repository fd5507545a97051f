#!/usr/bin/env python3
"""Runs/hour of a sweep with 1 and with 2 worker processes.

    python benchmarks/sweep_throughput.py PARAMS.yaml [--limit 8] [--out DIR]
        [--threads-per-worker 1] [--run-fn module:function] [--workers 1,2]

The same grid (the parameter file's, optionally its first ``--limit`` runs) is computed
from scratch into a separate, fresh store per worker count (``<out>/workers-<N>``), so
nothing is skipped. Prints wall time, runs/hour and the speed-up over the first setting,
and writes them to ``<out>/throughput.json``. On a 2-core machine, 2 workers x 1 thread
against 1 worker x 1 thread is the comparison that matters (and 1 worker x 2 threads).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("params")
    ap.add_argument("--limit", type=int, help="use only the first N runs of the grid")
    ap.add_argument("--out", help="folder for the stores (default: a temporary folder, removed)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--backend", choices=["local", "ray"], default="local")
    ap.add_argument("--run-fn", help="module:function instead of dsgd.engine.train_run")
    a = ap.parse_args(argv)

    from dsgd.store import ResultStore
    from dsgd.sweep import configs_from_params, load_params, run_sweep

    configs = configs_from_params(load_params(a.params))
    if a.limit:
        configs = configs[: a.limit]
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="dsgd-throughput-"))
    results = []
    try:
        for w in [int(x) for x in a.workers.split(",")]:
            store = ResultStore(out / f"workers-{w}")
            if store.path.exists():
                shutil.rmtree(store.path)  # start from nothing: every run is computed
            t0 = time.perf_counter()
            recs = run_sweep(configs, store, run_fn=a.run_fn, backend=a.backend, workers=w,
                             threads_per_worker=a.threads_per_worker, progress=True)
            wall = time.perf_counter() - t0
            n_err = sum(r["status"] == "error" for r in recs)
            results.append({"workers": w, "threads_per_worker": a.threads_per_worker,
                            "runs": len(recs), "errors": n_err, "wall_s": wall,
                            "runs_per_hour": 3600 * len(recs) / wall})
            print(f"workers={w} threads/worker={a.threads_per_worker}: {len(recs)} runs "
                  f"({n_err} errors) in {wall:.1f} s -> {results[-1]['runs_per_hour']:.1f} runs/hour",
                  flush=True)
        base = results[0]["runs_per_hour"]
        for r in results:
            r["speedup"] = r["runs_per_hour"] / base
            print(f"  workers={r['workers']}: speed-up x{r['speedup']:.2f} over workers={results[0]['workers']}")
        if a.out:
            (out / "throughput.json").write_text(json.dumps({"params": a.params, "results": results}, indent=1))
    finally:
        if not a.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
