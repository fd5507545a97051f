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

Who produced a record: a sweep stamps each record with its ``session`` (an id of an
entry in ``provenance.json``) and ``stored_at`` before the worker process that computed
it stores it, so the accounting never depends on a sweep ending normally. Records written
by older code have no ``session`` field; they stay readable everywhere, and
:mod:`dsgd.audit` (``dsgd repair-provenance``) attributes them afterwards from the
evidence the store holds. :meth:`ResultStore.accounting` (``dsgd status``) lists runs no
session accounts for and sessions left open.

Concurrency: a process computing a run first takes its *claim*, an ``fcntl.flock`` on
``<store>/claims/<run_id>.lock`` (see :meth:`ResultStore.claim`). The kernel drops the
lock when the owner dies, so a claim can never go stale; two sweeps on one store never
compute the same run twice. ``provenance.json`` is updated under a lock as well.

Statuses: ``"ok"`` and ``"diverged"`` are *finished* runs; ``"error"`` marks a run whose
function raised (the traceback is kept in the record). Error records are kept so nothing
is lost, but they do not count as finished: the next sweep recomputes them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

FINISHED_STATUSES = ("ok", "diverged")
STATUSES = ("ok", "diverged", "error")
# record fields that say where a record came from (added at store time or by a repair)
PROVENANCE_FIELDS = ("session", "stored_at", "attribution", "copied_from")


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
    """Raise ``ValueError`` unless ``record`` looks like a run record (for ``run_id``).

    The provenance fields are optional (old records have none); when present, ``session``
    is a session id or ``None`` (explicitly unattributed) and ``attribution`` a text."""
    if not isinstance(record, dict):
        raise ValueError(f"a run record must be a dict, got {type(record).__name__}")
    for key in ("run_id", "config", "status"):
        if key not in record:
            raise ValueError(f"run record lacks the key {key!r} (keys: {sorted(record)})")
    if record["status"] not in STATUSES:
        raise ValueError(f"run record status must be one of {STATUSES}, got {record['status']!r}")
    if run_id is not None and record["run_id"] != run_id:
        raise ValueError(f"run record has run_id {record['run_id']!r}, expected {run_id!r}")
    if "session" in record and not (record["session"] is None or isinstance(record["session"], str)):
        raise ValueError(f"run record session must be a session id (str) or null, got {record['session']!r}")
    if "attribution" in record and not isinstance(record["attribution"], str):
        raise ValueError(f"run record attribution must be a text, got {record['attribution']!r}")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed) for the block."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie does not count: an
    orphan's zombie may linger where nothing reaps it)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False
    except (OSError, ValueError, TypeError, IndexError):
        pass
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True


