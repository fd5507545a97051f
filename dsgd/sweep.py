"""Seed sweeps: expand a grid of run configs and compute the missing ones into a store.

* :func:`expand_grid` — base config x axes (seeds, methods, tasks, any field) -> configs.
* :func:`run_sweep` — skip runs already finished in a :class:`~dsgd.store.ResultStore`,
  compute the rest with a local process pool or Ray; the process that computed a run
  stores its record (stamped with the session id) the moment it finishes. Interrupting a
  sweep (Ctrl-C, SIGTERM, SIGKILL, a crashed machine) loses only the runs in flight, the
  workers exit with their parent, and rerunning the same sweep resumes where it stopped.
  Two sweeps on one store share the work (per-run claims) instead of repeating it.
* :func:`verify_sample` — recompute a few stored runs and check that they agree (the
  chapters show this as the "stored, re-verified sample").
* :func:`load_params` / :func:`configs_from_params` — the YAML parameter file of
  ``dsgd sweep`` (schema in :data:`PARAMS_SCHEMA`).

Errors: a run whose function raises is stored as a record with ``status="error"`` and
the traceback; it is not retried within the sweep, but it is *not finished*, so the next
sweep over the same grid tries it again (``retry_errors=False`` keeps it instead).
"""
from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import math
import os
import pickle
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from dsgd.config import RunConfig
from dsgd.reproduce import VERIFY_TOLERANCE, compare_pairs, reproduces  # noqa: F401 (re-exported)
from dsgd.store import FINISHED_STATUSES, PROVENANCE_FIELDS, ResultStore, validate_record

RunFn = Callable[[RunConfig], dict]

# plural spellings accepted as axis names
AXIS_ALIASES = {"seeds": "seed", "methods": "method", "tasks": "task", "models": "model"}
# record fields that legitimately differ between two computations of the same run
VOLATILE_FIELDS = ("timings", "machine") + PROVENANCE_FIELDS

PARAMS_SCHEMA = """\
A sweep parameter file (YAML) has these top-level keys:

  name:  optional label, kept in the provenance
  store: optional folder for the results (the --store option wins; default
         $DSGD_STORE, else <repo>/_build/store)
  base:  RunConfig fields shared by every run, e.g. {task: rte, model: minilm, epochs: 2}
  grid:  axes whose cartesian product gives the runs: a field name (or the plurals
         seeds/methods/tasks/models) -> list of values, e.g. {seed: [42, 52], method:
         [fft, dsgd]}. The special axis `variants` is a list of mappings of field
         overrides (e.g. a method together with its method_kwargs). `grid` may also be a
         list of such mappings: the union of their products (e.g. per-task epochs).
  run:   optional execution settings: workers, backend (local|ray), threads_per_worker,
         gpus_per_run, retry_errors (command-line options win)

Example:
  base: {task: epistemic_reasoning, model: minilm, epochs: 2, lr: 2.0e-5}
  grid:
    seed: [42, 52, 62]
    variants:
      - {method: fft}
      - {method: dsgd, tau: 1.0}
      - {method: focal, method_kwargs: {alpha: 0.25, gamma: 2.0}}
  run: {workers: 2, threads_per_worker: 1}
"""


# =========================================================================== grids
def _as_base_dict(base: dict[str, Any] | RunConfig | None) -> dict[str, Any]:
    if base is None:
        return {}
    if isinstance(base, RunConfig):
        return base.to_dict()
    if isinstance(base, dict):
        return dict(base)
    raise ValueError(f"base must be a mapping of RunConfig fields (or a RunConfig), got {base!r}")


def _coerce_number(name: str, value: Any) -> Any:
    """YAML reads ``2e-5`` (no dot) as a string: turn such strings into numbers for
    the numeric RunConfig fields."""
    from dataclasses import fields

    if not isinstance(value, str):
        return value
    ann = {f.name: str(f.type) for f in fields(RunConfig)}.get(name, "")
    for typ in ("float", "int"):
        if ann.split(" ")[0] == typ:
            try:
                return float(value) if typ == "float" else int(value)
            except ValueError:
                raise ValueError(f"RunConfig field {name!r} must be a number, got {value!r}") from None
    return value


