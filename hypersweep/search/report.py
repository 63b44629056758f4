"""Parent-run figures, drawn by Optuna's matplotlib visualisations.

`study_files` is what the driver logs at study end and on resume: the trials
table and the figures go to the tracking process as `Drawing`s of a snapshot of
the trials, and are made there. Each figure is optional (too few trials, a single
objective missing) and is simply left out when Optuna cannot draw it, so a report
never fails a study.
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from typing import Any, Callable, Sequence

import optuna

from hypersweep.models.figures import Drawing, artifact_bytes

Figure = Callable[[optuna.Study], object]


def varying_params(study: optuna.Study) -> list[str]:
    """Searched parameters that took more than one value among finished trials:
    a fixed one is a flat line that only crowds a parallel-coordinates plot."""
    seen: dict[str, set] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    return sorted(k for k, values in seen.items() if len(values) > 1)


def study_files(study: optuna.Study, metrics: Sequence[str] = ()) -> dict[str, Drawing | str]:
    """The parent run's artifacts: the trials table, the figures and the best trial
    (with several objectives, `metrics`, the Pareto front and its plot). The table
    and the figures are `Drawing`s of a snapshot of the trials, so that the
    tracking process makes them (off the driver's path, on a spare core); a figure
    Optuna cannot draw comes out as None and is left out."""
    trials = tuple(study.get_trials(deepcopy=False))
    directions = tuple(study.directions)
    files: dict[str, Drawing | str] = {"trials.csv": Drawing(trials_csv, (trials, directions),
                                                             {"metrics": tuple(metrics)})}
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        return files
    if len(directions) == 1:
        # The objective by its metric's name, not Optuna's "Objective Value".
        named = {"target_name": metrics[0]} if metrics else {}
        files["optimization_history.png"] = Drawing(figure_png, ("history", trials, directions),
                                                    named)
        params = varying_params(study)
        if params:
            drawn, title = best_lines(trials, directions[0])
            files["parallel_coordinates.png"] = Drawing(
                figure_png, ("parallel", drawn, directions),
                {"params": params, "title": title, **named})
        best = study.best_trial
        files["best_trial.json"] = json.dumps({"number": best.number, "value": best.value,
                                               "params": best.params, **_run_of(best)}, indent=2)
    else:
        names = list(metrics) or [f"objective_{i}" for i in range(len(directions))]
        files["pareto_front.json"] = json.dumps([
            {"number": t.number, "values": dict(zip(names, t.values)), "params": t.params,
             **_run_of(t)} for t in study.best_trials],
            indent=2)
        if len(directions) <= 3:        # Optuna plots fronts of two or three objectives
            files["pareto_front.png"] = Drawing(figure_png, ("pareto", trials, directions),
                                                {"target_names": names})
    return files


def _run_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Where a trial's run is: its MLflow run id, or for one warm-started from another
    study (which has no run in this one) that study's trial, `STUDY#N`."""
    out = {"mlflow_run_id": trial.user_attrs.get("mlflow_run_id")}
    if "warm_start_from" in trial.user_attrs:
        out["warm_start_from"] = trial.user_attrs["warm_start_from"]
    return out


PARALLEL_LINES = 100
STUDY_FIGURE_SIZE = (9.0, 5.5)    # inches
STUDY_FIGURE_DPI = 90


def best_lines(trials: Sequence[optuna.trial.FrozenTrial],
               direction: optuna.study.StudyDirection) -> tuple[tuple, str | None]:
    """The trials a parallel-coordinates plot draws, and its title when they are not
    all the complete ones: past `PARALLEL_LINES`, the lines fill the plot (2,000
    trials drew a solid block), so it draws the best `PARALLEL_LINES` of them and
    its title says so."""
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) <= PARALLEL_LINES:
        return tuple(trials), None
    sign = -1 if direction == optuna.study.StudyDirection.MAXIMIZE else 1
    best = sorted(done, key=lambda t: (sign * t.value, t.number))[:PARALLEL_LINES]
    return (tuple(sorted(best, key=lambda t: t.number)),
            f"Parallel Coordinate Plot: the best {PARALLEL_LINES} of {len(done):,} "
            "complete trials")


def study_figures(study: optuna.Study, metrics: Sequence[str] = ()) -> dict[str, bytes | str]:
    """The figures and the best trial of `study_files`, drawn here."""
    drawn = {name: artifact_bytes(content) for name, content in study_files(study, metrics).items()
             if name != "trials.csv"}
    return {name: content for name, content in drawn.items() if content is not None}


