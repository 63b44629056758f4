"""Parent-run figures from a real Optuna study."""
from __future__ import annotations

import json

import optuna

from search.report import study_figures, varying_params

PNG = b"\x89PNG"


def study_with(n: int, fixed_width: bool = True) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        t = study.ask()
        lr = t.suggest_float("lr", 1e-4, 1e-1, log=True)
        depth = t.suggest_int("depth", 1, 3)
        t.suggest_int("width", 32, 32 if fixed_width else 64)
        study.tell(t, lr * depth)
    return study


def test_figures_of_a_finished_study():
    study = study_with(8)
    files = study_figures(study)
    assert {"optimization_history.png", "parallel_coordinates.png",
            "best_trial.json"} <= set(files)
    assert all(files[k].startswith(PNG) for k in files if k.endswith(".png"))
    best = json.loads(files["best_trial.json"])
    assert best["number"] == study.best_trial.number and best["params"] == study.best_params


def test_only_varying_params_are_plotted():
    assert varying_params(study_with(5)) == ["depth", "lr"]
    assert varying_params(study_with(5, fixed_width=False)) == ["depth", "lr", "width"]


def test_no_completed_trial_no_figures():
    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    assert study_figures(study) == {}