def expand_grid(base: dict[str, Any] | RunConfig | None = None, **axes: Sequence[Any]) -> list[RunConfig]:
    """The cartesian product of ``axes`` applied to ``base``, as validated configs.

    Axis names are RunConfig fields (``seeds``/``methods``/``tasks``/``models`` are
    accepted for ``seed``/``method``/``task``/``model``) mapping to lists of values. The
    axis ``variants`` is a list of dicts of field overrides applied together. The order
    is stable: the product in the order the axes are given, the last axis varying
    fastest. Configs with the same run id (e.g. a repeated seed) are kept once (first).
    Unknown field names raise ``ValueError`` before anything runs.
    """
    from dataclasses import fields

    known = {f.name for f in fields(RunConfig)}
    base_d = _as_base_dict(base)
    bad = sorted(set(base_d) - known)
    if bad:
        raise ValueError(f"unknown RunConfig field(s) {bad} in the base config; known: {sorted(known)}")
    names: list[str] = []
    values: list[list[Any]] = []
    for name, vals in axes.items():
        field_name = AXIS_ALIASES.get(name, name)
        if field_name != "variants" and field_name not in known:
            raise ValueError(f"unknown grid axis {name!r}: not a RunConfig field; known: {sorted(known)}")
        if field_name in names:
            raise ValueError(f"grid axis {field_name!r} given twice (as {name!r})")
        if isinstance(vals, (str, bytes, dict)) or not isinstance(vals, Iterable):
            raise ValueError(f"grid axis {name!r} must be a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"grid axis {name!r} is empty: the grid would have no runs")
        if field_name == "variants":
            for v in vals:
                if not isinstance(v, dict):
                    raise ValueError(f"each entry of 'variants' must be a mapping of fields, got {v!r}")
                unknown = sorted(set(v) - known)
                if unknown:
                    raise ValueError(f"unknown RunConfig field(s) {unknown} in variant {v!r}")
        names.append(field_name)
        values.append(vals)

    configs: list[RunConfig] = []
    seen: set[str] = set()
    for combo in itertools.product(*values):
        d = dict(base_d)
        for name, v in zip(names, combo):
            if name == "variants":
                d.update(v)
            else:
                d[name] = v
        d = {k: _coerce_number(k, v) for k, v in d.items()}
        try:
            cfg = RunConfig.from_dict(d)
        except TypeError as e:  # e.g. a string where a number is needed
            raise ValueError(f"invalid config {d}: {e}") from e
        rid = cfg.run_id()
        if rid not in seen:
            seen.add(rid)
            configs.append(cfg)
    return configs


RUN_KEYS = ("workers", "backend", "threads_per_worker", "gpus_per_run", "retry_errors")


def configs_from_params(params: dict[str, Any]) -> list[RunConfig]:
    """Configs described by a parameter mapping (see :data:`PARAMS_SCHEMA`)."""
    if not isinstance(params, dict):
        raise ValueError("a sweep parameter file must hold a mapping\n\n" + PARAMS_SCHEMA)
    unknown = sorted(set(params) - {"name", "store", "base", "grid", "run"})
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown} in the sweep parameters\n\n" + PARAMS_SCHEMA)
    base = params.get("base") or {}
    if not isinstance(base, dict):
        raise ValueError(f"'base' must be a mapping of RunConfig fields, got {base!r}\n\n" + PARAMS_SCHEMA)
    grid = params.get("grid") or {}
    if not isinstance(grid, (dict, list)):
        raise ValueError(f"'grid' must be a mapping of axes or a list of them, got {grid!r}\n\n" + PARAMS_SCHEMA)
    run = params.get("run") or {}
    if not isinstance(run, dict):
        raise ValueError(f"'run' must be a mapping of execution settings, got {run!r}\n\n" + PARAMS_SCHEMA)
    unknown_run = sorted(set(run) - set(RUN_KEYS))
    if unknown_run:
        raise ValueError(f"unknown key(s) {unknown_run} under 'run:'; known: {list(RUN_KEYS)}")
    grids = grid if isinstance(grid, list) else [grid]
    configs: list[RunConfig] = []
    seen: set[str] = set()
    for g in grids:
        if not isinstance(g, dict):
            raise ValueError(f"each grid must be a mapping of axes, got {g!r}\n\n" + PARAMS_SCHEMA)
        for cfg in expand_grid(base, **g):
            if cfg.run_id() not in seen:
                seen.add(cfg.run_id())
                configs.append(cfg)
    return configs


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep parameter file (YAML or JSON) into a mapping, validated."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no sweep parameter file {str(path)!r} (give the path of a YAML file, "
                         "e.g. results/nlp/sweep.yaml)") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the sweep parameter file {str(path)!r}: {e}") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"the sweep parameter file {str(path)!r} is not valid YAML: {e}") from None
    if params is None:
        params = {}
    configs_from_params(params)  # validate early, with a clear message
    return params


