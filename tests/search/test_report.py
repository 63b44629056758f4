"""Parent-run figures from a real Optuna study."""
from __future__ import annotations

import json

import optuna

from hypersweep.models.figures import Drawing
from hypersweep.search.report import keep_integers, study_figures, study_files, varying_params

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


def test_a_study_of_two_objectives_has_its_pareto_front():
    """No single best trial: the front, each trial's values by metric, and its plot."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for x, y in ((0.9, 5.0), (0.5, 1.0), (0.4, 3.0), (0.95, 9.0)):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1e-1, log=True)
        t.set_user_attr("mlflow_run_id", f"run{t.number}")
        study.tell(t, (x, y))
    files = study_figures(study, ["val_accuracy", "param_count"])
    assert set(files) == {"pareto_front.json", "pareto_front.png"}
    assert files["pareto_front.png"].startswith(PNG)
    front = json.loads(files["pareto_front.json"])
    assert [t["number"] for t in front] == [0, 1, 3]      # trial 2 is dominated by trial 1
    assert front[1]["values"] == {"val_accuracy": 0.5, "param_count": 1.0}
    assert front[1]["mlflow_run_id"] == "run1" and set(front[1]["params"]) == {"lr"}


def test_the_study_figures_leave_the_process_style_as_it_was():
    """Optuna's plots switch matplotlib to its ggplot style; the trial figures a
    process draws after them (the tracking process draws both) keep the default."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    study_figures(study_with(8))
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.rcParams["axes.facecolor"] == "white"      # not ggplot's grey


def test_only_varying_params_are_plotted():
    assert varying_params(study_with(5)) == ["depth", "lr"]
    assert varying_params(study_with(5, fixed_width=False)) == ["depth", "lr", "width"]


def test_no_completed_trial_no_figures():
    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    assert study_figures(study) == {}


def test_the_table_and_figures_are_drawings_of_a_snapshot_made_elsewhere():
    """What the tracking process receives: pickled Drawings that make the same table
    and figures as the study itself, trial numbers, states and attributes included."""
    import pickle

    study = study_with(6)
    t = study.ask()
    t.suggest_float("lr", 1e-4, 1e-1, log=True)
    t.report(0.5, 1)
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    t = study.ask()
    t.set_user_attr("reason", "loss became nan")
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    files = pickle.loads(pickle.dumps(study_files(study)))
    assert isinstance(files["trials.csv"], Drawing) and isinstance(files["best_trial.json"], str)
    table = study.trials_dataframe()
    keep_integers(table, study.trials)      # as `export` writes them
    assert files["trials.csv"].render() == table.to_csv(index=False)
    assert ",3,0.0044" in files["trials.csv"].render()      # depth 3, not 3.0
    for name in ("optimization_history.png", "parallel_coordinates.png"):
        assert files[name].render().startswith(PNG)


def test_a_study_with_two_objectives_gets_its_table_but_no_single_objective_figures():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for x in (0.1, 0.5, 0.9):
        t = study.ask()
        study.tell(t, [t.suggest_float("x", 0, 1), x * 2])
    files = study_files(study)
    assert set(files) == {"trials.csv", "pareto_front.json", "pareto_front.png"}
    table = files["trials.csv"].render()
    assert table == study.trials_dataframe().to_csv(index=False) and "values_1" in table


def test_trials_csv_keeps_integer_params_of_one_branch_integers():
    """A param of one conditional branch (absent from the other's trials) was
    written `44.0` by pandas; `export` wrote 44. Both keep the integer now."""
    import io

    import pandas as pd

    from hypersweep.search.report import trials_csv

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    widths = []
    for i in range(4):
        t = study.ask()
        if t.suggest_categorical("optimizer", ["adam", "sgd"]) == "adam":
            widths.append(t.suggest_int("width", 16, 64))
        t.set_user_attr("seed", 1000 + i)
        study.tell(t, float(i))
    assert 0 < len(widths) < 4, "the seed gives both branches"
    text = trials_csv(study.get_trials(), study.directions)
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert [w for w in df["params_width"] if w] == [str(w) for w in widths]
    assert list(df["user_attrs_seed"]) == ["1000", "1001", "1002", "1003"]


def test_a_pareto_study_s_trials_csv_names_its_objectives():
    """values_0, values_1 and Optuna's NSGA-II bookkeeping column, where export
    names them value_<metric>."""
    import io

    import pandas as pd

    from hypersweep.search.report import trials_csv

    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)),
                   n_trials=3)
    df = pd.read_csv(io.StringIO(trials_csv(study.get_trials(), study.directions,
                                            ["val_accuracy", "param_count"])))
    assert {"value_val_accuracy", "value_param_count"} <= set(df.columns)
    assert not [c for c in df.columns if c.startswith(("values_", "system_attrs_"))]
    assert list(df["value_val_accuracy"]) == [t.values[0] for t in study.trials]


