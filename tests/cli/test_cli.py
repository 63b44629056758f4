"""`hypersweep` end to end, on real MLflow and Optuna SQLite stores."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from tests.conftest import STUDIES, quickstart, small_config, study_runs

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_quickstart_with_8_trials(stores):
    """The walking skeleton's acceptance check."""
    res = invoke("run", str(STUDIES / "quickstart.yaml"), "--trials", "8", *stores.cli_args())
    assert res.exit_code == 0, res.output
    assert "best trials" in res.output and "ui --backend-store-uri" in res.output

    study = optuna.load_study(study_name="quickstart-digits-mlp", storage=stores.optuna_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 8 == len(study.trials)
    assert study.best_value >= 0.95
    # Into a pipe, where no bar is drawn until the end: a line as each trial ends.
    ended = [line for line in res.output.splitlines() if re.match(r"trial \d+ (complete|pruned)", line)]
    assert sorted(int(line.split()[1]) for line in ended) == [
        t.number for t in study.trials if t.state.name != "FAIL"]

    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    parent, children = study_runs(stores.mlflow_uri, "quickstart-digits-mlp")
    assert len(children) == 8
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"study.yaml", "trials.csv"}
    for trial, child in zip(study.trials, children):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == f"trial-{trial.number:04d}"
        epochs = int(child.data.tags["epochs"])
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, epochs + 1))
        assert float(child.data.params["lr"]) == pytest.approx(trial.params["lr"])
        assert child.data.params["epochs"] == "20"
        arts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"trial.yaml", "learning_curve.png", "model.pt"} <= arts
        replay = yaml.safe_load(open(client.download_artifacts(child.info.run_id, "trial.yaml")))
        assert replay["params"]["lr"] == trial.params["lr"] and replay["model"] == "mlp"


BAD = {
    "unknown key": ("serach", {"strategy": "tpe"}),
    "unknown builder": ("model", "mpl"),
    "low >= high": ("space", {"depth": {"int": [3, 1]}}),
    "log range low <= 0": ("space", {"lr": {"loguniform": [0, 0.1]}}),
    "wrong type": ("params", {"epochs": "ten"}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_config_exits_2_with_one_line_and_touches_nothing(case, stores, write_config):
    key, value = BAD[case]
    raw = quickstart()
    raw[key] = value
    res = invoke("run", str(write_config(raw)), *stores.cli_args())
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    assert stores.untouched()


def test_missing_file_and_malformed_yaml_exit_2(tmp_path, stores, write_config):
    for path in (tmp_path / "missing.yaml", write_config("study: [x\n", name="bad.yaml")):
        res = invoke("run", str(path), *stores.cli_args())
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert stores.untouched()


def test_a_tracking_store_that_cannot_be_opened_exits_2_and_touches_nothing(
        tmp_path, stores, write_config):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way of a directory")
    path = write_config(small_config("untracked", stores, trials=1))
    res = invoke("run", str(path), "--tracking-uri", f"sqlite:///{blocker}/mlflow.db")
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: --tracking-uri: cannot create {blocker}/mlflow.db: {blocker} is "
                      "not a directory"]
    assert res.output.strip().splitlines() == errors    # before the study's header too
    assert stores.untouched()           # the Optuna store was not created either


def test_one_file_given_as_both_stores_names_the_options_typed(tmp_path, stores, write_config):
    """`--tracking-uri` pointed at the Optuna file said `tracking.storage: the same
    file as tracking.uri`, neither of which the user wrote."""
    path = write_config(small_config("one-file", stores, trials=1))
    same = f"sqlite:///{stores.dir / 'optuna.db'}"
    for args, named in ((["--tracking-uri", same], "tracking.storage: the same file as "
                         "--tracking-uri"),
                        (["--storage", stores.mlflow_uri], "--storage: the same file as "
                         "tracking.uri"),
                        (["--storage", same, "--tracking-uri", same], "--storage: the same "
                         "file as --tracking-uri")):
        res = invoke("validate", str(path), *args)
        assert res.exit_code == 2 and res.output.startswith(f"error: {named} ("), res.output
        assert len(res.output.splitlines()) == 1
    assert stores.untouched()


def test_existing_study_name_is_refused(stores, write_config):
    path = write_config(small_config("twice", stores, trials=1))
    assert invoke("run", str(path)).exit_code == 0
    res = invoke("run", str(path))
    # Before Ray or a store starts: the one line, no study header or progress bar.
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        f"error: study: 'twice' already exists in {stores.optuna_url}; choose another name "
        "(--set study=NAME) or another --storage, or continue it: hypersweep resume twice "
        f"--storage {stores.optuna_url} [--trials N]"]     # not the default storage here
    assert len(optuna.load_study(study_name="twice", storage=stores.optuna_url).trials) == 1


def test_validate_and_models():
    res = invoke("validate", str(STUDIES / "quickstart.yaml"))
    assert res.exit_code == 0 and "ok" in res.output
    res = invoke("models")
    assert res.exit_code == 0 and "mlp" in res.output and "linear" in res.output


def test_models_lists_every_builder_with_task_variants_and_hyperparameters():
    from hypersweep.models.registry import builder_names, get_builder
    wide = CliRunner(env={"COLUMNS": "400"})
    res = wide.invoke(app, ["models"], catch_exceptions=False)
    assert res.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in res.output.splitlines()
            if line.count("│") >= 4 and line.split("│")[1].strip()}
    for name in builder_names():
        b = get_builder(name)
        task = "supervised" if b.task in ("classification", "regression") else b.task
        assert name in rows and task in rows[name], name
        assert all(v in rows[name] for v in b.variants)
        first = next(iter(b.hyperparameters().values()), None)
        if first is not None:
            assert f"{first.name}: {first.type_name} = {first.default!r}" in rows[name]


def test_models_at_80_columns_keeps_short_hyperparameters_on_one_line():
    """Task and variants took as much width as the hyperparameters, and entries such
    as `dropout: float = 0.5` broke over two lines."""
    res = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["models"], catch_exceptions=False)
    cells = [line.split("│")[4].strip() for line in res.output.splitlines()
             if line.count("│") == 5]
    assert max(map(len, res.output.splitlines())) <= 80
    for entry in ("dropout: float = 0.5", "batch_norm: bool = False", "hidden: int = 256",
                  "tie_weights: bool = False", "latent_size: int = 32"):
        assert entry in cells, entry
    assert "supervised" in res.output and "(the" in res.output     # the task wraps instead


