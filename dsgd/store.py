"""A resumable store of finished runs: one JSON file per run, written atomically.

Layout of a store folder (``results/<name>/`` for a published result set, or the scratch
default ``_build/store``)::

    <store>/runs/<run_id>.json   one record per run (what ``dsgd.train_run`` returned)
    <store>/provenance.json      how the records were made (see :class:`Provenance`)

Every record is written to a temporary file in the same folder, flushed and fsync'ed,
then moved over its final name with :func:`os.replace` (atomic on POSIX). A process
killed at any instant (even with SIGKILL) therefore leaves either no file or a complete
one under the final name; at worst a stray ``.<run_id>.*.tmp`` file, which is ignored.

A file that is nevertheless unreadable (edited by hand, truncated by a full disk on a
filesystem without atomic rename, ...) is never used silently: reading it raises
:class:`CorruptRecordError`, which names the file and says what to do.

Statuses: ``"ok"`` and ``"diverged"`` are *finished* runs; ``"error"`` marks a run whose
function raised (the traceback is kept in the record). Error records are kept so nothing
is lost, but they do not count as finished: the next sweep recomputes them.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

FINISHED_STATUSES = ("ok", "diverged")
STATUSES = ("ok", "diverged", "error")


class CorruptRecordError(ValueError):
    """A file in the store is not a complete, valid run record."""


def default_store_path() -> Path:
    """``$DSGD_STORE`` if set, else ``<repo root>/_build/store``."""
    env = os.environ.get("DSGD_STORE")
    if env:
        return Path(env)
    from dsgd.book import repo_root

    return repo_root() / "_build" / "store"


def _jsonable(o: Any) -> Any:
    """``json.dumps`` fallback for numpy/torch scalars and arrays."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serialisable")


def dumps(obj: Any) -> str:
    """JSON text of a record (NaN/inf allowed: diverged runs may carry them)."""
    return json.dumps(obj, indent=1, sort_keys=True, default=_jsonable)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers only ever see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # e.g. a filesystem that cannot fsync directories
        pass


def validate_record(record: Any, run_id: str | None = None) -> None:
    """Raise ``ValueError`` unless ``record`` looks like a run record (for ``run_id``)."""
    if not isinstance(record, dict):
        raise ValueError(f"a run record must be a dict, got {type(record).__name__}")
    for key in ("run_id", "config", "status"):
        if key not in record:
            raise ValueError(f"run record lacks the key {key!r} (keys: {sorted(record)})")
    if record["status"] not in STATUSES:
        raise ValueError(f"run record status must be one of {STATUSES}, got {record['status']!r}")
    if run_id is not None and record["run_id"] != run_id:
        raise ValueError(f"run record has run_id {record['run_id']!r}, expected {run_id!r}")


class ResultStore:
    """Finished runs under ``<path>/runs/<run_id>.json``; see the module docstring."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        self.runs_dir = self.path / "runs"

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # ---------------------------------------------------------------- files
    def file(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"invalid run_id {run_id!r}")
        return self.runs_dir / f"{run_id}.json"

    def run_ids(self) -> list[str]:
        """Ids of all record files (sorted), ignoring temporary files."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(
            p.stem for p in self.runs_dir.glob("*.json") if not p.name.startswith(".")
        )

    def temp_files(self) -> list[Path]:
        """Stray temporary files left by a process killed while writing (harmless)."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(self.runs_dir.glob(".*.tmp"))

    def __len__(self) -> int:
        return len(self.run_ids())

    def __contains__(self, run_id: str) -> bool:
        return self.has(run_id)

    # ---------------------------------------------------------------- read
    def has(self, run_id: str) -> bool:
        """True when a record file (of any status) exists for ``run_id``."""
        return self.file(run_id).exists()

    def get(self, run_id: str) -> dict[str, Any]:
        """The stored record; ``KeyError`` if absent, :class:`CorruptRecordError` if bad."""
        p = self.file(run_id)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyError(f"no stored run {run_id!r} in {self.path}") from None
        try:
            record = json.loads(text)
            validate_record(record, run_id)
        except ValueError as e:  # JSONDecodeError is a ValueError
            raise CorruptRecordError(
                f"corrupt run record {p}: {e}. It is not used. Delete the file "
                f"(or run `ResultStore({str(self.path)!r}).remove_corrupt()`) and rerun the "
                "sweep to recompute it."
            ) from e
        return record

    def status(self, run_id: str) -> str | None:
        """``None`` (absent), ``"corrupt"``, or the record's status."""
        try:
            return self.get(run_id)["status"]
        except KeyError:
            return None
        except CorruptRecordError:
            return "corrupt"

    def finished(self, run_id: str) -> bool:
        """True when a valid record with status ``ok`` or ``diverged`` exists."""
        return self.status(run_id) in FINISHED_STATUSES

    def corrupt(self) -> list[Path]:
        """Files under the final name that are not valid records."""
        return [self.file(r) for r in self.run_ids() if self.status(r) == "corrupt"]

    def remove_corrupt(self) -> list[Path]:
        """Delete corrupt record files (they are recomputed by the next sweep)."""
        bad = self.corrupt()
        for p in bad:
            p.unlink()
        return bad

    def check(self) -> dict[str, Any]:
        """Counts per status, plus corrupt files and stray temporary files."""
        counts: dict[str, int] = {}
        for r in self.run_ids():
            s = self.status(r) or "missing"
            counts[s] = counts.get(s, 0) + 1
        return {
            "path": str(self.path),
            "counts": counts,
            "corrupt": [str(p) for p in self.corrupt()],
            "temp_files": [str(p) for p in self.temp_files()],
        }

    def records(
        self,
        status: str | Iterable[str] | None = FINISHED_STATUSES,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **config: Any,
    ) -> list[dict[str, Any]]:
        """Stored records, sorted by run id.

        status: keep these statuses (default: finished runs; ``None``: all, errors too).
        config: keep records whose config field equals the value, or is in the value
          when a list/tuple/set is given, e.g. ``records(method=["fft", "dsgd"], task="rte")``.
        where: any further predicate on the record.
        A corrupt file raises :class:`CorruptRecordError` (never skipped silently).
        """
        if isinstance(status, str):
            status = (status,)
        keep = None if status is None else set(status)
        out = []
        for run_id in self.run_ids():
            rec = self.get(run_id)
            if keep is not None and rec["status"] not in keep:
                continue
            cfg = rec.get("config", {})
            ok = True
            for k, v in config.items():
                have = cfg.get(k)
                if isinstance(v, (list, tuple, set, frozenset)):
                    ok = have in v
                else:
                    ok = have == v
                if not ok:
                    break
            if ok and (where is None or where(rec)):
                out.append(rec)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records(status=None))

    def to_frame(self, status: str | Iterable[str] | None = FINISHED_STATUSES, **config: Any):
        """One row per record (see :func:`records_to_frame`)."""
        return records_to_frame(self.records(status=status, **config))

    # ---------------------------------------------------------------- write
    def put(self, record: dict[str, Any]) -> Path:
        """Store ``record`` atomically under its run id (replacing an older record)."""
        validate_record(record)
        p = self.file(record["run_id"])
        atomic_write_text(p, dumps(record))
        return p

    def delete(self, run_id: str) -> None:
        self.file(run_id).unlink(missing_ok=True)

    # ---------------------------------------------------------------- provenance
    @property
    def provenance(self) -> "Provenance":
        return Provenance(self.path / "provenance.json")


