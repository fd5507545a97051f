"""make.py's set-up check of system pieces and its reuse of executed chapters.

make.py is stdlib-only and not a package module, so it is imported from its path. The
tests point its folders at a small hand-made tree and replace its command runner, so
nothing is installed or executed.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def make(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_under_test", ROOT / "make.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("DSGD_FASHION_MNIST_DIR", raising=False)
    return mod


# ------------------------------------------------------------------ system pieces
@pytest.fixture
def machine(make, tmp_path, monkeypatch):
    """A machine where nothing is installed: no npm, Chromium, Fashion-MNIST, widgets."""
    state = {"have": set(), "apt": "/usr/bin/apt-get", "uid": 1000, "sudo": False, "calls": []}

    def which(name):
        if name == "apt-get":
            return state["apt"]
        if name == "sudo":
            return "/usr/bin/sudo"
        return f"/usr/bin/{name}" if name in state["have"] else None

    def fake_run(cmd, **kw):
        state["calls"].append([str(c) for c in cmd])
        if "install" in cmd:  # what apt-get would have installed
            state["have"].update({"npm", "chromium"})
            fm = tmp_path / "fmnist"
            fm.mkdir(exist_ok=True)
            for f in make.FASHION_MNIST_FILES:
                (fm / f).write_bytes(b"")

    def fake_subprocess_run(cmd, **kw):  # only `sudo -n true` goes through here
        return subprocess.CompletedProcess(cmd, 0 if state["sudo"] else 1)

    monkeypatch.setattr(make.shutil, "which", which)
    monkeypatch.setattr(make, "run", fake_run)
    monkeypatch.setattr(make.subprocess, "run", fake_subprocess_run)
    monkeypatch.setattr(make.os, "geteuid", lambda: state["uid"])
    monkeypatch.setattr(make, "FASHION_MNIST_DIR", tmp_path / "fmnist")
    monkeypatch.setattr(make, "WIDGETS_DIR", tmp_path / "widgets")
    monkeypatch.setattr(make, "WIDGET_FONTS_DIR", tmp_path / "fonts")
    return state


def test_non_root_stops_at_once_with_the_exact_command(make, machine):
    with pytest.raises(SystemExit) as e:
        make.check_system("test")
    msg = str(e.value)
    assert "sudo apt-get update && sudo apt-get install -y npm dataset-fashion-mnist chromium" in msg
    assert "nothing was installed or executed" in msg and machine["calls"] == []


def test_targets_need_only_their_pieces(make, machine, tmp_path):
    assert make.missing_system("test") == ["npm", "fashion-mnist", "chromium"]
    assert make.missing_system("book") == ["npm", "fashion-mnist"]  # no browser checks
    assert make.missing_system("execute") == ["fashion-mnist"]
    (tmp_path / "widgets").mkdir()
    for f in ("require.min.js", "embed-amd.js"):
        (tmp_path / "widgets" / f).write_text("x")
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "a.woff2").write_text("x")
    assert make.missing_system("book") == ["fashion-mnist"]  # widgets fetched: npm not needed


def test_fashion_mnist_from_the_environment_folder(make, machine, tmp_path, monkeypatch):
    d = tmp_path / "elsewhere"
    d.mkdir()
    for f in make.FASHION_MNIST_FILES[:3]:
        (d / f).write_bytes(b"")
    monkeypatch.setenv("DSGD_FASHION_MNIST_DIR", str(d))
    assert "fashion-mnist" in make.missing_system("execute")  # one file short
    (d / make.FASHION_MNIST_FILES[3]).write_bytes(b"")
    assert make.missing_system("execute") == []


def test_root_installs_with_apt_get(make, machine):
    machine["uid"] = 0
    make.check_system("test")
    assert machine["calls"] == [
        ["/usr/bin/apt-get", "update", "-q"],
        ["/usr/bin/apt-get", "install", "-y", "-q", "npm", "dataset-fashion-mnist", "chromium"]]
    assert make.missing_system("test") == []


def test_passwordless_sudo_installs_and_opt_out_stops(make, machine):
    machine["sudo"] = True
    with pytest.raises(SystemExit, match="sudo apt-get install -y npm dataset-fashion-mnist chromium"):
        make.check_system("test", install=False)
    assert machine["calls"] == []
    make.check_system("test")
    assert machine["calls"][0] == ["/usr/bin/sudo", "-n", "/usr/bin/apt-get", "update", "-q"]


def test_no_apt_get_says_what_to_install(make, machine):
    machine["apt"] = None
    with pytest.raises(SystemExit, match="no apt-get.*DSGD_FASHION_MNIST_DIR"):
        make.check_system("book")


# ------------------------------------------------------------ reuse of chapters
def _nb(text: str) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "source": text, "metadata": {}}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def tree(make, tmp_path, monkeypatch):
    """notebooks a (reads results/setA) and b (its glue module names setB); setC unused."""
    root = tmp_path / "repo"
    for rel, text in {
        "_toc.yml": "root: book/intro\nparts:\n  - chapters:\n      - file: notebooks/a\n      - file: notebooks/b\n",
        "pyproject.toml": "[project]\nname = 'x'\n",
        "notebooks/a.ipynb": _nb("store = '../results/setA'"),
        "notebooks/b.ipynb": _nb("import dsgd.chapters.b"),
        "dsgd/__init__.py": "",
        "dsgd/x.py": "X = 1\n",
        "dsgd/chapters/b.py": "STORED = 'setB'\n",
        "results/setA/runs/r1.json": "{}",
        "results/setB/runs/r1.json": "{}",
        "results/setC/runs/r1.json": "{}",
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    build = root / "_build"
    monkeypatch.setattr(make, "ROOT", root)
    monkeypatch.setattr(make, "BUILD", build)
    monkeypatch.setattr(make, "EXECUTED", build / "executed")
    monkeypatch.setattr(make, "CONSTRAINTS", root / "constraints" / "ci.txt")
    executed: list[str] = []
    fail: set[str] = set()

    def fake_papermill(cmd, **kw):
        nb, out = Path(cmd[3]), Path(cmd[4])
        executed.append(nb.stem)
        out.write_text(nb.read_text())
        (build / "results").mkdir(parents=True, exist_ok=True)
        (build / "results" / f"{nb.stem}.json").write_text('{"values": {}}')
        if nb.stem in fail:
            raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(make, "run", fake_papermill)
    monkeypatch.setattr(make, "_tidy_executed", lambda path: None)

    def execute(**kw) -> list[str]:
        executed.clear()
        make.execute(**kw)
        return sorted(executed)

    return root, execute, fail


def test_second_build_reuses_every_unchanged_chapter(make, tree):
    root, execute, _ = tree
    assert execute() == ["a", "b"]
    assert execute() == []  # `make.py test` right after `make.py book`
    stamp = json.loads((root / "_build/executed/notebooks/a.ipynb.key.json").read_text())
    assert set(stamp["parts"]) == {"notebook", "parameters", "library", "install", "results/setA"}
    assert stamp["outputs"] == {"results/a.json": make._sha256(b'{"values": {}}')}


def test_what_makes_a_chapter_changed(make, tree):
    root, execute, _ = tree
    execute()
    (root / "results/setC/runs/r2.json").write_text("{}")
    assert execute() == []  # a set no chapter names
    (root / "results/setA/runs/r1.json").write_text('{"changed": 1}')
    assert execute() == ["a"]
    (root / "results/setB/runs/r2.json").write_text("{}")  # named by b's glue module
    assert execute() == ["b"]
    nb = root / "notebooks/b.ipynb"
    nb.write_text(nb.read_text().replace("import", "import  "))
    assert execute() == ["b"]
    (root / "dsgd/x.py").write_text("X = 2\n")  # library source: every chapter
    assert execute() == ["a", "b"]
    (root / "pyproject.toml").write_text("[project]\nname = 'y'\n")  # install pins
    assert execute() == ["a", "b"]
    assert execute(params=["-p", "seeds", "[0]"]) == ["a", "b"]
    assert execute(params=["-p", "seeds", "[0]"]) == []
    (root / "dsgd/cache.pyc").write_bytes(b"\0")  # not source
    assert execute(params=["-p", "seeds", "[0]"]) == []


def test_missing_output_failure_rerun_and_ci(make, tree, monkeypatch):
    root, execute, fail = tree
    execute()
    (root / "_build/results/a.json").unlink()  # the chapter's results file is gone
    assert execute() == ["a"]
    (root / "_build/executed/notebooks/b.ipynb").unlink()
    assert execute() == ["b"]
    fail.add("a")
    (root / "dsgd/x.py").write_text("X = 3\n")
    with pytest.raises(SystemExit, match=r"failed to execute: \['a'\]"):
        execute()
    assert not (root / "_build/executed/notebooks/a.ipynb.key.json").exists()
    fail.clear()
    assert execute() == ["a"]  # a failed chapter is never reused
    assert execute(rerun=True) == ["a", "b"]
    monkeypatch.setenv("CI", "true")
    assert execute() == ["a", "b"]


def test_pytest_is_spread_over_the_cores_unless_told_otherwise(make):
    assert make.xdist_args([], 2) == ["-n", "2", "--dist", "loadgroup"]
    assert make.xdist_args(["-k", "nlp", "-x"], 4) == ["-n", "4", "--dist", "loadgroup"]
    assert make.xdist_args([], 1) == []  # one core, or no pytest-xdist
    assert make.xdist_args(["-n", "0"], 2) == []  # the caller chose
    assert make.xdist_args(["-n3"], 2) == []
    assert make.xdist_args(["-p", "no:xdist"], 2) == []
    assert make.xdist_args(["--dist", "load"], 2) == []