def test_models_name_shows_one_builder_with_its_default_space():
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["models", "resnet"],
                                                   catch_exceptions=False)
    assert res.exit_code == 0
    for text in ("task: supervised (the dataset's)", "blocks_per_stage", "training options", "augment",
                 "default space", "stages: {int: [1, 3]}"):
        assert text in res.output, text
    res = invoke("models", "resnett")
    assert res.exit_code == 2
    # The command's argument, not the config's `model:` key, which it does not read.
    assert res.output.strip().startswith("error: NAME: unknown builder 'resnett' (did you mean")


def test_replay_names_its_option_for_a_store_that_is_not_there(tmp_path):
    """It said `tracking.uri:`, a config key; replay reads no config."""
    missing = tmp_path / "mlflow.db"
    res = runner.invoke(app, ["replay", "0123abcd", "--tracking-uri", f"sqlite:///{missing}"])
    assert res.exit_code == 2
    assert res.stderr == f"error: --tracking-uri: no MLflow store at {missing} (no such file)\n"
    res = runner.invoke(app, ["rerun", "0123456789abcdef0123456789abcdef", "--tracking-uri",
                              f"sqlite:///{missing}", "--storage", f"sqlite:///{tmp_path / 'o.db'}"])
    assert res.exit_code == 2 and res.stderr.startswith("error: --tracking-uri: "), res.output


def test_an_error_names_the_option_that_set_the_key(tmp_path, stores, write_config):
    """A bad value given as an option is named as the option the user typed; the same
    value from the file or from --set keeps the key's dotted name."""
    path = write_config(small_config("named", stores, trials=1))
    for args, line in ((["--trials", "0"], "error: --trials: must be >= 1, got 0"),
                       (["--set", "search.trials=0"], "error: search.trials: must be >= 1, got 0"),
                       (["--executor", "slurm"],
                        "error: --executor: unknown value 'slurm'; valid: serial, ray"),
                       (["--strategy", "anneal"], "error: --strategy: unknown strategy 'anneal'")):
        for command in ("run", "validate"):     # validate checks run's command line
            res = invoke(command, str(path), *args)
            assert res.exit_code == 2, (command, args, res.output)
            assert res.output.strip().splitlines()[-1].startswith(line), (args, res.output)
    assert stores.untouched()
    res = invoke("validate", str(path), "--executor", "serial", "--parallel", "4")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[1] == ("note: resources.parallel: 4 applies to the ray "
                                          "executor; the serial executor runs one trial at a time")


def test_console_script_reports_errors_without_traceback(tmp_path):
    """The installed entry point, in a real subprocess."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**quickstart(), "model": "resnet9000"}))
    exe = [sys.executable, "-m", "hypersweep.cli.app"]
    proc = subprocess.run([*exe, "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: model: unknown builder 'resnet9000'")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "--bogus", "x"], "error: no such option: --bogus (see hypersweep run --help)"),
    (["runn"], "error: no such command 'runn'. Did you mean 'run', 'rerun'? (see hypersweep --help)"),
    (["run"], "error: missing argument 'CONFIG' (see hypersweep run --help)"),
    (["best"], "error: missing argument 'STUDY' (see hypersweep best --help)"),
    (["run", "x.yaml", "--trials", "many"],
     "error: --trials: expected an integer, got 'many' (see hypersweep run --help)"),
    (["run", "x.yaml", "--seed", "1.5"],
     "error: --seed: expected an integer, got '1.5' (see hypersweep run --help)"),
    (["validate", str(STUDIES / "quickstart.yaml"), "--parallel", "-1"],
     "error: --parallel: must be >= 1 or 'auto', got -1"),
    # A whole number is written as one, as the config's integer keys take it: typer
    # took `--trials 5.0` for 5 and refused `1e6`; `--parallel 1.5` said "got text".
    (["run", "x.yaml", "--trials", "5.0"],
     "error: --trials: expected an integer, got '5.0' (see hypersweep run --help)"),
    (["validate", "x.yaml", "--seed", "7.0"],
     "error: --seed: expected an integer, got '7.0' (see hypersweep validate --help)"),
    (["validate", str(STUDIES / "quickstart.yaml"), "--parallel", "1.5"],
     "error: --parallel: expected an integer or 'auto', got '1.5' (see hypersweep validate "
     "--help)"),
    (["resume", "s", "--parallel", "two"],
     "error: --parallel: expected an integer or 'auto', got 'two' (see hypersweep resume "
     "--help)"),
    (["resume", "s", "--trials", "1e6"],
     "error: --trials: expected an integer, got '1e6' (see hypersweep resume --help)"),
    (["run", "x.yaml", "--trials", "\u0663"],     # an Arabic-Indic 3: a digit to Python
     "error: --trials: expected an integer, got '\u0663' (see hypersweep run --help)"),
    (["ui", "--port", "80.0"], "error: --port: expected an integer, got '80.0' (see hypersweep ui "
                               "--help)"),
    (["generate", "x", "--beam", "2.0"],
     "error: --beam: expected an integer, got '2.0' (see hypersweep generate --help)"),
    # A Ray address Ray cannot parse: said at once (`validate` passed it; `run`
    # quoted Ray's parse error, with a note on tokens beside the point).
    (["validate", str(STUDIES / "quickstart.yaml"), "--ray-address", "127.0.0.1"],
     "error: --ray-address: expected HOST:PORT (the head node's GCS address, e.g. "
     "10.0.0.5:6379), ray://HOST:PORT, auto or local; no port, got '127.0.0.1'"),
    (["run", str(STUDIES / "quickstart.yaml"), "--ray-address", "127.0.0.1:abc"],
     "error: --ray-address: expected HOST:PORT (the head node's GCS address, e.g. "
     "10.0.0.5:6379), ray://HOST:PORT, auto or local, got '127.0.0.1:abc'"),
    (["validate", str(STUDIES / "quickstart.yaml"), "--ray-address", "http://127.0.0.1:6481"],
     "error: --ray-address: expected HOST:PORT (the head node's GCS address, e.g. "
     "10.0.0.5:6379), ray://HOST:PORT, auto or local; a URL's scheme other than ray:// is not one, "
     "got 'http://127.0.0.1:6481'"),
    (["validate", str(STUDIES / "quickstart.yaml"), "--set", "resources.address=10.0.0.5:99999"],
     "error: resources.address: expected HOST:PORT (the head node's GCS address, e.g. "
     "10.0.0.5:6379), ray://HOST:PORT, auto or local; port 99999 is out of range (1-65535), "
     "got '10.0.0.5:99999'"),
    # The hint was "--set --ray-address=null", which is no key (and --set cannot undo
    # an option); from the file or --set, the hint stays --set's
    (["validate", str(STUDIES / "quickstart.yaml"), "--executor", "serial", "--ray-address",
      "127.0.0.1:6379"],
     "error: --ray-address: needs executor: ray; the serial executor runs trials inside this "
     "process (for a serial run, leave out --ray-address)"),
    (["validate", str(STUDIES / "quickstart.yaml"), "--executor", "serial", "--set",
      "resources.address=127.0.0.1:6379"],
     "error: resources.address: needs executor: ray; the serial executor runs trials inside "
     "this process (for a serial run of a study that sets it: --set resources.address=null)"),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, message):
    """Mistyped options and commands read as bad input in a config does: one line
    naming what was wrong and where to look, not a usage block and a box."""
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


def test_ctrl_c_in_a_command_without_trials_says_so_and_exits_130():
    import typer

    from hypersweep.cli.app import user_errors
    small = typer.Typer()

    @small.command()
    @user_errors
    def final() -> None:
        raise KeyboardInterrupt

    res = CliRunner().invoke(small, [])
    assert res.exit_code == 130 and res.output == "interrupted\n"


def test_help_and_no_command_still_print_the_help():
    for args, code in (["--help"], 0), ([], 2):
        proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == code
        assert "Usage: hypersweep" in proc.stdout and proc.stderr == ""


def test_the_command_ends_with_its_stores_closed_and_its_exit_code(stores, write_config):
    """`hypersweep` ends without the interpreter's teardown: the SQLite stores are
    closed first (no write-ahead log is left beside them), the output is all
    there, and the exit code is the command's."""
    from tests.conftest import ROOT

    def hypersweep(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hypersweep.cli.app", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    done = hypersweep("run", str(write_config(small_config("closed", stores, trials=2))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MLflow UI for this store" in done.stdout          # the last lines it prints
    assert done.stderr == ""        # nothing from the libraries, nor the tracking process
    assert sorted(p.name for p in stores.dir.glob("*.db*")) == ["mlflow.db", "optuna.db"]
    assert len(optuna.load_study(study_name="closed", storage=stores.optuna_url).trials) == 2
    _, children = study_runs(stores.mlflow_uri, "closed")
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]