# --------------------------------------------------------------------------- frames
def _flatten(prefix: str, d: dict[str, Any], out: dict[str, Any]) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(key + ".", v, out)
        else:
            out[key] = v


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """A flat row: config fields (``method_kwargs.alpha`` for nested ones), metrics
    (unprefixed, e.g. ``accuracy``; ``metrics.<name>`` if a name clashes with a config
    field), ``run_id``, ``status``, ``verdict``, ``majority_rate``, ``n_eval``, and
    ``timings.<name>``."""
    row: dict[str, Any] = {"run_id": record["run_id"], "status": record["status"]}
    _flatten("", record.get("config", {}), row)
    for k, v in (record.get("metrics") or {}).items():
        key = k if k not in row else f"metrics.{k}"
        row[key] = v
    row["verdict"] = record.get("verdict")
    row["majority_rate"] = record.get("majority_rate", math.nan)
    preds = record.get("predictions")
    row["n_eval"] = len(preds) if preds is not None else None
    _flatten("timings.", record.get("timings") or {}, row)
    return row


def records_to_frame(records: Iterable[dict[str, Any]]):
    """A pandas DataFrame with one :func:`record_row` per record."""
    import pandas as pd

    rows = [record_row(r) for r in records]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- provenance
def git_commit(cwd: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the repository holding ``cwd``, or ``None``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=30,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str | None]:
    """Versions of the packages that determine the numbers (without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("dsgd", "torch", "transformers", "numpy", "datasets", "peft", "ray"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine_summary() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Provenance:
    """``provenance.json`` of a store: how its records were produced.

    It holds ``sessions`` (one per sweep invocation, resumed sweeps append: command line,
    working directory, parameter file name and contents, backend/workers, library versions,
    git commit, machine, start and end time, which runs were computed, skipped or failed,
    and whether the session was interrupted) and ``runs`` (run id -> its timings and the
    session that computed it). A session killed with SIGKILL keeps ``"end": null``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"sessions": [], "runs": {}}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise CorruptRecordError(f"corrupt provenance file {self.path}: {e}") from e

    def _save(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.path, dumps(data))

    def start_session(
        self,
        command: list[str] | str | None = None,
        params_file: str | os.PathLike | None = None,
        params_text: str | None = None,
        **settings: Any,
    ) -> int:
        """Append a session and return its index."""
        from dsgd.book import repo_root

        if params_file is not None and params_text is None:
            try:
                params_text = Path(params_file).read_text(encoding="utf-8")
            except OSError:
                params_text = None
        data = self.load()
        data["sessions"].append(
            {
                "start": _now(),
                "end": None,
                "command": command,
                "cwd": os.getcwd(),
                "params_file": str(params_file) if params_file is not None else None,
                "params_text": params_text,
                "settings": settings,
                "versions": library_versions(),
                "git": git_commit(repo_root()),
                "machine": machine_summary(),
                "computed": [],
                "errors": [],
                "skipped": 0,
                "interrupted": None,
            }
        )
        self._save(data)
        return len(data["sessions"]) - 1

    def end_session(
        self,
        session: int,
        computed: list[dict[str, Any]],
        skipped: int,
        interrupted: bool = False,
    ) -> None:
        """Close a session: record which runs it computed and their timings."""
        data = self.load()
        s = data["sessions"][session]
        s["end"] = _now()
        s["skipped"] = skipped
        s["interrupted"] = interrupted
        s["computed"] = [r["run_id"] for r in computed if r["status"] != "error"]
        s["errors"] = [r["run_id"] for r in computed if r["status"] == "error"]
        for r in computed:
            data["runs"][r["run_id"]] = {
                "status": r["status"],
                "session": session,
                "timings": r.get("timings"),
            }
        self._save(data)
