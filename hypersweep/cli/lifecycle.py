"""Lifecycle and inspection commands: resume, rerun, replay, final, delete, studies,
best, export. Registered on the app in cli/app.py; thin like the rest of cli/."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from hypersweep.cli.app import (SetOpt, _parallel, app, counted, err, opt, out, parallel_text,
                                print_best, print_range_notes, stopped, user_errors,
                                whole_number)
from hypersweep.models.errors import UserError
from hypersweep.search.config import StudyConfig, TrackingConfig, without_password

DEFAULT = TrackingConfig()
# Defaults shown by typer (show_default): brackets in help text are read as markup.
StorageOpt = opt("URL", "Optuna storage URL.", show_default=DEFAULT.storage)
UriOpt = opt("URI", "MLflow tracking URI.", show_default=f"the study's, else {DEFAULT.uri}")
# Read where the run is: the environment's tracking server, as MLflow's own tools do.
RunOfUriOpt = opt("URI", "MLflow tracking URI of the run.",
                  show_default="$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
StudyArg = typer.Argument(..., help="Study name.", show_default=False, metavar="STUDY")


def _study(name: str, storage: Optional[str], reading: bool = False):
    """`reading`: for a command that only reads the study (best, export), which
    opens a SQLite file in a directory it cannot write read-only."""
    from hypersweep.search.lifecycle import load_study
    return load_study(name, storage or DEFAULT.storage, reading)


def drive(cfg: StudyConfig, header: str, resume: bool = False, done: int = 0) -> None:
    """Run (or resume, `done` trials in) a study as `run` does, under `header` (rich
    markup). A new study is a rerun's, named by --name."""
    from hypersweep.cli.app import drive as run_study
    from hypersweep.search.driver import check_stores
    from hypersweep.search.writer import TrackingWriter

    if not resume:
        check_stores(cfg, rename="--name NAME")     # a taken name fails before Ray starts
    with TrackingWriter() as tracker:
        outcome = run_study(cfg, tracker, header, resume=resume, done=done)
    stopped(outcome, cfg)


@app.command()
@user_errors
def resume(study: str = StudyArg, storage: Optional[str] = StorageOpt,
           tracking_uri: Optional[str] = UriOpt,
           trials: Optional[int] = opt("N", "A new trial budget, kept as the study's.",
                                          parser=whole_number),
           executor: Optional[str] = opt("serial|ray", "Executor, for this run only."),
           parallel: Optional[str] = opt("N|auto", "Trials at once, for this run only.",
                                         parser=parallel_text),
           ray_address: Optional[str] = opt(
               "ADDR", "Ray cluster to join, for this run only (the study's may be gone)."),
           ) -> None:
    """Continue an interrupted study up to its trial count, in the same stores."""
    from hypersweep.search import heap
    from hypersweep.search.driver import ENDED, trials_run
    from hypersweep.search.lease import check_not_running
    from hypersweep.search.lifecycle import stored_config, to_retry
    from hypersweep.search.tracking import check_store_exists
    heap.hold()         # released when the trials start (search/heap.py)
    s = _study(study, storage)
    # The serial executor joins no cluster and stops no trial on time: the study's
    # Ray address and trial timeout do not apply to this run.
    serial = ("resources.address=null", "resources.trial_timeout=null") \
        if executor == "serial" else ()
    cfg = stored_config(s, serial, storage=storage or DEFAULT.storage, tracking_uri=tracking_uri,
                        trials=trials, executor=executor, parallel=_parallel(parallel),
                        ray_address=ray_address)
    timeout = ((s.user_attrs.get("config") or {}).get("resources") or {}).get("trial_timeout")
    if serial and timeout:
        err.print(f"note: the study's trial_timeout ({timeout:g} s) does not apply under the "
                  "serial executor", soft_wrap=True, highlight=False)
    check_not_running(s)        # its running trials are not a crash's
    done = trials_run(s)
    if trials is not None and trials < done:
        raise UserError(f"--trials: {trials} is fewer than the {done} trials study '{study}' "
                        f"has run; give more than {done} to run more")
    if done >= cfg.search.trials and s.user_attrs.get(ENDED) == "FINISHED" \
            and all(t.state.is_finished() for t in s.trials):
        # The budget is spent and the study was closed in both stores: no Ray, no
        # store opened, nothing rewritten.
        if cfg.search.strategy == "grid" and (trials or 0) > cfg.search.trials:
            more = f"its grid of {cfg.search.trials} points is exhausted"
        else:
            more = "--trials N raises the budget"
        out.print(f"study [bold]{escape(cfg.study)}[/bold]: {done} of {cfg.search.trials} "
                  f"trials finished, nothing to resume ({more})", markup=True)
        print_best(s, cfg)
        return
    # Moved or mistyped: not a new store with a second parent run in it.
    check_store_exists(cfg.tracking.uri)
    header = (f"resuming study [bold]{escape(cfg.study)}[/bold]: {done} of "
              f"{counted(cfg.search.trials, 'trial')} finished")
    left = [t.number for t in s.trials if t.state.name == "RUNNING"]
    retry = cfg.search.on_interrupt == "retry"
    if left:        # a run that ended without closing them: a crash, a lost cluster
        again = ", and run again" if retry else ""
        header += (f"; {_trials(left)} left running by a run that stopped "
                   f"{'is' if len(left) == 1 else 'are'} marked FAIL (interrupted){again}")
    stopped = [t.number for t in to_retry(s)] if retry else []
    if stopped:     # failed as interrupted by a stop (Ctrl-C, SIGTERM)
        header += (f"; {_trials(stopped)}, interrupted, {'runs' if len(stopped) == 1 else 'run'}"
                   " again (search.on_interrupt: retry)")
    try:
        drive(cfg, header, resume=True, done=done)
    except UserError as e:
        # The cluster the study ran on, gone (its head lost): resume says where the
        # address came from, and how to run elsewhere.
        if not str(e).startswith("resources.address: ") or ray_address is not None:
            raise
        raise UserError(f"{e} (the address the study ran with, stored with it); to resume "
                        f"on another cluster: --ray-address ADDR, or on this machine: "
                        f"--executor serial, or --ray-address local") from None