def test_a_study_piped_into_a_reader_that_stops_early_runs_to_its_end(stores, write_config):
    """`hypersweep run study.yaml | head -1`: the reader goes away after the header,
    before the failed-trial line and the summary are written. The study still runs
    every trial and ends its runs, the output nobody reads is dropped, and the exit
    code is the study's (rich's own handler exited 1 at the first write, mid-study)."""
    from tests.conftest import ROOT

    cfg = small_config("piped", stores, strategy="grid", trials=2)
    cfg["params"] = {**cfg["params"], "epochs": 20, "optimizer": "momentum"}
    cfg["space"] = {"lr": {"choice": [1.0e9, 0.05]}}    # trial 0's loss turns NaN: a line
    proc = subprocess.Popen([sys.executable, "-m", "hypersweep.cli.app", "run", str(write_config(cfg))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("study piped: mlp on digits, grid search")
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    assert proc.stderr.read() == ""
    trials = optuna.load_study(study_name="piped", storage=stores.optuna_url).trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "FAIL"]
    parent, children = study_runs(stores.mlflow_uri, "piped")
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == [
        {"FAIL": "FAILED", "COMPLETE": "FINISHED"}[t.state.name] for t in trials]


def test_a_plain_print_into_a_reader_that_stops_early_exits_0():
    """`best --json` prints with print(), not through rich: past what a pipe holds
    (64 KiB), a reader gone after one byte makes it raise BrokenPipeError. The
    output nobody reads is dropped: exit 0, nothing on stderr (click exited 1)."""
    from tests.conftest import ROOT

    script = ("import sys\n"
              "from hypersweep.cli.app import app, main, user_errors\n"
              "@app.command('bulk')\n"
              "@user_errors\n"
              "def bulk() -> None:\n"
              "    print('x' * 200_000)\n"
              "sys.argv = ['hypersweep', 'bulk']\n"
              "main()\n")
    shell = (f"{shlex.quote(sys.executable)} -c {shlex.quote(script)} | head -c 1; "
             "echo \" status=${PIPESTATUS[0]}\"")
    proc = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert (proc.stdout, proc.stderr) == ("x status=0\n", "")



def test_the_printed_mlflow_ui_command_runs_from_where_it_was_printed(tmp_path, monkeypatch):
    """`mlflow` not on PATH: the one beside this interpreter, by a short path from
    inside the project, by its full path from anywhere else."""
    from hypersweep.search.tracking import ui_command
    monkeypatch.setenv("PATH", "")
    exe = Path(sys.executable).with_name("mlflow")
    monkeypatch.chdir(exe.parent.parent)
    assert ui_command("sqlite:///mlflow.db").startswith("bin/mlflow ui --backend-store-uri sqlite:///mlflow.db")
    monkeypatch.chdir(tmp_path)
    assert ui_command("sqlite:///mlflow.db").startswith(f"{exe} ui ")
    assert ui_command("http://127.0.0.1:5000") == "open http://127.0.0.1:5000"
    # A path with a space, pasted into a shell, stays one argument.
    import shlex
    argv = shlex.split(ui_command("sqlite:////tmp/dir with space/ml flow.db"))
    assert argv[argv.index("--backend-store-uri") + 1] == "sqlite:////tmp/dir with space/ml flow.db"


def test_ui_refuses_a_port_in_use_and_otherwise_takes_the_next_free_one(stores):
    """The UI would fail to bind after printing its URL, and the URL would show
    whatever holds the port."""
    import socket

    from hypersweep.cli.ui import _ui_port
    MlflowClient(tracking_uri=stores.mlflow_uri).search_experiments()      # a store to serve
    first = _ui_port(None)
    assert 5000 <= first < 5100
    with socket.socket() as held:
        held.bind(("127.0.0.1", first))
        held.listen()
        assert _ui_port(None) > first
        res = CliRunner().invoke(app, ["ui", "--port", str(first), "--tracking-uri", stores.mlflow_uri])
    assert res.exit_code == 2
    assert res.output.strip().startswith(f"error: --port: {first} is in use on 127.0.0.1")
    assert "MLflow UI:" not in res.output


def test_user_text_with_brackets_is_printed_as_it_is(write_config):
    """rich reads "[...]" as a style tag and drops it: error messages ("expected
    [low, high]") and trial failure reasons (torch's "shape [64, 10]") lost words."""
    import io

    from rich.console import Console

    from hypersweep.cli.app import WideWhenPiped
    from hypersweep.cli.progress import StudyProgress
    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import TrialEvent
    from hypersweep.models.trial import TrialState

    res = invoke("validate", str(write_config(quickstart())), "--set",
                 "space.lr={uniform: ['[a]', b]}")
    assert res.exit_code == 2
    assert res.output.strip() == ("error: space.lr.uniform: expected [low, high] as numbers, "
                                  "got text '[a]'")

    buf = io.StringIO()
    console: Console = WideWhenPiped(file=buf, markup=False)
    reason = "RuntimeError: shape [64, 10] is invalid for input of size [8]"
    with StudyProgress(console, parse_config(quickstart())) as progress:
        progress.trial_ended(TrialEvent(3, TrialState.FAIL, None, reason,
                                   {"COMPLETE": 0, "PRUNED": 0, "FAIL": 1}, None))
    assert f"trial 3 failed: {reason}" in buf.getvalue()


def test_progress_does_not_count_an_interrupted_trial_against_the_budget():
    """After a Ctrl-C the bar read `1/2 0 done 1 failed`, and `resume` then said
    0 of 2 trials finished: a trial a stop cut short is run again."""
    import io

    from hypersweep.cli.app import WideWhenPiped
    from hypersweep.cli.progress import StudyProgress
    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import TrialEvent
    from hypersweep.models.trial import TrialState

    console = WideWhenPiped(file=io.StringIO(), markup=False)
    with StudyProgress(console, parse_config(quickstart())) as progress:
        task = progress._progress.tasks[0]
        progress.trial_ended(TrialEvent(0, TrialState.COMPLETE, (0.9,), None,
                                        {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0}, 0.9))
        progress.trial_ended(TrialEvent(1, TrialState.FAIL, None, "ValueError: x",
                                        {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1}, 0.9))
        progress.trial_ended(TrialEvent(2, TrialState.FAIL, None,
                                        "interrupted by the user (Ctrl-C)",
                                        {"COMPLETE": 1, "PRUNED": 0, "FAIL": 2}, 0.9,
                                        interrupted=True))
        assert task.completed == 2
        assert task.fields["status"] == ("best val_accuracy 0.9000 [green]1 done[/] "
                                         "[red]1 failed[/] [red]1 interrupted[/]")


def test_progress_into_a_pipe_says_each_trial_as_it_ends_and_a_terminal_does_not():
    """Into a file (a batch job's log, `nohup`), rich draws no bar until the study
    ends: nothing told how far it got. A line now says each trial as it ends."""
    import io

    from rich.console import Console

    from hypersweep.cli.progress import StudyProgress
    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import TrialEvent
    from hypersweep.models.trial import TrialState

    events = [TrialEvent(0, TrialState.COMPLETE, (0.9,), None,
                         {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0}, 0.9),
              TrialEvent(1, TrialState.PRUNED, None, "pruned at epoch 3",
                         {"COMPLETE": 1, "PRUNED": 1, "FAIL": 0}, 0.9),
              TrialEvent(2, TrialState.COMPLETE, (0.95,), None,
                         {"COMPLETE": 2, "PRUNED": 1, "FAIL": 0}, 0.95)]
    outputs = {}
    for terminal in (False, True):
        buf = io.StringIO()
        with StudyProgress(Console(file=buf, force_terminal=terminal, width=120),
                           parse_config(quickstart())) as progress:
            for event in events:
                progress.trial_ended(event)
        outputs[terminal] = buf.getvalue()
    lines = [line for line in outputs[False].splitlines() if line.startswith("trial ")]
    assert lines[:3] == [
        "trial 0 complete: val_accuracy 0.9000 (1 of 20 done, best 0.9000, 0:00:00 elapsed)",
        "trial 1 pruned at epoch 3 (2 of 20 done, best 0.9000, 0:00:00 elapsed)",
        "trial 2 complete: val_accuracy 0.9500 (3 of 20 done, best 0.9500, 0:00:00 elapsed)"]
    assert "trial 0 complete" not in outputs[True] and "3/20" in outputs[True]
    # A count among the objectives is whole: param_count 2839, not 2839.0000
    pareto = {**quickstart(), "search": {**quickstart()["search"], "objective": [
        {"metric": "val_accuracy", "direction": "maximize"},
        {"metric": "param_count", "direction": "minimize"}]}}
    buf = io.StringIO()
    with StudyProgress(Console(file=buf, force_terminal=False, width=120),
                       parse_config(pareto)) as progress:
        progress.trial_ended(TrialEvent(0, TrialState.COMPLETE, (0.9, 2839.0), None,
                                        {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0}, None))
    assert "trial 0 complete: val_accuracy 0.9000, param_count 2839 (1 of 20 done" in \
        buf.getvalue()


def test_progress_shows_the_trials_running():
    """Before any trial ends the bar said "starting" for the whole first trial; it
    now counts the trials running and the epoch each is at, beside those done,
    pruned and failed."""
    import io

    from rich.console import Console

    from hypersweep.cli.app import WideWhenPiped
    from hypersweep.cli.progress import StudyProgress
    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import TrialEvent
    from hypersweep.models.trial import TrialState

    console: Console = WideWhenPiped(file=io.StringIO(), markup=False)
    with StudyProgress(console, parse_config(quickstart())) as progress:     # 20 epochs
        status = lambda: progress._progress.tasks[0].fields["status"]  # noqa: E731
        assert status() == "starting"
        progress.trial_started(0, 1)
        assert status() == "[cyan]1 running[/]"
        progress.epoch(0, 1)
        progress.epoch(0, 2)
        assert status() == "[cyan]1 running[/] (epoch 2/20)"
        progress.trial_started(1, 2)
        progress.epoch(1, 1)
        assert status() == "[cyan]2 running[/] (epochs 2, 1/20)"
        progress.trial_ended(TrialEvent(0, TrialState.COMPLETE, (0.9,), None,
                                        {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0}, 0.9, running=1))
        # None pruned or failed yet: the count of trials finished says it all, and
        # the line fits 80 columns.
        assert status() == "best val_accuracy 0.9000 [cyan]1 running[/] (epoch 1/20)"
        for n in range(2, 6):
            progress.trial_started(n, n)
            progress.epoch(n, 3 * n)
        assert status().startswith("best val_accuracy 0.9000 [cyan]5 running[/] (epochs 1-15/20)")
        progress.trial_ended(TrialEvent(1, TrialState.PRUNED, None, None,
                                        {"COMPLETE": 1, "PRUNED": 1, "FAIL": 0}, 0.9, running=4))
        assert status() == ("best val_accuracy 0.9000 [cyan]4 running[/] (epochs 6-15/20) "
                            "[green]1 done[/] [yellow]1 pruned[/]")


def test_help_shows_the_store_defaults():
    """The defaults were written into the help as "[default: ...]", which the help's
    markup took for a tag and dropped ("Optuna storage URL ."); typer shows them now."""
    wide = CliRunner(env={"COLUMNS": "200"})
    for command in ("resume", "rerun", "export", "best", "studies", "final"):
        res = wide.invoke(app, [command, "--help"])
        assert res.exit_code == 0
        assert "Optuna storage URL. [default: (sqlite:///optuna.db)]" in res.output, command
    res = wide.invoke(app, ["ui", "--help"])
    assert "[default: (5000, or the next free one)]" in res.output
    assert "[default: ($MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)]" in res.output
    assert "[default: (NAME-rerun-N)]" in wide.invoke(app, ["rerun", "--help"]).output
    # A run's commands read the environment's tracking server first, as MLflow's tools do
    for command in ("replay", "predict", "generate"):
        res = wide.invoke(app, [command, "--help"])
        assert "MLflow tracking URI of the run. [default: ($MLFLOW_TRACKING_URI, else " \
               "sqlite:///mlflow.db)]" in res.output, command


def test_help_shows_what_each_option_takes():
    """`--trials N`, not the Python type (`<int>`, `<list[str]>`); flags take nothing."""
    import re
    wide = CliRunner(env={"COLUMNS": "200"})
    text = wide.invoke(app, ["run", "--help"]).output
    for option, metavar in (("--set", "KEY=VALUE"), ("--trials", "N"), ("--strategy", "NAME"),
                            ("--tracking-uri", "URI"), ("--storage", "URL"),
                            ("--executor", "serial|ray"), ("--parallel", "N|auto"),
                            ("--ray-address", "ADDR"), ("--warm-start", "STUDY")):
        assert re.search(rf"{re.escape(option)}\s+{re.escape(metavar)}\s", text), option
    assert "<list[str]>" not in text and "<int>" not in text
    final = wide.invoke(app, ["final", "--help"]).output
    assert "<bool>  Evaluate on test again" not in final
    assert "--no-force" not in final                    # the README's flag, no pair
    assert re.search(r"--output\s+-o\s+FILE\s", wide.invoke(app, ["export", "--help"]).output)


def test_the_help_option_shows_no_value_type():
    """typer printed `--help  -h  <bool>` on every help screen, as if it took a value."""
    import re
    wide = CliRunner(env={"COLUMNS": "200"})
    for args in ([], *([name] for name in sorted(app_commands()))):
        text = wide.invoke(app, [*args, "--help"]).output
        assert re.search(r"--help\s+-h\s+Show this message and exit", text), args
        assert "<bool>" not in text, args


def test_arguments_show_no_python_type():
    """typer printed `STUDY  <str>  Study name.` and `CONFIG  <path>`: Python's types."""
    import re
    wide = CliRunner(env={"COLUMNS": "200"})
    for name in sorted(app_commands()):
        text = wide.invoke(app, [name, "--help"]).output
        assert not re.search(r"<(str|path|int|float|bool)>", text), name
    assert re.search(r"STUDY\s+Study name\.", wide.invoke(app, ["best", "--help"]).output)


def test_usage_lines_write_required_arguments_plainly():
    """typer 0.29 wrote `Usage: hypersweep run [OPTIONS] {CONFIG}`; the README and the
    missing-argument error say CONFIG."""
    wide = CliRunner(env={"COLUMNS": "200"})
    usage = {name: next(line.strip() for line in wide.invoke(app, [name, "--help"],
                                                             prog_name="hypersweep").output
                        .splitlines() if "Usage:" in line)
             for name in ("run", "best", "models", "rerun")}
    assert usage == {"run": "Usage: hypersweep run [OPTIONS] CONFIG",
                     "best": "Usage: hypersweep best [OPTIONS] STUDY",
                     "models": "Usage: hypersweep models [OPTIONS] [NAME]",
                     "rerun": "Usage: hypersweep rerun [OPTIONS] SOURCE"}


def app_commands() -> list[str]:
    return [info.name or info.callback.__name__ for info in app.registered_commands]


def test_an_objective_without_importances_says_why(capsys, write_config):
    """Nothing was printed when fANOVA had nothing to split: it looked like a fault."""
    from hypersweep.cli.app import print_importances
    from hypersweep.search.config import load_config
    cfg = load_config(write_config(quickstart()))
    study = optuna.create_study(direction="maximize")
    for lr in (0.01, 0.02):
        t = study.ask()
        t.suggest_float("lr", 1e-3, 1e-1)
        study.tell(t, 0.5)
    from hypersweep.search.importance import param_importances
    # fANOVA itself split the nothing evenly among the parameters
    assert param_importances(study, cfg.search.objectives) == {}
    print_importances({}, study, cfg)
    assert capsys.readouterr().out.strip() == (
        "parameter importance (val_accuracy): none; the 2 complete trials all have the same "
        "value, so there is no variance to split among the parameters")
    print_importances({}, optuna.create_study(), cfg)
    assert "fANOVA needs 2 complete trials, and 0 completed" in capsys.readouterr().out
    # Both trials drew width 8: different values, nothing that varies to explain them.
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.7):
        t = study.ask()
        t.suggest_int("width", 8, 8)
        study.tell(t, value)
    print_importances({}, study, cfg)
    assert capsys.readouterr().out.strip() == (
        "parameter importance (val_accuracy): none; the parameters searched in every complete "
        "trial take one value in all 2 (width 8), so there is no variance to split")