class RunClaim:
    """An exclusive claim on one run id (see :meth:`ResultStore.claim`); release it with
    :meth:`release` or use it as a context manager."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)  # while still holding the lock: see ResultStore.claim
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> "RunClaim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


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
        quarantined = sorted(str(p) for p in (self.path / "quarantine").glob("*.json"))
        return {
            "path": str(self.path),
            "counts": counts,
            "corrupt": [str(p) for p in self.corrupt()],
            "temp_files": [str(p) for p in self.temp_files()],
            "quarantined": quarantined,
            "claims": self.claims(),
            **self.accounting(),
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

    def quarantine(self, run_id: str) -> Path | None:
        """Move an unreadable record out of ``runs/`` into ``quarantine/`` (kept for
        inspection, no longer a record) so that the run is recomputed; returns the new path."""
        src = self.file(run_id)
        if not src.exists():
            return None
        dst = self.path / "quarantine" / f"{run_id}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except FileNotFoundError:  # another process moved it first
            return None
        return dst

    # ---------------------------------------------------------------- claims
    @property
    def claims_dir(self) -> Path:
        return self.path / "claims"

    def claim(self, run_id: str, wait: bool = False, owner: dict[str, Any] | None = None) -> RunClaim | None:
        """Claim ``run_id`` for computing: an exclusive ``flock`` on ``claims/<run_id>.lock``.

        Returns ``None`` when another live process holds it (``wait=False``), else blocks
        until it is free. The kernel releases the lock of a dead process, so there is no
        stale claim to clean up. Release unlinks the file while still holding the lock;
        a claimer that locked an inode which has meanwhile been unlinked sees that the path
        now names another inode (or none) and tries again, so at most one process holds the
        claim of a path. ``owner`` (pid, host, session) is written into the file for
        ``dsgd status``."""
        import fcntl

        path = self.claims_dir / f"{self.file(run_id).stem}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": platform.node(), "since": _now(), **(owner or {})}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            return RunClaim(path, fd)

    def claims(self) -> list[dict[str, Any]]:
        """Claim files present now: run id, owner (pid, host, session) and whether that
        owner is alive (a dead owner's file is a harmless leftover: its lock is gone)."""
        out = []
        if not self.claims_dir.is_dir():
            return out
        for p in sorted(self.claims_dir.glob("*.lock")):
            try:
                info = json.loads(p.read_text(encoding="utf-8") or "{}")
            except (OSError, ValueError):
                info = {}
            alive = info.get("host") == platform.node() and pid_alive(info.get("pid", -1))
            out.append({"run_id": p.stem, **info, "alive": alive})
        return out

    # ---------------------------------------------------------------- accounting
    def accounting(self) -> dict[str, Any]:
        """Which session accounts for each stored record, and which sessions are open.

        A record is accounted for when its ``session`` names a session of this store's
        ``provenance.json`` (``by_session``), when it carries ``copied_from`` (``copied``),
        or, for records of older code without a ``session`` field, when a session lists it
        as computed (``listed``). ``unknown``: marked explicitly unattributed
        (``session: null`` with an ``attribution`` note); ``unaccounted``: nothing accounts
        for it (needs ``dsgd repair-provenance``); ``dangling``: names a session this
        store does not hold. Open sessions: no end time and not closed by a repair."""
        data = self.provenance.load()
        sessions = data.get("sessions", [])
        ids = {session_id(s, i) for i, s in enumerate(sessions)}
        listed = {r for s in sessions for r in (s.get("computed") or []) + (s.get("errors") or [])}
        kinds: dict[str, list[str]] = {k: [] for k in
                                       ("by_session", "copied", "listed", "unknown", "unaccounted", "dangling")}
        for rid in self.run_ids():
            try:
                rec = self.get(rid)
            except CorruptRecordError:
                continue  # reported under "corrupt"
            if "session" in rec:
                if rec["session"] in ids:
                    kind = "by_session"
                elif rec["session"] is None:
                    kind = "copied" if rec.get("copied_from") else "unknown"
                else:
                    kind = "dangling"
            else:
                kind = "listed" if rid in listed else "unaccounted"
            kinds[kind].append(rid)
        open_sessions = [
            {"id": session_id(s, i), "index": i, "start": s.get("start"), "command": s.get("command"),
             "pid": s.get("pid"), "host": (s.get("machine") or {}).get("hostname")}
            for i, s in enumerate(sessions) if s.get("end") is None and not s.get("closed_by_repair")
        ]
        return {
            "sessions": len(sessions),
            "attribution": {k: len(v) for k, v in kinds.items()},
            "unaccounted": kinds["unaccounted"] + kinds["dangling"],
            "unknown": kinds["unknown"],
            "open_sessions": open_sessions,
        }

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


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or the text given), else
    :func:`platform.processor` or ``""``. Recorded with every run because CPU results are
    reproducible only on the same kind of processor: kernels differ by instruction set."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or ""


def machine_summary() -> dict[str, Any]:
    """The machine a sweep session ran on (each run's record adds its instruction set)."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_session_id() -> str:
    """A session id unique across processes and machines: UTC time, pid, random suffix."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-p{os.getpid()}-{secrets.token_hex(3)}"


def session_id(session: dict[str, Any], index: int) -> str:
    """The id of a session entry; entries written by older code (no ``id``) are called
    ``legacy-<index>`` (the name :mod:`dsgd.audit` writes into them when repairing)."""
    return session.get("id") or f"legacy-{index}"


def text_sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