def _trials(numbers: list[int]) -> str:
    """`trial 3`, `trials 2, 4 and 5`, `12 trials (2, 4, 5, ...)`."""
    if len(numbers) == 1:
        return f"trial {numbers[0]}"
    if len(numbers) <= 5:
        return f"trials {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
    return f"{len(numbers)} trials ({', '.join(map(str, numbers[:3]))}, ...)"


@app.command()
@user_errors
def rerun(source: str = typer.Argument(..., help="Study config file, study name, or "
                                               "MLflow parent run id.", show_default=False,
                                       metavar="SOURCE"),
          name: Optional[str] = opt("NAME", "New study name.", show_default="NAME-rerun-N"),
          set_: Optional[List[str]] = SetOpt,
          storage: Optional[str] = StorageOpt, tracking_uri: Optional[str] = UriOpt) -> None:
    """Re-execute a study from its stored config into a new study, same seeds."""
    from hypersweep.search import heap
    from hypersweep.search.lifecycle import config_from_source, derived_name
    from hypersweep.search.config import check_study_name
    if name is not None:
        try:
            check_study_name(name)
        except ValueError as e:
            raise UserError(f"--name: {e}, got {name!r}") from None
    heap.hold()         # released when the trials start (search/heap.py)
    cfg = config_from_source(source, storage, tracking_uri, tuple(set_ or ()))
    new = name or derived_name(cfg.study, cfg.tracking.storage)
    cfg = cfg.model_copy(update={"study": new})
    drive(cfg, f"rerun of [bold]{escape(source)}[/bold] as study [bold]{escape(new)}[/bold] "
               f"(seed {cfg.search.seed}, {counted(cfg.search.trials, 'trial')})")


@app.command()
@user_errors
def replay(run_id: str = typer.Argument(..., help="A trial's MLflow run id.", show_default=False,
                                        metavar="RUN_ID"),
           tracking_uri: Optional[str] = RunOfUriOpt) -> None:
    """Retrain one trial from its trial.yaml; exit 1 if its metrics differ."""
    from hypersweep.search.lifecycle import replay_run
    r = replay_run(run_id, tracking_uri or DEFAULT.uri)
    # A header line, not a title: a title wraps to the narrow table's width.
    out.print(f"replay of trial {r.spec.trial_number} of {r.spec.study}, last epoch:",
              highlight=False)
    table = Table("metric", "recorded", "replayed")
    for k in sorted(r.replayed):
        last = r.recorded.get(k) or [float("nan")]
        table.add_row(k, f"{last[-1]:.6g}", f"{r.replayed[k][-1]:.6g}")
    out.print(table)
    for line in r.changed:      # the likely reason for a difference
        err.print(f"note: {line}", highlight=False, soft_wrap=True)
    diff = r.differences()
    if diff:
        err.print(f"replay differs in {', '.join(diff)}")
        raise typer.Exit(1)
    out.print("identical (timings aside)")