def test_importances_say_when_they_come_from_a_sample(capsys, write_config, monkeypatch):
    from hypersweep.cli.app import print_importances
    from hypersweep.search import importance
    from hypersweep.search.config import load_config
    monkeypatch.setattr(importance, "TRIALS_MAX", 3)
    cfg = load_config(write_config(quickstart()))
    study = optuna.create_study(direction="maximize")
    for lr in (0.01, 0.02, 0.03, 0.04):
        t = study.ask()
        study.tell(t, t.suggest_float("lr", 1e-3, 1e-1))
    print_importances({"val_accuracy": {"lr": 1.0}}, study, cfg)
    assert ("parameter importance (val_accuracy, fANOVA over a random 3 of 4 complete trials; "
            "a rough guide below 10):") in capsys.readouterr().out


def test_best_shows_every_trial_tied_at_the_best_and_the_whole_front(capsys, write_config):
    """`best` showed one trial where `best --json` listed two (a tie, a front of two)."""
    from hypersweep.cli.app import print_best
    from hypersweep.search.config import load_config

    def study_of(directions, values):
        study = optuna.create_study(directions=directions)
        for v in values:
            t = study.ask()
            t.suggest_float("lr", 1e-3, 1e-1)
            study.tell(t, v)
        return study

    path = write_config(quickstart())
    print_best(study_of(["maximize"], [0.5, 0.9, 0.9]), load_config(path), top=None)
    rows = [line.split()[1] for line in capsys.readouterr().out.splitlines() if "0.9 " in line]
    assert rows == ["1", "2"]

    cfg = load_config(path, ["search.objective=[{metric: val_accuracy, direction: maximize}, "
                             "{metric: param_count, direction: minimize}]"])
    front = study_of(["maximize", "minimize"],
                     [(0.9, 5.0), (0.5, 1.0), (0.95, 123456.0), (0.4, 3.0)])
    print_best(front, cfg, top=None)
    text = capsys.readouterr().out
    assert "Pareto front" in text and "of 3)" not in text
    assert all(f"│ {n} " in text for n in (0, 1, 2))
    assert "│ 3 " not in text
    assert "123456" in text and "e+05" not in text      # a count, whole
    print_best(front, cfg, top=2)
    assert "Pareto front (2 of 3)" in capsys.readouterr().out


