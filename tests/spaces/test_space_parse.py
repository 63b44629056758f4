"""Parsing the space language: every kind, and every error a user can make."""
from __future__ import annotations

import pytest
import yaml
from optuna.distributions import FloatDistribution

from hypersweep.models.errors import UserError
from hypersweep.spaces import (
    Categorical,
    Conditional,
    Fixed,
    Float,
    Int,
    describe,
    distributions,
    fixed_values,
    param_names,
    parse_space,
    to_raw,
)
from tests.conftest import DESIGN_SPACE


def parse_yaml(text: str):
    return parse_space(yaml.safe_load(text))


def error_of(raw, key: str = "space") -> str:
    with pytest.raises(UserError) as info:
        parse_space(raw, key)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ kinds

def test_every_kind_parses_to_its_dataclass():
    space = parse_space({
        "lr": {"loguniform": [1e-4, 0.1]},
        "dropout": {"uniform": [0, 0.5]},
        "depth": {"int": [1, 4]},
        "width": {"int": [16, 128], "step": 16},
        "units": {"intlog": [8, 512]},
        "act": {"choice": ["relu", "tanh", None, True, 3, 0.5]},
        "epochs": 30,
        "init": "he",
        "channels": {"fixed": [32, 64]},
    })
    assert space == {
        "lr": Float(1e-4, 0.1, log=True),
        "dropout": Float(0.0, 0.5),
        "depth": Int(1, 4),
        "width": Int(16, 128, step=16),
        "units": Int(8, 512, log=True),
        "act": Categorical(("relu", "tanh", None, True, 3, 0.5)),
        "epochs": Fixed(30),
        "init": Fixed("he"),
        "channels": Fixed([32, 64]),
    }
    assert list(space) == ["lr", "dropout", "depth", "width", "units", "act", "epochs",
                           "init", "channels"]
    assert isinstance(space["dropout"].low, float)


def test_design_example_with_conditional_branches():
    space = parse_yaml(DESIGN_SPACE)
    opt = space["optimizer"]
    assert isinstance(opt, Conditional)
    assert list(opt.branches) == ["sgd", "adam", "rmsprop"]
    assert opt.branches["sgd"] == {"momentum": Float(0.0, 0.99),
                                   "nesterov": Categorical((True, False))}
    assert opt.branches["rmsprop"] == {}
    assert param_names(space) == {"lr", "depth", "width", "dropout", "optimizer",
                                  "momentum", "nesterov", "beta2"}


def test_nested_conditionals_and_empty_branch_written_as_null():
    space = parse_yaml("""
    model:
      choice:
        cnn:
          block: {choice: {plain: ~, residual: {shortcut: {choice: [conv, identity]}}}}
        mlp:
    """)
    block = space["model"].branches["cnn"]["block"]
    assert block.branches["plain"] == {}
    assert block.branches["residual"]["shortcut"] == Categorical(("conv", "identity"))
    assert space["model"].branches["mlp"] == {}


def test_yaml_spellings_of_numbers():
    # PyYAML alone reads 1e-4 (no dot) as a string; a config's loader, as a number.
    from hypersweep.search.config import load_yaml
    space = parse_space(load_yaml("{lr: {loguniform: [1e-4, 1e-1]}, n: {int: [1, 1.0e+3]}}"))
    assert space["lr"] == Float(1e-4, 0.1, log=True)
    assert space["n"] == Int(1, 1000)
    assert isinstance(space["n"].high, int)


def test_same_definition_in_several_branches_is_one_parameter():
    space = parse_yaml("""
    optimizer:
      choice:
        sgd:     {momentum: {uniform: [0, 0.9]}}
        rmsprop: {momentum: {uniform: [0.0, 0.9]}}
        adam: {}
    """)
    assert param_names(space) == {"optimizer", "momentum"}


def test_round_trip_and_describe():
    space = parse_yaml(DESIGN_SPACE + "\nwidth2: {int: [16, 64], step: 16}\nact: relu\n")
    assert parse_space(to_raw(space)) == space
    text = describe(space)
    assert "lr: loguniform [0.0001, 0.1]" in text
    assert "width2: int [16, 64] step 16" in text
    assert "when optimizer=sgd:" in text and "momentum: uniform [0.0, 0.99]" in text
    assert "act: fixed 'relu'" in text


