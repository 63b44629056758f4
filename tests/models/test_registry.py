from __future__ import annotations

import dataclasses
import sys
import typing

import numpy as np
import pytest

from hypersweep.models.errors import UserError
from hypersweep.models.registry import builder_names, check_value, get_builder, register
from hypersweep.models.train import TrainOptions, hyperparameters, training_hparams


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
    from hypersweep.models.errors import unknown
    assert str(unknown("builder", "MLP", ["mlp", "lenet"], key="model")) == (
        "model: unknown builder 'MLP' (did you mean 'mlp'?); valid: lenet, mlp")


OWN_NETS = '''
import os
from typing import Literal

from torch import nn

MARKS = None        # a folder where each build leaves its pid


def tiny(*, input_shape: tuple, n_outputs: int, width: int = 16,
         act: Literal["relu", "tanh"] = "relu") -> nn.Module:
    """Flatten, one hidden layer, a head."""
    if MARKS:
        open(os.path.join(MARKS, str(os.getpid())), "w").close()
    n = 1
    for d in input_shape:
        n *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n, width),
                         nn.ReLU() if act == "relu" else nn.Tanh(), nn.Linear(width, n_outputs))


class Conv(nn.Module):
    def __init__(self, *, input_shape: tuple, n_outputs: int, channels: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(input_shape[0], channels, 3, padding=1),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(channels, n_outputs))

    def forward(self, x):
        return self.net(x)


def three(*, input_shape, n_outputs, width: int = 8):
    n = 1
    for d in input_shape:
        n *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 3))


def boom(*, input_shape, n_outputs):
    raise RuntimeError("no kernels for this")


def no_default(*, input_shape, n_outputs, width): ...
def no_shapes(width: int = 3): ...
def not_a_net(*, input_shape, n_outputs):
    return 3


def returns_none(*, input_shape, n_outputs, width: int = 3):
    nn.Linear(width, n_outputs)


def only_wide(*, input_shape, n_outputs, width: int = 2):
    if width < 4:
        raise ValueError(f"width {width} is too narrow")
    return tiny(input_shape=input_shape, n_outputs=n_outputs, width=width)
CONST = 3
'''


def write_nets(folder, marks=None) -> str:
    path = folder / "nets.py"
    path.write_text(OWN_NETS.replace("MARKS = None", f"MARKS = {str(marks)!r}" if marks else
                                     "MARKS = None"))
    return str(path)


def test_a_builder_of_the_studys_own_is_read_from_its_file(tmp_path):
    """`model: nets.py:tiny`: a function (or an nn.Module class) written as the
    builders are, its typed keywords with defaults the hyperparameters."""
    nets = write_nets(tmp_path)
    b = get_builder(f"{nets}:tiny")
    assert (b.family, b.task) == ("own", "classification")     # fits the dataset's task
    hp = b.hyperparameters()
    assert list(hp) == ["width", "act"] and hp["act"].choices == ("relu", "tanh")
    assert b.build(input_shape=(1, 8, 8), n_outputs=10, width=5)[1].out_features == 5
    conv = get_builder(f"{nets}:Conv")
    assert list(conv.hyperparameters()) == ["channels"]
    assert get_builder(f"{nets}:tiny") is b         # loaded once per process
    assert "width" in hyperparameters(f"{nets}:tiny") and "lr" in hyperparameters(f"{nets}:tiny")