# =========================================================================== execution
def _fn_ref(fn: RunFn) -> str | RunFn:
    """``"module:qualname"`` when ``fn`` is importable by name (cheap and robust to
    pickle across processes), else the function object itself."""
    mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", "")
    if mod and mod != "__main__" and "<" not in qual:
        return f"{mod}:{qual}"
    return fn


def resolve_fn(ref: str | RunFn) -> RunFn:
    """A run function from ``"package.module:function"`` (or a callable, unchanged)."""
    if callable(ref):
        return ref
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError(f"a run function reference looks like 'package.module:function', got {ref!r}")
    mod_name, qual = ref.split(":", 1)
    obj: Any = importlib.import_module(mod_name)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj


def default_run_fn() -> RunFn:
    """``dsgd.engine.train_run`` (imported only when needed)."""
    from dsgd.engine import train_run

    return train_run


def _set_threads(n: int | None) -> None:
    """Limit this process's torch threads (env vars act on a torch not yet imported)."""
    if not n:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def error_record(cfg: RunConfig, exc: BaseException | str, elapsed: float = math.nan) -> dict[str, Any]:
    """The record stored for a run whose function raised."""
    if isinstance(exc, BaseException):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        msg = f"{type(exc).__name__}: {exc}"
    else:
        tb, msg = exc, exc.strip().splitlines()[-1] if exc.strip() else "error"
    return {
        "run_id": cfg.run_id(),
        "config": cfg.to_dict(),
        "status": "error",
        "error": msg,
        "traceback": tb,
        "metrics": {},
        "verdict": None,
        "timings": {"total_s": elapsed},
    }


def execute_run(
    fn_ref: str | RunFn,
    cfg_dict: dict[str, Any],
    threads: int | None = None,
    sys_path: list[str] | None = None,
) -> dict[str, Any]:
    """Run one config in this process and return a JSON-ready record (never raises
    for a failing run: the exception becomes an ``error`` record)."""
    if sys_path:
        for p in reversed(sys_path):
            if p not in sys.path:
                sys.path.insert(0, p)
    _set_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    t0 = time.perf_counter()
    try:
        fn = resolve_fn(fn_ref)
        record = fn(cfg)
        if isinstance(record, dict):
            record.setdefault("run_id", cfg.run_id())
            record.setdefault("config", cfg.to_dict())
        validate_record(record, cfg.run_id())
        # JSON round trip: what the caller gets equals what the store will hold
        from dsgd.store import dumps

        return json.loads(dumps(record))
    except Exception as e:  # noqa: BLE001 - a failing run must not stop the sweep
        return error_record(cfg, e, time.perf_counter() - t0)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm  # the plain bar: no widget state saved into executed notebooks

    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return tqdm(
        total=total,
        initial=initial,
        disable=None if (enabled and not ci) else True,  # None: quiet when not a TTY
        mininterval=1.0,
        unit="run",
        desc="sweep",
        file=sys.stderr,
    )


def _check_picklable(ref: str | RunFn) -> None:
    if isinstance(ref, str):
        return
    try:
        pickle.dumps(ref)
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            "run_fn must be a module-level (importable) function when workers > 1 "
            f"(it is sent to worker processes): {e}"
        ) from e


# ------------------------------------------------------------------ one run, in the worker
def stamp(record: dict[str, Any], session: str | None) -> dict[str, Any]:
    """Add the provenance fields a sweep writes with each record (in place)."""
    from dsgd.store import _now

    if session is not None:
        record["session"] = session
        record["stored_at"] = _now()
    return record


