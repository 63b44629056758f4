"""`hypersweep studies / best / export` on real stores."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import read_only_view, small_config
from tests.servers import free_port

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_studies_best_and_export(stores, tmp_path):
    for name, trials in (("alpha", 3), ("beta", 2)):
        cfg = parse_config(small_config(name, stores, trials=trials))
        StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()

    res = invoke("studies", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    alpha = next(line for line in res.output.splitlines() if "alpha" in line)
    assert "tpe" in alpha and " 3 " in alpha and "beta" in res.output
    res = invoke("studies", "--storage", stores.optuna_url, "--json")     # for scripts
    assert res.exit_code == 0, res.output
    listed = {row["study"]: row for row in json.loads(res.output)}
    alpha_best = optuna.load_study(study_name="alpha", storage=stores.optuna_url).best_value
    assert listed["alpha"] == {"study": "alpha", "strategy": "tpe", "complete": 3, "pruned": 0,
                               "fail": 0, "running": 0, "warm_started": 0, "best": alpha_best,
                               "last_update": listed["alpha"]["last_update"]}
    assert listed["beta"]["complete"] == 2 and listed["alpha"]["last_update"][:2] == "20"

    res = invoke("best", "alpha", "--storage", stores.optuna_url, "--json")
    assert res.exit_code == 0, res.output
    best = json.loads(res.output)
    study = optuna.load_study(study_name="alpha", storage=stores.optuna_url)
    assert best[0]["number"] == study.best_trial.number
    assert best[0]["values"] == [study.best_value] and best[0]["params"] == study.best_params
    # What it shared with every trial, for a user to build it again
    assert best[0]["metrics"] == {"val_accuracy": study.best_value}
    assert best[0]["model"] == "mlp" and best[0]["data"]["name"] == "digits"
    assert best[0]["fixed"] == {"epochs": 3, "batch_size": 128, "width": 32}
    run_id = study.best_trial.user_attrs["mlflow_run_id"]
    assert best[0]["mlflow_run_id"] == run_id
    res = invoke("best", "alpha", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert ("every trial: mlp on digits; fixed: epochs 3, batch_size 128, width 32; the others "
            "not searched: the defaults (hypersweep models mlp)") in lines
    assert (f"trial {study.best_trial.number}: MLflow run {run_id} (trial.yaml: every "
            "hyperparameter; model.pt: the weights)") in lines
    # with the stores, which are not where the commands look by default (wrapped at
    # the terminal's width, at words)
    said = " ".join(res.output[res.output.index("train one again:"):].split())
    assert said == (f"train one again: hypersweep replay RUN_ID --tracking-uri "
                    f"{stores.mlflow_uri}; on train + validation, tested once: hypersweep "
                    f"final alpha --storage {stores.optuna_url}")

    for suffix, read in ((".csv", pd.read_csv), (".parquet", pd.read_parquet)):
        path = tmp_path / f"alpha{suffix}"
        res = invoke("export", "alpha", "-o", str(path), "--storage", stores.optuna_url)
        assert res.exit_code == 0, res.output
        df = read(path)
        assert list(df["number"]) == [0, 1, 2]
        assert {"state", "value", "params_lr", "params_depth", "metric_val_loss",
                "metric_final_param_count"} <= set(df.columns)
        assert list(df["value"]) == [t.value for t in study.trials]

    res = invoke("export", "alpha", "-o", str(tmp_path / "x.xlsx"), "--storage", stores.optuna_url)
    assert res.exit_code == 2 and ".csv or .parquet" in res.output


def test_best_json_of_a_study_another_tool_made(tmp_path):
    """An Optuna study with no hypersweep config in the same storage: its best trial
    as plain data still (no model, data or fixed params to add)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="plain", storage=url, direction="minimize")
    for x in (0.3, 0.1):
        t = study.ask()
        study.tell(t, t.suggest_float("x", 0, 1) * 0 + x)
    res = invoke("best", "plain", "--storage", url, "--json")
    assert res.exit_code == 0, res.output
    best = json.loads(res.output)
    assert [(b["number"], b["values"]) for b in best] == [(1, [0.1])]
    assert "model" not in best[0] and "metrics" not in best[0]
    res = invoke("best", "plain", "--storage", url)      # the table needs the config
    assert res.exit_code == 2 and "no config snapshot stored" in res.output