@app.command()
@user_errors
def final(study: str = StudyArg, storage: Optional[str] = StorageOpt,
          tracking_uri: Optional[str] = UriOpt,
          force: bool = typer.Option(False, "--force", metavar="",   # a flag: no type shown
                                     help="Evaluate on test again (recorded)."),
          trial: Optional[int] = opt("N", "Retrain trial N (several objectives: one of "
                                          "the Pareto front).", show_default="the best",
                                     parser=whole_number)) -> None:
    """Retrain the best trial on train+val, evaluate once on test, register the model."""
    from hypersweep.search.lifecycle import final_test, stored_config, tied_best
    s = _study(study, storage)
    cfg = stored_config(s, storage=storage or DEFAULT.storage, tracking_uri=tracking_uri)
    from hypersweep.search.lease import check_not_running
    check_not_running(s, before="its final test")       # before any note on its trials
    if trial is None and len(cfg.search.objectives) == 1 and any(
            t.state.name == "COMPLETE" for t in s.get_trials(deepcopy=False)):
        tied = tied_best(s)
        if len(tied) > 1:
            warm = ["warm_start_from" in t.user_attrs for t in tied]   # after those run here
            first = "the first run here" if any(warm) and not all(warm) else "the first"
            numbers = sorted(t.number for t in tied)
            err.print(f"note: {_trials(numbers)} tie at the best "
                      f"{cfg.search.objectives[0].metric}; retraining trial {tied[0].number}, "
                      f"{first} (--trial N for another)", highlight=False, soft_wrap=True)
    from hypersweep.search.sources import changed, source_digests
    stored = s.user_attrs.get("sources") or {}
    for line in changed(stored, source_digests(cfg.model, cfg.data.model_dump())):
        err.print(f"note: {line}; the final model trains on it as it is now", highlight=False,
                  soft_wrap=True)
    record = final_test(s, cfg, force=force, number=trial)
    from hypersweep.models.data import UNSPLIT_NOTE
    from hypersweep.models.train import loaded_splits
    if UNSPLIT_NOTE in loaded_splits(cfg.data.model_dump()).notes:  # no held-out test split
        err.print(f"note: {UNSPLIT_NOTE}", highlight=False, soft_wrap=True)
    out.print(f"final model of {study} (trial {record['trial']}), on the test split:",
              highlight=False)
    table = Table("metric", "test")
    for k, v in sorted(record["metrics"].items()):
        table.add_row(k, f"{v:.4f}")
    out.print(table)
    out.print(f"registered model '{record['model_name']}' version {record['model_version']} "
              f"(run {record['run_id']})")


@app.command()
@user_errors
def delete(study: str = StudyArg, storage: Optional[str] = StorageOpt,
           tracking_uri: Optional[str] = UriOpt,
           yes: bool = typer.Option(False, "--yes", "-y", metavar="",
                                    help="Delete without asking.")) -> None:
    """Delete a study from both stores (its MLflow experiment to the trash, renamed)."""
    from hypersweep.search.lifecycle import delete_study, plan_deletion
    plan = plan_deletion(study, storage or DEFAULT.storage, tracking_uri)
    out.print(f"delete study {study}:", highlight=False)
    for line in plan.lines():
        out.print(f"  {line}", highlight=False, soft_wrap=True)
    if not yes:
        try:
            sure = typer.confirm("delete?", default=False, err=True)
            if not sys.stdin.isatty():
                err.print()         # a piped answer is not echoed: end the prompt's line
        except typer.Abort:         # no answer (end of input)
            err.print()
            sure = False
        if not sure:
            err.print("nothing deleted", highlight=False)
            raise typer.Exit(1)
    trash = delete_study(plan)
    out.print(f"deleted study {study}", highlight=False)
    if trash:
        out.print(f"  its MLflow experiment is in MLflow's trash as '{trash[0]}'"
                  f"{_gc_hint(plan.uri, *trash[1:])}", highlight=False, soft_wrap=True)
    if plan.registered_model:
        from hypersweep.search.tracking import model_name_for
        out.print(f"  the registered model '{model_name_for(study)}' (from `final`) is kept",
                  highlight=False)


