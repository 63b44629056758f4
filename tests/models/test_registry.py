from __future__ import annotations

import dataclasses

import pytest

from models.errors import UserError
from models.registry import builder_names, get_builder, register
from models.train import TrainOptions, hyperparameters, training_hparams


def test_builtin_builders_are_registered():
    assert {"linear", "mlp"} <= set(builder_names())


def test_registering_a_name_twice_is_an_error():
    builder_names()   # loads the catalogue
    with pytest.raises(ValueError, match="already registered"):
        register("mlp")(lambda *, input_shape, n_outputs: None)


def test_unknown_builder_says_did_you_mean():
    with pytest.raises(UserError) as e:
        get_builder("mpl")
    assert str(e.value) == ("model: unknown builder 'mpl' (did you mean 'mlp'?); "
                            f"valid: {', '.join(builder_names())}")


def test_hyperparameters_are_one_flat_namespace():
    hp = hyperparameters("mlp")
    assert {"depth", "width", "activation", "lr", "optimizer", "epochs"} <= set(hp)
    assert hp["depth"].type is int and hp["depth"].default == 2
    assert hp["activation"].choices == ("relu", "leaky_relu", "prelu", "elu", "tanh",
                                        "sigmoid", "maxout", "linear")
    assert hp["optimizer"].choices == ("sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                                       "adam", "adamw")
    assert "input_shape" not in hp and "n_outputs" not in hp


def test_training_hparams_are_the_train_options():
    hp = training_hparams()
    fields = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
    assert {n: h.default for n, h in hp.items()} == fields
    assert hp["precision"].choices == ("fp32", "bf16")


def test_linear_has_no_hyperparameters_of_its_own():
    assert get_builder("linear").hyperparameters() == {}
    assert set(hyperparameters("linear")) == set(training_hparams())


def test_a_name_in_other_case_gets_its_did_you_mean():
    from models.errors import unknown
    assert str(unknown("builder", "MLP", ["mlp", "lenet"], key="model")) == (
        "model: unknown builder 'MLP' (did you mean 'mlp'?); valid: lenet, mlp")
