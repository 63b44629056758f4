"""The training loop with the new tasks: task choice, augmentation, artifacts."""
from __future__ import annotations

import pytest
import torch

from hypersweep.models.errors import UserError
from hypersweep.models.train import augment_images, training_hparams, trial_task


@pytest.mark.parametrize("model,data,task", [
    ("mlp", "digits", "classification"), ("mlp", "diabetes", "regression"),
    ("rnn", "adding", "regression"), ("gru", "copy", "sequence_transduction"),
    ("seq2seq", "reverse", "sequence_transduction"), ("char_lm", "text", "language_modelling"),
    ("lenet", "digits", "classification"),
])
def test_trial_task_is_the_task_the_trial_trains(run, model, data, task):
    assert trial_task(model, {"name": data}) == task
    params = {"epochs": 1, "head": "many_to_many"} if data == "copy" else {"epochs": 1}
    if data == "text":
        data = {"name": "text", "options": {"max_chars": 3000, "window": 32}}
    result = run(model, data, **params)
    assert result.state.value == "COMPLETE", result.reason
    from hypersweep.models.tasks import get_task
    assert {f"val_{m}" for m in get_task(task).metric_names} <= set(result.metrics)


def test_regression_trial_logs_mse_and_a_scatter(run):
    result = run("mlp", "diabetes", epochs=2)
    assert {"val_mse", "val_mae", "train_mse"} <= set(result.metrics)
    assert result.artifacts["predicted_vs_true.png"].startswith(b"\x89PNG")


def test_char_lm_trial_logs_sampled_text(run):
    result = run("char_lm", {"name": "text", "options": {"max_chars": 3000, "window": 32}},
                 epochs=1, hidden=16)
    text = result.artifacts["samples.txt"].decode()
    assert "temperature 0.5" in text and "temperature 1.5" in text and "beam search" in text
    assert "bpc_by_position.png" in result.artifacts and result.metrics["val_bpc"] > 0


def test_seq2seq_trial_logs_greedy_and_beam_decodes(run):
    result = run("seq2seq", {"name": "reverse", "options": {"length": 4, "n": 200}}, epochs=1)
    text = result.artifacts["decoded_examples.txt"].decode()
    assert text.count("greedy:") == 20 == text.count("beam:")
    assert result.artifacts["decoded_examples.png"].startswith(b"\x89PNG")
    assert 0 <= result.metrics["val_sequence_accuracy"] <= result.metrics["val_token_accuracy"]


def test_an_rnn_with_an_output_per_step_logs_its_outputs_as_text_too(run):
    """The README's task table promises decoded_examples.txt for every transduction
    model; an RNN does not decode, so its text shows its output at each step."""
    result = run("gru", {"name": "copy", "options": {"n": 200}}, epochs=1,
                 head="many_to_many")
    text = result.artifacts["decoded_examples.txt"].decode()
    assert text.count("input:") == text.count("target:") == text.count("output:") == 20
    assert "greedy:" not in text
    first = text.splitlines()[:3]
    assert len({len(line.split()) for line in first[1:]}) == 1   # target and output align


def test_many_to_one_rnn_on_a_per_step_dataset_fails_the_trial_with_the_fix(run):
    with pytest.raises(UserError, match="head: many_to_many"):
        run("gru", "copy", epochs=1)


# ---------------------------------------------------------------- augmentation

def test_augment_is_a_training_option():
    assert training_hparams()["augment"].choices == ("none", "shift", "flip", "shift_flip")


def test_shift_moves_each_image_by_at_most_its_margin():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3, 4] = 1.0                          # one bright pixel, away from the borders
    shifted = augment_images(x, "shift")
    assert shifted.shape == x.shape and torch.equal(shifted.sum((1, 2, 3)), x.sum((1, 2, 3)))
    where = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = where // 8, where % 8
    assert (rows - 3).abs().max() <= 1 and (cols - 4).abs().max() <= 1
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 4     # shifts differ per image


def test_flip_mirrors_about_half_the_images():
    torch.manual_seed(0)
    x = torch.arange(8.0).repeat(200, 3, 8, 1)   # (200, 3, 8, 8), increasing left to right
    flipped = augment_images(x, "flip")
    mirrored = (flipped[:, 0, 0, 0] == 7).float().mean().item()
    assert 0.35 < mirrored < 0.65
    assert all(torch.equal(f, x[0]) or torch.equal(f, x[0].flip(-1)) for f in flipped)


def test_augmented_cnn_trains(run):
    result = run("lenet", "digits", epochs=1, augment="shift_flip")
    assert result.state.value == "COMPLETE"


def test_augmenting_non_images_is_a_user_error(run):
    with pytest.raises(UserError, match=r"^params.augment: 'shift' needs images .* \(8, 8\)"):
        run("rnn", "seq_digits", epochs=1, augment="shift")
