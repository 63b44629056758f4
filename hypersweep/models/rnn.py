"""Recurrent networks: plain (Elman) RNN, LSTM and GRU cells; stacked,
bidirectional, with dropout between layers; many-to-one or many-to-many heads.

Inputs are sequences (steps, features). Images (channels, height, width) are read
row by row: `height` steps of `channels * width` features, so an rnn also runs on
`digits`. `rnn` takes the cell as a hyperparameter (a study can search LSTM
against GRU against a plain RNN); `lstm` and `gru` are the same net with the cell
fixed.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from hypersweep.models.errors import UserError, check_at_least, check_fraction, check_layers
from hypersweep.models.registry import register

Cell = Literal["rnn", "lstm", "gru"]
Head = Literal["many_to_one", "many_to_many"]
_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Recurrent(nn.Module):
    """Stacked (bi)directional recurrent layers and a linear head: on the last
    layer's final states (many-to-one) or on every step's output (many-to-many)."""

    def __init__(self, n_features: int, n_outputs: int, cell: str, hidden: int, layers: int,
                 bidirectional: bool, dropout: float, head: str, nonlinearity: str) -> None:
        super().__init__()
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        # torch applies `dropout` between stacked layers only; the head gets its own.
        self.rnn = _CELLS[cell](n_features, hidden, num_layers=layers, batch_first=True,
                                bidirectional=bidirectional,
                                dropout=dropout if layers > 1 else 0.0, **extra)
        self.directions = 2 if bidirectional else 1
        self.many_to_many = head == "many_to_many"
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.directions * hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:   # images: rows are the time steps
            x = x.permute(0, 2, 1, 3).flatten(2)
        out, state = self.rnn(x)
        if self.many_to_many:
            return self.head(self.drop(out))
        h_n = state[0] if isinstance(state, tuple) else state    # LSTM: (h, c)
        # The last layer's final state in each direction: the backward direction's
        # "final" state is the one that has read the whole sequence back to step 0.
        last = h_n[-self.directions:].transpose(0, 1).flatten(1)
        return self.head(self.drop(last))


def recurrent(input_shape: tuple[int, ...], n_outputs: int, *, cell: str, hidden: int,
              layers: int, bidirectional: bool, dropout: float, head: str,
              nonlinearity: str = "tanh") -> nn.Module:
    if len(input_shape) == 2:
        n_features = input_shape[1]
    elif len(input_shape) == 3:
        n_features = input_shape[0] * input_shape[2]
    else:
        raise UserError(f"model: {cell} needs sequences (steps, features) or images; the "
                        f"dataset gives samples of shape {tuple(input_shape)}")
    check_at_least(1, hidden=hidden, layers=layers)
    check_layers(layers=layers)
    check_fraction(dropout=dropout)
    return Recurrent(n_features, n_outputs, cell, hidden, layers, bidirectional, dropout,
                     head, nonlinearity)


@register("rnn", task="classification", family="rnn", variants=("rnn", "lstm", "gru"),
          used_when={"nonlinearity": ("cell", ("rnn",))})
def rnn(*, input_shape: tuple[int, ...], n_outputs: int, cell: Cell = "rnn", hidden: int = 64,
        layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
        head: Head = "many_to_one", nonlinearity: Literal["tanh", "relu"] = "tanh") -> nn.Module:
    """A recurrent net with the `cell` of your choice (`nonlinearity` applies to the
    plain rnn cell). many_to_one classifies or regresses whole sequences (seq_digits,
    adding); many_to_many emits one output per step (copy)."""
    return recurrent(input_shape, n_outputs, cell=cell, hidden=hidden, layers=layers,
                     bidirectional=bidirectional, dropout=dropout, head=head,
                     nonlinearity=nonlinearity)


@register("lstm", task="classification", family="rnn", variants=("lstm",))
def lstm(*, input_shape: tuple[int, ...], n_outputs: int, hidden: int = 64, layers: int = 1,
         bidirectional: bool = False, dropout: float = 0.0,
         head: Head = "many_to_one") -> nn.Module:
    """Hochreiter and Schmidhuber's long short-term memory: `rnn` with cell lstm."""
    return recurrent(input_shape, n_outputs, cell="lstm", hidden=hidden, layers=layers,
                     bidirectional=bidirectional, dropout=dropout, head=head)


@register("gru", task="classification", family="rnn", variants=("gru",))
def gru(*, input_shape: tuple[int, ...], n_outputs: int, hidden: int = 64, layers: int = 1,
        bidirectional: bool = False, dropout: float = 0.0,
        head: Head = "many_to_one") -> nn.Module:
    """Cho et al.'s gated recurrent unit: `rnn` with cell gru."""
    return recurrent(input_shape, n_outputs, cell="gru", hidden=hidden, layers=layers,
                     bidirectional=bidirectional, dropout=dropout, head=head)