# ----------------------------------------------------------------- errors

@pytest.mark.parametrize("raw, expected", [
    ({"lr": {"loguniform": [0.0, 0.1]}},
     "space.lr: loguniform needs low > 0, got 0.0"),
    ({"lr": {"loguniform": [-1, 0.1]}},
     "space.lr: loguniform needs low > 0, got -1"),
    ({"depth": {"int": [4, 1]}},
     "space.depth: low (4) must be < high (1)"),
    ({"dropout": {"uniform": [0.5, 0.5]}},
     "space.dropout: low (0.5) must be < high (0.5)"),
    ({"width": {"intlog": [0, 64]}},
     "space.width: intlog needs low >= 1, got 0"),
    ({"width": {"intlg": [16, 512]}},
     "space.width: unknown distribution 'intlg' (did you mean 'intlog'?); "
     "valid: choice, fixed, int, intlog, loguniform, uniform"),
    ({"depth": {"integer": [1, 3]}},       # closer in spelling to intlog
     "space.depth: unknown distribution 'integer' (did you mean 'int'?); "
     "valid: choice, fixed, int, intlog, loguniform, uniform"),
    ({"act": {"categorical": ["relu", "tanh"]}},
     "space.act: unknown distribution 'categorical' (did you mean 'choice'?); "
     "valid: choice, fixed, int, intlog, loguniform, uniform"),
    ({"lr": {"loguniform": "abc"}},
     "space.lr.loguniform: expected [low, high] as numbers, got 'abc'"),
    ({"lr": {"loguniform": [1e-4]}},
     "space.lr.loguniform: expected [low, high] as numbers, got [0.0001]"),
    ({"lr": {"uniform": ["a", 1]}},
     "space.lr.uniform: expected [low, high] as numbers, got text 'a'"),
    ({"lr": {"uniform": [0, float("inf")]}},
     "space.lr.uniform: expected [low, high] as numbers, got [0, inf]"),
    ({"depth": {"int": [1, 2.5]}},
     "space.depth.int: expected [low, high] as integers, got [1, 2.5]"),
    ({"depth": {"int": [True, 4]}},
     "space.depth.int: expected [low, high] as integers, got [true, 4]"),
    ({"act": {"choice": []}},
     "space.act.choice: choice needs at least one value"),
    ({"opt": {"choice": {}}},
     "space.opt.choice: choice needs at least one branch"),
    ({"act": {"choice": "relu"}},
     "space.act.choice: expected a list of values or a mapping of branches, got 'relu'"),
])
def test_error_messages(raw, expected):
    assert error_of(raw) == expected


def test_extra_keys_are_errors():
    assert error_of({"lr": {"uniform": [0, 1], "step": 0.1}}) == (
        "space.lr: unexpected key 'step' beside uniform; only int takes an extra key (step)")
    assert error_of({"w": {"intlog": [1, 8], "step": 2}}).startswith(
        "space.w: unexpected key 'step' beside intlog")
    assert error_of({"w": {"int": [1, 8], "stpe": 2}}) == (
        "space.w: unknown key 'stpe' (did you mean 'step'?); valid: int, step")
    assert error_of({"w": {"int": [1, 8], "log": True}}).startswith("space.w: unknown key 'log'")


def test_step_errors():
    assert error_of({"w": {"int": [16, 130], "step": 16}}) == (
        "space.w: range 16..130 is not a whole number of steps of 16; use high 128 or 144")
    assert error_of({"w": {"int": [16, 128], "step": 0}}) == (
        "space.w.step: expected a positive integer, got 0")
    for bad, got in ((2.5, "2.5"), (True, "true"), ("16", "text '16'"), (-16.0, "-16.0")):
        assert error_of({"w": {"int": [16, 128], "step": bad}}) == (
            f"space.w.step: expected a positive integer, got {got}")


def test_a_step_written_as_a_whole_float_is_taken_as_the_range_ends_are():
    """YAML spells 16 as `16.0` or `1.6e+1` too; the range's ends take it, so does `step`."""
    assert parse_space({"w": {"int": [16.0, 64], "step": 16.0}}) == {"w": Int(16, 64, step=16)}


