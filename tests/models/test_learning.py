"""Every family learns: its training loss falls well below the untrained model's.

"Well below" is half: the untrained loss is measured on the same training split
with the same seed, so each case compares a model with itself."""
from __future__ import annotations

import pytest

from hypersweep.models.train import predict, setup, train_trial
from hypersweep.models.trial import TrialSpec

DIGITS = {"name": "digits"}
CASES = {   # id: (builder, data, params)
    "lenet": ("lenet", DIGITS, {"epochs": 4, "lr": 3e-3}),
    "alexnet": ("alexnet", DIGITS, {"epochs": 4, "lr": 3e-3, "dropout": 0.0}),
    "vgg": ("vgg", DIGITS, {"epochs": 3, "lr": 3e-3}),
    "inception": ("inception", DIGITS, {"epochs": 4, "lr": 3e-3}),
    "resnet": ("resnet", DIGITS, {"epochs": 2, "lr": 3e-3}),
    "rnn-seq_digits": ("rnn", {"name": "seq_digits"}, {"epochs": 4, "lr": 1e-2}),
    "lstm-seq_digits": ("lstm", {"name": "seq_digits"}, {"epochs": 4, "lr": 1e-2}),
    "gru-adding": ("gru", {"name": "adding", "options": {"length": 10, "n": 2000}},
                   {"epochs": 8, "lr": 1e-2}),
    "gru-copy": ("gru", {"name": "copy", "options": {"delay": 2, "symbols": 3}},
                 {"epochs": 6, "lr": 1e-2, "head": "many_to_many", "hidden": 64}),
    "seq2seq-reverse": ("seq2seq", {"name": "reverse", "options": {"length": 5, "n": 2000}},
                        {"epochs": 6, "lr": 1e-2}),
    "char_lm-stdlib": ("char_lm", {"name": "text", "options": {"max_chars": 30000}},
                       {"epochs": 8, "lr": 1e-2, "batch_size": 32}),
    "mlp-diabetes": ("mlp", {"name": "diabetes"}, {"epochs": 30, "lr": 1e-2}),
    "mlp-moons": ("mlp", {"name": "moons"}, {"epochs": 5, "lr": 1e-2}),
}
SLOW = {"alexnet", "inception", "resnet", "lenet", "vgg", "char_lm-stdlib", "seq2seq-reverse"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
                                  for c in CASES])
def test_training_loss_falls_well_below_the_untrained_loss(case):
    model, data, params = CASES[case]
    spec = TrialSpec(model=model, data=data, params=params, seed=0, threads=1)
    fit = setup(spec)
    untrained = fit.task.metrics(predict(fit, fit.splits.x_train), fit.splits.y_train)["loss"]
    result = train_trial(spec, lambda epoch, metrics: False)
    assert result.state.value == "COMPLETE", result.reason
    assert result.history[-1]["train_loss"] < 0.5 * untrained, (untrained, result.history)
