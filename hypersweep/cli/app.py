"""The `hypersweep` command line: parse, call search/, print."""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Column, Table

from hypersweep.models.errors import StoreFileGone, UserError
from hypersweep.search.writer import TrackingError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Hyperparameter search for deep learning: Optuna strategies, "
                       "Ray scheduling, MLflow tracking.")
PIPE_WIDTH = 160      # columns of output into a pipe or a file, where COLUMNS is not set


class WideWhenPiped(Console):
    """A console as wide as the terminal. Into a pipe or a file (a log, CI, `| less`)
    rich assumes 80 columns, which cuts study and metric names short ("val_acc…")
    and breaks lines mid-sentence; there it takes PIPE_WIDTH. COLUMNS, when set,
    decides in both cases. Decided at each use, as rich does: the same console
    may write to a terminal, then to a pipe (tests swap sys.stdout)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and "COLUMNS" not in os.environ:
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        if size.width < 1:      # COLUMNS=0 (`tput cols` without a terminal): rich printed nothing
            return ConsoleDimensions(80 if self.is_terminal else PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)

    def on_broken_pipe(self) -> None:
        """The reader went away (`hypersweep run study.yaml | head -1`): the rest of
        this stream's output is dropped and the command goes on to its end. rich's
        own handler exits at once with status 1, which would cut a study short mid-way."""
        self.quiet = True
        drop_output(self.file)


def drop_output(stream: Any) -> None:
    """Point the stream's file descriptor at /dev/null, for this process and the
    processes it starts from now on: writes after its reader went away succeed."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def reader_gone(stream: Any) -> bool:
    """Whether the stream is a pipe whose reader has closed it."""
    import select
    try:
        poll = select.poll()
        poll.register(stream.fileno(), select.POLLERR)
        return bool(poll.poll(0))
    except (OSError, ValueError, AttributeError):   # no file descriptor (tests), closed
        return False