def run_and_store(
    fn_ref: str | RunFn,
    cfg_dict: dict[str, Any],
    threads: int | None,
    sys_path: list[str] | None,
    store_path: str,
    session: str | None,
    done_statuses: Sequence[str],
    wait: bool,
) -> dict[str, Any]:
    """Compute one run *in the calling process* and store its record there.

    Claims the run (see :meth:`ResultStore.claim`), looks again whether another process
    finished it meanwhile, computes it, stamps it with ``session`` and writes it atomically,
    then releases the claim. Returns ``{"outcome": "stored", "run_id", "record"}``,
    ``{"outcome": "deferred"}`` (another live process holds the claim; only when
    ``wait=False``) or ``{"outcome": "done_elsewhere"}``. Because the worker stores its own
    record, a run that finished is kept even if the sweep's parent dies right after."""
    store = ResultStore(store_path)
    rid = RunConfig.from_dict(cfg_dict).run_id()
    claim = store.claim(rid, wait=wait, owner={"session": session})
    if claim is None:
        return {"outcome": "deferred", "run_id": rid}
    try:
        status = store.status(rid)
        if status == "corrupt":
            store.quarantine(rid)
        elif status in done_statuses:
            return {"outcome": "done_elsewhere", "run_id": rid}
        record = execute_run(fn_ref, cfg_dict, threads, sys_path)
        with _STORING:  # a worker told to stop now exits only once the record is stored
            store.put(stamp(record, session))
        return {"outcome": "stored", "run_id": rid, "record": record}
    finally:
        claim.release()
        if _EXIT_PENDING:
            os._exit(_EXIT_PENDING[0])


# ------------------------------------------------------------------ workers that die with the sweep
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STORING = threading.Lock()  # held while a worker stores a finished run's record
_EXIT_PENDING: list[int] = []  # exit status of a stop request that arrived while storing


def _exit_when_stored(code: int) -> None:
    """Exit now, or right after the record being stored is on disk."""
    if _STORING.locked():
        _EXIT_PENDING.append(code)
        return
    os._exit(code)


def _on_stop_signal(signum: int, frame: Any) -> None:
    _exit_when_stored(128 + signum)


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this (worker) process exit when ``parent_pid`` dies: ``prctl(PR_SET_PDEATHSIG,
    SIGTERM)`` on Linux, plus a daemon thread that polls ``os.getppid()`` (portable, and
    covers a parent that died before the prctl call). SIGTERM (from the dying parent or
    from a sweep stopping its pool) ends the worker at once, except while it is storing a
    finished run: then it exits right after the record is written."""
    import signal

    signal.signal(signal.SIGTERM, _on_stop_signal)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                with _STORING:
                    os._exit(1)

    threading.Thread(target=watch, name="dsgd-parent-watchdog", daemon=True).start()


def _worker_init(threads: int | None, parent_pid: int) -> None:
    """Initializer of pool workers: thread limits, Ctrl-C left to the parent (which stops
    the workers itself), and exit when the parent dies (no orphans holding a model)."""
    import signal

    _set_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


# ------------------------------------------------------------------ signals in the sweep's process
class SweepInterrupted(KeyboardInterrupt):
    """Raised in the sweep's process by SIGTERM or SIGHUP, so that the sweep stops its
    workers and closes its session as interrupted (as Ctrl-C does)."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.signame = signal.Signals(signum).name
        super().__init__(f"sweep interrupted by {self.signame}")


