"""Deep feedforward networks: `depth` hidden layers of `width` units, then a linear head."""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from hypersweep.models.errors import check_at_least, check_fraction, check_layers
from hypersweep.models.registry import register

Activation = Literal["relu", "leaky_relu", "prelu", "elu", "tanh", "sigmoid", "maxout", "linear"]
Init = Literal["default", "glorot", "he", "orthogonal"]


@register("mlp", task="classification", family="mlp",
          variants=("plain", "dropout", "batch_norm", "residual", "maxout"),
          used_when={"maxout_pieces": ("activation", ("maxout",))})
def mlp(*, input_shape: tuple[int, ...], n_outputs: int,
        depth: int = 2, width: int = 128, activation: Activation = "relu",
        dropout: float = 0.0, batch_norm: bool = False, residual: bool = False,
        init: Init = "default", maxout_pieces: int = 2) -> nn.Module:
    """Flatten -> `depth` x [linear -> batch norm? -> activation -> dropout?] -> linear.

    `residual` adds the layer input to its output wherever the widths match (every
    hidden layer after the first); `maxout_pieces` is used only by `maxout`.
    `init` "default" keeps PyTorch's U(-1/sqrt(m), 1/sqrt(m)).
    """
    _check(depth=depth, width=width, dropout=dropout, maxout_pieces=maxout_pieces)
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = math.prod(input_shape)
    for _ in range(depth):
        layers.append(HiddenLayer(n_in, width, activation, dropout=dropout,
                                  batch_norm=batch_norm, residual=residual,
                                  pieces=maxout_pieces))
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    model = Layers(*layers)
    initialize(model, init, activation)
    return model


class Layers(nn.Sequential):
    """An `nn.Sequential` that calls the modules inside its hidden layers itself: a
    hidden layer without a skip costs no module call of its own, about 20 us of a
    830 us step on the digits MLP 128 wide. Its modules, their names and its state
    dict are a Sequential's; indexing, slicing and appending work as on one. Hooks
    on such a hidden layer itself are not called (those on its modules are)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._modules.values():
            if isinstance(layer, HiddenLayer) and layer.chain:
                for step in layer.chain:
                    x = step(x)
            else:
                x = layer(x)
        return x


class Maxout(nn.Module):
    """max over each group of `pieces` consecutive units (Goodfellow et al., 2013)."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (-1, self.pieces)).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class HiddenLayer(nn.Module):
    def __init__(self, n_in: int, width: int, activation: str, *, dropout: float,
                 batch_norm: bool, residual: bool, pieces: int) -> None:
        super().__init__()
        # Maxout needs `pieces` linear units for every unit it outputs.
        units = width * pieces if activation == "maxout" else width
        # Batch norm's learned shift makes the linear bias redundant.
        self.linear = nn.Linear(n_in, units, bias=not batch_norm)
        self.norm = nn.BatchNorm1d(units) if batch_norm else nn.Identity()
        self.act = make_activation(activation, width, pieces)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual and n_in == width
        # The parts that do something, called in order: each module call costs
        # microseconds, a tenth of a small network's step.
        self._norm, self._drop = batch_norm, dropout > 0
        # Without a skip, the layer is these modules in turn (Layers calls them);
        # kept out of the registered modules, which hold each once already.
        chain = () if self.residual else tuple(
            m for m, used in ((self.linear, True), (self.norm, batch_norm), (self.act, True),
                              (self.drop, dropout > 0)) if used)
        object.__setattr__(self, "chain", chain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self._norm:
            h = self.norm(h)
        h = self.act(h)
        if self._drop:
            h = self.drop(h)
        return x + h if self.residual else h


def make_activation(name: str, width: int, pieces: int = 2) -> nn.Module:
    if name == "maxout":
        return Maxout(pieces)
    if name == "prelu":
        return nn.PReLU(num_parameters=width)   # one learned slope per unit (He et al.)
    table: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid, "linear": nn.Identity,
    }
    return table[name]()


# torch.nn.init.calculate_gain's name for the nonlinearity that follows a layer.
_GAIN_NAME = {"relu": "relu", "leaky_relu": "leaky_relu", "prelu": "leaky_relu",
              "elu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "maxout": "linear",
              "linear": "linear"}


def initialize(model: nn.Module, init: str, activation: str) -> None:
    """Re-initialise every linear layer's weights for the nonlinearity that follows
    it (none after the head); biases start at zero. "default" keeps PyTorch's."""
    if init == "default":
        return
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            init_linear(m, init, "linear" if m is head else activation)


def init_linear(layer: nn.Linear, init: str, activation: str) -> None:
    gain_name = _GAIN_NAME[activation]
    # PReLU starts at slope 0.25; leaky_relu uses torch's default 0.01.
    slope = 0.25 if activation == "prelu" else 0.01
    if init == "glorot":
        nn.init.xavier_uniform_(layer.weight)    # the notes' "normalized initialization"
    elif init == "he":
        nn.init.kaiming_normal_(layer.weight, a=slope, nonlinearity=gain_name)
    elif init == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=nn.init.calculate_gain(gain_name, slope))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _check(*, depth: int, width: int, dropout: float, maxout_pieces: int) -> None:
    check_at_least(0, depth=depth)
    check_layers(depth=depth)
    check_at_least(1, width=width)
    check_fraction(dropout=dropout)
    check_at_least(1, maxout_pieces=maxout_pieces)