def test_version_and_short_help():
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    from importlib.metadata import version
    assert proc.stdout.startswith(f"hypersweep {version('hypersweep')} (optuna "
                                  f"{version('optuna')}, mlflow {version('mlflow')}, ray ")
    res = CliRunner().invoke(app, ["run", "-h"])
    assert res.exit_code == 0 and "Usage: root run [OPTIONS]" in res.output


def test_ui_server_and_what_it_started_stop_with_the_command(tmp_path):
    """SIGTERM to `hypersweep ui` left `mlflow ui` and its job runners serving; a
    Ctrl-C reached the job runners too, each printing a traceback. `serve` runs
    the server in its own process group and stops the whole group."""
    import os
    import signal
    import time

    from tests.servers import free_port
    pids = tmp_path / "pids"
    server = ("import os, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
              "time.sleep(600)\n")
    command = ("import sys; from hypersweep.cli.ui import serve; "   # stopped before it answers
               f"sys.exit(serve([sys.executable, '-c', {server!r}], {free_port()}, 'ready', "
               "grace_s=5))")
    ui = subprocess.Popen([sys.executable, "-c", command], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and ui.poll() is None
        time.sleep(0.1)
    server_pid, child_pid = map(int, pids.read_text().split())
    assert os.getpgid(server_pid) == server_pid != os.getpgid(ui.pid)   # a group of its own
    ui.send_signal(signal.SIGTERM)
    assert ui.wait(timeout=30) == 0

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    assert gone(server_pid) and gone(child_pid)        # nothing left serving
    assert "Traceback" not in ui.stderr.read()


def test_bad_input_found_at_start_up_leaves_no_progress_bar(stores, write_config):
    """The bar ("trials 0/2 starting") stayed above the error line."""
    raw = small_config("unreachable", stores, trials=2)
    raw["tracking"]["uri"] = "http://127.0.0.1:1"
    res = CliRunner().invoke(app, ["run", str(write_config(raw))])
    assert res.exit_code == 2
    assert "trials" not in res.output.replace("2 trials", "")
    assert res.output.strip().splitlines()[-1] == ("error: tracking.uri: cannot reach "
                                                   "http://127.0.0.1:1: Connection refused")


def test_ui_of_a_server_nothing_answers_at_is_an_error():
    """It said "the store is an MLflow server already" and exited 0."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # free once closed: nothing listens there
    res = CliRunner().invoke(app, ["ui", "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert res.exit_code == 2
    assert res.output == f"error: --tracking-uri: cannot reach http://127.0.0.1:{port}: Connection refused\n"


def test_the_optuna_storage_failing_in_use_is_one_line_with_exit_1():
    """A PostgreSQL server stopped mid-study: three chained tracebacks, 190 lines."""
    import sqlalchemy.exc
    import typer

    from hypersweep.cli.app import user_errors
    small = typer.Typer()

    @small.command()
    @user_errors
    def run() -> None:
        try:
            raise sqlalchemy.exc.OperationalError(
                "UPDATE trials", {}, Exception("server closed the connection unexpectedly"))
        except sqlalchemy.exc.OperationalError as e:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the "
                                                         "commit.") from e

    res = CliRunner().invoke(small, [])
    assert res.exit_code == 1
    assert res.output.startswith("error: tracking.storage: the Optuna storage failed in use: "
                                 "(builtins.Exception) server closed the connection unexpectedly")
    assert res.output.count("\n") == 1


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A directory this process cannot write, holding `optuna.db` (an empty Optuna
    storage): by its mode, or, for root (whom modes do not stop), a tmpfs mounted
    read-only."""
    import os
    import shutil

    d = tmp_path / "read-only"
    d.mkdir()
    storage = f"sqlite:///{d / 'optuna.db'}"
    optuna.storages.RDBStorage(storage).engine.dispose()
    d.chmod(0o555)
    if not os.access(d, os.W_OK):
        yield d
        d.chmod(0o755)
        return
    d.chmod(0o755)
    kept = tmp_path / "kept.db"
    shutil.move(str(d / "optuna.db"), kept)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)],
                           capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"running as root without a read-only mount: {mount.stderr.decode()}")
    try:
        shutil.copy(kept, d / "optuna.db")
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_a_store_in_a_directory_that_cannot_be_written(read_only_dir, tmp_path, monkeypatch):
    """It named an internal temp file (`OSError: [Errno 30] Read-only file system:
    '.../.mlflow.db.ne1dn39a' (tempfile.py:256)`), after the other store was made;
    an existing store there read "is not a SQLite database"."""
    monkeypatch.chdir(tmp_path)
    args = ("run", str(STUDIES / "quickstart.yaml"), "--executor", "serial",
            "--trials", "1", "--set", "params.epochs=1")
    res = invoke(*args, "--storage", f"sqlite:///{read_only_dir / 'new.db'}")
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        f"error: --storage: cannot create {read_only_dir / 'new.db'}: its directory "
        "is not writable (SQLite keeps its journal beside the file); choose another path")
    assert not (tmp_path / "mlflow.db").exists()        # nothing made before the check
    res = invoke(*args, "--tracking-uri", f"sqlite:///{read_only_dir / 'mlflow.db'}")
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith(
        f"error: --tracking-uri: cannot create {read_only_dir / 'mlflow.db'}: its directory")
    res = invoke("resume", "quickstart-digits-mlp",
                 "--storage", f"sqlite:///{read_only_dir / 'optuna.db'}")
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"error: --storage: cannot write {read_only_dir / 'optuna.db'}: its directory "
        "is not writable (SQLite keeps its journal beside the file); choose another path")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_a_narrow_terminal_cuts_the_progress_status_not_the_time():
    """In 80 columns the elapsed time was cut to "0:0…" (and the bar to 3 cells)
    to make room for the status; the status is what gets cut now."""
    import io
    import re

    from rich.console import Console

    from hypersweep.cli.progress import StudyProgress
    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import TrialEvent
    from hypersweep.models.trial import TrialState

    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    with StudyProgress(console, parse_config(quickstart())) as progress:
        for n in range(4):
            progress.trial_started(n, n + 1)
            progress.epoch(n, 10 + n)
        progress.trial_ended(TrialEvent(0, TrialState.FAIL, None, None,
                                        {"COMPLETE": 0, "PRUNED": 0, "FAIL": 1}, None, running=3))
        progress.trial_ended(TrialEvent(1, TrialState.COMPLETE, (0.91234,), None,
                                        {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1}, 0.91234,
                                        running=2))
    shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buf.getvalue()).replace("\r", "\n")
    last = shown.rstrip().splitlines()[-1].rstrip()
    assert len(last) <= 80
    assert re.search(r" \d:\d\d:\d\d$", last), last           # the time whole
    # The status's end cut, not the best value, which comes first.
    assert "2/20 best val_accuracy 0.9123 2 running (epochs… 0:00:" in last