def test_spec_shape_errors():
    assert error_of({"lr": {"uniform": [0, 1], "loguniform": [1, 2]}}) == (
        "space.lr: give exactly one distribution, got uniform, loguniform")
    assert error_of({"lr": {}}).startswith("space.lr: empty spec; valid: choice, fixed")
    assert error_of({"lr": None}).startswith("space.lr: missing spec")
    assert error_of({"act": ["relu", "tanh"]}) == (
        "space.act: a bare list is ambiguous; write {choice: ['relu', 'tanh']} to search it "
        "or {fixed: ['relu', 'tanh']} to fix it")
    assert error_of(["lr"]) == "space: expected a mapping of name -> spec, got ['lr']"
    assert error_of({1: 2}) == "space: parameter names must be non-empty strings, got 1"


def test_choice_values_optuna_cannot_store_are_rejected():
    message = error_of({"shape": {"choice": [[1, 2], [3, 4]]}})
    assert message.startswith("space.shape.choice[0]: choice values must be bool, int, float, "
                              "str or null")
    assert "got list [1, 2]" in message
    assert error_of({"x": {"choice": ["a", {"b": 1}]}}).startswith("space.x.choice[1]:")


def test_duplicate_choice_values_are_rejected():
    assert error_of({"act": {"choice": ["relu", "tanh", "relu"]}}) == (
        "space.act.choice: duplicate value 'relu'")
    # Optuna finds a choice by ==, so True and 1 would be one choice.
    assert error_of({"x": {"choice": [1, True]}}) == (
        "space.x.choice: duplicate value True (equal to 1)")


def test_errors_inside_branches_name_the_full_path():
    raw = yaml.safe_load("""
    optimizer:
      choice:
        sgd: {momentum: {uniform: [0.9, 0.1]}}
    """)
    assert error_of(raw) == "space.optimizer.choice.sgd.momentum: low (0.9) must be < high (0.1)"
    assert error_of({"opt": {"choice": {"sgd": 3}}}) == (
        "space.opt.choice.sgd: expected a mapping of name -> spec, got 3")


def test_name_defined_differently_across_branches():
    raw = yaml.safe_load("""
    optimizer:
      choice:
        sgd:     {momentum: {uniform: [0.0, 0.9]}}
        rmsprop: {momentum: {uniform: [0.0, 0.5]}}
    """)
    assert error_of(raw) == (
        "space.optimizer.choice.rmsprop.momentum: 'momentum' is already searched differently "
        "at space.optimizer.choice.sgd.momentum; one name is one hyperparameter, searched "
        "alike in every branch (a branch may fix it instead)")


def test_branches_may_fix_a_name_their_own_way_or_where_another_searches_it():
    """The README's own idiom, `sgd: {momentum: 0.0}`, beside a branch searching
    momentum was refused: a fixed value is never suggested, so it has no Optuna
    distribution to disagree with."""
    space = parse_space(yaml.safe_load("""
    optimizer:
      choice:
        sgd:      {momentum: 0.0}
        momentum: {momentum: {uniform: [0.5, 0.99]}}
        rmsprop:  {momentum: 0.9}
    """))
    assert distributions(space)["momentum"] == FloatDistribution(0.5, 0.99)
    # Fixed at the top and searched in a branch: both would be active.
    raw = yaml.safe_load("""
    momentum: 0.9
    optimizer: {choice: {momentum: {momentum: {uniform: [0.5, 0.99]}}, adam: {}}}
    """)
    assert "both can be active in one trial" in error_of(raw)


def test_the_values_the_space_fixes_are_found_by_the_branch_they_hold_in():
    """A plain value, `{fixed: v}` and a choice of one value are the same in every
    trial that has the name: validation tries them on the data as fixed params."""
    space = parse_yaml("""
    head: many_to_many
    kernel: {fixed: 9}
    pool: {choice: [max]}
    lr: {loguniform: [1.0e-4, 1.0e-1]}
    act: {choice: [relu, tanh]}
    optimizer:
      choice:
        sgd: {momentum: 0.0, schedule: {choice: {step: {gamma: 0.5}}}}
        adam: {beta2: {choice: [0.99, 0.999]}}
    """)
    assert fixed_values(space) == {
        (): {"head": ("many_to_many", "space.head"), "kernel": (9, "space.kernel"),
             "pool": ("max", "space.pool")},
        (("optimizer", "sgd"),): {
            "momentum": (0.0, "space.optimizer.choice.sgd.momentum"),
            "schedule": ("step", "space.optimizer.choice.sgd.schedule")},   # one branch
        (("optimizer", "sgd"), ("schedule", "step")): {
            "gamma": (0.5, "space.optimizer.choice.sgd.schedule.choice.step.gamma")}}
    assert fixed_values(parse_yaml("lr: {uniform: [0.1, 0.2]}")) == {}


