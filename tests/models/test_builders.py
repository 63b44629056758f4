"""Contract every registered builder meets; new builders are covered automatically."""
from __future__ import annotations

import itertools
import typing

import pytest
import torch

from hypersweep.models.errors import UserError
from hypersweep.models.mlp import mlp
from hypersweep.models.registry import builder_names, check_value, get_builder
from hypersweep.models.tasks import get_task

# One example batch per task: (input shape, n_outputs, target kind). A builder of a
# new task fails here until its task gets an entry, rather than going untested.
#   "label": a class per sample; "value": float targets (batch, n_outputs);
#   "tokens": a token per step, vocabulary n_outputs. Inputs of "onehot" tasks are
#   one-hot steps, of "ids" tasks token ids, otherwise uniform floats.
EXAMPLES = {
    "classification": ((1, 8, 8), 10, "label"),
    "regression": ((10,), 1, "value"),
    "sequence_transduction": ((6, 5), 5, "tokens"),
    "language_modelling": ((12,), 7, "tokens"),
}
# What each target kind's output looks like, given (batch, input shape, n_outputs).
OUTPUT_SHAPE = {
    "label": lambda n, shape, k: (n, k),
    "value": lambda n, shape, k: (n, k),
    "tokens": lambda n, shape, k: (n, shape[0], k),
}


def example(task: str) -> tuple[tuple[int, ...], int, str]:
    if task not in EXAMPLES:
        pytest.fail(f"add an example input for task '{task}' to EXAMPLES")
    return EXAMPLES[task]


def fake_batch(task: str, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    shape, n_out, kind = example(task)
    return batch_for(shape, n_out, kind, n)


def batch_for(shape: tuple[int, ...], n_out: int, kind: str,
              n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "tokens" and len(shape) == 1:            # token ids in, next tokens out
        return (torch.randint(0, n_out, (n, *shape), generator=g),
                torch.randint(0, n_out, (n, *shape), generator=g))
    if kind == "tokens":                                # one-hot steps in
        ids = torch.randint(0, shape[1], (n, shape[0]), generator=g)
        return (torch.nn.functional.one_hot(ids, shape[1]).float(),
                torch.randint(0, n_out, (n, shape[0]), generator=g))
    x = torch.rand((n, *shape), generator=g)
    if kind == "value":
        return x, torch.randn((n, n_out), generator=g)
    return x, torch.randint(0, n_out, (n,), generator=g)


def check_forward_and_step(name: str, shape: tuple[int, ...], n_out: int, kind: str,
                           task: str, **kwargs) -> None:
    """Eval-mode output shape, no NaN, and one training step that moves every weight."""
    torch.manual_seed(0)
    model = get_builder(name).build(input_shape=shape, n_outputs=n_out, **kwargs)
    x, y = batch_for(shape, n_out, kind)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == OUTPUT_SHAPE[kind](len(x), shape, n_out)
    assert torch.isfinite(out).all()
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    _, loss = get_task(task).training_step(model, x, y)
    assert torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert before and all(changed)


# Builders of the generative tasks meet their own contract in test_generative.py.
GENERATIVE = ("reconstruction", "generation")


@pytest.mark.parametrize("name", [n for n in builder_names()
                                  if get_builder(n).task not in GENERATIVE])
def test_builder_contract(name: str):
    builder = get_builder(name)
    for hp in builder.hyperparameters().values():   # every default is a valid value
        assert check_value(hp, hp.default, key=hp.name) == hp.default
    shape, n_out, kind = example(builder.task)
    check_forward_and_step(name, shape, n_out, kind, builder.task)


ACTIVATIONS = typing.get_args(typing.get_type_hints(mlp)["activation"])
INITS = typing.get_args(typing.get_type_hints(mlp)["init"])


@pytest.mark.parametrize("activation,init", itertools.product(ACTIVATIONS, INITS))
def test_every_activation_and_init_builds_and_trains(activation: str, init: str):
    torch.manual_seed(0)
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=2, width=16,
                activation=activation, init=init)
    x, y = fake_batch("classification")
    loss = get_task("classification").loss(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("residual,batch_norm,dropout",
                         itertools.product([False, True], [False, True], [0.0, 0.3]))
def test_residual_batch_norm_dropout_combinations(residual, batch_norm, dropout):
    torch.manual_seed(0)
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=3, width=16, residual=residual,
                batch_norm=batch_norm, dropout=dropout)
    x, _ = fake_batch("classification")
    assert torch.isfinite(model(x)).all()
    model.eval()   # eval mode is deterministic even with dropout
    assert torch.equal(model(x), model(x))
    n_bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert n_bn == (3 if batch_norm else 0)


@pytest.mark.parametrize("residual,batch_norm,dropout,activation",
                         [(False, False, 0.0, "relu"), (False, True, 0.3, "maxout"),
                          (True, True, 0.3, "prelu"), (True, False, 0.0, "tanh")])
def test_an_mlp_computes_what_its_layers_compute_in_turn(residual, batch_norm, dropout,
                                                         activation):
    """The MLP calls its hidden layers' modules itself: the output, the gradients
    and the state dict's names are those of each layer called in turn, in train
    mode (the same dropout draws from the same seed) and in eval mode, also after
    its layers are sliced off or replaced as a Sequential's."""
    torch.manual_seed(0)
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=3, width=16, residual=residual,
                batch_norm=batch_norm, dropout=dropout, activation=activation)
    x, _ = fake_batch("classification")

    def in_turn(layers, x):
        for layer in layers:
            x = layer(x)
        return x

    for train in (True, False):
        model.train(train)
        torch.manual_seed(1)
        ours = model(x)
        ours.sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        torch.manual_seed(1)
        theirs = in_turn(model.children(), x)
        theirs.sum().backward()
        assert torch.equal(ours, theirs)
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
        model.zero_grad()
    assert list(model.state_dict()) == list(torch.nn.Sequential(*model.children()).state_dict())
    model.eval()
    assert torch.equal(model[:2](x), in_turn(list(model.children())[:2], x))
    model[1] = torch.nn.Linear(64, 16)
    assert torch.equal(model(x), in_turn(model.children(), x))


