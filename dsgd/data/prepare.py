"""Fetch and cache the offline data that registry packages ship (run once per machine).

``python -m dsgd.data.prepare`` (called by ``python3 make.py setup``):

* BIG-bench: downloads the ``bigbench==1.0.0`` source archive from PyPI once, with pip
  (``pip download --no-deps --no-binary :all:``; 358 MB, kept under ``<cache>/downloads``),
  and extracts only the ``task.json`` files of :data:`BIGBENCH_TASKS` to
  ``<cache>/bigbench/<task>/task.json``.
  Any other JSON task is extracted from the kept archive when first asked for
  (:func:`ensure_bigbench_task`, used by the ``bigbench:<task>`` loader), or at set-up
  with ``--bigbench TASK ...``.
* Fashion-MNIST: if the Debian package ``dataset-fashion-mnist`` is installed, converts
  its IDX files once to ``<cache>/fashion_mnist.npz`` (uint8 arrays, fast to load).

``<cache>`` is ``$DSGD_DATA_DIR`` or ``~/.cache/dsgd``. The step is idempotent: when the
cache is complete it only checks that the files exist (well under a second). Files are
written to a temporary name and renamed, so an interrupted run leaves no half file.

This module uses only the standard library (and numpy for the Fashion-MNIST conversion),
so it runs before torch is importable.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BIGBENCH_VERSION = "1.0.0"
BIGBENCH_ARCHIVE = f"bigbench-{BIGBENCH_VERSION}.tar.gz"
# Only these task.json files are extracted from the archive (see dsgd.data.offline).
BIGBENCH_TASKS = (
    "epistemic_reasoning",
    "formal_fallacies_syllogisms_negation",
    "presuppositions_as_nli",
    "winowhy",
    "strategyqa",
    "sports_understanding",
)
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
SETUP_HINT = "run `python3 make.py setup` (or `python -m dsgd.data.prepare`) once to fetch it"


class DataMissingError(FileNotFoundError):
    """Offline data that the set-up step should have cached is not there."""


def data_dir() -> Path:
    """Root of the offline data cache: ``$DSGD_DATA_DIR`` or ``~/.cache/dsgd``."""
    env = os.environ.get("DSGD_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dsgd"


def bigbench_task_file(task: str, root: Path | None = None) -> Path:
    return (root or data_dir()) / "bigbench" / task / "task.json"


def fashion_mnist_cache(root: Path | None = None) -> Path:
    return (root or data_dir()) / "fashion_mnist.npz"


def find_fashion_mnist_idx() -> Path | None:
    """Folder holding the four Fashion-MNIST IDX files, or None if not installed."""
    extra = os.environ.get("DSGD_FASHION_MNIST_DIR")
    for d in ((Path(extra),) if extra else ()) + FASHION_MNIST_DIRS:
        if all((d / f).exists() for f in FASHION_MNIST_FILES.values()):
            return d
    return None


def read_idx(path: Path):
    """Read a (gzipped) IDX file into a numpy uint8 array."""
    import numpy as np

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(shape)


# ----------------------------------------------------------------------- BIG-bench
def _pip_download(dest: Path, log) -> Path:
    """Download the BIG-bench sdist into ``dest`` with pip; returns the archive path.

    pip >= 26 refuses this sdist after building its metadata, because the package
    declares a direct-URL dependency (bleurt); ``--no-deps`` does not skip that check.
    In that case a pip < 26 is installed into ``<cache>/tools/pip`` (once, from PyPI) and
    used for this one download.
    """
    dest.mkdir(parents=True, exist_ok=True)
    args = ["download", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:",
            f"bigbench=={BIGBENCH_VERSION}", "-d", str(dest)]
    log(f"downloading {BIGBENCH_ARCHIVE} from PyPI with pip (358 MB, once per machine)")
    r = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if r.returncode != 0 and "direct URL" in (r.stdout + r.stderr):
        tools = dest.parent / "tools" / "pip"
        if not (tools / "pip").exists():
            log("this pip refuses the sdist (direct-URL dependency); installing pip<26 "
                f"into {tools} for the download")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", "--target", str(tools), "pip<26"],
                           check=True)
        env = dict(os.environ, PYTHONPATH=str(tools))
        r = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                           text=True, env=env)
    archive = dest / BIGBENCH_ARCHIVE
    if r.returncode != 0 or not archive.exists():
        raise RuntimeError(
            f"pip could not download bigbench=={BIGBENCH_VERSION} (exit {r.returncode}).\n"
            f"{(r.stdout + r.stderr)[-2000:]}\nPyPI must be reachable for this one-time step."
        )
    return archive


def extract_bigbench(archive: Path, tasks: list[str], root: Path, log) -> list[str]:
    """Extract ``benchmark_tasks/<task>/task.json`` for each task; returns those written."""
    wanted = {f"bigbench/benchmark_tasks/{t}/task.json": t for t in tasks}
    done: list[str] = []
    with tarfile.open(archive, "r|gz") as tf:  # one streaming pass over the archive
        for member in tf:
            rel = member.name.split("/", 1)[-1]  # drop "bigbench-1.0.0/"
            task = wanted.get(rel)
            if task is None or not member.isfile():
                continue
            target = bigbench_task_file(task, root)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            assert src is not None
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                shutil.copyfileobj(src, tmp)
            os.chmod(tmp.name, 0o644)
            os.replace(tmp.name, target)
            done.append(task)
            if len(done) == len(wanted):
                break
    missing = sorted(set(tasks) - set(done))
    if missing:
        raise RuntimeError(f"{archive} holds no task.json for {missing}")
    return done


def bigbench_archive(root: Path | None = None) -> Path:
    """Where the set-up step keeps the whole BIG-bench source archive (every task)."""
    return (root or data_dir()) / "downloads" / BIGBENCH_ARCHIVE


_TASK_PREFIX = "bigbench/benchmark_tasks/"


def bigbench_index(root: Path | None = None, log=print) -> list[str]:
    """Every JSON task in the archive (``task`` or ``task/subtask``), sorted.

    Built with one pass over the archive (some 10-25 s) the first time it is needed and
    cached as ``<cache>/bigbench/_index.json``.
    """
    root = root or data_dir()
    cached = root / "bigbench" / "_index.json"
    if cached.exists():
        return json.loads(cached.read_text())
    archive = bigbench_archive(root)
    if not archive.exists():
        raise DataMissingError(f"the BIG-bench archive {archive} is missing; {SETUP_HINT}")
    log(f"listing the tasks in {archive.name} (once)")
    names = []
    with tarfile.open(archive, "r|gz") as tf:
        for member in tf:
            rel = member.name.split("/", 1)[-1]
            if member.isfile() and rel.startswith(_TASK_PREFIX) and rel.endswith("/task.json"):
                names.append(rel[len(_TASK_PREFIX):-len("/task.json")])
    names.sort()
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cached.parent, delete=False) as tmp:
        json.dump(names, tmp)
    os.replace(tmp.name, cached)
    return names


def ensure_bigbench_task(task: str, root: Path | None = None, log=print) -> Path:
    """The cached ``task.json`` of any BIG-bench JSON task, extracted from the archive once.

    ``task`` is a folder under ``benchmark_tasks`` (``"anachronisms"``,
    ``"arithmetic/1_digit_addition"``). Raises :class:`DataMissingError` when neither the
    cached file nor the archive is there, ``ValueError`` (with similar names) when the
    archive has no such task.
    """
    root = root or data_dir()
    target = bigbench_task_file(task, root)
    if target.exists():
        return target
    archive = bigbench_archive(root)
    if not archive.exists():
        raise DataMissingError(
            f"BIG-bench task {task!r} is not cached ({target}) and the BIG-bench archive is "
            f"missing ({archive}); run `python -m dsgd.data.prepare --bigbench {task}` once "
            "(it downloads the archive from PyPI if needed).")
    index = root / "bigbench" / "_index.json"
    if not index.exists() or task in bigbench_index(root, log):
        try:
            extract_bigbench(archive, [task], root, log)
            return target
        except RuntimeError:
            pass
    import difflib

    names = bigbench_index(root, log)
    close = difflib.get_close_matches(task, names, n=5, cutoff=0.6)
    raise ValueError(
        f"BIG-bench 1.0.0 has no JSON task {task!r} (programmatic tasks, task.py, are not "
        f"supported); {'similar names: ' + ', '.join(close) if close else 'see ' + str(index)}")


def prepare_bigbench(root: Path, tasks=BIGBENCH_TASKS, force: bool = False, log=print) -> str:
    missing = [t for t in tasks if force or not bigbench_task_file(t, root).exists()]
    if not missing:
        return f"BIG-bench: {len(tasks)} task files present"
    archive = bigbench_archive(root)
    if not archive.exists():
        archive = _pip_download(archive.parent, log)
    t0 = time.perf_counter()
    done = extract_bigbench(archive, missing, root, log)
    return f"BIG-bench: extracted {len(done)} task files in {time.perf_counter() - t0:.1f} s ({', '.join(done)})"


# ------------------------------------------------------------------- Fashion-MNIST
def prepare_fashion_mnist(root: Path, force: bool = False) -> str:
    target = fashion_mnist_cache(root)
    if target.exists() and not force:
        return f"Fashion-MNIST: cached at {target}"
    src = find_fashion_mnist_idx()
    if src is None:
        return ("Fashion-MNIST: not installed, skipped (Debian: apt-get install -y "
                "dataset-fashion-mnist); the fashion_mnist_* tasks need it")
    import numpy as np

    arrays = {k: read_idx(src / f) for k, f in FASHION_MNIST_FILES.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, target)
    sizes = f"{len(arrays['y_train'])} train / {len(arrays['y_test'])} test"
    return f"Fashion-MNIST: converted {src} to {target} ({sizes})"


def prepare(force: bool = False, root: Path | None = None, log=print) -> list[str]:
    """Make the offline data cache complete; returns one line per data source."""
    root = root or data_dir()
    root.mkdir(parents=True, exist_ok=True)
    return [prepare_bigbench(root, force=force, log=log), prepare_fashion_mnist(root, force=force)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--force", action="store_true", help="re-extract even if cached")
    ap.add_argument("--data-dir", type=Path, default=None, help="cache root (default $DSGD_DATA_DIR or ~/.cache/dsgd)")
    ap.add_argument("--bigbench", nargs="*", default=[], metavar="TASK",
                    help="also extract these BIG-bench tasks (e.g. anachronisms arithmetic/1_digit_addition)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = a.data_dir or data_dir()
    log = lambda m: print(f"[dsgd.data.prepare] {m}", flush=True)  # noqa: E731
    for line in prepare(force=a.force, root=root, log=log):
        log(line)
    if a.bigbench:
        log(prepare_bigbench(root, tasks=tuple(a.bigbench), force=a.force, log=log))
    log(f"data cache {root} ready in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