def test_studies_opens_the_storage_once_for_all_its_studies(tmp_path, monkeypatch):
    """Each study was loaded through a storage of its own, and each opening checks
    the schema: 9 s for 51 studies."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    for i in range(6):
        study = optuna.create_study(study_name=f"s{i}", storage=url, direction="maximize")
        study.set_user_attr("config", {"search": {"strategy": "random"}})
        study.tell(study.ask(), i / 10)
    opened: list[str] = []
    init = optuna.storages.RDBStorage.__init__

    def counting(self, url, *args, **kwargs):
        opened.append(url)
        init(self, url, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, "__init__", counting)
    res = invoke("studies", "--storage", url)
    assert res.exit_code == 0, res.output
    assert all(f"s{i}" in res.output for i in range(6))
    assert "0.5" in next(line for line in res.output.splitlines() if "s5" in line)
    assert len(opened) <= 2         # the names, then the studies


def _hypersweep(*args: str, columns: int | None = None) -> subprocess.CompletedProcess:
    """The real command, its output into a pipe, as in a log or under `| less`."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([str(Path(sys.executable).with_name("hypersweep")), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_tables_keep_names_whole_in_a_pipe_and_a_narrow_terminal(stores, monkeypatch):
    """Study, metric and parameter names are what users type next: a table never
    cuts them short, neither into a pipe (rich would assume 80 columns) nor in a
    narrow terminal."""
    name = "a-study-name-long-enough-to-be-cut-short-at-80-columns"
    cfg = parse_config(small_config(name, stores, trials=2))
    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()

    piped = _hypersweep("studies", "--storage", stores.optuna_url)
    assert piped.returncode == 0, piped.stderr
    row = next(line for line in piped.stdout.splitlines() if name in line)
    assert " tpe " in row and " 2 " in row          # one line: nothing wrapped or cut
    narrow = _hypersweep("studies", "--storage", stores.optuna_url, columns=70)
    assert narrow.returncode == 0 and name in narrow.stdout
    assert max(map(len, narrow.stdout.splitlines())) <= 70
    for columns in (70, 80, 100):           # the headers and the date fold, not cut
        assert "…" not in _hypersweep("studies", "--storage", stores.optuna_url,
                                      columns=columns).stdout, columns

    # The best trials: one column per parameter where it fits, otherwise one row each.
    res = invoke("best", name, "--storage", stores.optuna_url)
    header = next(line for line in res.output.splitlines() if "┃ trial " in line)
    assert all(f" {n} " in header for n in ("val_accuracy", "depth", "lr", "optimizer"))
    monkeypatch.setenv("COLUMNS", "40")
    res = invoke("best", name, "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert "…" not in res.output and max(map(len, res.output.splitlines())) <= 40
    best = optuna.load_study(study_name=name, storage=stores.optuna_url).best_trial
    lines = res.output.splitlines()
    assert any(f"trial {best.number}" in line for line in lines)
    for key in ("val_accuracy", *best.params):
        assert any(line.split("│")[1].strip() == key for line in lines if line.count("│") == 3)


def test_reading_commands_do_not_create_a_missing_mlflow_store(stores, tmp_path):
    """A wrong path to the MLflow store (a typo, another directory) is one line,
    exit 2: reading commands used to create an empty store there and then report
    a run not found, or (`ui`) serve the empty store; `resume` made a second
    parent run there."""
    cfg = parse_config(small_config("here", stores, trials=1))
    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()
    missing = tmp_path / "typo" / "mlflow.db"
    (tmp_path / "typo").mkdir()
    uri = f"sqlite:///{missing}"
    run_id = optuna.load_study(study_name="here", storage=stores.optuna_url).trials[0].user_attrs[
        "mlflow_run_id"]
    for args in (["ui", "--tracking-uri", uri],
                 ["replay", run_id, "--tracking-uri", uri],
                 ["export", "here", "-o", str(tmp_path / "x.csv"), "--storage", stores.optuna_url,
                  "--tracking-uri", uri],
                 ["final", "here", "--storage", stores.optuna_url, "--tracking-uri", uri],
                 ["resume", "here", "--storage", stores.optuna_url, "--tracking-uri", uri,
                  "--trials", "2"]):
        res = invoke(*args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.strip().splitlines() == [
            # the option named, also where it overrides the study's tracking.uri
            f"error: --tracking-uri: no MLflow store at {missing} (no such file)"], args
        assert not missing.exists() and not (tmp_path / "x.csv").exists()


def test_export_names_each_objective_and_finds_the_runs_by_the_study(stores, tmp_path):
    """A multi-objective study's values are value_<metric> (Optuna says values_0,
    values_1); the duration is in seconds; a store that does not hold the study's
    runs is one line, not a traceback."""
    raw = small_config("two-goals", stores, trials=2)
    raw["search"].update(strategy="nsga2", objective=[
        {"metric": "val_accuracy", "direction": "maximize"},
        {"metric": "param_count", "direction": "minimize"}])
    cfg = parse_config(raw)
    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()
    path = tmp_path / "two.csv"
    res = invoke("export", "two-goals", "-o", str(path), "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(path)
    study = optuna.load_study(study_name="two-goals", storage=stores.optuna_url)
    assert list(df["value_val_accuracy"]) == [t.values[0] for t in study.trials]
    assert list(df["value_param_count"]) == [t.values[1] for t in study.trials]
    assert list(df["metric_final_param_count"]) == list(df["value_param_count"])
    # a count is an integer column (MLflow and Optuna keep it a float: 6760.0)
    assert df["value_param_count"].dtype == df["metric_final_param_count"].dtype == "int64"
    written = list(csv.DictReader(path.open()))
    assert all(row["value_param_count"].isdigit() for row in written), written
    res = invoke("best", "two-goals", "--json", "--storage", stores.optuna_url)
    front = json.loads(res.output)
    assert all(type(t["metrics"]["param_count"]) is int for t in front), front
    assert all(type(t["values"][1]) is int for t in front), front
    assert df["duration_s"].dtype == float and (df["duration_s"] > 0).all()

    other = tmp_path / "other.db"
    MlflowTracker(f"sqlite:///{other}").client.search_experiments()     # a store, not this study's
    res = invoke("export", "two-goals", "-o", str(path), "--storage", stores.optuna_url,
                 "--tracking-uri", f"sqlite:///{other}")
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        f"error: study 'two-goals': no parent run in sqlite:///{other}; "
        "pass the --tracking-uri the study ran with"]


def test_export_keeps_integer_columns_in_rows_without_them(stores, tmp_path):
    """Warm-started trials have no seed nor epochs: the columns stay integers, with
    empty cells, not floats (`1002604896.0`)."""
    for name, search in (("alpha", {"trials": 2}), ("beta", {"trials": 1, "warm_start": "alpha"})):
        cfg = parse_config(small_config(name, stores, **search))
        StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()
    beta = optuna.load_study(study_name="beta", storage=stores.optuna_url)
    trained = beta.trials[2]

    csv, parquet = tmp_path / "beta.csv", tmp_path / "beta.parquet"
    for path in (csv, parquet):
        res = invoke("export", "beta", "-o", str(path), "--storage", stores.optuna_url)
        assert res.exit_code == 0, res.output
    rows = csv.read_text().splitlines()
    header = rows[0].split(",")
    cells = [dict(zip(header, row.split(","))) for row in rows[1:]]
    assert [(c["attr_seed"], c["attr_epochs"]) for c in cells] == [
        ("", ""), ("", ""), (str(trained.user_attrs["seed"]), "3")]
    assert [c["params_depth"] for c in cells] == [str(t.params["depth"]) for t in beta.trials]
    df = pd.read_parquet(parquet)
    assert str(df["attr_seed"].dtype) == "Int64" and str(df["attr_epochs"].dtype) == "Int64"
    assert df["attr_seed"].isna().tolist() == [True, True, False]
    assert df["attr_seed"][2] == trained.user_attrs["seed"]
    # Their duration is unknown here (Optuna stamps an added trial's start and end
    # alike): empty, not 0.0 seconds.
    assert [c["duration_s"] for c in cells][:2] == ["", ""]
    assert df["duration_s"].isna().tolist() == [True, True, False]
    assert df["duration_s"][2] > 0


def test_an_empty_storage_file_is_read_as_holding_no_study_and_left_empty(tmp_path):
    """`studies` on a 0-byte file (a `touch optuna.db`) made it an Optuna store."""
    empty = tmp_path / "optuna.db"
    empty.touch()
    res = invoke("studies", "--storage", f"sqlite:///{empty}")
    assert res.exit_code == 0 and res.output.startswith("no studies in "), res.output
    res = invoke("best", "x", "--storage", f"sqlite:///{empty}")
    assert res.exit_code == 2 and "holds no study" in res.output, res.output
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "optuna.db"]


def test_a_storage_file_that_is_not_there_is_a_wrong_path(tmp_path, monkeypatch):
    """`studies` said "no studies in sqlite:///typo.db" and exited 0; nothing is created."""
    monkeypatch.chdir(tmp_path)
    for args in (["studies", "--storage", "sqlite:///typo.db"], ["best", "x"],
                 ["export", "x", "-o", "x.csv"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, args
        name = "typo.db" if "typo" in args[-1] else "optuna.db"
        assert res.output == f"error: --storage: no Optuna storage at {tmp_path / name} (no such file)\n"
    assert list(tmp_path.iterdir()) == []


def _in_read_only(directory: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    with read_only_view(directory, [str(Path(sys.executable).with_name("hypersweep")),
                                    *args]) as command:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_reading_commands_read_stores_in_a_directory_they_cannot_write(stores, tmp_path):
    """A read-only mount, a colleague's folder, an unpacked CI artifact: SQLite writes
    its write-ahead log's index beside the file even to read, and `studies`, `best`
    and `export` said "its directory is not writable". They now read the files as
    they are, or, while a study writes them, by that study's index; nothing is
    written beside them or in the working directory. `resume` still refuses."""
    import hypersweep.search.sqlite as sqlite_stores

    cfg = parse_config(small_config("alpha", stores, trials=2))
    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()
    best = optuna.load_study(study_name="alpha", storage=stores.optuna_url).best_trial.number
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for live in (True, False):      # a study still writing them (its -wal and -shm there), none
        if not live:
            sqlite_stores.close_all()
        files = sorted(p.name for p in stores.dir.iterdir())
        assert ("optuna.db-shm" in files) == live, files
        res = _in_read_only(stores.dir, ["studies", "--json", "--storage", stores.optuna_url], cwd)
        assert res.returncode == 0, res.stderr
        assert [(s["study"], s["complete"]) for s in json.loads(res.stdout)] == [("alpha", 2)]
        res = _in_read_only(stores.dir, ["best", "alpha", "--json", "--storage",
                                         stores.optuna_url], cwd)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)[0]["number"] == best
        target = out / f"alpha-{live}.csv"
        res = _in_read_only(stores.dir, ["export", "alpha", "-o", str(target), *stores.cli_args()],
                            cwd)
        assert res.returncode == 0, res.stderr
        df = pd.read_csv(target)
        assert list(df["number"]) == [0, 1] and df["metric_val_loss"].notna().all()
        assert sorted(p.name for p in stores.dir.iterdir()) == files
        assert list(cwd.iterdir()) == []        # MLflow makes directories from a store's path

    res = _in_read_only(stores.dir, ["resume", "alpha", *stores.cli_args()], cwd)
    assert res.returncode == 2 and res.stderr.splitlines() == [
        f"error: --storage: cannot write {stores.dir / 'optuna.db'}: its directory is not "
        "writable (SQLite keeps its journal beside the file); choose another path"], res.stderr

    # The MLflow UI exited at once ("unable to open database file"): it serves it read-only
    port = free_port()
    with read_only_view(stores.dir, [str(Path(sys.executable).with_name("hypersweep")), "ui",
                                     "--tracking-uri", stores.mlflow_uri, "--port",
                                     str(port)]) as command:
        ui = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        try:
            lines = [ui.stdout.readline(), ui.stdout.readline()]
            assert lines[-1].startswith(f"MLflow UI: http://127.0.0.1:{port}"), lines
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                data=b'{"max_results": 10}', headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                served = [e["name"] for e in json.load(answer)["experiments"]]
            # An edit is refused: one line for it, not MLflow's traceback
            edit = urllib.request.Request(
                f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/update",
                data=b'{"experiment_id": "1", "new_name": "renamed"}',
                headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(edit, timeout=30)
            time.sleep(1)       # its lines reach the relay
            ui.send_signal(signal.SIGTERM)
            assert ui.wait(timeout=60) == 0
        finally:
            if ui.poll() is None:
                ui.kill()
    assert "alpha" in served
    said = ui.stderr.read()
    assert said.startswith(f"note: --tracking-uri: {stores.dir} is not writable: "
                           "the store is served read-only")
    assert said.splitlines()[1:] == ["note: the MLflow UI could not save an edit "
                                     "(update_experiment): the store is served read-only"], said
    assert sorted(p.name for p in stores.dir.iterdir()) == files
    assert list(cwd.iterdir()) == []


def test_a_store_left_with_its_log_and_no_index_is_read_whole(tmp_path):
    """A study killed, its files copied without the -shm index: read-only, the
    file alone looked empty ("no studies"); the last commits are in its -wal."""
    import shutil

    import hypersweep.search.sqlite  # noqa: F401 - the stores' write-ahead log
    live = tmp_path / "live.db"
    study = optuna.create_study(study_name="cut", storage=f"sqlite:///{live}")
    for value in (0.5, 0.7):
        study.tell(study.ask(), value)
    copied = tmp_path / "copied"
    copied.mkdir()
    shutil.copyfile(live, copied / "optuna.db")         # the writer still open: all in the log
    shutil.copyfile(f"{live}-wal", copied / "optuna.db-wal")
    res = _in_read_only(copied, ["studies", "--json", "--storage",
                                 f"sqlite:///{copied / 'optuna.db'}"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert [(s["study"], s["complete"], s["best"]) for s in json.loads(res.stdout)] == [
        ("cut", 2, 0.5)]
    assert sorted(p.name for p in copied.iterdir()) == ["optuna.db", "optuna.db-wal"]
