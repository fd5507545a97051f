"""Bad input gives one clear ValueError (what is wrong, what to do) before any expensive
work: no tokenizer, model or task data is loaded, nothing is written to the store."""
from __future__ import annotations

import pytest

from dsgd.config import RunConfig
from dsgd.store import ResultStore
from dsgd.sweep import configs_from_params, expand_grid, load_params, run_sweep


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Loading a model, a tokenizer or a task fails the test."""
    import dsgd.data
    import dsgd.models

    def forbidden(*a, **k):
        raise AssertionError("expensive work started before the input was checked")

    for mod, name in ((dsgd.models, "load_model"), (dsgd.models, "load_tokenizer"), (dsgd.data, "load_task")):
        monkeypatch.setattr(mod, name, forbidden)


# ------------------------------------------------------------------ RunConfig fields
@pytest.mark.parametrize("fields, message", [
    ({"epochs": "two"}, r"'epochs' must be a number, got 'two' \(str\)"),
    ({"seed": 1.5}, r"'seed' must be an integer, got 1.5"),
    ({"batch_size": True}, r"'batch_size' must be an integer, got True"),
    ({"max_steps": "10"}, r"'max_steps' must be an integer or null"),
    ({"method_kwargs": ["alpha", 0.25]}, r"'method_kwargs' must be a mapping"),
    ({"method": 3}, r"'method' must be a string"),
    ({"tau": 1.5}, r"tau must lie in \[0, 1\]"),
])
def test_runconfig_field_types_and_ranges(fields, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**fields)


def test_runconfig_unknown_field():
    with pytest.raises(ValueError, match=r"unknown RunConfig field\(s\) \['epoch'\]"):
        RunConfig.from_dict({"epoch": 2})


# ------------------------------------------------------------------ names, before a sweep starts
@pytest.mark.parametrize("change, message", [
    ({"method": "fftt"}, r"unknown method 'fftt'; choose one of"),
    ({"method": "focal", "method_kwargs": {"alpah": 0.25}}, r"bad setting\(s\) for method 'focal'"),
    ({"method": "focal", "method_kwargs": {"alpha": -1.0}}, r"focal loss needs alpha > 0"),
    ({"task": "no_such_task"}, r"unknown task 'no_such_task'; known tasks"),
    ({"model": "no-such-model"}, r"unknown model 'no-such-model'; known models"),
    ({"schedule": "zigzag"}, r"unknown schedule 'zigzag'"),
])
def test_sweep_checks_names_before_any_work(tmp_path, nothing_loaded, change, message):
    good = {"task": "epistemic_reasoning", "model": "minilm", "method": "dsgd"}
    configs = expand_grid(good | change, seed=[0, 1])
    store = ResultStore(tmp_path / "s")
    with pytest.raises(ValueError, match=message) as e:
        run_sweep(configs, store, progress=False)
    assert "Fix it in the parameter file; nothing was computed" in str(e.value)
    assert store.run_ids() == [] and not store.provenance.path.exists()


@pytest.mark.parametrize("kw, message", [
    ({"workers": 0}, r"workers must be an integer >= 1, got 0"),
    ({"threads_per_worker": 0}, r"threads_per_worker must be an integer >= 1"),
    ({"backend": "spark"}, r"backend must be 'local' or 'ray'"),
    ({"gpus_per_run": -1}, r"gpus_per_run must be a number >= 0"),
])
def test_run_sweep_settings(tmp_path, nothing_loaded, kw, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(expand_grid({}, seed=[0]), tmp_path, progress=False, **kw)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ sweep parameter files
@pytest.mark.parametrize("text, message", [
    ("base: {task: toy\ngrid: {seed: [1]}\n", r"is not valid YAML"),
    ("- a\n- b\n", r"must hold a mapping"),
    ("bsae: {task: toy}\n", r"unknown top-level key\(s\) \['bsae'\]"),
    ("base: [1, 2]\n", r"'base' must be a mapping"),
    ("grid: 5\n", r"'grid' must be a mapping of axes or a list"),
    ("grid: {seed: 3}\n", r"grid axis 'seed' must be a list of values"),
    ("grid: {sed: [1]}\n", r"unknown grid axis 'sed'"),
    ("grid: {seed: []}\n", r"grid axis 'seed' is empty"),
    ("base: {epochs: two}\ngrid: {seed: [1]}\n", r"'epochs' must be a number"),
    ("grid: {seed: [1]}\nrun: {workres: 2}\n", r"unknown key\(s\) \['workres'\] under 'run:'"),
    ("grid: {seed: [1]}\nrun: [2]\n", r"'run' must be a mapping"),
])
def test_parameter_files(tmp_path, text, message):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_params(p)


def test_missing_parameter_file(tmp_path):
    with pytest.raises(ValueError, match=r"no sweep parameter file .*give the path of a YAML file"):
        load_params(tmp_path / "nope.yaml")


def test_variants_must_be_mappings():
    with pytest.raises(ValueError, match=r"each entry of 'variants' must be a mapping"):
        configs_from_params({"grid": {"variants": ["fft"]}})


# ------------------------------------------------------------------ command line
def cli(args, capsys) -> tuple[int, str]:
    from dsgd.cli import main

    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.fixture
def params(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("base: {task: epistemic_reasoning, model: minilm}\ngrid: {seed: [0], method: [dsgd]}\n")
    return p


@pytest.mark.parametrize("extra, message", [
    (["--workers", "0"], "workers must be an integer >= 1, got 0"),
    (["--threads-per-worker", "-2"], "threads_per_worker must be an integer >= 1"),
    (["--run-fn", "no_such_module:run"], "--run-fn 'no_such_module:run' cannot be imported"),
    (["--run-fn", "no_colon"], "looks like 'package.module:function'"),
])
def test_cli_sweep_flags(tmp_path, params, capsys, nothing_loaded, extra, message):
    rc, err = cli(["sweep", str(params), "--store", str(tmp_path / "s"), *extra], capsys)
    assert rc == 2 and message in err and err.startswith("dsgd sweep: error:")
    assert not (tmp_path / "s").exists()


def test_cli_sweep_bad_method_in_file(tmp_path, capsys, nothing_loaded):
    p = tmp_path / "p.yaml"
    p.write_text("base: {task: epistemic_reasoning, model: minilm}\ngrid: {seed: [0], method: [dsdg]}\n")
    rc, err = cli(["sweep", str(p), "--store", str(tmp_path / "s"), "--dry-run"], capsys)
    assert rc == 2 and "unknown method 'dsdg'" in err


def test_cli_choice_flags_are_rejected_by_argparse(params, capsys):
    from dsgd.cli import main

    with pytest.raises(SystemExit) as e:
        main(["sweep", str(params), "--backend", "spark"])
    assert e.value.code == 2 and "invalid choice: 'spark'" in capsys.readouterr().err


def test_cli_status_of_a_folder_that_is_no_store(tmp_path, capsys):
    rc, err = cli(["status", str(tmp_path / "nowhere")], capsys)
    assert rc == 2 and "is not a result store" in err


def test_cli_table_where_needs_field_value(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.runs_dir.mkdir()
    rc, err = cli(["table", str(tmp_path), "--where", "method"], capsys)
    assert rc == 2 and "--where takes FIELD=VALUE" in err


def test_cli_repair_copied_from_file(tmp_path, capsys):
    ResultStore(tmp_path).runs_dir.mkdir()
    rc, err = cli(["repair-provenance", str(tmp_path), "--copied-from", str(tmp_path / "x.json")], capsys)
    assert rc == 2 and "--copied-from: no file" in err
    (tmp_path / "x.json").write_text("{not json")
    rc, err = cli(["repair-provenance", str(tmp_path), "--copied-from", str(tmp_path / "x.json")], capsys)
    assert rc == 2 and "is not JSON" in err


# ------------------------------------------------------------------ chapter parameters
def test_chapter_parameters_wrong_type():
    """The notebooks' parameter check (dsgd.book, or wherever the chapters package keeps it)."""
    try:
        from dsgd.book import check_parameters
    except ImportError:  # moved by the chapters reorganisation
        check_parameters = pytest.importorskip("dsgd.chapters").check_parameters
    with pytest.raises(ValueError, match=r"parameter 'n_seeds' = 'ten' has the wrong type"):
        check_parameters({"n_seeds": "ten"}, n_seeds=int)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['n_sedes'\]"):
        check_parameters({"n_sedes": 10, "n_seeds": 10}, n_seeds=int)


def test_corrupt_provenance_file_is_named(tmp_path):
    store = ResultStore(tmp_path)
    store.provenance.path.write_text("{")
    with pytest.raises(ValueError, match="corrupt provenance file"):
        store.provenance.load()
    assert store.run_ids() == []