class Provenance:
    """``provenance.json`` of a store: how its records were produced.

    It holds ``sessions`` (one per sweep invocation, resumed sweeps append: ``id``, command
    line, working directory, parameter file name, contents and SHA-256, backend/workers,
    library versions, git commit, machine, pid, start and end time, which runs were computed,
    skipped or failed, and why the session was interrupted, if it was) and ``runs`` (run id
    -> its timings and the session that computed it, written when a session closes). The
    authoritative link is the ``session`` field of each record, written as it is stored.
    A session killed with SIGKILL keeps ``"end": null``. Every update is a locked
    read-modify-write, so concurrent sweeps on one store do not lose each other's sessions.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"sessions": [], "runs": {}}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise CorruptRecordError(f"corrupt provenance file {self.path}: {e}") from e

    def _save(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.path, dumps(data))

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """``with prov.update() as data:`` edit ``data``; saved on exit, under the lock."""
        with file_lock(self.lock_path):
            data = self.load()
            data.setdefault("sessions", [])
            data.setdefault("runs", {})
            yield data
            self._save(data)

    def find(self, data: dict[str, Any], session: int | str) -> int:
        """The index of the session entry with this index or id."""
        sessions = data["sessions"]
        if isinstance(session, int):
            if not 0 <= session < len(sessions):
                raise KeyError(f"no session {session} in {self.path}")
            return session
        for i, s in enumerate(sessions):
            if session_id(s, i) == session:
                return i
        raise KeyError(f"no session {session!r} in {self.path}")

    def new_session(
        self,
        command: list[str] | str | None = None,
        params_file: str | os.PathLike | None = None,
        params_text: str | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        """Append a session and return (a copy of) its entry, with ``id`` and ``index``."""
        from dsgd.book import repo_root

        if params_file is not None and params_text is None:
            try:
                params_text = Path(params_file).read_text(encoding="utf-8")
            except OSError:
                params_text = None
        entry = {
            "id": new_session_id(),
            "start": _now(),
            "end": None,
            "command": command,
            "cwd": os.getcwd(),
            "params_file": str(params_file) if params_file is not None else None,
            "params_text": params_text,
            "params_sha256": text_sha256(params_text),
            "settings": settings,
            "versions": library_versions(),
            "git": git_commit(repo_root()),
            "machine": machine_summary(),
            "pid": os.getpid(),
            "computed": [],
            "errors": [],
            "skipped": 0,
            "interrupted": None,
        }
        with self.update() as data:
            data["sessions"].append(entry)
            index = len(data["sessions"]) - 1
        return {**entry, "index": index}

    def start_session(self, command: list[str] | str | None = None,
                      params_file: str | os.PathLike | None = None,
                      params_text: str | None = None, **settings: Any) -> int:
        """Append a session and return its index (see :meth:`new_session`)."""
        return self.new_session(command, params_file, params_text, **settings)["index"]

    def end_session(
        self,
        session: int | str,
        computed: list[dict[str, Any]],
        skipped: int,
        interrupted: bool | str = False,
    ) -> None:
        """Close a session: its end time, why it was interrupted (``False``: it was not; a
        text such as ``"SIGTERM"`` otherwise), and the runs it computed — the records given
        plus every stored record that names the session (stored by workers whose result
        the parent never received). Records given here that do not yet name the session
        (copied in by an import, for instance) are stamped with it."""
        store = ResultStore(self.path.parent)
        with self.update() as data:
            index = self.find(data, session)
            s = data["sessions"][index]
            sid = session_id(s, index)
            for r in computed:
                _stamp(store, r["run_id"], sid)
            mine = {r["run_id"]: r for r in computed}
            for rid in store.run_ids():
                if rid not in mine:
                    try:
                        rec = store.get(rid)
                    except CorruptRecordError:
                        continue
                    if rec.get("session") == sid:
                        mine[rid] = rec
            s["end"] = _now()
            s["skipped"] = skipped
            s["interrupted"] = interrupted
            s["computed"] = sorted(r for r, rec in mine.items() if rec["status"] != "error")
            s["errors"] = sorted(r for r, rec in mine.items() if rec["status"] == "error")
            for rid, r in mine.items():
                data["runs"][rid] = {"status": r["status"], "session": index, "session_id": sid,
                                     "timings": r.get("timings")}


def _stamp(store: ResultStore, run_id: str, sid: str) -> None:
    """Make the stored record of ``run_id`` name session ``sid``: add ``session`` and
    ``stored_at``; a ``session`` it brought from another store moves to ``copied_from``."""
    try:
        rec = store.get(run_id)
    except (KeyError, CorruptRecordError):
        return
    if rec.get("session") == sid:
        return
    if "session" in rec:
        rec["copied_from"] = {"session": rec["session"], "attribution": rec.get("attribution"),
                              "copied_from": rec.get("copied_from"), "stored_at": rec.get("stored_at")}
    rec["session"] = sid
    rec["stored_at"] = _now()
    store.put(rec)
