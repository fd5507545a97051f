"""The built wheel (not the editable install): its file list, and — marked slow — that it
installs into a fresh virtual environment where ``import dsgd``, ``dsgd --help`` and a
two-step FFT/DSGD sweep on the tiny test model work, away from the source tree.

The wheel is built from a copy of the working tree (so the build leaves nothing in the
repository) with ``pip wheel --no-deps``; without build isolation when setuptools is
importable here (offline, seconds), else with it (needs the package index). The fresh
environment reuses this interpreter's installed packages (torch, transformers ...) through
a ``.pth`` line, which adds their folder to ``sys.path`` without running the editable
install's hook that lives there, so ``dsgd`` can only come from the wheel.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns(".git", ".venv", "_build", "build", "dist", "*.egg-info", "__pycache__",
                               ".pytest_cache", ".ipynb_checkpoints", "claims", "*.tmp", "*.lock")


def _copy(a: str, b: str) -> None:
    """copy2, skipping a file that a running sweep replaced or removed meanwhile."""
    try:
        shutil.copy2(a, b)
    except FileNotFoundError:
        pass


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the source copy it was built from)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP, symlinks=True, copy_function=_copy)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
           str(src), "-w", str(tmp / "dist")]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-build-isolation")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list((tmp / "dist").glob("dsgd-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], src


def test_wheel_holds_the_library_only(built):
    wheel, src = built
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"dsgd", "dsgd-0.1.0.dist-info"}, tops  # no results/, notebooks/, book/, tests/
    source = {p.relative_to(src).as_posix() for p in (src / "dsgd").rglob("*.py")}
    assert source - set(names) == set()  # every module of the library, subpackages included
    assert "dsgd/data/fixtures/copa.json" in names  # package data
    entry = zipfile.ZipFile(wheel).read("dsgd-0.1.0.dist-info/entry_points.txt").decode()
    assert "dsgd = dsgd.cli:main" in entry


def _venv_with_wheel(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_reuse_packages.pth").write_text("\n".join(sorted(here)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "-q", str(wheel)], check=True, timeout=300)
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_away_from_the_source(built, tmp_path):
    wheel, _ = built
    venv = _venv_with_wheel(tmp_path, wheel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", DSGD_DATA_DIR=str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()

    def run(*cmd: str) -> str:
        r = subprocess.run(list(cmd), cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd}: {r.stdout}\n{r.stderr}"
        return r.stdout

    py = str(venv / "bin" / "python")
    where = run(py, "-c", "import dsgd; print(dsgd.__file__, dsgd.__version__)")
    assert where.startswith(str(venv)) and where.split()[1] == "0.1.0", where
    assert "sweep" in run(str(venv / "bin" / "dsgd"), "--help")
    (work / "grid.yaml").write_text(
        "base: {task: synthetic_tokens, model: tiny-bert, max_steps: 2, batch_size: 8,\n"
        "       train_size: 32, eval_size: 16, threads: 1}\n"
        "grid: {seed: [0], method: [fft, dsgd]}\n")
    run(str(venv / "bin" / "dsgd"), "sweep", "grid.yaml", "--store", "store", "--workers", "1")
    out = run(py, "-c", "from dsgd.store import ResultStore\n"
                        "rs = ResultStore('store').records()\n"
                        "print(sorted((r['config']['method'], r['status'], len(r['history']['step'])) for r in rs))")
    assert out.strip() == "[('dsgd', 'ok', 2), ('fft', 'ok', 2)]", out