def counted(n: int, word: str) -> str:
    """`1 trial`, `3 trials`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def natural_width(table: Table) -> int:
    """The columns a table takes when nothing in it is cut or wrapped."""
    return out.measure(table, options=out.options.update(max_width=10 ** 6)).maximum


# No markup by default: messages carry user text (paths, exception messages such as
# "shape [64, 10]") that rich would read as tags and drop. The few styled lines
# ask for markup and escape what they interpolate.
out = WideWhenPiped(markup=False)
err = WideWhenPiped(stderr=True, markup=False)


def versions() -> str:
    """This package's version and those of the libraries it drives (for bug
    reports), read from their metadata: nothing heavy is imported."""
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    libraries = ", ".join(f"{n} {of(n)}" for n in ("optuna", "mlflow", "ray", "torch"))
    return f"hypersweep {of('hypersweep')} ({libraries}; Python {sys.version.split()[0]})"


def _print_version(value: bool) -> None:
    if value:
        out.print(versions(), highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", metavar="", is_eager=True,
                                          callback=_print_version,
                                          help="Print the versions and exit.")) -> None:
    pass


ConfigArg = typer.Argument(..., help="Study config (YAML).", show_default=False, metavar="CONFIG")


# An integer as the command line writes one: not \d, to which `٣` is a digit.
_WHOLE = re.compile(r"\s*[-+]?[0-9]+\s*")


def whole_number(text: str | int) -> int:
    """An integer option's value, written as one: typer took `--trials 5.0` for 5
    (and refused `1e6`), where the config refuses `trials: 2.0`."""
    if isinstance(text, int):       # a default
        return text
    if not _WHOLE.fullmatch(text):
        raise typer.BadParameter(f"expected an integer, got {text!r}")
    return int(text)


def parallel_text(text: str) -> str:
    """--parallel's value as written, checked as the command line is parsed: a
    whole number (signed: `-1` is refused as the config's number is, must be >= 1)
    or `auto`."""
    if text.strip() != "auto" and not _WHOLE.fullmatch(text):
        raise typer.BadParameter(f"expected an integer or 'auto', got {text!r}")
    return text


def opt(metavar: str, help: str, *names: str, **kwargs):
    """An option with no default of its own (the config's value stands), shown in the
    help as `--trials N` rather than as its Python type."""
    return typer.Option(None, *names, metavar=metavar, help=help, **kwargs)


SetOpt = opt("KEY=VALUE", "Override any key: --set params.epochs=5 (repeatable).", "--set")


def user_errors(fn: Callable) -> Callable:
    """Bad input: one line on stderr, exit code 2, no traceback. A store failing in
    use: one line, exit code 1. Ctrl-C (SIGTERM): one line, exit code 130 (143). A
    fault that stopped a study (a bug): one line, and where its traceback is, exit 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from hypersweep.search.exit import StudyFailed, Terminated, stops_as_interrupt
        try:
            with stops_as_interrupt():      # SIGTERM as Ctrl-C, also while Ray starts
                return fn(*args, **kwargs)
        except StudyFailed as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", markup=True, highlight=False,
                      soft_wrap=True)
            if e.bug:
                err.print(f"the traceback, for a bug report (with hypersweep --version): "
                          f"{traceback_file(e)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except UserError as e:
            err.print(f"[red]error:[/red] {escape(_as_given(str(e), kwargs))}", markup=True,
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except BrokenPipeError:
            # A plain print (`best --json`) into a pipe whose reader went away: the
            # output nobody reads is dropped (click's own handler exits 1).
            if not reader_gone(sys.stdout):
                raise
            drop_output(sys.stdout)
            return None
        except (TrackingError, StorageFailed, StoreFileGone) as e:  # a store failed in use
            err.print(f"[red]error:[/red] {escape(_as_given(str(e), kwargs))}", markup=True,
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as e:
            failure = _storage_failure(e)
            if failure is None:
                raise
            # Before a study runs (in one, `resumable` says how to continue it)
            err.print("error: " + _as_given(f"{STORAGE_FAILED}: {failure}", kwargs),
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as stop:   # before a study's trials (they have their own)
            if isinstance(stop, Terminated):
                err.print(f"stopped by {signal.Signals(stop.signum).name}", highlight=False)
                raise typer.Exit(128 + stop.signum) from None
            # search.exit.Abandoned's: the status of the stop that came first, and how
            # to continue
            code, hint = getattr(stop, "code", 130), getattr(stop, "hint", None)
            by = "interrupted" if code == 130 else f"stopped by {signal.Signals(code - 128).name}"
            err.print(by + (f": {hint}" if hint else ""), highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
    return wrapper


def traceback_file(e: BaseException) -> str:
    """Write the traceback of `e` (with its cause) to a new file in the temporary
    directory; its path."""
    import tempfile
    import traceback
    fd, path = tempfile.mkstemp(prefix="hypersweep-error-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"{versions()}\n\n")
        f.write("".join(traceback.format_exception(e)))
    return path


def _as_given(message: str, options: dict[str, Any]) -> str:
    """An error about a config key that a command-line option set names the option:
    `--tracking-uri: no MLflow store at ...`, not the `tracking.uri` the user never
    wrote, also where the error names it beside another key (`tracking.storage: the
    same file as --tracking-uri`). Keys set in the config file or with --set keep
    their dotted name."""
    from hypersweep.search.config import NAMED_OVERRIDES
    for name, key in NAMED_OVERRIDES.items():
        if options.get(name) is not None:
            option = "--" + name.replace("_", "-")
            # A hint to `--set KEY=VALUE` cannot undo the option, which is applied after
            message = re.sub(rf"\(for (.*?) of a study that sets it: --set {re.escape(key)}=\S+\)",
                             rf"(for \1, leave out {option})", message)
            message = re.sub(rf"(?<![\w.-]){re.escape(key)}(?![\w.=])", option, message)
    return message


STORAGE_FAILED = "tracking.storage: the Optuna storage failed in use"


class StorageFailed(RuntimeError):
    """The Optuna storage failed while a study ran (its database server stopped)."""


@contextlib.contextmanager
def resumable(cfg):
    """The Optuna storage failing while study `cfg` runs: one line that says how to
    continue it, with the study's name and storage."""
    try:
        yield
    except (UserError, TrackingError):
        raise
    except Exception as e:
        failure = _storage_failure(e)
        if failure is None:
            raise
        from hypersweep.search.driver import resume_command
        raise StorageFailed(f"{STORAGE_FAILED}: {failure}; the trials left running are "
                            f"marked FAIL on resume; once it is back, continue with: "
                            f"{resume_command(cfg)}") from e


def _storage_failure(e: BaseException) -> str | None:
    """What went wrong, when `e` is the Optuna storage's database failing (a
    PostgreSQL server stopped mid-study: Optuna's chained tracebacks ran to 190
    lines), else None."""
    from hypersweep.models.errors import first_line
    from hypersweep.search.driver import storage_error
    cause = storage_error(e)
    return None if cause is None else first_line(cause)


def _load(config: Path, sets: list[str] | None, **named):
    from hypersweep.search.config import load_config
    return load_config(config, sets or (), **named)


# The options of `run` that set a config key; `validate` takes them too, so that it
# checks the very command line a user will run.
TrialsOpt = opt("N", "Number of trials (search.trials).", parser=whole_number)
StrategyOpt = opt("NAME", "Search strategy (search.strategy).")
SeedOpt = opt("N", "Study seed (search.seed).", parser=whole_number)
RunUriOpt = opt("URI", "MLflow tracking URI (tracking.uri).")
RunStorageOpt = opt("URL", "Optuna storage URL (tracking.storage).")
ExecutorOpt = opt("serial|ray", "Executor (resources.executor).")
ParallelOpt = opt("N|auto", "Trials at once (resources.parallel).", parser=parallel_text)
AddressOpt = opt("ADDR", "Ray cluster to join (resources.address).")
WarmStartOpt = opt("STUDY", "Seed the search with STUDY's finished trials (search.warm_start).",
                   "--warm-start")


@app.command()
@user_errors
def run(config: Path = ConfigArg,
        set_: Optional[List[str]] = SetOpt,
        trials: Optional[int] = TrialsOpt,
        strategy: Optional[str] = StrategyOpt,
        seed: Optional[int] = SeedOpt,
        tracking_uri: Optional[str] = RunUriOpt,
        storage: Optional[str] = RunStorageOpt,
        executor: Optional[str] = ExecutorOpt,
        parallel: Optional[str] = ParallelOpt,
        ray_address: Optional[str] = AddressOpt,
        warm_start: Optional[str] = WarmStartOpt,
        ) -> None:
    """Run a study: search its space, tracking every trial in MLflow."""
    from hypersweep.search import heap
    from hypersweep.search.writer import TrackingWriter

    heap.hold()         # released when the trials start (search/heap.py)

    with TrackingWriter() as tracker:     # imports MLflow in its process while we check
        cfg = _load(config, set_, trials=trials, strategy=strategy, seed=seed,
                    tracking_uri=tracking_uri, storage=storage, executor=executor,
                    parallel=_parallel(parallel), ray_address=ray_address,
                    warm_start=warm_start)
        from hypersweep.search.driver import check_stores
        from hypersweep.search.warmstart import warm_start_trials

        warm = warm_start_trials(cfg)       # an incompatible study fails before any store opens
        check_stores(cfg)
        outcome = drive(cfg, tracker, f"study [bold]{escape(cfg.study)}[/bold]: {cfg.model} "
                        f"on {cfg.data.name}, {cfg.search.strategy} search, "
                        f"{counted(cfg.search.trials, 'trial')}, {cfg.resources.executor} executor",
                        warm=warm)
    stopped(outcome, cfg)


def drive(cfg, tracker, header: str, resume: bool = False, done: int = 0, warm=None):
    """Run (or resume, `done` trials in) a study with the progress display, tracked
    by `tracker` (a TrackingWriter, opened here); then print its best trials, the
    parameters' importances and the command that opens the MLflow UI on its store.
    `header` (rich markup) is printed once the executor has started: bad input
    found while it starts (resources the Ray cluster lacks) is then one line alone.
    `warm`: the trials of `search.warm_start`, loaded already. The outcome."""
    from hypersweep.cli.progress import StudyProgress
    from hypersweep.search.driver import StudyDriver, check_no_parent, claim
    from hypersweep.search.executors import make_executor, start_up_work
    from hypersweep.search.store_template import sqlite_file, is_new

    outcome = None
    try:
        with StudyProgress(out, cfg, done=done) as progress, contextlib.ExitStack() as leased:
            # A store there already is opened first, to refuse a name it holds before
            # Ray starts; a new one after, so that a bad Ray address leaves none made.
            db = sqlite_file(cfg.tracking.uri)
            there = db is None or not is_new(db)
            if there:
                tracker.open(cfg.tracking.uri, wait=True, meanwhile=start_up_work(cfg))
                if not resume:
                    check_no_parent(cfg, tracker)
            # A resumed study's lease, before Ray starts and the header: of two resumes
            # started together, the one that lost says so in its one line alone.
            lease = leased.enter_context(claim(cfg)) if resume else None
            executor = make_executor(cfg, done)     # a bad Ray address fails before any store opens
            progress.print(header)
            runs_on = getattr(executor, "runs_on", None)   # the Ray cluster's size, trials at once
            if runs_on:
                progress.print(escape(runs_on))
            from hypersweep.search.config import config_notes
            for note in [*config_notes(cfg), *getattr(executor, "notes", ())]:   # resources got
                progress.notice(f"note: {note}", err)
            if not there:
                # Fails before the Optuna store opens. While the tracking process opens
                # it, this process imports what it will need: its core is idle meanwhile.
                tracker.open(cfg.tracking.uri, wait=True, meanwhile=start_up_work(cfg))
            with resumable(cfg):
                driver = StudyDriver(cfg, executor, tracker, events=progress, warm_trials=warm)
                outcome = driver.run(resume=resume, lease=lease)
        print_best(outcome.study, cfg)
        if not outcome.interrupted:     # a stopped study computes none
            print_importances(outcome.importances, outcome.study, cfg)
            print_range_notes(cfg, outcome.study.get_trials(deepcopy=False))
        out.print(f"\nMLflow UI for this store:\n  {ui_hint(cfg.tracking.uri)}", soft_wrap=True)
    except KeyboardInterrupt as stop:
        if outcome is None or outcome.interrupted:      # (a stopped study's is noted
            raise                                       # silently: a quitting Ctrl-C)
        # The study is complete in both stores: only its printout was cut short.
        from hypersweep.search.driver import password_note, storage_option
        from hypersweep.search.exit import Abandoned, Terminated
        best = f"hypersweep best {shlex.quote(cfg.study)}{storage_option(cfg)}"
        code = 128 + (stop.signum if isinstance(stop, Terminated) else signal.SIGINT)
        raise Abandoned(code, "the study is complete in its stores; its results: "
                        + best + password_note(best)) from None
    return outcome


def ui_hint(uri: str) -> str:
    """The command that opens the MLflow UI on the store at `uri`, its password
    masked, and how to give it."""
    from hypersweep.search.driver import password_note
    from hypersweep.search.tracking import ui_command
    ui = ui_command(uri)
    return ui + password_note(ui)


@app.command()
@user_errors
def validate(config: Path = ConfigArg,
             set_: Optional[List[str]] = SetOpt,
             trials: Optional[int] = TrialsOpt,
             strategy: Optional[str] = StrategyOpt,
             seed: Optional[int] = SeedOpt,
             tracking_uri: Optional[str] = RunUriOpt,
             storage: Optional[str] = RunStorageOpt,
             executor: Optional[str] = ExecutorOpt,
             parallel: Optional[str] = ParallelOpt,
             ray_address: Optional[str] = AddressOpt,
             warm_start: Optional[str] = WarmStartOpt,
             ) -> None:
    """Check a study config, with run's options, without running it or opening a store."""
    cfg = _load(config, set_, trials=trials, strategy=strategy, seed=seed,
                tracking_uri=tracking_uri, storage=storage, executor=executor,
                parallel=_parallel(parallel), ray_address=ray_address, warm_start=warm_start)
    # What run checks before it opens a store, as far as it can be told here: a
    # SQLite store's directory, and one trial's resources on this machine.
    from hypersweep.search.executors import check_fits_here
    from hypersweep.search.store_template import check_writable, sqlite_file
    for key in ("uri", "storage"):
        db = sqlite_file(getattr(cfg.tracking, key))
        if db is not None:
            check_writable(db, f"tracking.{key}")
    resource_notes = check_fits_here(cfg.resources)
    out.print(f"{config}: ok — study '{cfg.study}', model {cfg.model}, "
              f"{cfg.search.strategy} search, {counted(cfg.search.trials, 'trial')}")
    from hypersweep.search.config import config_notes
    # on stderr, as run's: `validate 2> notes.txt`
    for note in [*config_notes(cfg), *resource_notes]:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    if cfg.search.strategy == "grid":
        from hypersweep.spaces import grid_size, parse_space, spreads_a_range
        space, n = parse_space(cfg.space), cfg.search.grid_points
        spread = f" ({n} values per range)" if spreads_a_range(space, n) else ""
        out.print(f"grid size: {grid_size(space, n):,} points{spread}")


@app.command()
@user_errors
def models(name: Optional[str] = typer.Argument(None, help="A builder, or one of your own "
                                                 "(FILE.py:FUNCTION): show it in full.",
                                                 metavar="NAME", show_default=False)) -> None:
    """List the model builders (task, variants, hyperparameters), or show one in full."""
    from hypersweep.models.registry import builder_names, get_builder
    if name is not None:
        show_builder(get_builder(name, key="NAME"))
        return
    rows = []
    for b in map(get_builder, builder_names()):
        hps = "\n".join(f"{h.name}: {h.type_name} = {h.default!r}"
                         for h in b.hyperparameters().values())
        rows.append((b.name, task_shown(b.task), ", ".join(b.variants) or "-", hps or "-"))

    def table(narrow: dict[str, int]) -> Table:
        t = Table(*(Column(h, max_width=narrow.get(h)) for h in
                    ("builder", "task", "variants", "hyperparameters (type = default)")))
        for row in rows:
            t.add_row(*row)
        return t

    wide = table({})
    # The hyperparameters' lines are the longest: in a narrow terminal the task and
    # the variants wrap first, so that most of them stay on one line each.
    out.print(wide if natural_width(wide) <= out.width else table({"task": 14, "variants": 16}))
    out.print("Training options every builder shares (optimizer, lr, epochs, augment, ...): "
              "see hypersweep models NAME.")
    out.print("A model of your own: model: FILE.py:FUNCTION in a study (README: Your own "
              "model).")


def task_shown(task: str) -> str:
    """A builder's task as `models` shows it: a supervised builder trains whatever
    task its dataset poses (an rnn classifies seq_digits and regresses adding)."""
    return "supervised (the dataset's)" if task in ("classification", "regression") else task


def show_builder(b) -> None:
    """One builder: its doc, its hyperparameters, the training options, its default space."""
    import yaml

    from hypersweep.models.train import training_hparams
    from hypersweep.spaces.defaults import default_space
    out.print(f"[bold]{b.name}[/bold]  task: {task_shown(b.task)}  family: {b.family}  "
              f"variants: {', '.join(b.variants) or '-'}\n", markup=True)
    out.print(b.doc, highlight=False)
    for title, hps in (("hyperparameters", b.hyperparameters()),
                       ("training options", training_hparams())):
        table = Table("name", "type", "default", title=title, title_justify="left")
        for h in hps.values():
            table.add_row(h.name, h.type_name, repr(h.default))
        out.print(table)
    space = default_space(b.name)
    out.print("[bold]default space[/bold] (searched when a study gives no space):", markup=True)
    lines = [f"  {k}: {yaml.safe_dump(v, default_flow_style=True, sort_keys=False).strip()}"
             for k, v in space.items()]
    out.print("\n".join(lines) or "  (none)", highlight=False, markup=False, soft_wrap=True)


def _parallel(value: str | None) -> int | str | None:
    """--parallel as the config key takes it: a number or `auto`."""
    if value is None or value.strip() == "auto":
        return value
    return int(value)


def print_range_notes(cfg, trials) -> None:
    """On stderr, each searched range whose end the best trials crowd against. None
    where the values past an end cannot be checked any more (`best` on a study whose
    model file or data has gone since): advice, not a reason to fail."""
    from hypersweep.search.advice import crowded_end_notes
    try:
        notes = crowded_end_notes(cfg, trials)
    except UserError:
        return
    for note in notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)


def print_best(study, cfg, top: int | None = 5) -> list:
    """The `top` best trials (the Pareto front's first `top`, for several objectives);
    `top=None`: the best only, every trial tied at the best value, or the whole front.
    Returns the trials shown."""
    import optuna

    from hypersweep.search.config import as_count
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        out.print("no trial completed")
        return []
    objs = cfg.search.objectives
    if len(objs) == 1:
        sign = -1 if objs[0].direction == "maximize" else 1
        done.sort(key=lambda t: sign * t.values[0])
        if top is None:
            done = [t for t in done if t.values[0] == done[0].values[0]]
    else:
        done = study.best_trials
    front = len(done)
    done = done if top is None else done[:top]
    names = sorted({k for t in done for k in t.params})
    title = "best trials" if len(objs) == 1 else "Pareto front"
    if len(objs) > 1 and len(done) < front:
        title += f" ({len(done)} of {front})"
    rows = [(o.metric, [_fmt(as_count(o.metric, t.values[i])) for t in done])
            for i, o in enumerate(objs)]
    rows += [(n, [_fmt(t.params.get(n)) for t in done]) for n in names]
    table = Table("trial", *(name for name, _ in rows), title=title)
    for i, t in enumerate(done):
        table.add_row(_trial_label(t), *(values[i] for _, values in rows))
    if natural_width(table) > out.width:
        # Too many parameters for one line per trial: one line per parameter
        # instead, rather than names and values cut short.
        table = Table("", *(f"trial {_trial_label(t)}" for t in done), title=title)
        for name, values in rows:
            table.add_row(name, *values)
    out.print(table)
    return done


def _trial_label(trial) -> str:
    """`3`, or for a trial learnt from another study (--warm-start), not run
    here, `0 (from STUDY#N)`."""
    source = trial.user_attrs.get("warm_start_from")
    return f"{trial.number} (from {source})" if source else str(trial.number)




def print_importances(importances: dict[str, dict[str, float]], study, cfg) -> None:
    """fANOVA importances, one table per objective (already sorted, largest first),
    saying over how many complete trials: over a handful the shares are noise. An
    objective without them says why."""
    from hypersweep.search.importance import FEW_TRIALS, TRIALS_MAX
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    few = f"; a rough guide below {FEW_TRIALS}" if len(complete) < FEW_TRIALS else ""
    for i, metric in enumerate(o.metric for o in cfg.search.objectives):
        per = importances.get(metric)
        if not per:
            out.print(f"\nparameter importance ({metric}): none; {_no_importance(complete, i)}")
            continue
        # A title would wrap to the narrow table's width; a header line does not.
        over = (f"a random {TRIALS_MAX} of {len(complete)}" if len(complete) > TRIALS_MAX
                else str(len(complete)))
        out.print(f"\nparameter importance ({metric}, fANOVA over {over} complete "
                  f"trials{few}):")
        table = Table("parameter", "importance")
        for name, share in per.items():
            table.add_row(name, f"{share:.3f}")
        out.print(table)


def _no_importance(complete: list, objective: int) -> str:
    if len(complete) < 2:
        return f"fANOVA needs 2 complete trials, and {len(complete)} completed"
    if len({t.values[objective] for t in complete}) == 1:
        return (f"the {len(complete)} complete trials all have the same value, so there is "
                "no variance to split among the parameters")
    common = set.intersection(*(set(t.params) for t in complete))
    if common and all(len({repr(t.params[p]) for t in complete}) == 1 for p in common):
        shown = ", ".join(f"{p} {complete[0].params[p]}" for p in sorted(common))
        return (f"the parameters searched in every complete trial take one value in all "
                f"{len(complete)} ({shown}), so there is no variance to split")
    return "no searched parameter is set in every complete trial"


def stopped(outcome, cfg) -> None:
    """After a study stopped by Ctrl-C, SIGTERM or SIGHUP: say so, and how to
    continue it, and exit 130, 143 or 129."""
    if outcome.late_stop:
        err.print(f"note: the {outcome.late_stop} came once the last trial had ended; the "
                  "study is complete", soft_wrap=True, highlight=False)
    if outcome.interrupted:
        from hypersweep.search.driver import stop_hint
        by = "interrupted" if outcome.exit_code == 130 else \
            f"stopped by {signal.Signals(outcome.exit_code - 128).name}"
        err.print(f"{by}: {stop_hint(cfg)}", soft_wrap=True, highlight=False)
        raise typer.Exit(outcome.exit_code)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))


# Lifecycle and inspection commands (resume, rerun, replay, final, delete, studies,
# best, export) and ui live in modules of their own and register themselves on `app`.
from hypersweep.cli import lifecycle as _lifecycle  # noqa: E402,F401
from hypersweep.cli import ui as _ui  # noqa: E402,F401


def _plain_help_option(cls: type) -> type:
    """`cls` whose help option and arguments show no value type: typer gives them
    Python's, and the help screens read `--help  -h  <bool>`, as if the option took
    a value, and `STUDY  <str>  Study name.` Its usage line writes a required
    argument plainly, as the README and `error: missing argument 'CONFIG'` do:
    `hypersweep run [OPTIONS] CONFIG`, not typer's `{CONFIG}`."""
    class Plain(cls):
        def get_help_option(self, ctx):
            option = super().get_help_option(ctx)
            if option is not None:
                option.metavar = ""
            return option

        def get_params(self, ctx):
            params = super().get_params(ctx)
            for param in params:
                if isinstance(param, typer.core.TyperArgument):
                    param.display_type_rich = _no_type
                    if param.required:
                        param._usage_display_name = functools.partial(_usage_name, param)
            return params
    Plain.__name__ = cls.__name__
    return Plain


def _no_type(ctx) -> None:
    return None


def _usage_name(param: Any) -> str:
    return param.display_name_raw + ("..." if param.nargs != 1 else "")


app.info.cls = _plain_help_option(typer.core.TyperGroup)
for _command in app.registered_commands:
    _command.cls = _plain_help_option(_command.cls or typer.core.TyperCommand)


def main() -> None:
    """The `hypersweep` command. It ends without the interpreter's teardown (about
    a second, see search/exit.py) once its work is done and written."""
    from hypersweep.search.exit import exit_code, exit_now

    try:
        # Not standalone: click's usage errors come here, to be printed as ours are.
        code = app(prog_name="hypersweep", standalone_mode=False)
        code = code if isinstance(code, int) else 0     # typer.Exit's code, or None
    except typer.TyperException as e:     # click's, vendored by typer
        if type(e).__name__ != "NoArgsIsHelpError":     # else the help is printed
            err.print(usage_error(e), highlight=False, soft_wrap=True)
        code = e.exit_code
    except typer.Abort:
        err.print("aborted", highlight=False)
        code = 1
    except SystemExit as e:
        code = exit_code(e)
    exit_now(code)


def usage_error(e: typer.TyperException) -> str:
    """A usage error (an unknown option or command, a missing argument, a value of
    the wrong type) in one line, as bad input in a config is, with where to look:
    `error: no such option: --bogus (see hypersweep run --help)`."""
    ctx = getattr(e, "ctx", None)
    see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    from pydantic import ValidationError
    cause, param = e.__cause__, getattr(e, "param", None)
    if isinstance(e, typer.BadParameter) and param is not None and param.opts \
            and e.message.startswith("expected "):      # whole_number's
        return f"error: {max(param.opts, key=len)}: {e.message}{see}"
    if isinstance(cause, ValidationError) and param is not None and param.opts:
        # typer checks an option's type with pydantic, in pydantic's words ("Input
        # should be a valid integer, unable to parse string as an integer")
        from hypersweep.search.config import option_error
        return f"error: {option_error(max(param.opts, key=len), cause)}{see}"
    message = " ".join(e.format_message().split())
    message = message[:1].lower() + message[1:]
    return f"error: {message.rstrip('.')}{see}"


if __name__ == "__main__":
    # `python -m hypersweep.cli.app`: this module runs as __main__, but hypersweep/cli/lifecycle.py and
    # cli/ui.py register their commands on the `hypersweep.cli.app` module's app; run that one.
    from hypersweep.cli.app import main as _main
    sys.exit(_main())
