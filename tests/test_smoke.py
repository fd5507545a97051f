"""Smoke mode (dsgd.smoke, DSGD_SMOKE=1) and the chapters' smoke profiles.

The substitutions are checked against what they must be by construction: the model class
of each hub model's architecture (2 layers, hidden 32), record counts read straight from
the fixture files, CIFAR class sizes worked out by hand from the long-tailed formula, and
the step cap seen in the run's history. The profile test reads each chapter's parameters
cell with ``ast``, independently of papermill.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from dsgd import smoke

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [Path(f).stem for f in re.findall(r"file:\s*(notebooks/\S+)", (ROOT / "_toc.yml").read_text())]


@pytest.fixture
def smoke_on(monkeypatch, tmp_path):
    monkeypatch.setenv("DSGD_SMOKE", "1")
    monkeypatch.delenv("DSGD_SMOKE_MAX_STEPS", raising=False)
    monkeypatch.setenv("DSGD_SMOKE_LOG", str(tmp_path / "smoke.log"))
    monkeypatch.setattr(smoke, "_logged", set())
    return tmp_path / "smoke.log"


def test_off_unless_asked(monkeypatch):
    monkeypatch.delenv("DSGD_SMOKE", raising=False)
    assert not smoke.active() and not smoke.uses_substitute("roberta-large")
    assert smoke.cap_steps(100, [50, 100]) == (100, [50, 100])
    monkeypatch.setenv("DSGD_SMOKE", "0")
    assert not smoke.active()


@pytest.mark.parametrize("name, cls", [("roberta-large", "RobertaForSequenceClassification"),
                                       ("llama-3.2-1b", "LlamaForSequenceClassification"),
                                       ("vit-base", "ViTForImageClassification")])
def test_hub_models_become_tiny_models_of_their_architecture(smoke_on, name, cls):
    from dsgd.models import load_model

    model, tok = load_model(name, 3, seed=0)
    assert type(model).__name__ == cls
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_labels) == (2, 32, 3)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000  # no pretrained weights
    line = smoke_on.read_text()
    assert f"[smoke] {name} -> tiny random {cls} (2 layers, hidden 32)" in line


def test_tokenizers_of_substitutes(smoke_on):
    from dsgd.models import load_tokenizer

    tok = load_tokenizer("roberta-large")
    assert tok.vocab_size == 30522 and "token_type_ids" not in tok.model_input_names
    assert load_tokenizer("vit-base").size == 32  # tiny-vit's images, not ViT-base's 224
    assert "[smoke] tokenizer of roberta-large -> the offline MiniLM tokenizer" in smoke_on.read_text()


@pytest.mark.parametrize("task", ["rte", "copa", "boolq", "multirc", "mrpc", "cola"])
def test_hub_tasks_load_from_fixtures(smoke_on, task):
    from dsgd.data import load_task
    from dsgd.models import load_tokenizer

    raw = json.loads((ROOT / "dsgd" / "data" / "fixtures" / f"{task}.json").read_text())
    data = load_task(task, load_tokenizer("roberta-large"), max_length=64)  # source "hub" by default
    assert data.info["source"].startswith("fixture:")
    assert len(data.train) == sum(int(r["label"]) >= 0 for r in raw["train"])
    assert len(data.eval) == sum(int(r["label"]) >= 0 for r in raw["validation"])
    assert f"[smoke] {task}: hub dataset" in smoke_on.read_text()


def test_cifar_from_hub_becomes_synthetic(smoke_on):
    from dsgd.data import load_task
    from dsgd.data.vision import ImagePreprocessor

    data = load_task("cifar10", ImagePreprocessor(size=32), imbalance="lt", imbalance_ratio=100.0,
                     n_max=5000, eval_size=10000)
    # 10 images per class, long-tailed ratio 100: int(10 * 0.01 ** (i / 9)) = 10, 5, 3, 2, 1, 0, ...
    assert len(data.train) == 10 + 5 + 3 + 2 + 1
    assert len(data.eval) == 10 * 2  # a fifth of 10 per class, balanced
    assert "n_max" in smoke_on.read_text()  # the dropped real-set sizes are named


def test_runs_are_capped_but_keep_their_config(smoke_on, monkeypatch):
    from dsgd.config import RunConfig
    from dsgd.engine import train_run

    # COPA fixture: 6 examples, batch 5 x accumulation 2 -> 1 optimizer step per epoch, 10 planned
    cfg = RunConfig(task="copa", model="roberta-large", method="dsgd", epochs=10.0, batch_size=5,
                    grad_accum=2, max_length=64, task_kwargs={"source": "hub"})
    rec = train_run(cfg)
    assert rec["run_id"] == cfg.run_id() and rec["config"]["epochs"] == 10.0
    assert (rec["timings"]["steps"], rec["timings"]["total_steps"]) == (2, 10)
    assert len(rec["history"]["step"]) == 2 and rec["smoke"] is True
    monkeypatch.setenv("DSGD_SMOKE_MAX_STEPS", "3")
    assert train_run(cfg.replace(seed=1))["timings"]["steps"] == 3
    monkeypatch.setenv("DSGD_SMOKE_MAX_STEPS", "zero")
    with pytest.raises(ValueError, match="DSGD_SMOKE_MAX_STEPS"):
        smoke.max_steps()


def test_cap_steps_by_hand(smoke_on):
    assert smoke.cap_steps(10, [5, 10]) == (2, [2])
    assert smoke.cap_steps(10, [1, 2, 3, 10]) == (2, [1, 2])
    assert smoke.cap_steps(2, [1, 2]) == (2, [1, 2])


def test_missing_values():
    values = {"a": 1.5, "b": None, "c": float("nan"), "d": "n/a", "e": "–", "f": [1, math.nan],
              "g": {"h": "none", "i": " N/A "}}
    assert smoke.missing_values(values) == ["b", "c", "d", "f[1]", "g.i"]


# ---------------------------------------------------------------------- profiles
def parameter_names(chapter: str) -> set[str]:
    nb = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{chapter}: one parameters cell expected"
    tree = ast.parse("".join(cells[0]["source"]))
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def test_every_chapter_in_the_toc_is_covered():
    assert len(CHAPTERS) == 10 and "findings" in CHAPTERS and "own_data" in CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_smoke_profile_keys_are_chapter_parameters(chapter):
    d = ROOT / "notebooks" / "params" / chapter
    assert (d / "paper.yaml").exists() and (d / "smoke.yaml").exists()
    names = parameter_names(chapter)
    for f in ("paper.yaml", "smoke.yaml"):
        keys = set(yaml.safe_load((d / f).read_text()) or {})
        assert keys <= names, f"{chapter}/{f}: {sorted(keys - names)} are not parameters of the chapter"


def test_smoke_profiles_only_cut():
    """A smoke profile never swaps a model or a data source: those are the library's job."""
    for chapter in CHAPTERS:
        keys = set(yaml.safe_load((ROOT / "notebooks" / "params" / chapter / "smoke.yaml").read_text()) or {})
        assert not keys & {"model", "models", "task", "source", "task_kwargs", "model_kwargs",
                           "grid_setting", "real_setting"}, chapter