def _gc_hint(uri: str, experiment_id: str, run_id: Optional[str]) -> str:
    """What follows the name of a deleted study's experiment in MLflow's trash:
    the `mlflow gc` command that removes it for good, and what that removes."""
    from hypersweep.search.driver import password_note
    from hypersweep.search.tracking import gc_command
    if run_id is None:
        return " (no runs)"
    gc = gc_command(uri, experiment_id, run_id)
    server = ("; run it where the server runs, with the server's own --backend-store-uri "
              "in place of STORE_OF_THE_SERVER" if uri.startswith(("http://", "https://"))
              else "")
    return (f", runs and artifacts kept until this removes them and the experiment for good "
            f"(no other experiment's runs){server}: {gc}{password_note(gc)}")


@app.command()
@user_errors
def studies(storage: Optional[str] = StorageOpt,
            as_json: bool = typer.Option(False, "--json", metavar="",
                                         help="Print JSON: one object per study.")) -> None:
    """List the studies in a storage: strategy, trials by state, best value, last update."""
    from hypersweep.search.inspect import study_rows
    storage = storage or DEFAULT.storage
    rows = study_rows(storage)
    if as_json:     # for scripts: stable keys, numbers as numbers, whatever the terminal
        print(json.dumps([{"study": r["study"], "strategy": r["strategy"],
                           **{k.lower(): r[k] for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
                           "warm_started": r["WARM"], "best": r["best"],
                           "last_update": r["last_update"]} for r in rows],
                         indent=2))
        return
    table = Table("study", "strategy", "complete", "pruned", "fail", "running", "best",
                  "last update")
    # The study's name is what other commands take: never cut or wrapped. In a
    # narrow terminal the headers and the date wrap instead.
    study_col = table.columns[0]
    study_col.no_wrap = True
    for column in table.columns[1:]:
        column.overflow = "fold"        # not cut with "…": a date of `2026-…` says nothing
    study_col.min_width = max((len(r["study"]) for r in rows), default=0)
    table.columns[-2].min_width = max((len(_best(r)) for r in rows), default=0)
    for r in rows:
        # Trials learnt from another study (--warm-start), not run here: beside them
        complete = str(r["COMPLETE"]) + (f" (+{r['WARM']} warm)" if r["WARM"] else "")
        table.add_row(r["study"], r["strategy"], complete, *(str(r[k]) for k in
                      ("PRUNED", "FAIL", "RUNNING")), _best(r), r["last_update"] or "-")
    out.print(table if rows else f"no studies in {without_password(storage)}", soft_wrap=True)


def _best(row: dict) -> str:
    return "-" if row["best"] is None else f"{row['best']:.4g}"


@app.command()
@user_errors
def best(study: str = StudyArg, storage: Optional[str] = StorageOpt,
         as_json: bool = typer.Option(False, "--json", metavar="", help="Print JSON.")) -> None:
    """The best trial of a study (ties included), or its Pareto front."""
    from hypersweep.search.inspect import best_trials
    from hypersweep.search.lifecycle import stored_config
    s = _study(study, storage, reading=True)
    if as_json and not s.user_attrs.get("config"):      # an Optuna study of another tool's
        print(json.dumps(best_trials(s), indent=2))
        return
    cfg = stored_config(s, check=False, storage=storage or DEFAULT.storage)
    if as_json:
        print(json.dumps(best_trials(s, cfg), indent=2))
        return
    shown = print_best(s, cfg, top=None)
    if shown:
        print_what_they_trained(s.study_name, cfg, shown)
    print_range_notes(cfg, s.get_trials(deepcopy=False))


def print_what_they_trained(name: str, cfg, trials) -> None:
    """Under `best`'s table: what every trial shared (the model, the data, the fixed
    params), and where each shown trial's every hyperparameter and weights are.
    Wrapped at words to the terminal (not soft-wrapped as a log line): lines to read."""
    def plain(v) -> str:        # as the config writes it: [rooms, area], not ['rooms', 'area']
        return json.dumps(v).replace('"', "") if isinstance(v, (list, dict)) else str(v)
    shared = [f"{k} {plain(v)}" for k, v in cfg.params.items()]
    data = cfg.data.name + "".join(f", {k} {plain(v)}" for k, v in cfg.data.options.items())
    out.print(f"every trial: {cfg.model} on {data}"
              f"{'; fixed: ' + ', '.join(shared) if shared else ''}; the others not "
              f"searched: the defaults (hypersweep models {cfg.model})", highlight=False)
    runs = [(t.number, t.user_attrs.get("mlflow_run_id")) for t in trials]
    for number, run_id in runs:
        if run_id:
            out.print(f"trial {number}: MLflow run {run_id} (trial.yaml: every "
                      "hyperparameter; model.pt: the weights)", highlight=False)
    if any(run_id for _, run_id in runs):
        from hypersweep.search.driver import password_note, storage_option, tracking_option
        several = len(cfg.search.objectives) > 1
        # With the stores named, where they are not where the commands look by default
        line = (f"train one again: hypersweep replay RUN_ID{tracking_option(cfg)}; on train "
                f"+ validation, tested once: hypersweep final {shlex.quote(name)}"
                f"{storage_option(cfg)}{' --trial N' if several else ''}")
        out.print(line + password_note(line), highlight=False)


@app.command()
@user_errors
def export(study: str = StudyArg,
           output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                       help="FILE.csv or FILE.parquet."),
           storage: Optional[str] = StorageOpt, tracking_uri: Optional[str] = UriOpt) -> None:
    """One row per trial: params, state, objective, and summary metrics from MLflow."""
    from hypersweep.search.inspect import trials_frame
    from hypersweep.search.lifecycle import stored_config
    if output.suffix not in (".csv", ".parquet"):
        raise UserError(f"--output: {output.name}: the file must end in .csv or .parquet")
    if not output.parent.is_dir():
        raise UserError(f"--output: {output}: no directory {output.parent}")
    s = _study(study, storage, reading=True)
    cfg = stored_config(s, check=False, storage=storage or DEFAULT.storage,
                        tracking_uri=tracking_uri)
    df = trials_frame(s, cfg)
    try:
        if output.suffix == ".csv":
            df.to_csv(output, index=False)
        else:
            df.to_parquet(output, index=False)
    except OSError as e:        # not writable, a directory of that name, a full disk
        raise UserError(f"--output: cannot write {output}: {e.strerror or e}") from None
    out.print(f"{counted(len(df), 'trial')} -> {output}")