@contextlib.contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """In the main thread, turn SIGTERM and SIGHUP (where they have their default action)
    into :class:`SweepInterrupted`; later signals of the same kind are ignored while the
    sweep cleans up. Previous handlers are restored on exit."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise SweepInterrupted(signum)

    old = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM for a short cleanup block (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def interruption_reason(exc: BaseException | None) -> str | bool:
    """What ``provenance.json`` says about how a session ended (``False``: normally)."""
    if exc is None:
        return False
    if isinstance(exc, SweepInterrupted):
        return exc.signame
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT (KeyboardInterrupt)"
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ backends
Job = Callable[[RunConfig, bool], tuple]  # (cfg, wait) -> the arguments of run_and_store
OnDone = Callable[[RunConfig, dict[str, Any]], None]


def _local_serial(todo: list[RunConfig], job: Job, wait: bool, threads: int | None, on_done: OnDone) -> None:
    """Runs in this process; torch threads and thread env vars are restored afterwards."""
    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    env = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    try:
        for cfg in todo:
            on_done(cfg, run_and_store(*job(cfg, wait)))
    finally:
        for var, val in env.items():
            if val is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = val
        if old is not None:
            torch.set_num_threads(old)


def _stop_pool(pool: Any) -> None:
    """Cancel what is queued, terminate the workers and wait until they are gone."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def _pool_pass(queue: list[RunConfig], n: int, job: Job, wait: bool, threads: int | None,
               on_done: OnDone) -> list[RunConfig]:
    """Run ``queue`` on ``n`` spawned worker processes, at most ``n`` runs in flight.

    When a worker process dies (segfault, OOM kill) the whole pool breaks and every run
    in flight fails with it, guilty or not: those configs are returned, not recorded."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait as wait_futures
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    queue = list(queue)

    def new_pool():
        return ProcessPoolExecutor(max_workers=n, mp_context=ctx,
                                   initializer=_worker_init, initargs=(threads, os.getpid()))

    pool = new_pool()
    in_flight: dict[Any, RunConfig] = {}
    caught: list[RunConfig] = []
    try:
        while queue or in_flight:
            broken = False
            while queue and len(in_flight) < n:  # bounded: only `n` runs at risk
                cfg = queue[0]
                try:
                    fut = pool.submit(run_and_store, *job(cfg, wait))
                except BrokenProcessPool:
                    broken = True
                    break
                queue.pop(0)
                in_flight[fut] = cfg
            if in_flight:
                done, _ = wait_futures(list(in_flight), return_when=FIRST_COMPLETED)
                for fut in done:
                    cfg = in_flight.pop(fut)
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        caught.append(cfg)
                        continue
                    except Exception as e:  # noqa: BLE001 - e.g. run_fn cannot be unpickled there
                        out = {"outcome": "failed", "record": error_record(cfg, e)}
                    on_done(cfg, out)
            if broken:  # the pool cannot be reused; the runs still in flight died too
                caught.extend(in_flight.values())
                in_flight.clear()
                _stop_pool(pool)
                pool = new_pool()
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return caught


def _local_pool(todo: list[RunConfig], job: Job, wait: bool, workers: int, threads: int | None,
                on_done: OnDone) -> None:
    """``workers`` spawned processes. Runs caught in a pool that broke are rerun one at a
    time afterwards; a run that kills its worker even alone is stored as an error."""
    suspects = _pool_pass(todo, workers, job, wait, threads, on_done)
    if suspects:
        for cfg in _pool_pass(suspects, 1, job, wait, threads, on_done):
            on_done(cfg, {"outcome": "failed", "record": error_record(
                cfg, "the worker process died while running this config alone "
                "(crash or out of memory); see the sweep's stderr")})


def _ray(todo: list[RunConfig], job: Job, wait: bool, workers: int, threads: int | None, gpus: float,
         on_done: OnDone) -> None:
    """One Ray task per run; each task stores its own record (the store folder must be
    reachable from the Ray workers; if it is not, the parent stores what comes back)."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=max(1, workers) * max(1, threads or 1), include_dashboard=False,
                 log_to_driver=False)
        started = True
    remote = ray.remote(num_cpus=max(1, threads or 1), num_gpus=gpus, max_retries=0)(run_and_store)
    refs = {remote.remote(*job(cfg, wait)): cfg for cfg in todo}
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                cfg = refs[ref]
                try:
                    out = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - worker crash, OOM kill, ...
                    out = {"outcome": "failed", "record": error_record(cfg, e)}
                on_done(cfg, out)
    except BaseException:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        raise
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------ checks before any work
def check_engine_config(cfg: RunConfig) -> None:
    """What :func:`dsgd.engine.train_run` needs, checked without loading anything: a known
    method with valid settings, a valid schedule, a registered task and model."""
    from dsgd.data import TASKS, _import_builtin_loaders
    from dsgd.methods import get_method
    from dsgd.models import MODELS
    from dsgd.schedules import schedule

    get_method(cfg.method, **cfg.method_kwargs)
    schedule(cfg.schedule, cfg.tau, **cfg.schedule_kwargs)
    _import_builtin_loaders()
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; known tasks: {sorted(TASKS)}")
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; known models: {sorted(MODELS)}")


