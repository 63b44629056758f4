"""check_against: a space against hand-built hyperparameters (independent of models/)."""
from __future__ import annotations

from typing import Literal, Optional

import pytest

from hypersweep.models.errors import UserError
from hypersweep.models.registry import HParam
from hypersweep.spaces import check_against, parse_space

Activation = Literal["relu", "tanh", "elu"]

HPARAMS = {
    "lr": HParam("lr", float, 1e-3),
    "momentum": HParam("momentum", float, 0.0),
    "weight_decay": HParam("weight_decay", Optional[float], None),
    "clip": HParam("clip", float, 1.0),
    "depth": HParam("depth", int, 2),
    "width": HParam("width", int, 64),
    "activation": HParam("activation", Activation, "relu", ("relu", "tanh", "elu")),
    "batch_norm": HParam("batch_norm", bool, False),
    "optimizer": HParam("optimizer", str, "adam"),
    "channels": HParam("channels", tuple[int, ...], (32, 64)),
}


def error_of(raw) -> str:
    with pytest.raises(UserError) as info:
        check_against(parse_space(raw), HPARAMS)
    return str(info.value)


def test_a_valid_space_passes():
    check_against(parse_space({
        "lr": {"loguniform": [1e-4, 1e-1]},
        "weight_decay": {"loguniform": [1e-6, 1e-2]},
        "depth": {"int": [1, 4]},
        "clip": {"int": [1, 5]},                      # int distribution on a float: fine
        "width": {"intlog": [16, 512]},
        "activation": {"choice": ["relu", "tanh"]},
        "batch_norm": {"choice": [True, False]},
        "channels": {"fixed": [16, 32]},
        "optimizer": {"choice": {"sgd": {"momentum": {"uniform": [0, 0.9]}}, "adam": {}}},
    }), HPARAMS)


def test_unknown_name_suggests_the_closest():
    assert error_of({"dept": {"int": [1, 4]}}) == (
        "space.dept: unknown hyperparameter 'dept' (did you mean 'depth'?); valid: activation, "
        "batch_norm, channels, clip, depth, lr, momentum, optimizer, weight_decay, width")


def test_unknown_name_inside_a_branch_names_its_path():
    message = error_of({"optimizer": {"choice": {"sgd": {"momentun": {"uniform": [0, 1]}}}}})
    assert message.startswith("space.optimizer.choice.sgd.momentun: unknown hyperparameter "
                              "'momentun' (did you mean 'momentum'?)")


@pytest.mark.parametrize("raw, expected", [
    ({"depth": {"uniform": [1, 4]}}, "space.depth: depth is int; use int or intlog, not uniform"),
    ({"width": {"loguniform": [16, 512]}},
     "space.width: width is int; use int or intlog, not loguniform"),
    ({"optimizer": {"uniform": [0, 1]}},
     "space.optimizer: optimizer is str; use choice or fixed, not uniform"),
    ({"batch_norm": {"int": [0, 1]}},
     "space.batch_norm: batch_norm is bool; use choice or fixed, not int"),
    ({"channels": {"int": [1, 2]}},
     "space.channels: channels is tuple[int, ...]; use choice or fixed, not int"),
    ({"activation": {"int": [0, 2]}},
     "space.activation: activation is 'relu' | 'tanh' | 'elu'; use choice or fixed, not int"),
])
def test_distribution_must_fit_the_type(raw, expected):
    assert error_of(raw) == expected


def test_bad_choice_for_a_literal_hparam():
    assert error_of({"activation": {"choice": ["relu", "tanhh"]}}) == (
        "space.activation: unknown value 'tanhh' (did you mean 'tanh'?); valid: elu, relu, tanh")


def test_bad_fixed_value_and_wrong_choice_type():
    assert error_of({"activation": "sigmoid"}).startswith(
        "space.activation: unknown value 'sigmoid'")
    assert error_of({"depth": {"choice": [1, "two"]}}) == (
        "space.depth: expected an integer, got text 'two'")


def test_conditional_branch_names_are_the_values():
    assert error_of({"activation": {"choice": {"relu": {}, "gelu": {}}}}).startswith(
        "space.activation: unknown value 'gelu'")
    assert error_of({"depth": {"choice": {"deep": {}}}}) == (
        "space.depth: expected an integer, got text 'deep'")
