from __future__ import annotations

import io
import pickle
import typing

import pytest
import torch
from torch import nn

from hypersweep.models.data import load_dataset
from hypersweep.models.errors import UserError
from hypersweep.models.figures import Drawing, artifact_bytes
from hypersweep.models.registry import get_builder
from hypersweep.models.train import (TrainOptions, _batches, make_optimizer, split_params,
                          weight_params)
from hypersweep.models.trial import TrialState
from hypersweep.search.executors import failure_reason

SMALL = {"width": 32, "batch_size": 128}     # keeps the digits runs fast
EPOCH_METRICS = {"train_loss", "train_accuracy", "train_f1", "val_loss", "val_accuracy",
                 "val_f1", "lr", "epoch_time", "train_grad_norm", "train_update_ratio"}


def without_time(history):
    return [{k: v for k, v in h.items() if k != "epoch_time"} for h in history]


# ---------------------------------------------------------------- optimisers, schedules

@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                                       "adam", "adamw"])
def test_every_optimizer_trains(run, optimizer):
    r = run(optimizer=optimizer, lr=0.01, epochs=2, **SMALL)
    assert r.state is TrialState.COMPLETE and r.epochs == 2
    assert r.history[1]["train_loss"] < r.history[0]["train_loss"]


def test_optimizer_list_matches_train_options():
    hint = typing.get_type_hints(TrainOptions)["optimizer"]
    assert set(typing.get_args(hint)) == {"sgd", "momentum", "nesterov", "adagrad",
                                          "rmsprop", "adam", "adamw"}


def _optimizer(**params):
    _, opts = split_params("mlp", params)
    model = get_builder("mlp").build(input_shape=(1, 8, 8), n_outputs=10)
    return make_optimizer(model, opts)


def test_sgd_is_plain_unless_momentum_is_set():
    assert _optimizer(optimizer="sgd").defaults["momentum"] == 0.0
    opt = _optimizer(optimizer="sgd", momentum=0.5, nesterov=True)
    assert (opt.defaults["momentum"], opt.defaults["nesterov"]) == (0.5, True)
    opt = _optimizer(optimizer="momentum")
    assert (opt.defaults["momentum"], opt.defaults["nesterov"]) == (0.9, False)
    assert _optimizer(optimizer="nesterov").defaults["nesterov"] is True
    assert _optimizer(optimizer="rmsprop").defaults["momentum"] == 0.0
    assert _optimizer(optimizer="adam", beta2=0.99).defaults["betas"] == (0.9, 0.99)


def test_weight_decay_spares_biases():
    opt = _optimizer(weight_decay=0.1)
    decayed, spared = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"])
    assert all(p.dim() == 1 for p in spared["params"])


def test_without_weight_decay_one_group_holds_every_parameter():
    # A second group would be a second pass of the optimizer over the model per step.
    opt = _optimizer(weight_decay=0.0)
    (group,) = opt.param_groups
    assert group["weight_decay"] == 0.0
    assert sum(p.numel() for p in group["params"]) > 0
    assert {p.dim() for p in group["params"]} == {1, 2}


@pytest.mark.parametrize("schedule,params,lrs", [
    ("constant", {}, [1.0, 1.0, 1.0, 1.0]),
    ("step", {"step_size": 2, "gamma": 0.5}, [1.0, 1.0, 0.5, 0.5]),
    ("step", {"step_size": 1, "gamma": 0.5}, [1.0, 0.5, 0.25, 0.125]),
    ("exponential", {"gamma": 0.5}, [1.0, 0.5, 0.25, 0.125]),
    ("cosine", {}, [1.0, 0.8535534, 0.5, 0.1464466]),
    ("warm_restarts", {"restart_period": 2}, [1.0, 0.5, 1.0, 0.5]),
])
def test_every_schedule_sets_the_lr_per_epoch(run, schedule, params, lrs):
    r = run(schedule=schedule, lr=1e-3, epochs=4, **params, **SMALL)
    assert r.state is TrialState.COMPLETE
    assert [h["lr"] for h in r.history] == pytest.approx([1e-3 * f for f in lrs])


# ---------------------------------------------------------------- learning

@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_solves_xor(run, activation):
    r = run("mlp", "xor", width=8, activation=activation, lr=0.05, epochs=300, batch_size=4)
    assert r.metrics["val_accuracy"] == 1.0


def test_linear_cannot_solve_xor(run):
    r = run("linear", "xor", lr=0.05, epochs=300, batch_size=4)
    assert r.metrics["val_accuracy"] <= 0.75