@app.command()
@user_errors
def predict(source: str = typer.Argument(..., metavar="SOURCE", show_default=False,
                                         help="A trial's or a final run's MLflow run id, or "
                                              "models:/NAME/VERSION (or /latest, or @ALIAS)."),
            input_: Path = typer.Option(..., "-i", "--input", metavar="FILE",
                                        help="New samples: FILE.csv, with the training "
                                             "file's columns; FILE.npz; an image or a "
                                             "folder of them; FILE.txt, sequences for a "
                                             "seq2seq model, one a line."),
            output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                        help="FILE.csv: one row per sample."),
            array: str = typer.Option("x", "--x", metavar="NAME",
                                      help="The .npz archive's array of inputs."),
            keep: Optional[List[str]] = typer.Option(
                None, "--keep", metavar="COLUMN", show_default=False,
                help="A column of FILE.csv to copy into OUT.csv, first: an id (repeatable)."),
            tracking_uri: Optional[str] = RunOfUriOpt) -> None:
    """Predict with a trained model on new samples: classes, values, errors or sequences.

    Classes with their probabilities, regression values, reconstruction errors per
    sample, or decoded sequences, one row per sample in OUT.csv."""
    from hypersweep.search.predict import inputs_of, load_trained
    if output.suffix.lower() != ".csv":
        raise UserError(f"--output: {output.name}: the file must end in .csv")
    if not output.parent.is_dir():
        raise UserError(f"--output: {output}: no directory {output.parent}")
    if not input_.exists():
        raise UserError(f"--input: {input_}: no such file or folder")
    if output.exists() and output.resolve() == input_.resolve():
        raise UserError(f"--output: {output} is the input file; write the predictions to "
                        "another")
    trained = load_trained(source, tracking_uri or DEFAULT.uri)
    trained.check_predicts()
    _model_notes(trained)
    x, columns = inputs_of(trained, input_, array, keep or ())
    frame = trained.predict(x, key="--input")
    for i, (name, values) in enumerate(columns.items()):   # files, sequences, kept columns
        if name in frame.columns:
            raise UserError(f"--keep: {name} is a column predict writes; rename it in "
                            f"{input_.name}")
        frame.insert(i, name, values)
    try:
        frame.to_csv(output, index=False)
    except OSError as e:
        raise UserError(f"--output: cannot write {output}: {e.strerror or e}") from None
    out.print(f"{counted(len(frame), 'prediction')} of {_whose(trained)} -> {output}",
              highlight=False, soft_wrap=True)


def _whose(trained) -> str:
    what = "the final model" if trained.final else f"trial {trained.spec.trial_number}"
    return f"{trained.spec.model} ({what} of study {trained.spec.study})"