# ---------------------------------------------------------------------- make.py
@pytest.fixture
def make():
    spec = importlib.util.spec_from_file_location("make_smoke_under_test", ROOT / "make.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_glue_problems_lists_cited_keys_never_glued(make, tmp_path):
    glued = {"output_type": "display_data", "data": {},
             "metadata": {"scrapbook": {"name": "a", "mime_prefix": "application/papermill.record/"}}}
    nb = {"cells": [
        {"cell_type": "markdown", "source": ["We saw {glue:text}`a` and {glue:text}`b:.2f`, ", "{glue}`c`."]},
        {"cell_type": "code", "source": [], "outputs": [glued]}]}
    f = tmp_path / "x.ipynb"
    f.write_text(json.dumps(nb))
    assert make.glue_problems(f) == ["b", "c"]


def test_smoke_environment_keeps_results_and_runs_out_of_the_book(make):
    env = make.smoke_env("nlp")
    assert env["DSGD_SMOKE"] == "1"
    for var in ("DSGD_RESULTS_DIR", "DSGD_STORE", "DSGD_SMOKE_LOG"):
        assert Path(env[var]).is_relative_to(make.SMOKE)
    assert make.profile_files(ROOT / "notebooks" / "nlp.ipynb")[-1].name == "smoke.yaml"


# ---------------------------------------------------------------------- chapter fixes
def test_phenomenon_put_unset_fills_only_unset_keys(tmp_path, monkeypatch):
    from dsgd.book import Results
    from dsgd.chapters import phenomenon as ph

    monkeypatch.setenv("DSGD_RESULTS_DIR", str(tmp_path))
    R = Results("t")
    R.put("ok_sep_after", 0.25)
    assert ph.put_unset(R, ["ok_sep_after", "ok_min_cos"], ph.NOT_RUN) == ["ok_min_cos"]
    assert R.data["values"] == {"ok_sep_after": 0.25, "ok_min_cos": "not run in this profile"}


def test_sensitivity_smooth_keeps_short_series():
    from dsgd.chapters.sensitivity import smooth

    assert smooth([1.0, 2.0], 9).tolist() == [1.5, 1.5]
    assert smooth([0.0, 3.0, 6.0, 9.0], 3).tolist() == [1.5, 3.0, 6.0, 7.5]


def test_regimes_empty_mechanism_frame_has_its_columns():
    from dsgd.chapters import regimes as rg

    mf = rg.mechanism_frame([], 0.5)
    assert len(mf) == 0 and {"arm", "exit_step", "exit_after_crossing"} <= set(mf.columns)
    assert len(mf[(mf["arm"] == "DSGD") & mf["exit_step"].notna()]) == 0


def test_own_data_folder_follows_the_results_folder(monkeypatch, tmp_path):
    from dsgd.chapters import own_data

    monkeypatch.setenv("DSGD_RESULTS_DIR", str(tmp_path / "smoke" / "results"))
    assert own_data.work_folder() == tmp_path / "smoke" / "own_data"
    monkeypatch.delenv("DSGD_RESULTS_DIR")
    assert own_data.work_folder() == ROOT / "_build" / "own_data"  # the book's, as before


def test_smoke_records_outside_the_smoke_folder_are_found(make, monkeypatch, tmp_path):
    monkeypatch.setattr(make, "ROOT", tmp_path)
    monkeypatch.setattr(make, "BUILD", tmp_path / "_build")
    monkeypatch.setattr(make, "SMOKE", tmp_path / "_build" / "smoke")
    for rel, rec in (("results/a/runs/x.json", {"smoke": True}), ("results/a/runs/y.json", {}),
                     ("_build/own_data/store/runs/z.json", {"smoke": True}),
                     ("_build/smoke/store/runs/w.json", {"smoke": True})):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(rec))
    assert sorted(make.stored_smoke_records(0.0)) == ["_build/own_data/store/runs/z.json", "results/a/runs/x.json"]