def test_mlp_learns_digits(run):
    r = run(epochs=15, lr=3e-3)
    assert r.state is TrialState.COMPLETE and r.epochs == 15
    assert r.metrics["val_accuracy"] >= 0.93
    assert r.metrics["val_f1"] >= 0.9


def test_regularisers_and_precision_options_train(run):
    r = run(epochs=2, l1=1e-4, weight_decay=1e-3, max_norm=0.5, label_smoothing=0.1,
            input_noise=0.1, grad_clip=1.0, precision="bf16", dropout=0.2, **SMALL)
    assert r.state is TrialState.COMPLETE
    assert all(torch.isfinite(torch.tensor(h["val_loss"])) for h in r.history)
    state = torch.load(io.BytesIO(r.artifacts["model.pt"]))
    for name, w in state.items():
        if name.endswith("weight") and w.dim() >= 2:   # max-norm caps every unit's fan-in
            assert float(w.norm(dim=1).max()) <= 0.5 + 1e-4


def test_a_last_batch_of_one_joins_the_previous_batch(run):
    sizes = [len(b) for b in _batches(torch.arange(10), 3)]
    assert sizes == [3, 3, 4]
    assert [len(b) for b in _batches(torch.arange(9), 3)] == [3, 3, 3]
    # 1079 digits training rows = 154 * 7 + 1: batch norm would fail on the lone sample.
    r = run(batch_norm=True, batch_size=7, epochs=1, width=16)
    assert r.state is TrialState.COMPLETE


# ---------------------------------------------------------------- the trial contract

def test_result_metrics_history_and_artifacts(run):
    r = run(epochs=3, **SMALL)
    assert r.state is TrialState.COMPLETE and r.epochs == 3 and r.reason is None
    assert len(r.history) == 3 and all(set(h) == EPOCH_METRICS for h in r.history)
    assert set(r.metrics) == EPOCH_METRICS | {"param_count", "inference_ms"}
    assert r.metrics["param_count"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert r.metrics["inference_ms"] > 0
    assert set(r.artifacts) == {"model.pt", "learning_curve.png", "confusion_matrix.png"}
    for name in ("learning_curve.png", "confusion_matrix.png"):
        # Handed over undrawn (the writer draws them), then drawn as PNGs.
        assert isinstance(r.artifacts[name], Drawing)
        assert artifact_bytes(r.artifacts[name])[:4] == b"\x89PNG"
    assert pickle.loads(pickle.dumps(r.artifacts["learning_curve.png"])).render()[:4] == b"\x89PNG"
    model = get_builder("mlp").build(input_shape=(1, 8, 8), n_outputs=10, width=32)
    model.load_state_dict(torch.load(io.BytesIO(r.artifacts["model.pt"])))


def test_report_sees_every_epoch_numbered_from_one(run):
    seen = []
    run(epochs=3, report=lambda e, m: seen.append((e, set(m))) and False, **SMALL)
    assert seen == [(1, EPOCH_METRICS), (2, EPOCH_METRICS), (3, EPOCH_METRICS)]


def test_same_spec_same_history_other_seed_other_history(run):
    a = run(epochs=2, dropout=0.1, input_noise=0.05, seed=1, **SMALL)
    b = run(epochs=2, dropout=0.1, input_noise=0.05, seed=1, **SMALL)
    c = run(epochs=2, dropout=0.1, input_noise=0.05, seed=2, **SMALL)
    assert without_time(a.history) == without_time(b.history)
    assert a.artifacts["model.pt"] == b.artifacts["model.pt"]
    assert without_time(a.history) != without_time(c.history)


def test_report_true_prunes(run):
    r = run(epochs=10, report=lambda epoch, m: epoch == 2, **SMALL)
    assert r.state is TrialState.PRUNED and r.epochs == 2 and len(r.history) == 2
    assert r.reason == "pruned at epoch 2"
    assert r.metrics["val_loss"] == r.history[-1]["val_loss"]


def test_divergence_fails_without_raising(run):
    calls = []
    # Linear activations: no dead ReLU or saturated tanh to stop the blow-up.
    r = run(optimizer="sgd", lr=1e6, activation="linear", epochs=5,
            report=lambda e, m: calls.append(e), **SMALL)
    assert r.state is TrialState.FAIL
    assert "nan" in r.reason and r.reason.endswith(f"at epoch {r.epochs}")
    # The bad epoch is reported too: the run's curves show where it diverged.
    assert r.epochs < 5 and calls == list(range(1, r.epochs + 1))


def test_patience_stops_early_on_the_best_epoch(run):
    r = run(epochs=60, lr=0.02, patience=3, **SMALL)
    losses = [h["val_loss"] for h in r.history]
    best = losses.index(min(losses)) + 1
    assert r.state is TrialState.COMPLETE and r.epochs < 60
    assert r.epochs == best + 3 and r.best_epoch == best
    assert r.metrics["val_loss"] == min(losses)
    # The saved weights are the best epoch's: they reproduce its val_loss.
    model = get_builder("mlp").build(input_shape=(1, 8, 8), n_outputs=10, width=32)
    model.load_state_dict(torch.load(io.BytesIO(r.artifacts["model.pt"])))
    model.eval()
    s = load_dataset("digits")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(s.x_val), s.y_val).item()
    assert loss == pytest.approx(r.metrics["val_loss"], rel=1e-5)


