"""Which searched ranges the best trials crowd against (`search.advice`)."""
from __future__ import annotations

import math

import optuna
import pytest
import yaml

from hypersweep.search.advice import TRIALS_MIN, crowded_end_notes, crowded_ends
from hypersweep.search.config import parse_config
from hypersweep.spaces import parse_space
from tests.conftest import ROOT

SPACE = parse_space(yaml.safe_load("""
lr:      {loguniform: [1.0e-4, 1.0e-1]}
width:   {intlog: [16, 512]}
depth:   {int: [1, 3]}
dropout: {uniform: [0.0, 0.5]}
optimizer:
  choice:
    sgd:  {momentum: {uniform: [0.0, 0.9]}}
    adam: {}
"""))


def study_of(score, n: int = 40, seed: int = 0, direction: str = "maximize") -> optuna.Study:
    """`n` random trials over SPACE, each valued by `score(params)`."""
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed))
    for _ in range(n):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1e-1, log=True)
        t.suggest_int("width", 16, 512, log=True)
        t.suggest_int("depth", 1, 3)
        t.suggest_float("dropout", 0.0, 0.5)
        if t.suggest_categorical("optimizer", ["sgd", "adam"]) == "sgd":
            t.suggest_float("momentum", 0.0, 0.9)
        study.tell(t, score(t.params))
    return study


def ends(study: optuna.Study, direction: str = "maximize") -> dict[str, tuple[str, object]]:
    """Each noted range's end, and the farthest value past it."""
    return {e.key: (e.end, e.beyond[0]) for e in crowded_ends(SPACE, study.trials, direction)}


def test_a_score_that_grows_past_a_range_s_end_is_named_with_a_wider_end():
    # lr: the higher the better, past the range; the rest does not matter
    assert ends(study_of(lambda p: math.log(p["lr"]))) == {"space.lr": ("high", 0.2)}
    # width: the fewer the better, below 16 (an intlog range: halved)
    assert ends(study_of(lambda p: -p["width"]), "maximize") == {"space.width": ("low", 8)}
    # minimized: a loss that falls as dropout rises (a linear range: a quarter wider)
    assert ends(study_of(lambda p: 1 - p["dropout"], direction="minimize"), "minimize") == {
        "space.dropout": ("high", 0.625)}


def test_a_range_inside_a_branch_is_named_by_its_key_and_branch():
    study = study_of(lambda p: p.get("momentum", 0.0) + (p["optimizer"] == "sgd"))
    [end] = crowded_ends(SPACE, study.trials, "maximize")
    assert end.key == "space.optimizer.choice.sgd.momentum" and end.end == "high"
    assert end.branch == {"optimizer": "sgd"} and end.best == study.best_params["momentum"]
    assert end.note().startswith(
        "space.optimizer.choice.sgd.momentum: the best trials sit at the top of the searched "
        f"range [0, 0.9] (the best: {end.best:.4g}); a better value may lie above it: widen "
        "the range (to 1.125, say)")


def test_no_note_without_a_pattern_or_enough_trials():
    # a best in the middle, and a score that ignores every range
    assert ends(study_of(lambda p: -abs(math.log10(p["lr"]) + 2.5))) == {}
    assert ends(study_of(lambda p: hash(repr(p)) % 1000)) == {}
    # too few complete trials to say; failed ones do not count
    study = study_of(lambda p: math.log(p["lr"]), n=TRIALS_MIN - 1)
    assert ends(study) == {}
    for _ in range(3):
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    assert ends(study) == {}


def test_the_values_past_an_end_stay_on_its_side_of_zero_and_on_the_int_grid():
    """A width or a learning rate is never proposed below 0 (a width of -3 was), a
    momentum gets a nearer value than 1.125 to try, and an int stays >= 1."""
    from hypersweep.search.advice import _beyond
    from hypersweep.spaces.language import Float, Int
    assert _beyond(Float(1e-5, 1e-4), "low") == pytest.approx((5e-6, 7.5e-6))   # not < 0
    assert _beyond(Float(0.05, 0.5), "low") == pytest.approx((0.025, 0.0375))
    assert _beyond(Float(0.0, 0.5), "low") == (-0.125, -0.0625)      # 0 is not above 0
    assert _beyond(Float(0.5, 0.9), "high") == pytest.approx((1.0, 0.95))
    assert _beyond(Int(1, 16), "low") == ()                        # 0 channels: not a size
    assert _beyond(Int(2, 16), "low") == (1,)
    assert _beyond(Int(16, 128, step=16), "high") == (160, 144)
    assert _beyond(Int(32, 256, log=True), "low") == (16, 24)


def test_trials_tied_at_the_best_value_say_nothing():
    """Every trial scoring the same: the 'best' ones were the first to run."""
    study = study_of(lambda p: 1.0)
    assert ends(study) == {}
    assert ends(study_of(lambda p: round(math.log10(p["lr"])) >= -1)) == {}     # 0/1, many ties


def test_an_int_range_of_few_values_is_left_out():
    """depth [1, 3]: one value in three is an end, and the best trials sit there
    by chance as often as not."""
    assert ends(study_of(lambda p: p["depth"])) == {}


@pytest.mark.parametrize("score, named", [
    (lambda p: math.log(p["lr"]), ["space.lr"]),
    # dropout can go no lower than 0: no wider range to try
    (lambda p: -p["dropout"], []),
    # momentum can be no higher than 1: 1.125 is refused, 1.0125 is not taken either
    # (momentum < 1), and the note is left out
    (lambda p: p.get("momentum", 0.0) + (p["optimizer"] == "sgd"), []),
])
def test_notes_only_where_the_range_can_be_widened(score, named):
    raw = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    raw["space"] = {"lr": {"loguniform": [1e-4, 1e-1]}, "dropout": {"uniform": [0.0, 0.5]},
                    "width": {"intlog": [16, 512]}, "depth": {"int": [1, 3]},
                    "optimizer": {"choice": {"sgd": {"momentum": {"uniform": [0.0, 0.9]}},
                                             "adam": {}}}}
    cfg = parse_config(raw)
    notes = crowded_end_notes(cfg, study_of(score).trials)
    assert [n.split(":")[0] for n in notes] == named
    # several objectives: a Pareto front has no best trial to place
    raw["search"]["objective"] = [{"metric": "val_accuracy", "direction": "maximize"},
                                  {"metric": "param_count", "direction": "minimize"}]
    raw["search"]["strategy"] = "nsga2"
    assert crowded_end_notes(parse_config(raw), study_of(score).trials) == []