def test_smoke_chapters_get_their_own_run_store(make):
    stores = {make.smoke_env(stem)["DSGD_STORE"] for stem in ("nlp", "vision", "regimes")}
    assert len(stores) == 3  # chapters smoke-run side by side never share a store's files


def test_smoke_workers_default_and_override(make, monkeypatch):
    monkeypatch.delenv("DSGD_SMOKE_WORKERS", raising=False)
    monkeypatch.setattr(make.os, "cpu_count", lambda: 16)
    assert make.smoke_workers() == 2
    monkeypatch.setattr(make.os, "cpu_count", lambda: 1)
    assert make.smoke_workers() == 1
    monkeypatch.setenv("DSGD_SMOKE_WORKERS", "3")
    assert make.smoke_workers() == 3


def test_smoke_runs_two_at_a_time_and_findings_after_the_rest(make, monkeypatch, tmp_path):
    import threading
    import time as _time

    monkeypatch.setattr(make, "SMOKE", tmp_path / "smoke")
    monkeypatch.setattr(make, "reuse_allowed", lambda rerun: False)
    monkeypatch.setattr(make, "stored_smoke_records", lambda since: [])
    monkeypatch.setenv("DSGD_SMOKE_WORKERS", "2")
    nbs = [ROOT / "notebooks" / f"{s}.ipynb" for s in ("a", "findings", "b", "c")]
    monkeypatch.setattr(make, "toc_notebooks", lambda: nbs)
    lock, running, peak, events = threading.Lock(), [0], [0], []

    def fake(nb, reuse):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            events.append(("start", nb.stem))
        _time.sleep(0.2)
        with lock:
            running[0] -= 1
            events.append(("end", nb.stem))
        return 0.2, ("boom" if nb.stem == "b" else None), f"log {nb.stem}"

    monkeypatch.setattr(make, "_smoke_one", fake)
    with pytest.raises(SystemExit, match="b: boom"):
        make.smoke()
    assert peak[0] == 2
    start_findings = events.index(("start", "findings"))
    assert all(events.index(("end", s)) < start_findings for s in ("a", "b", "c"))