@pytest.mark.parametrize("name, message", [
    ("{nets}:tinny", "model: {nets}: unknown function 'tinny' (did you mean 'tiny'?); valid: "
                     "Conv, boom, no_default, no_shapes, not_a_net, only_wide, returns_none, "
                     "three, tiny"),
    ("{nets}:CONST", "model: {nets}:CONST is not a function (a value of type int)"),
    ("{nets}:no_default", "model: {nets}:no_default: hyperparameter 'width' of no_default "
                          "needs a default, which a study that does not set it takes"),
    ("{nets}:no_shapes", "model: no_shapes must take the keyword arguments input_shape (one "
                         "sample's shape) and n_outputs (the classes, or targets), as every "
                         "builder does; it lacks input_shape and n_outputs"),
    ("{tmp}/none.py:f", "model: {tmp}/none.py: no such file (FILE.py:FUNCTION or "
                        "MODULE:FUNCTION)"),
    ("no_such_module:f", "model: no module named 'no_such_module' here; give the file "
                         "(FILE.py:FUNCTION), or put its folder on PYTHONPATH"),
    ("{tmp}/broken.py:f", "model: {tmp}/broken.py fails to import: ValueError: set up wrong"),
    # A script's code at the top of the file, run as it is imported: its exit is ours.
    ("{tmp}/exits.py:f", "model: {tmp}/exits.py exits as it is imported: sys.exit(0); a model "
                         "file is imported, not run: put its script code under `if __name__ "
                         "== \"__main__\":`"),
    ("{tmp}/script.py:f", "model: {tmp}/script.py exits as it is imported: sys.exit(2) (an "
                          "argparse that read hypersweep's own command line); a model file is "
                          "imported, not run: put its script code under `if __name__ == "
                          "\"__main__\":`"),
    ("os:path", "model: os:path is not a function (a value of type module)"),
    (":f", "model: ':f' is neither a builder nor FILE.py:FUNCTION or MODULE:FUNCTION"),
])
def test_a_builder_of_ones_own_that_cannot_be_used_is_one_line(tmp_path, monkeypatch, name,
                                                              message):
    monkeypatch.setattr(sys, "argv", ["hypersweep", "validate", "study.yaml"])   # as run has it
    nets = write_nets(tmp_path)
    (tmp_path / "broken.py").write_text("import math\nraise ValueError('set up wrong')\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "script.py").write_text("import argparse\np = argparse.ArgumentParser()\n"
                                        "p.add_argument('--width')\nargs = p.parse_args()\n")
    with pytest.raises(UserError) as e:
        get_builder(name.format(nets=nets, tmp=tmp_path))
    assert str(e.value) == message.format(nets=nets, tmp=tmp_path)


@pytest.mark.parametrize("fn, message", [
    ("three", "model: {nets}:three gives outputs of shape (2, 3); classification on 'digits' "
              "needs 10 scores per sample (n_outputs) on the last axis"),
    ("boom", "model: {nets}:boom fails to build for dataset 'digits' (input_shape (1, 8, 8), "
             "n_outputs 10): RuntimeError: no kernels for this"),
    ("not_a_net", "model: {nets}:not_a_net returned int, not a torch.nn.Module"),
    ("returns_none", "model: {nets}:returns_none returned NoneType, not a torch.nn.Module (a "
                     "missing return?)"),
])
def test_a_builder_of_ones_own_that_cannot_fit_the_data_is_found_before_any_trial(
        tmp_path, fn, message):
    """A head of 3 classes on 10 passes a first step whose two targets are below 3."""
    from hypersweep.models.train import check_fit

    nets = write_nets(tmp_path)
    with pytest.raises(UserError) as e:
        check_fit(f"{nets}:{fn}", {"name": "digits"}, {})
    assert str(e.value) == message.format(nets=nets)


def test_a_builder_of_ones_own_failing_at_its_defaults_leaves_searched_values_to_the_trials(
        tmp_path):
    """`only_wide` raises at its default width 2; a study searching width from 2 to 8
    has trials that build. Fixed, the default fails every trial: one line."""
    from hypersweep.models.train import check_fit

    nets = write_nets(tmp_path)
    assert check_fit(f"{nets}:only_wide", {"name": "digits"}, {},
                     searched={"width"}) == "classification"
    with pytest.raises(UserError, match=r"fails to build .*ValueError: width 2 is too narrow"):
        check_fit(f"{nets}:only_wide", {"name": "digits"}, {})


