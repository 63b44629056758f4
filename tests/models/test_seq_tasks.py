"""Regression, language modelling and sequence transduction tasks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hypersweep.models.errors import UserError
from hypersweep.models.tasks import get_task, task_names

PNG = b"\x89PNG"


def test_every_task_is_registered():
    assert {"classification", "regression", "language_modelling",
            "sequence_transduction"} <= set(task_names())


def test_regression_metrics():
    task = get_task("regression")
    out, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([[1.0], [3.0], [2.0]])
    m = task.metrics(out, y)
    assert m == pytest.approx({"loss": 5 / 3, "mse": 5 / 3, "mae": 1.0})
    assert task.loss(out, y).item() == pytest.approx(5 / 3)
    assert task.loss(out, y[:, 0]).item() == pytest.approx(5 / 3)    # (n,) targets too
    assert task.figure(out, y).startswith(PNG)


def test_language_modelling_reports_bits_per_character():
    task = get_task("language_modelling")
    uniform = torch.zeros(4, 10, 8)                  # uniform over 8 characters: 3 bits
    y = torch.randint(0, 8, (4, 10))
    m = task.metrics(uniform, y)
    assert m["loss"] == pytest.approx(math.log(8)) and m["bpc"] == pytest.approx(3.0)
    assert task.figure(uniform, y).startswith(PNG)


def test_sequence_accuracy_needs_every_token_right():
    task = get_task("sequence_transduction")
    y = torch.tensor([[1, 2, 3], [1, 2, 3]])
    out = F.one_hot(torch.tensor([[1, 2, 3], [1, 2, 0]]), 4).float()
    m = task.metrics(out, y)
    assert m["sequence_accuracy"] == pytest.approx(0.5)
    assert m["token_accuracy"] == pytest.approx(5 / 6)
    assert task.figure(out, y, class_names=list("abcd")).startswith(PNG)


@pytest.mark.parametrize("name", ["sequence_transduction", "language_modelling"])
def test_one_output_per_sequence_is_a_clear_error(name):
    with pytest.raises(UserError, match=r"^model: .* one output per time step.*many_to_many"):
        get_task(name).loss(torch.zeros(4, 10), torch.zeros(4, 6, dtype=torch.long))


class Recorder(torch.nn.Module):
    teacher_forcing = True

    def forward(self, x, y=None):
        self.saw_targets = y is not None
        return torch.zeros(*x.shape[:2], 3, requires_grad=True)


def test_teacher_forced_models_see_the_targets_while_training():
    model, task = Recorder(), get_task("sequence_transduction")
    x, y = torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    task.training_step(model, x, y)
    assert model.saw_targets
    model.teacher_forcing = False
    task.training_step(model, x, y)
    assert not model.saw_targets


def test_token_accuracy_leaves_out_the_positions_every_sequence_has_the_same_target():
    """Copy's targets are blank until the recall in every sequence: a model that
    outputs only blanks is right there, and gets none of the copied symbols."""
    from hypersweep.models.data import load_dataset

    task, y = get_task("sequence_transduction"), load_dataset("copy").y_val
    blanks = F.one_hot(torch.zeros_like(y), 10).float()
    assert (y[:, :-10] == 0).all() and task.metrics(blanks, y)["token_accuracy"] == 0.0
    perfect = F.one_hot(y, 10).float()
    assert task.metrics(perfect, y)["token_accuracy"] == 1.0
    half = perfect.clone()
    half[:, -5:] = blanks[:, -5:]             # the first half of the symbols copied
    assert task.metrics(half, y)["token_accuracy"] == pytest.approx(0.5)


def test_token_accuracy_counts_every_position_of_reverse():
    from hypersweep.models.data import load_dataset

    task, y = get_task("sequence_transduction"), load_dataset("reverse").y_val
    guess = torch.randn(*y.shape, 10)
    right = (guess.argmax(-1) == y).float().mean().item()
    assert task.metrics(guess, y)["token_accuracy"] == pytest.approx(right)