def test_data_options_reach_the_dataset(run):
    r = run("mlp", {"name": "xor", "val_fraction": 0.25, "test_fraction": 0.25,
                    "options": {"n": 40, "noise": 0.1}}, epochs=1, width=8)
    assert r.state is TrialState.COMPLETE


@pytest.mark.parametrize("params,message", [
    ({"dept": 3}, r"^params.dept: unknown hyperparameter 'dept' \(did you mean 'depth'\?\)"),
    ({"depth": "3"}, r"^params.depth: expected an integer, got text '3'"),
    ({"optimizer": "adamm"}, r"^params.optimizer: unknown value 'adamm'"),
    ({"lr": -1.0}, r"^params.lr: must be > 0"),
    ({"width": 0}, r"^params.width: must be >= 1"),
])
def test_bad_params_are_user_errors(run, params, message):
    with pytest.raises(UserError, match=message):
        run(epochs=1, **params)


def test_split_params_separates_builder_and_training():
    kwargs, opts = split_params("mlp", {"depth": 3, "lr": 1, "epochs": 4})
    assert kwargs == {"depth": 3}
    assert opts.lr == 1.0 and isinstance(opts.lr, float) and opts.epochs == 4


def test_resolved_params_name_every_hyperparameter_with_the_value_training_uses():
    """Every builder's and training option's value: given, else its default, else what
    split_params makes of it (plain SGD/RMSprop without a momentum); each a plain
    scalar that YAML and JSON write and read back as it is."""
    import json

    import numpy as np
    import yaml

    from hypersweep.models.registry import builder_names
    from hypersweep.models.train import hyperparameters, resolved_params

    for model in builder_names():
        hps = hyperparameters(model)
        resolved = resolved_params(model, {})
        assert list(resolved) == list(hps), model
        assert resolved == {k: h.default for k, h in hps.items()}, model
    resolved = resolved_params("mlp", {"optimizer": np.str_("sgd"), "lr": np.float64(0.05),
                                       "depth": 3, "dropout": 0, "nesterov": True})
    assert {k: resolved[k] for k in ("optimizer", "lr", "depth", "dropout", "momentum")} == \
        {"optimizer": "sgd", "lr": 0.05, "depth": 3, "dropout": 0.0, "momentum": 0.0}
    assert resolved["width"] == 128 and resolved["epochs"] == 10 and resolved["beta1"] == 0.9
    assert {type(v) for v in resolved.values()} <= {bool, int, float, str}
    assert type(resolved["dropout"]) is float and type(resolved["optimizer"]) is str
    assert type(resolved["nesterov"]) is bool and type(resolved["lr"]) is float
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved
    assert json.loads(json.dumps(resolved)) == resolved
    assert resolved_params("mlp", {"optimizer": "rmsprop"})["momentum"] == 0.0
    assert resolved_params("mlp", {"optimizer": "sgd", "momentum": 0.5})["momentum"] == 0.5
    assert resolved_params("mlp", {"optimizer": "momentum"})["momentum"] == 0.9
    assert resolved_params("mlp", {})["momentum"] == 0.9      # adam: unused, its default


@pytest.mark.parametrize("params", [{"dept": 3}, {"depth": "3"}, {"optimizer": "adamm"},
                                    {"lr": -1.0}])
def test_resolved_params_refuse_what_split_params_refuses_with_its_one_line(params):
    from hypersweep.models.train import resolved_params

    with pytest.raises(UserError) as expected:
        split_params("mlp", params)
    with pytest.raises(UserError) as got:
        resolved_params("mlp", params)
    assert str(got.value) == str(expected.value) and "\n" not in str(got.value)