def test_a_regression_head_of_the_wrong_size_is_found_before_any_trial(tmp_path):
    from hypersweep.models.train import check_fit

    nets = write_nets(tmp_path)
    with pytest.raises(UserError) as e:
        check_fit(f"{nets}:three", {"name": "diabetes"}, {})
    assert str(e.value) == (f"model: {nets}:three gives outputs of shape (2, 3); regression on "
                            "'diabetes' needs 1 value per sample (n_outputs)")


def test_a_builder_file_imports_the_modules_beside_it(tmp_path):
    """As `python nets.py` would: the file's folder is on the path."""
    (tmp_path / "blocks_beside.py").write_text(
        "from torch import nn\n\ndef head(n, k):\n    return nn.Linear(n, k)\n")
    (tmp_path / "net_with_blocks.py").write_text(
        "from torch import nn\nfrom blocks_beside import head\n\n"
        "def net(*, input_shape, n_outputs, width: int = 4):\n"
        "    return nn.Sequential(nn.Flatten(), head(64, n_outputs))\n")
    b = get_builder(f"{tmp_path / 'net_with_blocks.py'}:net")
    assert b.build(input_shape=(1, 8, 8), n_outputs=10)[1].out_features == 10


def test_a_file_without_its_function_or_a_module_that_is_a_file_here_says_what_to_write(
        tmp_path, monkeypatch):
    import sys

    write_nets(tmp_path)
    monkeypatch.chdir(tmp_path)
    # Other tests' builder files put their folders on the path, where a nets.py is.
    others = str(tmp_path.parent.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.startswith(others)])
    monkeypatch.delitem(sys.modules, "nets", raising=False)
    with pytest.raises(UserError) as e:
        get_builder("nets.py")
    assert str(e.value) == ("model: 'nets.py' names a file; add the function that builds the "
                            "net: nets.py:FUNCTION")
    with pytest.raises(UserError) as e:
        get_builder("nets:tiny")
    assert str(e.value) == "model: no module named 'nets' here; give the file: nets.py:FUNCTION"


def test_a_classs_own_docstring_is_shown_not_torchs(tmp_path):
    nets = write_nets(tmp_path)
    assert get_builder(f"{nets}:Conv").doc == ""
    assert get_builder(f"{nets}:tiny").doc == "Flatten, one hidden layer, a head."


MIGRATED = '''
import math
from torch import nn


def clashing(*, input_shape, n_outputs, lr: float = 0.1, epochs: int = 3):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))


def untyped(input_shape, n_outputs, width=16, dropout=0, act="relu", scale=0.5, extra=None):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(width, n_outputs))


def images_only(*, input_shape, n_outputs, ch: int = 4):
    return nn.Sequential(nn.Conv2d(1, ch, 3, padding=1), nn.Flatten(), nn.LazyLinear(n_outputs))
'''


def test_a_builder_keyword_named_as_a_training_option_is_one_line(tmp_path):
    """`lr` and `epochs` are the loop's: a builder taking them was a TypeError's
    traceback from validate and run (exit 1)."""
    (tmp_path / "moved.py").write_text(MIGRATED)
    with pytest.raises(UserError) as e:
        get_builder(f"{tmp_path}/moved.py:clashing")
    assert str(e.value) == (f"model: {tmp_path}/moved.py:clashing takes lr, epochs, the names of "
                            "training options that hypersweep's loop sets (params.lr is the "
                            "loop's); rename them in the builder (model_lr, say)")