def test_a_storage_that_cannot_be_opened_leaves_no_mlflow_store(tmp_path, monkeypatch):
    """A --storage under a file, in a directory not there, or on a server that
    refuses: exit 2, but the MLflow store (opened first) had been made already."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text("not a directory")
    args = ("run", str(STUDIES / "quickstart.yaml"), "--executor", "serial", "--trials", "1")
    for storage, why in (
            ("sqlite:///study.yaml/optuna.db", f"{tmp_path / 'study.yaml'} is not a directory"),
            ("sqlite:///runs/optuna.db", f"{tmp_path / 'runs'} does not exist"),
            ("postgresql://hs@127.0.0.1:1/x", "Connection refused")):
        res = invoke(*args, "--storage", storage)
        assert res.exit_code == 2, res.output
        assert res.output.strip().startswith("error: --storage: cannot ")
        assert why in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_a_database_tracking_uri_that_refuses_is_one_line_at_once(tmp_path, monkeypatch):
    """MLflow retried a refusing PostgreSQL server for 106 s, printing 45 lines of
    warnings, after the study's header; the one line now comes before anything."""
    monkeypatch.chdir(tmp_path)
    res = invoke("run", str(STUDIES / "quickstart.yaml"), "--executor", "serial",
                 "--tracking-uri", "postgresql://hs:secret@127.0.0.1:1/x")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: --tracking-uri: cannot reach postgresql://hs:***@127.0.0.1:1/x: Connection refused"]
    assert list(tmp_path.iterdir()) == []      # and no MLflow retry warnings above it


