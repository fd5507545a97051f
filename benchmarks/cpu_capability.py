"""How far the processor's instruction set alone moves a stored run.

The same config and seed give the same numbers on CPU only on the same kind of processor:
torch dispatches its CPU kernels by instruction set, and the kernels round differently. This
script recomputes stored runs on this machine once per instruction set that torch can be
restricted to (``ATEN_CPU_CAPABILITY=default|avx2|avx512``, each in a fresh process, see
:func:`dsgd.reproduce.recompute_with_capability`) and writes one row per (run, instruction
set) with the stored and recomputed accuracy, plus the machine and versions, to a JSON file
that the vision chapter reads.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cpu_capability.py \
        --store results/vision_full --seed 42 --methods fft,dsgd --ratio 100 \
        --out results/vision/cpu_capability.json

A capability the processor lacks falls back to the best it has (the ``capability`` column
says which one ran).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from dsgd.engine import cpu_model, versions
from dsgd.reproduce import CAPABILITIES, capability_rows
from dsgd.store import ResultStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--run-ids", nargs="*", default=None, help="these runs (else the filters below)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--methods", default=None, help="comma-separated method names")
    ap.add_argument("--ratio", type=float, default=None, help="task_kwargs.imbalance_ratio")
    ap.add_argument("--capabilities", default=",".join(CAPABILITIES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    recs = sorted(ResultStore(a.store).records(), key=lambda r: r["run_id"])
    if a.run_ids:
        recs = [r for r in recs if r["run_id"] in set(a.run_ids)]
    if a.seed is not None:
        recs = [r for r in recs if r["config"]["seed"] == a.seed]
    if a.methods:
        recs = [r for r in recs if r["config"]["method"] in a.methods.split(",")]
    if a.ratio is not None:
        recs = [r for r in recs if (r["config"].get("task_kwargs") or {}).get("imbalance_ratio") == a.ratio]
    if not recs:
        sys.exit(f"no stored run of {a.store} matches the selection")
    started = dt.datetime.now(dt.timezone.utc)
    rows = capability_rows(recs, a.capabilities.split(","), threads=a.threads, progress=sys.stderr.isatty())
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"command": "benchmarks/cpu_capability.py " + " ".join(sys.argv[1:]),
           "started": started.isoformat(timespec="seconds"),
           "ended": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "git": git, "cpu_model": cpu_model(), "versions": versions(), "store": a.store, "rows": rows}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    for r in rows:
        print(f"{r['run_id']}  {r['capability']:>8}  stored {100 * r['stored_accuracy']:.1f}  "
              f"recomputed {100 * r['accuracy']:.1f}")


if __name__ == "__main__":
    main()
