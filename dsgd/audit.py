"""Who produced each stored run: attribution of records from before records named their
session, and the repair that writes it down (``dsgd repair-provenance STORE``).

Since sessions stamp each record as it is stored (``record["session"]``), a new record
needs nothing from here. Older records carry no such field, and an older session wrote
its list of computed runs only when it ended normally, so a killed sweep left its runs
unlisted. :func:`analyse` attributes every record from the evidence the store holds, by
these rules, in order; each attribution says which rule applied and on what evidence:

1. *recorded*: the record names its session (written by the session itself, or by an
   earlier repair): kept as it is.
2. *copied*: the run is listed in a ``copied_from`` mapping (run id -> path of the record
   it was copied from): "copied from <store>, produced there by <session or unknown>",
   the source's own attribution, found by these same rules; whether the copy is identical
   to its source (apart from these fields) is checked and said.
3. *listed*: a session of this store lists the run as computed (or as an error). When
   that session was an import (``settings.kind == "import"``), the source is named as in
   rule 2 (or, when the source store is gone, the source session the import recorded).
4. Otherwise the candidates are the sessions of this store that (a) never recorded an end
   (a session that ended listed everything it computed), (b) whose parameter file lists
   the run, (c) started before the run first appeared in the git history of the store, at
   least the run's own measured duration (``timings.total_s``) earlier, and (d) ran the
   library versions (dsgd, torch, transformers) and platform the record names. Exactly one
   candidate: *inferred* (assuming the run came from a recorded session of this store at
   all, which no record of older code can show); several or none: *unknown*, naming them.

:func:`repair_provenance` adds ``session`` (``None`` when unknown or copied),
``attribution`` and, for copies, ``copied_from`` to records lacking ``session``; it
changes no other field. It closes sessions left open as "interrupted (closed afterwards by
repair, reason ...)", keeping their unknown end time ``null``, and appends what it did
to ``provenance.json["repairs"]``. Running it again changes nothing.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dsgd.store import (
    PROVENANCE_FIELDS,
    CorruptRecordError,
    ResultStore,
    _now,
    git_commit,
    pid_alive,
    session_id,
)

RECENT_WRITE_S = 900  # a store written this recently may have a sweep still running
_VERSION_KEYS = ("dsgd", "torch", "transformers")


# --------------------------------------------------------------------------- evidence
def _epoch(stamp: str | None) -> float | None:
    """Seconds since the epoch of a provenance time stamp (``%Y-%m-%dT%H:%M:%S%z``)."""
    if not stamp:
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def _git_root(path: Path) -> Path | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def git_first_seen(store: ResultStore) -> dict[str, tuple[float, str]]:
    """run id -> (commit time, short hash) of the first commit that added its record."""
    root = _git_root(store.path) if store.path.is_dir() else None
    if root is None:
        return {}
    try:
        out = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=@%ct %h", "--name-only", "--", str(store.runs_dir)],
            cwd=root, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    seen: dict[str, tuple[float, str]] = {}
    stamp: tuple[float, str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            t, h = line[1:].split(" ", 1)
            stamp = (float(t), h)
        elif line.strip().endswith(".json") and stamp is not None:
            rid = Path(line.strip()).stem
            if rid not in seen or stamp[0] < seen[rid][0]:
                seen[rid] = stamp
    return seen


def session_grid(session: dict[str, Any]) -> set[str] | None:
    """Run ids of the session's parameter file (``None``: no parameter text recorded)."""
    import yaml

    from dsgd.sweep import configs_from_params

    text = session.get("params_text")
    if not text:
        return None
    try:
        return {c.run_id() for c in configs_from_params(yaml.safe_load(text))}
    except (ValueError, TypeError, yaml.YAMLError):
        return None


def _same_software(record: dict[str, Any], session: dict[str, Any]) -> bool:
    """False only when record and session name different versions or platforms."""
    rv, sv = record.get("versions") or {}, session.get("versions") or {}
    for k in _VERSION_KEYS:
        a, b = rv.get(k), sv.get(k)
        if a and b and str(a).split("+")[0] != str(b).split("+")[0]:
            return False
    rp, sp = (record.get("machine") or {}).get("platform"), (session.get("machine") or {}).get("platform")
    return not (rp and sp and rp != sp)


