"""The ``dsgd`` command line: run seed sweeps, print result tables, re-verify results.

    dsgd sweep PARAMS.yaml [--store DIR] [--workers N] [--backend local|ray] [--dry-run]
    dsgd table STORE [--metric accuracy] [--group-by task] [--ensembles 3,5,7,9]
    dsgd verify STORE -k 2 [--seed 0] [--tolerance 0.005]
    dsgd status STORE
    dsgd repair-provenance STORE [--copied-from FILE] [--dry-run] [--force]

The sweep parameter file schema is printed by ``dsgd sweep --help`` (it is
:data:`dsgd.sweep.PARAMS_SCHEMA`). ``--run-fn module:function`` replaces the training
engine (``dsgd.engine.train_run``) with any importable function ``RunConfig -> record``
(used by the tests with a fake run function).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence


def _csv(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _print_table(df, fmt: str) -> None:
    from dsgd.report import to_markdown

    if fmt == "markdown":
        print(to_markdown(df))
    elif fmt == "csv":
        print(df.to_csv(), end="")
    else:
        print(df.to_string())


# --------------------------------------------------------------------------- sweep
def cmd_sweep(a: argparse.Namespace) -> int:
    from dsgd.store import ResultStore
    from dsgd.sweep import configs_from_params, load_params, run_sweep

    from dsgd.sweep import _check_run_settings, preflight, resolve_fn

    params = load_params(a.params)
    configs = configs_from_params(params)
    run = dict(params.get("run") or {})
    store = ResultStore(a.store or params.get("store"))
    workers = a.workers if a.workers is not None else run.get("workers", 1)
    backend = a.backend or run.get("backend", "local")
    threads = a.threads_per_worker if a.threads_per_worker is not None else run.get("threads_per_worker", 1)
    gpus = a.gpus_per_run if a.gpus_per_run is not None else run.get("gpus_per_run", 0)
    retry = run.get("retry_errors", True) if not a.no_retry_errors else False
    if not isinstance(retry, bool):
        raise ValueError(f"run.retry_errors must be true or false, got {retry!r} (in {a.params})")
    _check_run_settings(backend, workers, threads, gpus)
    if a.run_fn is not None:
        try:
            resolve_fn(a.run_fn)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--run-fn {a.run_fn!r} cannot be imported ({e}); give "
                             "'package.module:function'") from None
    preflight(configs, a.run_fn or "dsgd.engine:train_run")

    statuses = [store.status(c.run_id()) for c in configs]
    n_done = sum(s in ("ok", "diverged") for s in statuses)
    n_err = sum(s == "error" for s in statuses)
    n_bad = sum(s == "corrupt" for s in statuses)
    print(f"{len(configs)} runs in the grid; {n_done} finished in {store.path}, "
          f"{n_err} stored as errors{' (retried)' if retry else ''}, {n_bad} corrupt; "
          f"backend={backend} workers={workers} threads_per_worker={threads}")
    if a.dry_run:
        for c, s in zip(configs, statuses):
            print(f"  {c.run_id():60s} {s or 'to run'}")
        return 0
    records = run_sweep(
        configs, store, run_fn=a.run_fn, backend=backend, workers=workers,
        threads_per_worker=threads, gpus_per_run=gpus, progress=not a.quiet, retry_errors=retry,
        provenance={"command": ["dsgd", *sys.argv[1:]] if a.argv is None else ["dsgd", *a.argv],
                    "params_file": str(Path(a.params).resolve()), "name": params.get("name")},
    )
    errors = [r for r in records if r["status"] == "error"]
    print(f"done: {len(records) - len(errors)} finished, {len(errors)} errors, store {store.path}")
    for r in errors[:5]:
        print(f"  error {r['run_id']}: {r.get('error')}")
    finished = [r for r in records if r["status"] != "error"]
    if finished and not a.no_table:
        from dsgd.report import format_table1, table1
        from dsgd.store import records_to_frame

        _print_table(format_table1(table1(records_to_frame(finished))), "markdown")
    return 1 if errors else 0


# --------------------------------------------------------------------------- table
def cmd_table(a: argparse.Namespace) -> int:
    import pandas as pd

    from dsgd.report import format_table1, levene_table, table1
    from dsgd.store import ResultStore

    store = ResultStore(a.store)
    filters = {}
    for f in a.where or []:
        if "=" not in f:
            raise ValueError(f"--where takes FIELD=VALUE[,VALUE...], got {f!r}")
        k, v = f.split("=", 1)
        vals = [_coerce(x) for x in v.split(",")]
        filters[k] = vals if len(vals) > 1 else vals[0]
    records = store.records(**filters)
    if not records:
        print(f"no finished runs in {store.path}" + (f" matching {filters}" if filters else ""))
        return 1
    from dsgd.store import records_to_frame

    df = records_to_frame(records)
    if a.ensembles:
        from dsgd.ensembles import ensemble_table

        sizes = [int(s) for s in _csv(a.ensembles)]
        ens = ensemble_table(records, sizes=sizes, methods=tuple(_csv(a.ensemble_methods)),
                             n_subsets=a.ensemble_subsets)
        df = pd.concat([df, ens], ignore_index=True)
    rows = _csv(a.rows) or ["method"]
    t = table1(df, metric=a.metric, group_by=a.group_by, rows=rows if len(rows) > 1 else rows[0],
               order=_csv(a.order), scale=a.scale)
    _print_table(format_table1(t, digits=a.digits), a.format)
    if a.levene:
        print()
        lev = levene_table(df, reference=a.levene, metric=a.metric, group_by=a.group_by,
                           rows=rows[-1], center=a.levene_center, scale=a.scale)
        _print_table(lev.round(4).set_index([a.group_by, rows[-1]]), a.format)
    return 0


def _coerce(s: str):
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(s.lower(), s)


# --------------------------------------------------------------------------- verify
def cmd_verify(a: argparse.Namespace) -> int:
    from dsgd.reproduce import mismatch_sentence
    from dsgd.sweep import verify_sample

    t = verify_sample(a.store, k=a.k, seed=a.seed, run_fn=a.run_fn, tolerance=a.tolerance,
                      metric=a.metric)
    _print_table(t.set_index("run_id"), a.format)
    ok = bool(t["ok"].all())
    print(f"{int(t['ok'].sum())}/{len(t)} re-verified within {a.tolerance} ({a.metric}) "
          "with the same verdict" + ("" if ok else "  -- MISMATCH"))
    if not ok:
        print(mismatch_sentence(t))
    return 0 if ok else 1


def _existing_store(path: str):
    from dsgd.store import ResultStore

    store = ResultStore(path)
    if not store.runs_dir.is_dir() and not store.provenance.path.exists():
        raise ValueError(f"{path!r} is not a result store (it has neither runs/ nor provenance.json)")
    return store


def cmd_status(a: argparse.Namespace) -> int:
    """Counts per status, corrupt/temporary/quarantined files, claims in flight, and the
    accounting: which runs no session accounts for, which sessions were left open."""
    print(json.dumps(_existing_store(a.store).check(), indent=1))
    return 0


def cmd_repair(a: argparse.Namespace) -> int:
    from dsgd.audit import repair_provenance

    store = _existing_store(a.store)
    copied = None
    if a.copied_from:
        try:
            copied = json.loads(Path(a.copied_from).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"--copied-from: no file {a.copied_from!r}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"--copied-from {a.copied_from!r} is not JSON: {e}") from None
    summary = repair_provenance(store, copied_from=copied, dry_run=a.dry_run, force=a.force,
                                command=["dsgd", *(a.argv if a.argv is not None else sys.argv[1:])])
    print(json.dumps(summary, indent=1))
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from dsgd.sweep import PARAMS_SCHEMA

    p = argparse.ArgumentParser(prog="dsgd", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="compute the runs of a parameter file that are not stored yet",
                       description="Compute every run of the grid that is not finished in the "
                       "store; rerunning resumes an interrupted sweep.\n\n" + PARAMS_SCHEMA,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("params", help="sweep parameter file (YAML)")
    s.add_argument("--store", help="result folder (default: 'store' in the file, $DSGD_STORE, _build/store)")
    s.add_argument("--workers", type=int, help="parallel runs (default: run.workers or 1)")
    s.add_argument("--backend", choices=["local", "ray"], help="default: run.backend or local")
    s.add_argument("--threads-per-worker", type=int, help="torch threads per run (default 1)")
    s.add_argument("--gpus-per-run", type=float, help="GPUs per run (Ray backend)")
    s.add_argument("--dry-run", action="store_true", help="list the runs and their stored status; compute nothing")
    s.add_argument("--no-retry-errors", action="store_true", help="keep runs stored as errors instead of retrying")
    s.add_argument("--run-fn", help="module:function to run instead of dsgd.engine.train_run")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--no-table", action="store_true", help="do not print the table at the end")
    s.set_defaults(func=cmd_sweep)

    t = sub.add_parser("table", help="print the Table-1 layout of a store")
    t.add_argument("store")
    t.add_argument("--metric", default="accuracy", help="accuracy (default), mcc, f1, ...")
    t.add_argument("--group-by", default="task", help="column field (default task)")
    t.add_argument("--rows", default="method", help="row field(s), comma separated (e.g. model,method)")
    t.add_argument("--order", help="row order, comma separated (e.g. fft,dsgd)")
    t.add_argument("--where", action="append", help="FIELD=VALUE[,VALUE] filter on config fields (repeatable)")
    t.add_argument("--ensembles", help="add majority-vote ensembles of these sizes, e.g. 3,5,7,9")
    t.add_argument("--ensemble-methods", default="fft,dsgd", help="methods to ensemble (default fft,dsgd)")
    t.add_argument("--ensemble-subsets", type=int, default=1,
                   help="1: first N seeds; >1: that many random N-subsets (mean ± std)")
    t.add_argument("--levene", metavar="REFERENCE", help="also print Levene's test against this method")
    t.add_argument("--levene-center", default="mean", choices=["mean", "median", "trimmed"])
    t.add_argument("--scale", type=float, default=100.0, help="multiply metrics (default 100: percent)")
    t.add_argument("--digits", type=int, default=2)
    t.add_argument("--format", choices=["markdown", "text", "csv"], default="markdown")
    t.set_defaults(func=cmd_table)

    v = sub.add_parser("verify", help="recompute k random stored runs and compare")
    v.add_argument("store")
    v.add_argument("-k", type=int, default=2, help="how many runs (default 2)")
    v.add_argument("--seed", type=int, default=0, help="which runs (random sample seed)")
    v.add_argument("--tolerance", type=float, default=0.005, help="max |difference| of the metric")
    v.add_argument("--metric", default="accuracy")
    v.add_argument("--run-fn", help="module:function to run instead of dsgd.engine.train_run")
    v.add_argument("--format", choices=["markdown", "text", "csv"], default="markdown")
    v.set_defaults(func=cmd_verify)

    st = sub.add_parser("status", help="counts per status, corrupt files, runs no session accounts "
                        "for, sessions left open")
    st.add_argument("store")
    st.set_defaults(func=cmd_status)

    r = sub.add_parser("repair-provenance", help="attribute stored runs to sessions from the evidence; "
                       "close sessions left open", description=(
                           "Adds 'session' and 'attribution' (and 'copied_from') to records written "
                           "by older code, from the evidence the store holds (see dsgd.audit); never "
                           "changes a number or a config. Sessions left open are closed as "
                           "interrupted."))
    r.add_argument("store")
    r.add_argument("--copied-from", help="JSON file: run_id -> path of the record it was copied from")
    r.add_argument("--dry-run", action="store_true", help="print what would be written; write nothing")
    r.add_argument("--force", action="store_true",
                   help="repair even if the store was written in the last minutes (a sweep may still run)")
    r.set_defaults(func=cmd_repair)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsgd`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    from dsgd.sweep import SweepInterrupted

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"dsgd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except SweepInterrupted as e:
        import signal

        print(f"dsgd {args.command}: {e}; finished runs are stored, rerun the same command to resume",
              file=sys.stderr)
        return 128 + int(signal.Signals[e.signame])


if __name__ == "__main__":
    sys.exit(main())