@pytest.mark.parametrize("model,params", [
    ("mlp", {"optimizer": "sgd", "lr": 0.05, "width": 16, "batch_size": 128}),
    ("gan", {"optimizer": "rmsprop", "lr": 1e-3, "width": 16, "latent_size": 4}),
], ids=["mlp", "gan"])
def test_training_on_resolved_params_is_training_on_the_params(run, model, params):
    """A trial logged with its resolved params replays as it ran: the same history,
    bit for bit, and the same weights."""
    from hypersweep.models.train import resolved_params

    params = {"epochs": 2, **params}
    given = run(model, seed=3, **params)
    resolved = run(model, seed=3, **resolved_params(model, params))
    assert without_time(resolved.history) == without_time(given.history)
    weights = [torch.load(io.BytesIO(r.artifacts["model.pt"]), weights_only=True)
               for r in (given, resolved)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_weight_params_are_matrices_only():
    model = get_builder("mlp").build(input_shape=(1, 8, 8), n_outputs=10, batch_norm=True,
                                     activation="prelu")
    assert [tuple(p.shape) for p in weight_params(model)] == [(128, 64), (128, 128), (10, 128)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_in_bf16():
    from hypersweep.models.train import train_trial
    from hypersweep.models.trial import TrialSpec

    spec = TrialSpec("mlp", {"name": "digits"}, {"epochs": 3, "precision": "bf16"}, seed=0,
                     device="cuda")
    r = train_trial(spec, lambda e, m: False)
    assert r.state is TrialState.COMPLETE and r.metrics["val_accuracy"] > 0.8


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_bf16_precision_runs_the_forward_pass_in_bfloat16(device):
    from hypersweep.models.train import setup
    from hypersweep.models.trial import TrialSpec

    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        fit = setup(TrialSpec("mlp", {"name": "digits"}, {"epochs": 1, "precision": precision},
                              seed=0, device=device))
        with fit.autocast():
            out = fit.model(fit.splits.x_val[:8])
        assert out.dtype == dtype and out.device.type == device
        assert next(fit.model.parameters()).dtype == torch.float32     # weights stay fp32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_epoch_on_the_gpu_copies_nothing_per_batch_from_the_host():
    """The splits are placed on the GPU once per process and batches are cut there:
    an epoch's host-to-device copies do not grow with its number of batches."""
    from torch.profiler import ProfilerActivity, profile

    from hypersweep.models.train import run_epoch, setup
    from hypersweep.models.trial import TrialSpec

    def copies(batch_size: int) -> tuple[int, list[str]]:
        fit = setup(TrialSpec("mlp", {"name": "digits"}, {"epochs": 2, "batch_size": batch_size},
                              seed=0, device="cuda"))
        assert fit.splits.x_train.device.type == "cuda"
        run_epoch(fit)                      # warm-up: kernels, allocator
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run_epoch(fit)
            torch.cuda.synchronize()
        events = [e for e in prof.events() if "HtoD" in e.name]
        return len(events), sorted({e.name for e in events})

    few, many = copies(512), copies(16)     # 3 and 68 batches
    assert many[0] == few[0] <= 3, f"host-to-device copies per epoch: {few} at 3 batches, {many} at 68"


def test_train_final_tests_once_on_the_held_out_split():
    """Retrained on train+val, evaluated on test only: deterministic on CPU."""
    from hypersweep.models.train import train_final
    from hypersweep.models.trial import TrialSpec

    spec = TrialSpec(model="mlp", data={"name": "digits"}, seed=5,
                     params={"epochs": 3, "width": 32, "lr": 0.01, "patience": 2})
    first, second = train_final(spec), train_final(spec)
    assert set(first.test_metrics) == {"test_loss", "test_accuracy", "test_f1"}
    assert first.test_metrics == second.test_metrics
    assert first.test_metrics["test_accuracy"] > 0.8
    assert "model.pt" in first.artifacts and "test_confusion_matrix.png" in first.artifacts
    assert first.artifacts["test_confusion_matrix.png"].args[-1] == "test"     # its title
    with pytest.raises(UserError, match="test_fraction"):
        train_final(TrialSpec(model="mlp", data={"name": "digits", "test_fraction": 0.0},
                              params={"epochs": 1}, seed=0))


FINAL_CASES = [
    ("mlp", {"name": "digits"}, {}),
    ("mlp", {"name": "diabetes"}, {}),
    ("rnn", {"name": "seq_digits"}, {}),
    ("rnn", {"name": "adding"}, {}),
    ("gru", {"name": "copy", "options": {"n": 200}}, {"head": "many_to_many"}),
    ("seq2seq", {"name": "reverse", "options": {"length": 4, "n": 200}}, {}),
    ("char_lm", {"name": "text", "options": {"max_chars": 3000, "window": 32}}, {"hidden": 16}),
    ("autoencoder", {"name": "digits"}, {"variant": "contractive"}),
    ("vae", {"name": "digits"}, {"latent_size": 4}),
    ("gan", {"name": "digits"}, {"width": 16, "latent_size": 4}),
]


@pytest.mark.parametrize("model,data,params", FINAL_CASES,
                         ids=[f"{m}-{d['name']}" for m, d, _ in FINAL_CASES])
def test_train_final_reports_on_test_what_validation_reports(run, model, data, params):
    """Every task's test metrics are its validation metrics, also those that need the
    model (generation's scores and losses, a penalized reconstruction loss)."""
    from hypersweep.models.train import train_final
    from hypersweep.models.trial import TrialSpec

    params = {"epochs": 1, **params}
    trial = run(model, data, **params)
    val = {k[4:] for k in trial.history[-1] if k.startswith("val_")}
    final = train_final(TrialSpec(model=model, data=data, params=params, seed=0, threads=1))
    assert set(final.test_metrics) == {f"test_{k}" for k in val}
    assert all(v == v for v in final.test_metrics.values())     # no NaN
    # The task's figure and its `artifacts` hook's files (samples, decodes), on test;
    # the learning curve is the search's (there is no validation split left).
    shown = {f"test_{k}" for k in trial.artifacts if k not in ("model.pt", "learning_curve.png")}
    assert set(final.artifacts) == {"model.pt", *shown}


@pytest.mark.parametrize("model,data,params,name", [
    ("gan", {"name": "digits"}, {"width": 16, "latent_size": 4}, "samples.png"),
    ("seq2seq", {"name": "reverse", "options": {"length": 4, "n": 200}}, {},
     "decoded_examples.txt"),
], ids=["gan", "seq2seq"])
def test_train_final_artifacts_come_from_the_final_model_on_test(model, data, params, name):
    """What the `artifacts` hook makes of the retrained model (its checkpoint) and the
    test split: GAN samples, seq2seq decodes of test inputs."""
    from hypersweep.models.tasks import get_task
    from hypersweep.models.train import loaded_splits, train_final, trial_task
    from hypersweep.models.trial import TrialSpec

    final = train_final(TrialSpec(model=model, data=data, params={"epochs": 1, **params},
                                  seed=0, threads=1))
    s = loaded_splits(data)
    net = get_builder(model).build(input_shape=s.input_shape, n_outputs=s.n_outputs, **params)
    net.load_state_dict(torch.load(io.BytesIO(final.artifacts["model.pt"]), weights_only=True))
    task = get_task(trial_task(model, data))
    with torch.no_grad():
        expected = task.artifacts(net.eval(), s.x_test, s.y_test, s.class_names)[name]
    assert final.artifacts[f"test_{name}"] == expected


# ---------------------------------------------------------------- pre-flight (check_fit)

@pytest.mark.parametrize("model,data,params,searched,message", [
    ("mlp", "digits", {"dropout": 1.5}, {"width"}, "params.dropout: must be in [0, 1), got 1.5"),
    ("mlp", "digits", {"maxout_pieces": 0}, {"width", "depth", "activation"},
     "params.maxout_pieces: must be >= 1, got 0"),
    ("inception", "digits", {"reduction": 0.0}, {"channels"},
     "params.reduction: must be in (0, 1], got 0.0"),
    ("vae", "digits", {"latent_size": 0}, {"width"}, "params.latent_size: must be >= 1, got 0"),
    ("gan", "digits", {"leak": -0.5}, {"width"}, "params.leak: must be in [0, 1), got -0.5"),
    ("gan", "digits", {"leak": 1.0}, {"width"}, "params.leak: must be in [0, 1), got 1.0"),
    ("seq2seq", "reverse", {"beam_width": 0}, {"hidden"},
     "params.beam_width: must be >= 1, got 0"),
    ("lenet", "digits", {"kernel": 7, "padding": "valid"}, {"channels"},
     "params.kernel: a 7x7 kernel (stride 1, padding valid) does not fit"),
    ("gan", "seq_digits", {"arch": "dcgan"}, {"latent_size"},     # it said "conv needs"
     "params.arch: dcgan needs images (channels, height, width), the dataset gives samples "
     "of shape (8, 8); use arch: mlp"),
    # AlexNet's later kernels are fixed: it blamed params.kernel, "a 3x3 kernel", given 7
    ("alexnet", "digits", {"kernel": 7, "padding": "valid"}, {"channels"},
     "params.padding: the fixed 3x3 kernel (padding valid) does not fit the 1x1 feature map "
     "of alexnet's conv 2; use padding: same, or a smaller kernel or stride for the first conv"),
])
def test_a_bad_fixed_value_is_refused_whatever_else_is_searched(model, data, params, searched,
                                                                 message):
    assert check_fit_error(model, data, params, searched).startswith(message)


def check_fit_error(model: str, data: str, params: dict, searched) -> str:
    """check_fit's one-line refusal."""
    from hypersweep.models.train import check_fit
    with pytest.raises(UserError) as e:
        check_fit(model, {"name": data}, params, searched=searched)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("model,params,searched", [
    ("lenet", {"padding": "valid"}, {"kernel"}),            # the error's key is searched
    ("vgg", {"kernel": 7, "padding": "valid"}, {"blocks"}),  # its hint: fewer blocks
])
def test_an_error_a_searched_knob_may_fix_is_left_to_the_trials(model, params, searched):
    from hypersweep.models.train import check_fit
    assert check_fit(model, {"name": "digits"}, params, searched=searched) == "classification"


@pytest.mark.parametrize("model,data,params,searched,message", [
    ("seq2seq", "seq_digits", {}, {"hidden"},
     "model: seq2seq trains sequence_transduction, which needs a dataset of that task"),
    ("mlp", "text", {}, {"width"},
     "model: mlp needs float inputs; dataset 'text' gives token ids, which only a builder "
     "that embeds them takes (char_lm)"),
    ("linear", "text", {}, (), "model: linear needs float inputs"),
    ("char_lm", "text", {"input_noise": 0.1}, {"hidden"},
     "params.input_noise: Gaussian noise needs float inputs; dataset 'text' gives token ids"),
])
def test_a_model_the_data_cannot_train_is_named_before_any_trial(model, data, params, searched,
                                                                 message):
    assert check_fit_error(model, data, params, searched).startswith(message)


def test_a_trial_refuses_input_noise_on_token_ids(run):
    with pytest.raises(UserError, match=r"^params\.input_noise: Gaussian noise needs float"):
        run("char_lm", "text", input_noise=0.1, epochs=1)


def test_a_first_step_that_fails_with_fixed_values_only_is_a_model_error(monkeypatch):
    """A net that fails on the data in a way no check names (here: it ignores the
    input's size) fails every trial when nothing that builds it is searched."""
    from hypersweep.models import registry
    from hypersweep.models.train import check_fit

    def too_narrow(*, input_shape: tuple[int, ...], n_outputs: int, width: int = 8) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3, width), nn.Linear(width, n_outputs))

    monkeypatch.setitem(registry._REGISTRY, "too_narrow",
                        registry.Builder("too_narrow", too_narrow, "classification", "test"))
    with pytest.raises(UserError) as e:
        check_fit("too_narrow", {"name": "digits"}, {"width": 4}, searched={"lr"})
    assert str(e.value).startswith("model: too_narrow on dataset 'digits' fails its first "
                                   "training step: mat1 and mat2 shapes cannot be multiplied")
    # With `width` searched the trials decide (and report the error with its context).
    assert check_fit("too_narrow", {"name": "digits"}, {}, searched={"width"}) == "classification"