def _label(session: dict[str, Any], index: int) -> str:
    cmd = session.get("command")
    cmd = " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)
    return f"{session_id(session, index)} (`{cmd[:90]}`, started {session.get('start')})"


def _display(path: Path) -> str:
    root = _git_root(path if path.is_dir() else path.parent)
    try:
        return str(path.resolve().relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- copies
class _Sources:
    """Source stores looked up for copies (each analysed once)."""

    def __init__(self, base: Path):
        self.base = base
        self.analyses: dict[Path, dict[str, dict[str, Any]]] = {}

    def resolve(self, text: str) -> Path:
        p = Path(text.split(" (")[0].strip())
        if not p.is_absolute():
            root = _git_root(self.base) or Path.cwd()
            p = root / p
        return p

    def attribution(self, store_path: Path, rid: str, copy: dict[str, Any]) -> dict[str, Any] | None:
        """How the source store accounts for ``rid``; ``None`` when it does not hold it."""
        src = ResultStore(store_path)
        try:
            original = src.get(rid)
        except (KeyError, CorruptRecordError):
            return None
        key = store_path.resolve()
        if key not in self.analyses:
            self.analyses[key] = analyse(src, _sources=self)
        a = self.analyses[key][rid]
        out = {"store": _display(store_path), "session": a["session"], "attribution": a["attribution"],
               "identical": _strip(original) == _strip(copy)}
        if a.get("copied_from"):
            out["copied_from"] = a["copied_from"]
        return out


def _copy_text(src: dict[str, Any]) -> str:
    same = {True: " (the copy is identical to the source record)",
            False: " (NOTE: the copy differs from the source record)"}.get(src.get("identical"), "")
    if src.get("session") and src.get("copied_from"):
        return (f"copied from {src['store']}, where session {src['session']} had copied it in turn "
                f"({src['attribution']}){same}")
    if src.get("session"):
        who = f"session {src['session']}"
    elif src.get("source_session"):
        s = src["source_session"]
        cmd = " ".join(map(str, s.get("command") or [])) or "?"
        who = f"the session `{cmd}` (started {s.get('start')}, ended {s.get('end')})"
    else:
        who = "an unknown session"
    return f"copied from {src['store']}, produced there by {who} ({src['attribution']}){same}"


def _import_source(session: dict[str, Any], index: int, rid: str, rec: dict[str, Any],
                   sources: _Sources) -> dict[str, Any]:
    """Where an import session copied ``rid`` from, and who produced it there."""
    settings = session.get("settings") or {}
    text = str(settings.get("source", "an unnamed source"))
    got = sources.attribution(sources.resolve(text), rid, rec) if settings.get("source") else None
    if got is not None:
        if text != got["store"]:
            got["source_as_recorded"] = text
        return got
    for j, s in enumerate(settings.get("source_sessions") or []):
        if rid in (s.get("computed") or []):
            return {"store": text, "session": None, "identical": None,
                    "source_session": {k: s.get(k) for k in ("command", "start", "end", "git", "params_text")},
                    "attribution": (f"recorded in the computed list of the source session that the import "
                                    f"session {session_id(session, index)} copied under "
                                    f"settings.source_sessions[{j}]")}
    note = settings.get("note")
    return {"store": text, "session": None, "identical": None,
            "attribution": ("unknown: the source record is not in " + _display(sources.resolve(text))
                            + " here and the import recorded no session that lists it"
                            + (f"; the import's note says: {note!r}" if note else ""))}


# --------------------------------------------------------------------------- analysis
def analyse(store: ResultStore | str | os.PathLike, copied_from: dict[str, str] | None = None,
            _sources: _Sources | None = None) -> dict[str, dict[str, Any]]:
    """run id -> ``{"kind", "session", "attribution", ["copied_from"], ["candidates"]}``
    for every readable record of ``store``, by the rules of the module docstring.
    ``copied_from``: run id -> path of the record it was copied from. Reads only."""
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    sources = _sources or _Sources(store.path)
    data = store.provenance.load()
    sessions = data.get("sessions", [])
    listed: dict[str, int] = {}
    for i, s in enumerate(sessions):
        for rid in (s.get("computed") or []) + (s.get("errors") or []):
            listed.setdefault(rid, i)
    first_seen = git_first_seen(store)
    grids = {i: session_grid(s) for i, s in enumerate(sessions) if s.get("end") is None}
    out: dict[str, dict[str, Any]] = {}
    for rid in store.run_ids():
        try:
            rec = store.get(rid)
        except CorruptRecordError:
            continue
        if "session" in rec:  # rule 1
            a = {"kind": "recorded", "session": rec["session"],
                 "attribution": rec.get("attribution") or "recorded by the session when it stored the record"}
            if rec.get("copied_from"):
                a["copied_from"] = rec["copied_from"]
            out[rid] = a
        elif copied_from and rid in copied_from:  # rule 2
            src_file = sources.resolve(copied_from[rid])
            got = sources.attribution(src_file.parent.parent, rid, rec)
            if got is None:
                got = {"store": copied_from[rid], "session": None, "identical": None,
                       "attribution": f"unknown: the source record {copied_from[rid]} is not readable here"}
            out[rid] = {"kind": "copied", "session": None, "copied_from": got,
                        "attribution": _copy_text(got) + " (listed in the store's copied_from mapping)"}
        elif rid in listed:  # rule 3
            i = listed[rid]
            s = sessions[i]
            a = {"kind": "listed", "session": session_id(s, i),
                 "attribution": f"recorded in the computed list of session {_label(s, i)}"}
            if (s.get("settings") or {}).get("kind") == "import":
                a["copied_from"] = _import_source(s, i, rid, rec, sources)
                a["attribution"] += "; that session was an import: " + _copy_text(a["copied_from"])
            out[rid] = a
        else:  # rule 4
            out[rid] = _infer(rid, rec, sessions, grids, first_seen.get(rid))
    return out


def _infer(rid: str, rec: dict[str, Any], sessions: list[dict[str, Any]],
           grids: dict[int, set[str] | None], seen: tuple[float, str] | None) -> dict[str, Any]:
    total = (rec.get("timings") or {}).get("total_s")
    total = float(total) if isinstance(total, (int, float)) else 0.0
    evidence = []
    candidates = []
    for i, s in enumerate(sessions):
        if s.get("end") is not None:
            continue  # (a): it listed all it computed, and not this run
        if grids.get(i) is not None and rid not in grids[i]:
            continue  # (b)
        start = _epoch(s.get("start"))
        if seen is not None and start is not None and start + total > seen[0]:
            continue  # (c)
        if not _same_software(rec, s):
            continue  # (d)
        candidates.append(i)
    evidence.append("no session that ended lists it")
    if seen is not None:
        t = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seen[0]))
        evidence.append(f"its record was first committed in {seen[1]} ({t}); sessions that started "
                        f"later, or less than its measured {total:.0f} s before, are excluded")
    else:
        evidence.append("its record is not in the git history, so start times exclude nothing")
    evidence.append("sessions whose parameter file does not list it, or whose library versions or "
                    "platform differ from the record's, are excluded")
    ids = [session_id(sessions[i], i) for i in candidates]
    if len(candidates) == 1:
        i = candidates[0]
        return {"kind": "inferred", "session": ids[0], "candidates": ids,
                "attribution": (f"inferred: the only session that can have produced it is {_label(sessions[i], i)}, "
                                "which never recorded its end or its computed runs; evidence: "
                                + "; ".join(evidence)
                                + ". This assumes the run came from a recorded session of this store.")}
    what = (f"one of the sessions {', '.join(ids)}, which never recorded their end or computed runs"
            if ids else "no recorded session of this store fits the evidence")
    return {"kind": "unknown", "session": None, "candidates": ids,
            "attribution": f"unknown: {what}; evidence: " + "; ".join(evidence) + "."}