def test_a_bad_fixed_value_fails_validate_also_with_the_default_space(stores, write_config):
    raw = quickstart()
    raw.pop("space", None)                      # the builder's default space is searched
    raw["params"] = {**raw.get("params", {}), "dropout": 1.5}
    for command in ("validate", "run"):
        args = [str(write_config(raw))] + (stores.cli_args() if command == "run" else [])
        res = invoke(command, *args)
        assert res.exit_code == 2, res.output
        assert res.output.strip() == "error: params.dropout: must be in [0, 1), got 1.5"
    assert stores.untouched()


def test_the_resume_hint_quotes_the_study_name(capsys):
    """`hypersweep resume my study` does not work pasted into a shell."""
    from types import SimpleNamespace

    import typer

    from hypersweep.cli.app import stopped
    from hypersweep.search.config import parse_config
    cfg = parse_config({**quickstart(), "study": "my study"})
    with pytest.raises(typer.Exit) as e:
        stopped(SimpleNamespace(interrupted=True, exit_code=130, late_stop=None), cfg)
    assert e.value.exit_code == 130
    assert "continue with: hypersweep resume 'my study'" in capsys.readouterr().err


PG_CONFIG = {"storage": "postgresql://qa:secret@db/optuna",
             "uri": "postgresql://qa:secret@db/mlflow"}
PUT_BACK = " (put the password in place of ***, or set PGPASSWORD)"


def test_a_hint_to_paste_with_a_masked_password_says_to_put_it_back(capsys):
    """`continue with: ... --storage 'postgresql://qa:***@db/optuna'` pasted as it
    is failed with "password authentication failed"."""
    from types import SimpleNamespace

    import typer

    from hypersweep.cli.app import stopped, ui_hint
    from hypersweep.cli.lifecycle import print_what_they_trained
    from hypersweep.search.config import parse_config
    cfg = parse_config({**quickstart(), "study": "s", "tracking": PG_CONFIG})
    with pytest.raises(typer.Exit):
        stopped(SimpleNamespace(interrupted=True, exit_code=130, late_stop=None), cfg)
    assert capsys.readouterr().err.strip() == (
        "interrupted: running trials were marked FAIL; continue with: hypersweep resume s "
        "--storage 'postgresql://qa:***@db/optuna'" + PUT_BACK)
    print_what_they_trained("s", cfg, [SimpleNamespace(number=0, user_attrs={
        "mlflow_run_id": "a" * 32})])
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.endswith("hypersweep final s --storage 'postgresql://qa:***@db/optuna'"
                          + PUT_BACK), shown
    # The UI's command line showed the password itself.
    assert ui_hint(PG_CONFIG["uri"]).endswith(
        "--backend-store-uri 'postgresql://qa:***@db/mlflow' --host 127.0.0.1 --port 5000"
        + PUT_BACK)
    assert ui_hint("sqlite:////tmp/mlflow.db").endswith("--port 5000")     # no note


def test_the_optuna_storage_failing_mid_study_names_the_study_and_its_storage():
    """It said `hypersweep resume STUDY`, where the MLflow store's failing named both."""
    import sqlalchemy.exc
    import typer

    from hypersweep.cli.app import resumable, user_errors
    from hypersweep.search.config import parse_config
    cfg = parse_config({**quickstart(), "study": "s", "tracking": PG_CONFIG})
    small = typer.Typer()

    @small.command()
    @user_errors
    def run() -> None:
        with resumable(cfg):
            try:
                raise sqlalchemy.exc.OperationalError(
                    "UPDATE trials", {}, Exception("server closed the connection unexpectedly"))
            except sqlalchemy.exc.OperationalError as e:
                raise optuna.exceptions.StorageInternalError("commit failed") from e

    res = CliRunner().invoke(small, [])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    line = res.output.strip()
    assert line.startswith("error: tracking.storage: the Optuna storage failed in use: "
                           "(builtins.Exception) server closed the connection unexpectedly")
    assert line.endswith("; the trials left running are marked FAIL on resume; once it is "
                         "back, continue with: hypersweep resume s --storage "
                         "'postgresql://qa:***@db/optuna'" + PUT_BACK), line