def test_an_untyped_hyperparameter_takes_its_defaults_type(tmp_path):
    """Code moved over from a script has no type hints: `width=16` is an int, so a
    float range for it is refused before any trial (each failed inside torch)."""
    from hypersweep.spaces import check_against, parse_space

    (tmp_path / "moved.py").write_text(MIGRATED)
    hp = get_builder(f"{tmp_path}/moved.py:untyped").hyperparameters()
    assert {k: (h.type, h.inferred) for k, h in hp.items()} == {
        "width": (int, True), "dropout": (int, True), "act": (str, True),
        "scale": (float, True), "extra": (typing.Any, False)}
    check_against(parse_space({"width": {"int": [8, 64]}, "scale": {"uniform": [0.1, 0.9]},
                               "extra": {"choice": [1, "a"]}}), hp)
    with pytest.raises(UserError) as e:
        check_against(parse_space({"dropout": {"uniform": [0.0, 0.5]}}), hp)
    assert str(e.value) == ("space.dropout: dropout is int (no type hint: its default, 0, says "
                            "so; annotate it `dropout: float = 0.0` to search floats); use int "
                            "or intlog, not uniform")
    with pytest.raises(UserError) as e:
        check_value(hp["act"], 3, "params.act")
    assert str(e.value) == ("params.act: expected a string (no type hint on act: its default, "
                            "'relu', says so; annotate it in the builder to take others), got "
                            "3")


def test_a_model_of_ones_own_failing_at_its_defaults_is_noted(tmp_path):
    """A conv net on flat vectors, its channels searched: the trials are left to try
    their values, and validate and run say that the defaults fail."""
    from sklearn.datasets import load_digits

    from hypersweep.search.config import check_semantics, config_notes, parse_config
    (tmp_path / "moved.py").write_text(MIGRATED)
    digits = load_digits()
    np.savez(tmp_path / "flat.npz", x=(digits.data / 16).astype(np.float32), y=digits.target)
    cfg = parse_config({"study": "flat", "model": f"{tmp_path}/moved.py:images_only",
                        "data": {"name": "npz", "options": {"path": str(tmp_path / "flat.npz")}},
                        "space": {"ch": {"int": [2, 8]}}})
    check_semantics(cfg)            # what validate and run check first
    [note] = [n for n in config_notes(cfg) if n.startswith("model:")]
    assert note.startswith(f"model: {tmp_path}/moved.py:images_only fails at its defaults (ch=4) "
                           "on dataset 'npz' (input_shape (64,)): its first training step: "
                           "RuntimeError: ")
    assert note.endswith("; a trial whose values fail alike fails")
    on_images = parse_config({**cfg.model_dump(exclude={"data"}), "data": {"name": "digits"}})
    check_semantics(on_images)
    assert not [n for n in config_notes(on_images) if n.startswith("model:")]


def test_a_model_of_ones_own_with_lazy_layers_trains(tmp_path, run):
    """nn.LazyLinear takes its shape from a first forward pass: the optimizer was made
    before one, and every trial failed ("uninitialized parameter")."""
    (tmp_path / "lazy.py").write_text(
        "from torch import nn\n"
        "def lazy(*, input_shape, n_outputs, width: int = 16):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(),\n"
        "                         nn.LazyLinear(n_outputs))\n")
    result = run(model=f"{tmp_path}/lazy.py:lazy", epochs=2, batch_size=128)
    assert result.state.value == "COMPLETE", result.reason
    assert result.metrics["param_count"] == 64 * 16 + 16 + 16 * 10 + 10


def test_a_builder_that_calls_sys_exit_is_a_model_error_not_the_process_s_end(tmp_path):
    """validate and run ended with its status and no word (at a searched value, in
    the memory check)."""
    from hypersweep.models.train import check_fit

    (tmp_path / "quits.py").write_text(
        "import sys\nfrom torch import nn\n\n"
        "def quits(input_shape, n_outputs, width: int = 4):\n"
        "    if width > 2:\n        sys.exit(3)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_outputs))\n")
    with pytest.raises(UserError) as e:
        check_fit(f"{tmp_path}/quits.py:quits", {"name": "digits"}, {})
    assert str(e.value) == (f"model: {tmp_path}/quits.py:quits fails to build for dataset "
                            "'digits' (input_shape (1, 8, 8), n_outputs 10): ExitInModel: the "
                            "model's code called sys.exit(3)")
    assert check_fit(f"{tmp_path}/quits.py:quits", {"name": "digits"}, {"width": 2})