# --------------------------------------------------------------------------- repair
def _newest_write(store: ResultStore) -> float:
    paths = [store.provenance.path, *store.runs_dir.glob("*.json")] if store.runs_dir.is_dir() else [
        store.provenance.path]
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def _alive(session: dict[str, Any]) -> bool:
    host = (session.get("machine") or {}).get("hostname")
    return bool(session.get("pid")) and host == platform.node() and pid_alive(session["pid"])


def repair_provenance(store: ResultStore | str | os.PathLike, copied_from: dict[str, str] | None = None,
                      dry_run: bool = False, force: bool = False, command: list[str] | None = None,
                      recent_s: float = RECENT_WRITE_S) -> dict[str, Any]:
    """Write the attribution of :func:`analyse` into the records that lack ``session``,
    give legacy sessions their ``id``, close sessions left open, and log the repair.

    Refuses (``ValueError``) when the store has open sessions and was written in the last
    ``recent_s`` seconds (a sweep may still be running), unless ``force``; a session whose
    recorded pid is alive on this machine is never closed. Returns a summary."""
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    data = store.provenance.load()
    sessions = data.get("sessions", [])
    open_idx = [i for i, s in enumerate(sessions) if s.get("end") is None and not s.get("closed_by_repair")]
    age = time.time() - _newest_write(store)
    if open_idx and age < recent_s and not force and not dry_run:
        raise ValueError(
            f"{store.path} was written {age:.0f} s ago and has {len(open_idx)} open session(s): a sweep "
            "may still be running. Repair it once that sweep is over (or pass --force if none is).")
    result = analyse(store, copied_from)
    now = _now()
    changed = []
    for rid, a in result.items():
        rec = store.get(rid)
        if "session" in rec:
            continue
        added = {"session": a["session"], "attribution": a["attribution"]}
        if a.get("copied_from"):
            added["copied_from"] = a["copied_from"]
        changed.append(rid)
        if not dry_run:
            store.put({**rec, **added})
    closed, alive = [], []
    per_session: dict[str, dict[str, list[str]]] = {}
    for rid, a in result.items():
        if a["kind"] in ("inferred", "unknown"):
            for sid in a.get("candidates", []):
                per_session.setdefault(sid, {"inferred": [], "possible": []})[
                    "inferred" if a["kind"] == "inferred" else "possible"].append(rid)
    counts: dict[str, int] = {}
    for a in result.values():
        counts[a["kind"]] = counts.get(a["kind"], 0) + 1
    summary = {"store": str(store.path), "records_attributed": len(changed), "by_rule": counts,
               "unknown": sorted(r for r, a in result.items() if a["session"] is None and a["kind"] == "unknown"),
               "sessions_closed": closed, "sessions_left_open_alive": alive, "dry_run": dry_run}
    if dry_run:
        summary["sessions_closed"] = [session_id(sessions[i], i) for i in open_idx if not _alive(sessions[i])]
        return summary
    with store.provenance.update() as data:
        for i, s in enumerate(data["sessions"]):
            sid = session_id(s, i)
            s.setdefault("id", sid)
            if s.get("end") is not None or s.get("closed_by_repair"):
                continue
            if _alive(s):
                alive.append(sid)
                continue
            runs = per_session.get(sid, {"inferred": [], "possible": []})
            s["interrupted"] = (
                "interrupted (closed afterwards by repair, reason: the session never recorded an end "
                "time, so its process was killed (SIGKILL, a session time limit) or lost before it could "
                "close it; its end time is unknown and stays null)")
            s["closed_by_repair"] = now
            s["repair"] = {"runs_inferred": sorted(runs["inferred"]), "runs_possibly_produced": sorted(runs["possible"])}
            closed.append(sid)
        data.setdefault("repairs", []).append({
            "time": now, "command": command, "git": git_commit(store.path if store.path.is_dir() else None),
            "rules": "dsgd.audit (module docstring): recorded > copied > listed > inferred/unknown",
            "records_attributed": len(changed), "by_rule": counts, "sessions_closed": closed,
            "copied_from_entries": len(copied_from or {}),
        })
    return summary


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its provenance fields (what a repair must leave unchanged)."""
    return {k: v for k, v in record.items() if k not in PROVENANCE_FIELDS}


__all__ = ["analyse", "git_first_seen", "repair_provenance", "session_grid"]