def test_name_active_twice_in_one_trial_is_rejected_even_if_identical():
    raw = yaml.safe_load("""
    lr: {loguniform: [1.0e-4, 1.0e-1]}
    optimizer: {choice: {sgd: {lr: {loguniform: [1.0e-4, 1.0e-1]}}, adam: {}}}
    """)
    assert error_of(raw) == (
        "space.optimizer.choice.sgd.lr: 'lr' is also defined at space.lr and both can be "
        "active in one trial; define it once")
    # Branches of two different conditionals can both be active too.
    raw = yaml.safe_load("""
    a: {choice: {x: {k: {int: [1, 3]}}, y: {}}}
    b: {choice: {x: {k: {int: [1, 3]}}, y: {}}}
    """)
    assert "both can be active" in error_of(raw)
    # Exclusive with the first definition, yet active together with the second.
    raw = yaml.safe_load("""
    a:
      choice:
        x: {k: {int: [1, 3]}}
        y: {k: {int: [1, 3]}, b: {choice: {p: {k: {int: [1, 3]}}, q: {}}}}
    """)
    assert error_of(raw) == ("space.a.choice.y.b.choice.p.k: 'k' is also defined at "
                             "space.a.choice.y.k and both can be active in one trial; "
                             "define it once")


def test_custom_key_prefix():
    assert error_of({"lr": {"loguniform": [0, 1]}}, key="defaults.mlp") == (
        "defaults.mlp.lr: loguniform needs low > 0, got 0")


@pytest.mark.parametrize("spec, message", [
    ({"lr": {"loguniform": ["1e-4", 0.03]}},
     "space.lr.loguniform: expected [low, high] as numbers, got text '1e-4'"),
    ({"lr": {"uniform": [0.0, "0.4"]}},
     "space.lr.uniform: expected [low, high] as numbers, got text '0.4'"),
    ({"width": {"int": ["8", 64]}},
     "space.width.int: expected [low, high] as integers, got text '8'"),
])
def test_a_range_s_quoted_ends_are_refused_as_text(spec, message):
    """QA: a float range took `["1e-4", 0.03]` where every other numeric key refuses
    a number in quotes."""
    assert error_of(spec) == message


@pytest.mark.parametrize("raw, lows", [
    ({"depth": {"int": [1, 3]}, "width": {"choice": [64, 8, "x"]}}, [{"depth": 1, "width": 8}]),
    ({"act": {"choice": {"relu": {"depth": 1}, "tanh": {"depth": 3}}}},
     [{"depth": 1}, {"depth": 3}]),
    # A branch that does not set a name leaves it out: the trial takes its default.
    ({"act": {"choice": {"relu": {"depth": {"int": [2, 4]}}, "tanh": {}}}, "width": 16},
     [{"depth": 2, "width": 16}, {"width": 16}]),
    # A nested conditional counts within its own branch only.
    ({"a": {"choice": {"x": {"b": {"choice": {"p": {"depth": 1}, "q": {"depth": 4}}}},
                       "y": {"depth": 2}}}},
     [{"depth": 1}, {"depth": 4}, {"depth": 2}]),
])
def test_trial_lows_are_the_least_whole_numbers_of_each_combination_of_branches(raw, lows):
    from hypersweep.spaces import trial_lows
    got = trial_lows(parse_space(raw))
    assert sorted(got, key=repr) == sorted(lows, key=repr)


def test_trial_lows_past_too_many_combinations_are_the_lows_over_all_branches():
    from hypersweep.spaces import lowest_whole_values, trial_lows
    space = parse_space({f"c{i}": {"choice": {"a": {f"n{i}": i + 1}, "b": {}, "c": {}}}
                         for i in range(8)})     # 3**8 = 6,561 combinations
    assert trial_lows(space) == [lowest_whole_values(space)] == [
        {f"n{i}": i + 1 for i in range(8)}]
    assert len(trial_lows(space, most=10_000)) == 3 ** 8