@pytest.mark.parametrize("model, params", [("mlp", {"batch_norm": True}),
                                           ("gan", {})])      # an mlp GAN's nets have batch norm
def test_batch_norm_with_a_batch_of_one_is_refused_naming_batch_size(model, params):
    """Every trial failed on torch's "Expected more than 1 value per channel": the
    first-step check took two samples, and passed over a GAN's own steps."""
    from hypersweep.models.train import check_fit
    with pytest.raises(UserError) as e:
        check_fit(model, {"name": "digits"}, {**params, "batch_size": 1}, searched={"lr"})
    assert str(e.value) == (f"params.batch_size: 1, but {model}'s batch norm needs at least 2 "
                            "samples a batch to train; use batch_size 2 or more")
    assert check_fit(model, {"name": "digits"}, {**params, "batch_size": 2}, searched={"lr"})
    # Batch norm over an image's pixels trains on one image: a DCGAN's convolutions
    assert check_fit("gan", {"name": "digits"}, {"arch": "dcgan", "batch_size": 1},
                     searched={"lr"}) == "generation"


class _Summed(nn.Module):
    """Adds its outputs into a tensor of `dtype`: index_add_ takes no other dtype, so
    the net trains only where autocast gives the Linear's output that dtype too."""

    def __init__(self, *, input_shape: tuple[int, ...], n_outputs: int,
                 dtype: str = "float32") -> None:
        super().__init__()
        self.lin = nn.Linear(int(torch.tensor(input_shape).prod()), n_outputs)
        self.n, self.dtype = n_outputs, getattr(torch, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x.flatten(1))
        out = torch.zeros(h.shape[0], self.n, dtype=self.dtype)
        return out.index_add_(1, torch.arange(self.n), h).float()