def test_residual_skips_only_between_equal_widths():
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=3, width=16, residual=True)
    hidden = [m for m in model.modules() if type(m).__name__ == "HiddenLayer"]
    assert [h.residual for h in hidden] == [False, True, True]   # 64 -> 16 has no skip


def test_maxout_has_pieces_per_unit():
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=1, width=16,
                activation="maxout", maxout_pieces=3)
    assert model[1].linear.out_features == 48
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 10)


def test_depth_zero_is_softmax_regression():
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=0)
    assert sum(p.numel() for p in model.parameters()) == 64 * 10 + 10


def test_orthogonal_init_gives_orthogonal_rows():
    model = mlp(input_shape=(1, 8, 8), n_outputs=10, depth=1, width=16,
                activation="linear", init="orthogonal")
    w = model[1].linear.weight
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)


@pytest.mark.parametrize("kwargs,key", [({"depth": -1}, "depth"), ({"width": 0}, "width"),
                                        ({"dropout": 1.0}, "dropout")])
def test_bad_mlp_arguments_are_user_errors(kwargs, key):
    with pytest.raises(UserError, match=f"^params.{key}:"):
        mlp(input_shape=(1, 8, 8), n_outputs=10, **kwargs)


LAYER_COUNTS = [("mlp", "depth"), ("autoencoder", "depth"), ("vae", "depth"), ("gan", "depth"),
                ("rnn", "layers"), ("char_lm", "layers"), ("vgg", "blocks"),
                ("vgg", "convs_per_block"), ("inception", "modules"), ("resnet", "stages"),
                ("resnet", "blocks_per_stage")]


@pytest.mark.parametrize("name,knob", LAYER_COUNTS, ids=[f"{n}-{k}" for n, k in LAYER_COUNTS])
def test_layer_counts_stop_at_a_thousand(name, knob):
    """A depth of a billion is a typo: building it, to check it, hung `validate`."""
    from hypersweep.models.errors import OutOfRange
    from hypersweep.models.train import check_fit
    data = {"char_lm": {"name": "text", "options": {"max_chars": 3000}},
            "rnn": {"name": "seq_digits"}}.get(name, {"name": "digits"})
    with pytest.raises(OutOfRange, match=rf"^params.{knob}: must be <= 1000, got 1000000000$"):
        check_fit(name, data, {knob: 10**9}, searched=("lr",))


@pytest.mark.parametrize("width", [10**11, 10**30])
def test_a_size_past_what_torch_counts_is_named(width):
    """Weights past 2**63 overflowed torch's count: a traceback, or (with a builder
    hyperparameter searched) a pass, and every trial failed."""
    from hypersweep.models.train import check_fit
    with pytest.raises(UserError, match=rf"^params.width: mlp with width {width} has more "
                                        "weights than torch can count$"):
        check_fit("mlp", {"name": "digits"}, {"width": width}, searched=("depth",))