def test_the_study_figures_name_the_objective_by_its_metric():
    """Optuna labels the objective "Objective Value" unless told its name."""
    files = study_files(study_with(8), ["val_accuracy"])
    for name in ("optimization_history.png", "parallel_coordinates.png"):
        drawing = files[name]
        assert drawing.kwargs["target_name"] == "val_accuracy"
        assert drawing.render().startswith(PNG)


def test_the_study_figures_keep_their_labels_inside_the_picture():
    """Laid out to fit: a long parameter name (the x labels slant down and left) and
    a long objective name leave the picture's outer frame blank, nothing cut off."""
    import io

    import numpy as np
    from matplotlib.image import imread

    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        t = study.ask()
        t.suggest_float("a_long_hyperparameter_name_for_the_axis", 1e-5, 1e-1, log=True)
        t.suggest_float("x", 0, 1)
        study.tell(t, t.params["x"])
    files = study_files(study, ["validation_cross_entropy_of_the_model"])
    for name in ("optimization_history.png", "parallel_coordinates.png"):
        pixels = imread(io.BytesIO(files[name].render()))
        frame = np.concatenate([pixels[:4].reshape(-1, 4), pixels[-4:].reshape(-1, 4),
                                pixels[:, :4].reshape(-1, 4), pixels[:, -4:].reshape(-1, 4)])
        assert (frame == frame[0]).all(), f"{name}: something is drawn at the picture's edge"


def test_parallel_coordinates_of_many_trials_draw_the_best_and_say_so(monkeypatch):
    """2,000 lines filled the plot: past PARALLEL_LINES complete trials it draws the
    best of them (the pruned and failed ones are not drawn either way), titled so."""
    from hypersweep.search import report

    monkeypatch.setattr(report, "PARALLEL_LINES", 5)
    study = study_with(12)
    t = study.ask()
    t.suggest_float("lr", 1e-4, 1e-1, log=True)
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    drawing = study_files(study, ["val_accuracy"])["parallel_coordinates.png"]
    trials = drawing.args[1]
    best = sorted((t.value for t in study.trials if t.value is not None), reverse=True)[:5]
    assert sorted((t.value for t in trials), reverse=True) == best
    assert [t.number for t in trials] == sorted(t.number for t in trials)   # in study order
    assert drawing.kwargs["title"] == ("Parallel Coordinate Plot: the best 5 of 12 complete "
                                       "trials")
    assert drawing.render().startswith(PNG)
    minimizing = optuna.create_study(direction="minimize")
    minimizing.add_trials(study.trials)
    lowest = sorted(t.value for t in study.trials if t.value is not None)[:5]
    drawn = study_files(minimizing)["parallel_coordinates.png"].args[1]
    assert sorted(t.value for t in drawn) == lowest
    few = study_files(study_with(5))["parallel_coordinates.png"]    # all of them, Optuna's title
    assert len(few.args[1]) == 5 and few.kwargs["title"] is None


def test_importance_of_a_large_study_is_fitted_to_a_seeded_sample(monkeypatch):
    """fANOVA's cost grows with the trials (25 s of CPU at 2,000, at the end of every
    run and resume): past TRIALS_MAX it sees a random sample, the same for a seed."""
    from hypersweep.search import importance
    from hypersweep.search.config import Objective

    seen: list[list[float]] = []           # the trials fitted, by their lr
    fit = optuna.importance.get_param_importances

    def spy(study, **kwargs):
        seen.append([t.params.get("lr") for t in study.trials])
        return fit(study, **kwargs)

    monkeypatch.setattr(optuna.importance, "get_param_importances", spy)
    monkeypatch.setattr(importance, "TRIALS_MAX", 30)
    study = study_with(80)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    objective = [Objective(metric="val_accuracy", direction="maximize")]
    imps = importance.param_importances(study, objective, seed=3)
    assert max(imps["val_accuracy"], key=imps["val_accuracy"].get) == "lr"
    again = importance.param_importances(study, objective, seed=3)
    importance.param_importances(study, objective, seed=4)
    assert again == imps
    lrs = [t.params["lr"] for t in study.trials[:80]]
    assert len(seen[0]) == 30 and len(set(seen[0])) == 30 and set(seen[0]) <= set(lrs)
    assert seen[0] == sorted(seen[0], key=lrs.index)        # in trial order
    assert seen[1] == seen[0] and seen[2] != seen[0]
    monkeypatch.setattr(importance, "TRIALS_MAX", 500)
    importance.param_importances(study, objective, seed=3)
    assert len(seen[3]) == 81                   # every trial, the failed one too