@pytest.mark.parametrize("dtype,precision,fails", [
    ("float32", "fp32", False), ("float32", "bf16", True),
    ("bfloat16", "fp32", True), ("bfloat16", "bf16", False)])
def test_the_first_step_is_checked_in_the_precision_the_trials_train_in(
        monkeypatch, dtype, precision, fails):
    """It ran in fp32 whatever `params.precision`: a net every bf16 trial failed
    passed, and one that trains under bf16 alone was refused."""
    from hypersweep.models import registry
    from hypersweep.models.train import check_fit

    monkeypatch.setitem(registry._REGISTRY, "summed",
                        registry.Builder("summed", _Summed, "classification", "test"))
    params = {"dtype": dtype, "precision": precision}
    if not fails:
        assert check_fit("summed", {"name": "digits"}, params, searched={"lr"}) == \
            "classification"
        return
    with pytest.raises(UserError, match=r"^model: summed on dataset 'digits' fails its first "
                                        r"training step: index_add_\(\): self \((Float|BFloat16)"):
        check_fit("summed", {"name": "digits"}, params, searched={"lr"})


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_an_autoencoders_target_is_its_augmented_input_without_the_noise(noise):
    """With augment on, the reconstruction target is the shifted image (else the net
    learns to undo the shift); input noise goes on the input only (denoising)."""
    from hypersweep.models.train import setup, train_epoch
    from hypersweep.models.trial import TrialSpec

    spec = TrialSpec(model="autoencoder", data={"name": "digits"}, threads=1, seed=0,
                     params={"augment": "shift", "input_noise": noise, "batch_size": 256})
    fit = setup(spec)
    seen = []

    class Recording(type(fit.task)):
        def training_step(self, model, x, y):
            seen.append((x.clone(), y.clone()))
            return super().training_step(model, x, y)

    fit.task = Recording()
    train_epoch(fit)
    assert seen
    for x, y in seen:       # before the fix, y was the unshifted image
        if noise == 0:
            assert torch.equal(x, y)
        else:
            assert (x - y).std().item() == pytest.approx(noise, rel=0.1)