def preflight(configs: Sequence[RunConfig], fn_ref: str | RunFn) -> None:
    """Check every config before a sweep computes anything: with the default engine,
    :func:`check_engine_config`; with another run function, its ``check_config``
    attribute if it has one. One ``ValueError`` names the first bad run and what to fix."""
    if fn_ref == "dsgd.engine:train_run":
        check: Callable[[RunConfig], Any] | None = check_engine_config
    else:
        check = getattr(resolve_fn(fn_ref), "check_config", None)
    if check is None:
        return
    seen: set[str] = set()
    for i, cfg in enumerate(configs):
        key = json.dumps([cfg.task, cfg.model, cfg.method, cfg.method_kwargs, cfg.schedule, cfg.tau,
                          cfg.schedule_kwargs], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            check(cfg)
        except ValueError as e:
            raise ValueError(f"run {i + 1} of {len(configs)} ({cfg.run_id()}): {e}. Fix it in the "
                             "parameter file; nothing was computed.") from None


def _check_run_settings(backend: str, workers: Any, threads: Any, gpus: Any) -> None:
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads_per_worker must be an integer >= 1 (or None: leave torch alone), got {threads!r}")
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0:
        raise ValueError(f"gpus_per_run must be a number >= 0, got {gpus!r}")


def run_sweep(
    configs: Iterable[RunConfig | dict[str, Any]],
    store: ResultStore | str | os.PathLike | None = None,
    run_fn: RunFn | str | None = None,
    backend: str = "local",
    workers: int = 1,
    threads_per_worker: int | None = 1,
    gpus_per_run: float = 0,
    progress: bool = True,
    retry_errors: bool = True,
    provenance: dict[str, Any] | bool = True,
) -> list[dict[str, Any]]:
    """Compute every config not yet finished in ``store``; return all records in order.

    The process that computes a run stores its record (atomically, stamped with the
    session id) the moment it finishes, so an interrupted sweep keeps every run that
    finished — even one whose worker outlived the parent by a moment. Duplicate configs
    (same run id) run once; two sweeps on one store never compute the same run twice (per
    run claims); a corrupt record is moved to ``quarantine/`` and recomputed.

    Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the workers and close the session as
    interrupted (``"interrupted": "SIGTERM"`` ...), then re-raise (``KeyboardInterrupt`` /
    :class:`SweepInterrupted`). After SIGKILL the session stays open (no handler can
    run), but every stored record still names it, and the workers exit on their own.

    run_fn: ``RunConfig -> record``; default ``dsgd.engine.train_run``. May also be a
      ``"module:function"`` string. With ``workers > 1`` or Ray it must be importable
      (a module-level function).
    backend: ``"local"`` — ``workers == 1`` runs in this process, ``workers > 1`` in a
      pool of fresh ('spawn') processes; ``"ray"`` — one Ray task per run
      (``num_cpus=threads_per_worker``, ``num_gpus=gpus_per_run``); a local Ray instance
      with ``workers * threads_per_worker`` CPUs is started (and stopped) if none is running.
    threads_per_worker: torch threads in each worker (``None`` leaves them alone).
    retry_errors: recompute runs stored with status ``"error"`` (default True).
    provenance: append a session to the store's ``provenance.json`` (True), with extra
      fields (a dict, e.g. ``{"command": ..., "params_file": ...}``), or not (False: the
      records then name no session).
    """
    _check_run_settings(backend, workers, threads_per_worker, gpus_per_run)
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    unique: list[RunConfig] = []
    seen: set[str] = set()
    for c in configs:
        cfg = c if isinstance(c, RunConfig) else RunConfig.from_dict(c)
        if cfg.run_id() not in seen:
            seen.add(cfg.run_id())
            unique.append(cfg)

    statuses = {cfg.run_id(): store.status(cfg.run_id()) for cfg in unique}
    done_ok = tuple(FINISHED_STATUSES) + (() if retry_errors else ("error",))
    todo = [cfg for cfg in unique if statuses[cfg.run_id()] not in done_ok]
    n_skip = len(unique) - len(todo)
    corrupt = [str(store.file(r)) for r, s in statuses.items() if s == "corrupt"]
    if corrupt and progress:
        print(f"sweep: {len(corrupt)} corrupt record file(s) (e.g. {corrupt[0]}) are moved to "
              f"{store.path / 'quarantine'} and recomputed", file=sys.stderr)

    computed: list[dict[str, Any]] = []
    if not todo:
        return [store.get(cfg.run_id()) for cfg in unique]
    fn_ref: str | RunFn = _fn_ref(resolve_fn(run_fn) if run_fn is not None else default_run_fn())
    if workers > 1 or backend == "ray":
        _check_picklable(fn_ref)
    preflight(todo, fn_ref)
    prov = store.provenance if provenance is not False else None
    session: dict[str, Any] | None = None
    if prov is not None:
        extra = dict(provenance) if isinstance(provenance, dict) else {}
        extra.setdefault("command", list(sys.argv))
        session = prov.new_session(
            backend=backend, workers=workers, threads_per_worker=threads_per_worker,
            gpus_per_run=gpus_per_run, run_fn=fn_ref if isinstance(fn_ref, str) else repr(fn_ref),
            n_configs=len(unique), **extra,
        )
    sid = session["id"] if session else None
    path = list(sys.path)

    def job(cfg: RunConfig, wait: bool) -> tuple:
        return (fn_ref, cfg.to_dict(), threads_per_worker, path, str(store.path), sid, done_ok, wait)

    bar = _progress(len(unique), n_skip, progress)
    n_err = 0
    deferred: list[RunConfig] = []

    def on_done(cfg: RunConfig, out: dict[str, Any]) -> None:
        nonlocal n_err, n_skip
        if out["outcome"] == "deferred":  # another sweep is computing it: wait for it later
            deferred.append(cfg)
            return
        if out["outcome"] == "done_elsewhere":
            n_skip += 1
        else:
            rec = out["record"]
            if out["outcome"] == "failed":  # the worker could not store anything itself
                if not store.finished(rec["run_id"]):
                    store.put(stamp(rec, sid))
            elif not store.file(rec["run_id"]).exists():  # a worker on another machine
                store.put(rec)
            computed.append(rec)
            if rec["status"] == "error":
                n_err += 1
        bar.set_postfix_str(f"errors={n_err}", refresh=False)
        bar.update(1)

    def run_all(cfgs: list[RunConfig], wait: bool) -> None:
        if backend == "ray":
            _ray(cfgs, job, wait, workers, threads_per_worker, gpus_per_run, on_done)
        elif workers == 1:
            _local_serial(cfgs, job, wait, threads_per_worker, on_done)
        else:
            _local_pool(cfgs, job, wait, workers, threads_per_worker, on_done)

    failure: BaseException | None = None
    try:
        with _interrupt_on_signals():
            run_all(todo, wait=False)
            if deferred:  # claimed by another sweep when we tried: wait for those claims
                again = list(deferred)
                deferred.clear()
                run_all(again, wait=True)
    except BaseException as e:
        failure = e
        raise
    finally:
        with _shielded():
            bar.close()
            if session is not None:
                prov.end_session(sid, computed, n_skip, interrupted=interruption_reason(failure))
    if n_err and progress:
        first = next(r for r in computed if r["status"] == "error")
        print(f"sweep: {n_err} run(s) raised; they are stored with status 'error' and "
              f"retried by the next sweep. First: {first['run_id']}: {first['error']}",
              file=sys.stderr)
    return [store.get(cfg.run_id()) for cfg in unique]


def strip_volatile(record: dict[str, Any], fields: Sequence[str] = VOLATILE_FIELDS) -> dict[str, Any]:
    """A copy of ``record`` without the fields that differ between equal computations."""
    return {k: v for k, v in record.items() if k not in fields}


# =========================================================================== verification
# the criterion (reproduces, VERIFY_TOLERANCE) lives in dsgd.reproduce and is re-exported here
def verify_sample(
    store_or_folder: ResultStore | str | os.PathLike,
    k: int = 2,
    seed: int = 0,
    run_fn: RunFn | str | None = None,
    tolerance: float = VERIFY_TOLERANCE,
    metric: str = "accuracy",
    records: Sequence[dict[str, Any]] | None = None,
):
    """Recompute ``k`` randomly chosen finished runs and compare them with the store.

    A run passes when the verdict is the same and ``|stored - recomputed| <= tolerance``
    for ``metric`` (0.005 = half a percentage point of accuracy). The choice is
    ``random.Random(seed).sample`` over the sorted run ids, so it is reproducible.
    ``records``: draw from these finished records (e.g. the set as a chapter read it)
    instead of the store's current ones, so that a sweep still writing into the store
    does not change the draw. Recomputed records are not written. Returns the table of
    :func:`dsgd.reproduce.compare_pairs` (``run_id, stored, recomputed, diff``, the
    verdicts, the processors, ``ok``).
    """
    store = store_or_folder if isinstance(store_or_folder, ResultStore) else ResultStore(store_or_folder)
    recs = list(records) if records is not None else store.records()
    if not recs:
        raise ValueError(f"no finished runs in {store.path} to verify")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    chosen = random.Random(seed).sample(sorted(recs, key=lambda r: r["run_id"]), min(k, len(recs)))
    fn = resolve_fn(run_fn) if run_fn is not None else default_run_fn()
    pairs = [(rec, execute_run(_fn_ref(fn), RunConfig.from_dict(rec["config"]).to_dict())) for rec in chosen]
    return compare_pairs(pairs, metric, tolerance)