def test_a_note_shows_on_its_own_line_above_the_progress_bar(tmp_path):
    """In a terminal the executor's note was written by another console than the
    live bar's, and ran on after a frame of the bar: `... 0:00:04note: ...`."""
    import os
    import re
    import select
    primary, secondary = os.openpty()
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("hypersweep")), "run", str(STUDIES / "quickstart.yaml"),
         "--executor", "serial", "--parallel", "2", "--trials", "1", "--set", "params.epochs=1",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=tmp_path)
    os.close(secondary)
    shown = b""
    # poll, not select: select takes no descriptor above 1023, which a long test
    # session's open files reach
    terminal = select.poll()
    terminal.register(primary, select.POLLIN)
    while True:
        ready = terminal.poll(120_000)
        try:
            chunk = os.read(primary, 65536) if ready else b""
        except OSError:         # the process closed the terminal
            chunk = b""
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.wait(timeout=60) == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    note = "note: resources.parallel: 2 applies to the ray executor"
    assert note in text
    # What comes before it ends a line, or clears it (the live bar moving down).
    before = text[:text.index(note)]
    assert re.search(r"(\n|\x1b\[2K|\r)(\x1b\[[0-9;]*m)*$", before), repr(before[-120:])


def test_columns_0_still_prints(tmp_path):
    """`export COLUMNS=$(tput cols)` without a terminal gives 0: rich printed
    nothing at all, error lines included, at the same exit codes."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**quickstart(), "model": "mpl"}))
    import os
    env = {**os.environ, "COLUMNS": "0"}
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "validate", str(bad)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: model: unknown builder 'mpl' (did you mean 'mlp'?)")
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "models"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "mlp" in proc.stdout


def test_rerun_with_an_empty_name_is_refused(stores):
    """`--name "$NAME"` with NAME unset ran as NAME-rerun-N without a word."""
    res = CliRunner().invoke(app, ["rerun", "anything", "--name", "", *stores.cli_args()])
    assert res.exit_code == 2
    assert res.output == "error: --name: a blank name; give the study a name, got ''\n"
    assert stores.untouched()


def test_notes_go_to_stderr_apart_from_the_results(stores, write_config):
    """`validate study.yaml 2> notes.txt` as a lint step; `run ... > results`."""
    cfg = small_config("noted", stores, trials=1)
    cfg["space"]["depth"] = {"choice": [1]}            # a choice of one value: a note
    path = str(write_config(cfg))
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "validate", path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"{path}: ok") and "note:" not in proc.stdout
    assert proc.stderr == ("note: space.depth: a choice of one value, 1, is the same in every "
                           "trial; it is not searched\n")
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "run", path], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "note:" not in proc.stdout and "best trials" in proc.stdout
    assert proc.stderr.startswith("note: space.depth: a choice of one value")


@pytest.mark.parametrize("args, message", [
    (["--storage", "sqlite:////nonexistent-dir/optuna.db"],
     "error: --storage: cannot create /nonexistent-dir/optuna.db: /nonexistent-dir does not exist"),
    (["--tracking-uri", "sqlite:////nonexistent-dir/mlflow.db"],
     "error: --tracking-uri: cannot create /nonexistent-dir/mlflow.db: /nonexistent-dir does not "
     "exist"),
    # No file can be made there, though os.access says so to root: run made the MLflow
    # store, then failed naming an internal temp file
    (["--storage", "sqlite:////proc/optuna.db"],
     "error: --storage: cannot create /proc/optuna.db: its directory is not writable"),
    (["--executor", "ray", "--set", "resources.cpus_per_trial=4096"],
     "error: resources.cpus_per_trial: 4096 CPUs per trial, but this machine's Ray instance has "
     "at most "),
])
def test_validate_refuses_what_run_refuses_before_it_opens_a_store(write_config, args, message):
    """validate as a CI gate: it passed these, which run then refused."""
    res = CliRunner().invoke(app, ["validate", str(write_config(quickstart())), *args])
    assert res.exit_code == 2
    assert res.output.startswith(message) and res.output.count("\n") == 1, res.output


def test_mlflow_tracking_uri_in_the_environment_is_the_default_store(stores, write_config,
                                                                      tmp_path):
    """As every MLflow tool takes it; it was ignored without a word. A study's own
    tracking.uri, or --tracking-uri, still wins."""
    import os
    cfg = small_config("env-uri", stores, trials=1)
    del cfg["tracking"]["uri"]
    env_store = tmp_path / "env-mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{env_store}"}
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "run", str(write_config(cfg))],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert env_store.is_file() and not (tmp_path / "mlflow.db").exists()
    parent, children = study_runs(f"sqlite:///{env_store}", "env-uri")
    assert len(children) == 1


def test_a_projects_own_models_and_search_packages_do_not_meet_ours(tmp_path):
    """A user's project has models/ and search/ packages on PYTHONPATH: ours were
    the same top-level names, and one shadowed the other."""
    import os
    for name in ("models", "search", "spaces", "cli"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the project's {name}')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "validate",
                           str(STUDIES / "quickstart.yaml")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{STUDIES / 'quickstart.yaml'}: ok")


def test_xor_s_four_points_say_they_are_every_split(stores, write_config):
    """The four points train, validate and test alike: final's test_accuracy 1.0 read
    as a held-out result."""
    raw = small_config("four", stores, trials=1)
    raw["data"] = {"name": "xor"}
    raw["space"] = {"lr": {"loguniform": [1e-2, 1e-1]}}
    path = write_config(raw)
    note = "note: data.name: xor's four points are its training, validation and test splits"
    for command in (["validate", str(path)], ["run", str(path)],
                    ["final", "four", "--storage", stores.optuna_url]):
        res = invoke(*command)
        assert res.exit_code == 0, res.output
        assert note in res.output, (command, res.output)
    raw["data"]["options"] = {"n": 40}         # a cloud: held-out splits
    res = invoke("validate", str(write_config(raw)))
    assert res.exit_code == 0 and "note: data.name" not in res.output, res.output