def test_validate_refuses_label_smoothing_where_the_task_has_no_labels():
    """Regression has nothing to smooth: refused before the study, not by every trial."""
    from hypersweep.models.train import check_fit
    with pytest.raises(UserError, match=r"^params.label_smoothing: regression has no class"):
        check_fit("mlp", {"name": "diabetes"}, {"label_smoothing": 0.1})
    assert check_fit("mlp", {"name": "diabetes"}, {"label_smoothing": 0.0}) == "regression"


def test_validate_refuses_label_smoothing_for_a_vae():
    """A VAE has no discriminator whose targets to smooth: every trial failed."""
    from hypersweep.models.train import check_fit
    with pytest.raises(UserError, match=r"^params.label_smoothing: smooths a GAN discrim"):
        check_fit("vae", {"name": "digits"}, {"label_smoothing": 0.1}, searched=("lr",))
    assert check_fit("gan", {"name": "digits"}, {"label_smoothing": 0.1}) == "generation"


# ---------------------------------------------------------------- step sizes

def test_update_sizes_measure_the_step_the_optimizer_took():
    """Plain SGD steps by lr * gradient: the ratio is lr * |g| / |w|, exactly."""
    from hypersweep.models.train import _sizes_before, update_sizes
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    loss = model(torch.randn(8, 5)).pow(2).mean()
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).norm().item()
    before = _sizes_before(model)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    sizes = update_sizes(model, *before)
    assert sizes["grad_norm"] == pytest.approx(grad, rel=1e-5)
    assert sizes["update_ratio"] == pytest.approx(0.1 * grad / weights, rel=1e-5)