def trials_csv(trials: Sequence[optuna.trial.FrozenTrial],
               directions: Sequence[optuna.study.StudyDirection],
               metrics: Sequence[str] = ()) -> str:
    """Optuna's trials table of the study these trials come from, its integer
    columns kept integers (`keep_integers`); several objectives' values named by
    their metrics (`value_val_accuracy`, as `export` names them, not `values_0`);
    Optuna's own bookkeeping (`system_attrs_*`: a sampler's generation) left out."""
    df = snapshot(trials, directions).trials_dataframe()
    keep_integers(df, trials)
    if len(directions) > 1 and len(metrics) == len(directions):
        df = df.rename(columns={f"values_{i}": f"value_{m}" for i, m in enumerate(metrics)})
    df = df.drop(columns=[c for c in df.columns if c.startswith("system_attrs_")])
    return df.to_csv(index=False)


def keep_integers(df: Any, trials: Sequence[optuna.trial.FrozenTrial],
                  attrs: str = "user_attrs_") -> None:
    """Integer params and attributes (columns `params_*` and `{attrs}*` of Optuna's
    trials table) stay integers in rows that lack them (a warm-started trial has
    no seed, a trial of one branch not another branch's params): pandas would
    widen the column to float (`2.0`); a nullable integer column leaves those
    cells empty instead."""
    import pandas as pd

    values: dict[str, dict[int, Any]] = {}
    for t in trials:
        for prefix, named in (("params_", t.params), (attrs, t.user_attrs)):
            for name, value in named.items():
                values.setdefault(prefix + name, {})[t.number] = value
    for column, by_number in values.items():
        if column in df.columns and all(type(v) is int for v in by_number.values()):
            df[column] = pd.array([by_number.get(n) for n in df["number"]], dtype="Int64")


_PLOTS = {"history": "plot_optimization_history", "parallel": "plot_parallel_coordinate",
          "pareto": "plot_pareto_front"}


def figure_png(kind: str, trials: Sequence[optuna.trial.FrozenTrial],
               directions: Sequence[optuna.study.StudyDirection], title: str | None = None,
               **kwargs) -> bytes | None:
    """One of Optuna's plots of the study these trials come from (titled `title`
    rather than Optuna's title, if given), or None."""
    from optuna.visualization import matplotlib as ovm   # pyplot: only where drawn

    plot = getattr(ovm, _PLOTS[kind])

    def draw(study: optuna.Study) -> Any:
        ax = plot(study, **kwargs)
        if title is not None:
            ax.set_title(title, y=1.03)
        if kind == "history":       # trial numbers: 0, 1, 2, not 0.5, 1.5
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return ax

    return _png(draw, snapshot(trials, directions))


def snapshot(trials: Sequence[optuna.trial.FrozenTrial],
             directions: Sequence[optuna.study.StudyDirection]) -> optuna.Study:
    """An in-memory study holding these trials, numbered from 0 in the order given:
    as they were, for all of a study's."""
    study = _in_memory(directions)
    study.add_trials(trials)
    return study


def _in_memory(directions: Sequence[optuna.study.StudyDirection]) -> optuna.Study:
    # Without a line on stderr for each one made (Optuna logs new in-memory studies).
    logging.getLogger("optuna.storages._in_memory").setLevel(logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    storage.create_new_study(list(directions), "snapshot")
    return optuna.Study(study_name="snapshot", storage=storage)


def warm_up() -> None:
    """Make the table and both plots of a small study and throw them away: the first
    use pays for pandas' and Optuna's plotting imports and for matplotlib's math-text
    parser (log-scale tick labels), a few tenths of a second that a process which
    will draw them can pay while it waits."""
    study = _in_memory([optuna.study.StudyDirection.MAXIMIZE])
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "x": optuna.distributions.FloatDistribution(0, 1)}
    for lr, x in ((1e-3, 0.1), (1e-2, 0.9)):
        study.enqueue_trial({"lr": lr, "x": x})
        trial = study.ask(space)
        study.tell(trial, x)
    trials, directions = tuple(study.trials), tuple(study.directions)
    trials_csv(trials, directions)
    figure_png("history", trials, directions)
    figure_png("parallel", trials, directions, params=["lr", "x"])


def _png(draw: Figure, study: optuna.Study) -> bytes | None:
    import matplotlib
    matplotlib.use("Agg")   # no display on workers and CI
    import matplotlib.pyplot as plt

    # Optuna's plots switch the process's style to ggplot (plt.style.use); the
    # context puts the settings back, so that the trial figures drawn later in this
    # process look as they do anywhere else.
    with matplotlib.rc_context():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # Optuna marks these plots experimental
            try:
                ax = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                return None     # e.g. importance needs at least two distinct completed trials
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(*STUDY_FIGURE_SIZE)
            fig.set_dpi(STUDY_FIGURE_DPI)
            # Laid out to fit its labels on the renderer that then draws it: savefig's
            # bbox_inches="tight" measured them on a renderer of its own, parsing each
            # log-axis label's math text twice (a sixth of the study's end).
            fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=STUDY_FIGURE_DPI)
        plt.close(fig)
    return buf.getvalue()
