"""Parent-run figures, drawn by Optuna's matplotlib visualisations.

`study_figures` is what the driver calls at study end and on resume; each figure
is optional (too few trials, a single objective missing) and is simply left out
when Optuna cannot draw it, so a report never fails a study.
"""
from __future__ import annotations

import io
import json
import warnings
from typing import Callable

import matplotlib

matplotlib.use("Agg")   # no display on workers and CI
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

Figure = Callable[[optuna.Study], object]


def varying_params(study: optuna.Study) -> list[str]:
    """Searched parameters that took more than one value among finished trials:
    a fixed one is a flat line that only crowds a parallel-coordinates plot."""
    seen: dict[str, set] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    return sorted(k for k, values in seen.items() if len(values) > 1)


def study_figures(study: optuna.Study) -> dict[str, bytes | str]:
    """PNG figures and the best trial's summary for the parent run."""
    single = len(study.directions) == 1
    figures: dict[str, Figure] = {}
    if single:
        figures["optimization_history.png"] = ovm.plot_optimization_history
        params = varying_params(study)
        if params:
            figures["parallel_coordinates.png"] = (
                lambda s: ovm.plot_parallel_coordinate(s, params=params))
    out: dict[str, bytes | str] = {}
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return out
    for name, draw in figures.items():
        png = _png(draw, study)
        if png is not None:
            out[name] = png
    if single:
        best = study.best_trial
        out["best_trial.json"] = json.dumps({"number": best.number, "value": best.value,
                                             "params": best.params,
                                             "mlflow_run_id": best.user_attrs.get("mlflow_run_id")},
                                            indent=2)
    return out


def _png(draw: Figure, study: optuna.Study) -> bytes | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # Optuna marks these plots experimental
        try:
            ax = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None     # e.g. importance needs at least two distinct completed trials
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(9, 5.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