def test_each_epoch_reports_its_last_steps_size_which_grows_with_the_learning_rate(run):
    """train_update_ratio: about 1e-2 is Bottou's rule of thumb; the learning rate
    moves it in step (SGD, the same seed, so the same first batches)."""
    ratios = []
    for lr in (1e-4, 1e-3, 1e-2):
        r = run(epochs=2, lr=lr, optimizer="sgd", **SMALL)
        assert all(h["train_grad_norm"] > 0 for h in r.history)
        ratios.append(r.history[0]["train_update_ratio"])
    assert ratios[0] < ratios[1] < ratios[2]
    assert 5 < ratios[1] / ratios[0] < 20 and 5 < ratios[2] / ratios[1] < 20


def test_a_vae_reports_its_step_sizes_and_a_gan_does_not(run):
    """A VAE steps once a batch, as any net: its sizes are logged. A GAN's two nets
    step in turn: one size would be either's, so none is."""
    vae = run(model="vae", epochs=1)
    assert vae.history[0]["train_update_ratio"] > 0 and vae.history[0]["train_grad_norm"] > 0
    gan = run(model="gan", epochs=1)
    assert "train_update_ratio" not in gan.history[0] and "train_grad_norm" not in gan.history[0]


def test_a_trial_whose_model_does_not_fit_in_memory_fails_naming_its_key(run):
    """A searched width that allocation refuses: the trial's reason (a UserError's
    message alone) was torch's allocator text (`DefaultCPUAllocator: can't allocate
    memory ...`)."""
    with pytest.raises(UserError) as e:
        run(width=10**9, depth=1, epochs=1)
    assert failure_reason(e.value) == (
        "params.width: mlp with width 1000000000 has 75,000,000,010 weights (300.0 GB as "
        "float32), more than this machine's memory holds")
    # As a Ray worker sends it back to the driver: pickled.
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is type(e.value) and str(again) == str(e.value)


def test_a_trial_that_runs_out_of_memory_while_training_names_the_key_that_grew_it(tmp_path):
    """QA: a model whose weights fit but whose training did not (the optimizer's
    state, the activations) failed with `DefaultCPUAllocator: can't allocate memory:
    you tried to allocate 900000000 bytes ... (train.py:395)`. Run in a process of
    its own, its address space capped at 1.5 GB above what it holds at the start."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent("""
        import resource
        from hypersweep.models.train import train_trial
        from hypersweep.models.trial import TrialSpec
        from hypersweep.search.executors import run_guarded

        spec = TrialSpec("mlp", {"name": "digits"}, {"width": 1_500_000, "depth": 1,
                         "epochs": 1, "batch_size": 128, "optimizer": "adam"}, seed=0)
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (size + 1_500_000_000, resource.RLIM_INFINITY))
        r = run_guarded(train_trial, spec, lambda step, metrics: False)
        print(r.state.name)
        print(r.reason)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state, reason = proc.stdout.strip().splitlines()
    assert state == "FAIL"
    assert reason == (
        "params.width: mlp with width 1500000 ran out of memory on cpu while training: "
        "112,500,010 weights (0.5 GB as float32), their gradients and optimizer state, "
        "and the activations of batch_size 128")


@pytest.mark.parametrize("limits, expected", [
    ({"/sys/fs/cgroup/memory.max": "2000000000\n"}, 2_000_000_000),
    ({"/sys/fs/cgroup/memory.max": "max\n"}, None),
    ({"/sys/fs/cgroup/memory/memory.limit_in_bytes": "3000000000\n"}, 3_000_000_000),
    ({}, None),
])
def test_the_memory_a_model_may_hold_is_a_container_s_limit_where_it_sets_one(
        monkeypatch, limits, expected):
    """A container's cgroup limit, below the machine's memory, is what its trials
    have: the size check took the machine's."""
    import os

    from hypersweep.models import train as train_module
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

    def cgroup_file(path, *args, **kwargs):
        if path not in limits:
            raise FileNotFoundError(path)
        return io.StringIO(limits[path])

    monkeypatch.setattr(train_module, "open", cgroup_file, raising=False)
    assert train_module.memory_bytes() == (physical if expected is None else expected)