def _model_notes(trained) -> None:
    """What the user may not expect of the model: built by a file edited since it
    trained; a pruned trial's weights."""
    for line in trained.notes:
        err.print(f"note: {line}", highlight=False, soft_wrap=True)
    if trained.state != "COMPLETE":     # pruned: the weights it stopped with
        err.print(f"note: SOURCE: trial {trained.spec.trial_number} was {trained.state} after "
                  f"{counted(trained.epochs, 'epoch')}; these are its weights then",
                  highlight=False, soft_wrap=True)


@app.command()
@user_errors
def generate(source: str = typer.Argument(..., metavar="SOURCE", show_default=False,
                                          help="A trial's or a final run's MLflow run id, or "
                                               "models:/NAME/VERSION (or /latest, or @ALIAS)."),
             n: Optional[int] = typer.Option(None, "-n", metavar="N", show_default=False,
                                             parser=whole_number,
                                             help="How many samples: texts (default 1) or "
                                                  "images (default 64)."),
             output: Optional[Path] = typer.Option(
                 None, "-o", "--output", metavar="FILE", show_default=False,
                 help="FILE.txt for texts (default: print them); FILE.png, a grid, or "
                      "FILE.npz, the array x, for images."),
             prompt: Optional[str] = typer.Option(
                 None, "--prompt", metavar="TEXT", show_default=False,
                 help="Text: what each sample starts with (default: a new line)."),
             length: Optional[int] = typer.Option(
                 None, "--length", metavar="N", show_default=False, parser=whole_number,
                 help="Text: characters generated after the prompt (default 200)."),
             temperature: Optional[float] = typer.Option(
                 None, "--temperature", metavar="T", show_default=False,
                 help="Text: below 1 surer, above 1 more varied (default 1.0)."),
             beam: int = typer.Option(0, "--beam", metavar="WIDTH", show_default=False,
                                      parser=whole_number,
                                      help="Text: the most probable continuation that beam "
                                           "search of WIDTH finds, instead of sampling "
                                           "(0, the default: sampling)."),
             seed: int = typer.Option(0, "--seed", metavar="N", parser=whole_number,
                                      help="The same seed draws the same samples."),
             tracking_uri: Optional[str] = RunOfUriOpt) -> None:
    """Sample a trained language model (text) or generator (images)."""
    from hypersweep.search.generate import (check_generates, check_grid, generate_images,
                                            generate_text, joined, write_images, write_texts)
    from hypersweep.search.predict import load_trained
    if output is not None:
        if output.suffix.lower() not in (".txt", ".png", ".npz"):
            raise UserError(f"--output: {output.name}: the file must end in .txt (texts), "
                            ".png or .npz (images)")
        if not output.parent.is_dir():
            raise UserError(f"--output: {output}: no directory {output.parent}")
    trained = load_trained(source, tracking_uri or DEFAULT.uri)
    task = check_generates(trained)
    text = task == "language_modelling"
    if output is not None and (output.suffix.lower() == ".txt") != text:
        want = "FILE.txt" if text else "FILE.png or FILE.npz"
        raise UserError(f"--output: {output.name}: {trained.spec.model} makes "
                        f"{'texts' if text else 'images'}; write {want}")
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed: must be an integer from 0 to 2**32 - 1, got {seed}")
    if not text:
        options = {"--prompt": prompt is not None, "--beam": beam != 0,
                   "--length": length is not None, "--temperature": temperature is not None}
        given = [name for name, set_ in options.items() if set_]
        if given:
            raise UserError(f"{given[0]}: for a language model's text; {trained.spec.model} "
                            "makes images")
        if output is None:
            raise UserError(f"--output: needed: {trained.spec.model} makes images; write "
                            "them to FILE.png (a grid) or FILE.npz (the array x)")
        check_grid(64 if n is None else n, output)
    _model_notes(trained)
    if text:
        texts = generate_text(trained, 1 if n is None else n, prompt,
                              200 if length is None else length,
                              1.0 if temperature is None else temperature, beam, seed)
        if output is None:
            sys.stdout.write(joined(texts))
            return
        write_texts(texts, output)
        out.print(f"{counted(len(texts), 'text')} of {_whose(trained)} -> {output}",
                  highlight=False, soft_wrap=True)
        return
    samples = generate_images(trained, 64 if n is None else n, seed)
    write_images(samples, output, f"samples of {_whose(trained)}")
    out.print(f"{counted(len(samples), 'sample')} of {_whose(trained)} -> {output}",
              highlight=False, soft_wrap=True)
