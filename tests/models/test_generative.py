"""Autoencoders, VAEs and GANs: the builder contract over the registry's builders of
the reconstruction and generation tasks, the training hooks, and learning tests."""
from __future__ import annotations

import itertools
import math
import typing

import pytest
import torch

from hypersweep.models.errors import UserError
from hypersweep.models.generative import Generation, Reconstruction, image_grid
from hypersweep.models.registry import builder_names, check_value, get_builder
from hypersweep.models.tasks import get_task

GENERATIVE = ("reconstruction", "generation")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def generative_builders() -> list[str]:
    return [n for n in builder_names() if get_builder(n).task in GENERATIVE]


def configurations(name: str) -> list[dict]:
    """Every value of each builder's Literal `variant`/`arch` keywords, combined."""
    hps = get_builder(name).hyperparameters()
    axes = {k: hps[k].choices for k in ("variant", "arch") if k in hps}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


CASES = [(n, kw, shape) for n in generative_builders() for kw in configurations(n)
         for shape in SHAPES]


def test_the_registry_holds_the_generative_families():
    assert {"autoencoder", "vae", "gan"} <= set(generative_builders())
    assert len(configurations("autoencoder")) == 8 and len(configurations("gan")) == 2


def plain_update(model: torch.nn.Module, lr: float = 0.05):
    """update(loss, module=None) as the training loop's, on plain SGD."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def update(loss: torch.Tensor, module: torch.nn.Module | None = None) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if module is not None:
            own = {id(p) for p in module.parameters()}
            for p in model.parameters():
                if id(p) not in own:
                    p.grad = None
        opt.step()
    return update


@pytest.mark.parametrize("name,kwargs,shape", CASES,
                         ids=[f"{n}-{'-'.join(kw.values())}-{'x'.join(map(str, s))}"
                              for n, kw, s in CASES])
def test_generative_builder_contract(name, kwargs, shape):
    torch.manual_seed(0)
    builder = get_builder(name)
    for hp in builder.hyperparameters().values():
        assert check_value(hp, hp.default, key=hp.name) == hp.default
    model = builder.build(input_shape=shape, n_outputs=10, **kwargs)
    x = torch.rand(6, *shape)
    out = model(x)
    assert torch.isfinite(out).all()
    if builder.task == "reconstruction" or name == "vae":
        assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    else:
        assert out.shape == (6,)            # the discriminator's logits
    if hasattr(model, "sample"):
        samples = model.sample(5)
        assert samples.shape == (5, *shape) and torch.isfinite(samples).all()
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    if builder.task == "reconstruction":
        _, loss = get_task("reconstruction").training_step(model, x, x)
        assert torch.isfinite(loss)
        plain_update(model)(loss)
    else:
        stats = Generation().train_batch(model, x, torch.zeros(6, dtype=torch.long),
                                         plain_update(model))
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert before and all(changed)


def test_discriminator_step_leaves_the_generator_alone():
    torch.manual_seed(0)
    model = get_builder("gan").build(input_shape=(1, 8, 8), n_outputs=10, d_steps=2)
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    task, update = Generation(), plain_update(model)
    x, y = torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.long)
    first = task.train_batch(model, x, y, update)     # k = 2: a discriminator step only
    assert "g_loss" not in first
    assert all(torch.equal(b, p) for b, p in zip(g_before, model.generator.parameters()))
    assert any(not torch.equal(b, p) for b, p in zip(d_before, model.discriminator.parameters()))
    second = task.train_batch(model, x, y, update)    # then the generator's turn
    assert "g_loss" in second
    assert any(not torch.equal(b, p) for b, p in zip(g_before, model.generator.parameters()))


def test_autoencoder_penalties():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8)
    for variant, key in [("sparse", "sparsity"), ("contractive", "contraction")]:
        model = get_builder("autoencoder").build(input_shape=(1, 8, 8), variant=variant,
                                                 **{key: 1.0})
        _, penalty = model.penalized(x)
        assert penalty > 0
        off = get_builder("autoencoder").build(input_shape=(1, 8, 8), variant=variant,
                                               **{key: 0.0})
        assert off.penalized(x)[1] == 0
    model = get_builder("autoencoder").build(input_shape=(1, 8, 8), variant="denoising",
                                             noise=0.5)
    model.eval()
    assert torch.equal(model(x), model(x))              # no noise outside training
    assert not torch.equal(model.penalized(x)[0], model(x))   # noise while training


def test_bad_builder_values_are_one_line_user_errors():
    cases = [("autoencoder", {"code_size": 0}, "params.code_size"),
             ("autoencoder", {"arch": "conv"}, "params.arch"),   # on flat inputs
             ("vae", {"beta": -1.0}, "params.beta"),
             ("gan", {"d_steps": 0}, "params.d_steps"),
             ("gan", {"arch": "dcgan"}, "params.arch")]
    for name, kwargs, key in cases:
        with pytest.raises(UserError) as e:
            get_builder(name).build(input_shape=(64,), n_outputs=10, **kwargs)
        assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_reconstruction_targets_are_the_inputs():
    from hypersweep.models.data import load_dataset

    s = Reconstruction().prepare(load_dataset("digits"))
    assert s.y_train is s.x_train and s.y_val is s.x_val and s.y_test is s.x_test
    m = Reconstruction().metrics(s.x_val, s.y_val)
    assert m["mse"] == 0 and m["bce"] == m["loss"]


def test_generation_needs_labelled_data():
    import dataclasses

    from hypersweep.models.data import load_dataset

    targets = dataclasses.replace(load_dataset("digits"), task="regression")
    with pytest.raises(UserError, match="data.name: generation .* labelled dataset"):
        Generation().prepare(targets)


def test_objective_metrics_of_the_generative_tasks():
    from hypersweep.search.config import objective_metrics

    gen = objective_metrics("generation")
    assert {"val_fid", "val_confidence", "val_diversity", "train_loss", "val_loss"} <= set(gen)
    assert "train_fid" not in gen       # samples are scored once, as validation metrics
    assert {"train_mse", "val_mse", "val_bce"} <= set(objective_metrics("reconstruction"))


def test_image_grid_draws_gray_and_colour_images_and_skips_vectors():
    assert image_grid(torch.rand(16, 1, 8, 8), rows=2, title="t")[:4] == b"\x89PNG"
    assert image_grid(torch.rand(16, 3, 32, 32), rows=4, title="t")[:4] == b"\x89PNG"
    assert image_grid(torch.rand(16, 2), rows=2, title="t") is None


# ---------------------------------------------------------------- learning tests

@pytest.mark.slow
@pytest.mark.parametrize("variant", typing.get_args(typing.get_type_hints(
    get_builder("autoencoder").fn)["variant"]))
def test_each_autoencoder_variant_learns_digits(run, variant):
    r = run("autoencoder", variant=variant, epochs=15, lr=3e-3, code_size=16)
    assert r.state.value == "COMPLETE", r.reason
    first, last = r.history[0], r.history[-1]
    assert last["val_mse"] < 0.5 * first["val_mse"], (first["val_mse"], last["val_mse"])
    assert "reconstructions.png" in r.artifacts


@pytest.mark.slow
def test_conv_autoencoder_learns_digits(run):
    r = run("autoencoder", arch="conv", epochs=8, lr=3e-3, code_size=16)
    assert r.history[-1]["val_mse"] < 0.5 * r.history[0]["val_mse"]


@pytest.mark.slow
def test_vae_loss_falls_and_samples_get_closer_to_digits(run):
    r = run("vae", epochs=15, lr=3e-3, latent_size=8)
    assert r.state.value == "COMPLETE", r.reason
    first, last = r.history[0], r.history[-1]
    assert last["val_loss"] < 0.8 * first["val_loss"]
    assert last["val_fid"] < 0.7 * first["val_fid"]
    assert {"samples.png", "model.pt", "learning_curve.png"} <= set(r.artifacts)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_gan_classifier_score_improves(run, arch):
    r = run("gan", arch=arch, epochs=15, lr=1e-3, beta1=0.5, latent_size=16, channels=16)
    assert r.state.value == "COMPLETE", r.reason
    fids = [h["val_fid"] for h in r.history]
    # From noise-like first samples to something a digit classifier finds closer to
    # digits; the best of the last epochs, since GAN scores wobble epoch to epoch.
    assert min(fids[-5:]) < 0.5 * fids[0], fids
    assert {"d_loss", "g_loss"} <= {k[6:] for k in r.history[-1] if k.startswith("train_")}
    assert "samples.png" in r.artifacts


@pytest.fixture(autouse=True)
def scorer_cache(tmp_path, monkeypatch):
    """Scorers trained by these tests go to a temporary cache, not the user's."""
    monkeypatch.setenv("HYPERSWEEP_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------- through the loop

def test_gan_trial_is_deterministic_and_takes_every_training_option(run):
    params = dict(arch="mlp", epochs=2, width=32, latent_size=8, d_steps=2, optimizer="sgd",
                  momentum=0.5, lr=0.01, schedule="cosine", weight_decay=1e-4, l1=1e-6,
                  max_norm=3.0, grad_clip=1.0, label_smoothing=0.1, input_noise=0.05,
                  batch_size=128)
    a, b = run("gan", **params), run("gan", **params)
    assert a.state.value == "COMPLETE", a.reason
    drop = lambda h: {k: v for k, v in h.items() if k != "epoch_time"}  # noqa: E731
    assert [drop(h) for h in a.history] == [drop(h) for h in b.history]
    assert a.history[1]["lr"] < a.history[0]["lr"]          # the schedule steps
    weights = [p for p in a_model_params(a) if p.dim() >= 2]
    assert max(w.norm(dim=1).max().item() for w in weights) <= 3.0 + 1e-4   # max-norm


def a_model_params(result) -> list[torch.Tensor]:
    import io

    state = torch.load(io.BytesIO(result.artifacts["model.pt"]), weights_only=True)
    return [v for k, v in state.items() if k.endswith("weight")]


def test_gan_loss_is_the_epochs_d_loss_plus_g_loss(run):
    """With d_steps > 1 the generator steps on one batch in d_steps, so its g_loss is
    a mean over fewer batches: the epoch's loss is d_loss + g_loss, as on validation."""
    r = run("gan", epochs=2, width=16, latent_size=4, d_steps=3, batch_size=128)
    for h in r.history:
        assert h["train_loss"] == h["train_d_loss"] + h["train_g_loss"]
        assert h["val_loss"] == h["val_d_loss"] + h["val_g_loss"]
    # Two batches an epoch, a generator step every fifth: in epoch 3 only. Before it
    # the loss is d_loss alone; after it, the latest g_loss carries over.
    r = run("gan", epochs=4, width=16, latent_size=4, d_steps=5, batch_size=1024)
    assert [("train_g_loss" in h) for h in r.history] == [False, False, True, True]
    assert all(h["train_loss"] == h["train_d_loss"] for h in r.history[:2])
    third, fourth = r.history[2:]
    assert fourth["train_g_loss"] == third["train_g_loss"]
    assert all(h["train_loss"] == h["train_d_loss"] + h["train_g_loss"] for h in (third, fourth))


def test_reconstruction_loss_is_bce_plus_the_variants_penalty(run):
    """The README's loss, bce plus the variant's penalty, on training batches (as
    optimised), on validation and on test; without a penalty it is bce."""
    import io

    from hypersweep.models.data import load_dataset
    from hypersweep.models.train import train_final
    from hypersweep.models.trial import TrialSpec

    h = run("autoencoder", variant="contractive", epochs=1, contraction=0.5).history[-1]
    assert h["train_loss"] > h["train_bce"] and h["val_loss"] > h["val_bce"]
    r = run("autoencoder", variant="sparse", epochs=1, sparsity=0.5)
    h = r.history[-1]
    assert h["train_loss"] > h["train_bce"]
    # The sparse penalty draws no noise: validation's is the trained model's exactly.
    model = get_builder("autoencoder").build(input_shape=(1, 8, 8), variant="sparse",
                                             sparsity=0.5)
    model.load_state_dict(torch.load(io.BytesIO(r.artifacts["model.pt"]), weights_only=True))
    with torch.no_grad():
        penalty = model.eval().penalized(load_dataset("digits").x_val)[1].item()
    assert h["val_loss"] == pytest.approx(h["val_bce"] + penalty, rel=1e-6)
    spec = TrialSpec(model="autoencoder", data={"name": "digits"}, seed=0, threads=1,
                     params={"variant": "sparse", "sparsity": 0.5, "epochs": 1})
    test = train_final(spec).test_metrics
    assert test["test_loss"] > test["test_bce"]
    for variant in ("undercomplete", "denoising"):
        h = run("autoencoder", variant=variant, epochs=1).history[-1]
        assert h["train_loss"] == h["train_bce"] and h["val_loss"] == h["val_bce"], variant


def test_contractive_penalty_is_evaluated_under_no_grad_and_leaves_the_rng_alone():
    """The loop evaluates under no_grad, but the Jacobian penalty needs gradients; its
    probe vectors come from a fixed seed, so a model scores the same every time and
    evaluation does not move training's random stream."""
    torch.manual_seed(0)
    model = get_builder("autoencoder").build(input_shape=(1, 8, 8), variant="contractive",
                                             contraction=1.0).eval()
    task, x, state = Reconstruction(), torch.rand(64, 1, 8, 8), torch.get_rng_state()
    with torch.no_grad():
        first, second = task.evaluate(model, x, x), task.evaluate(model, x, x)
    assert first == second and first["loss"] > first["bce"]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("model,params", [
    ("autoencoder", {"arch": "conv", "variant": "contractive"}),
    ("vae", {"arch": "conv"}),
    ("gan", {"arch": "dcgan", "channels": 8}),
])
def test_generative_trials_on_mnist_and_cifar_files(run, tmp_path, model, params):
    """One epoch on 28x28 grey and 32x32 colour images read from official-format files."""
    from tests.models.test_image_files import write_cifar, write_mnist

    write_mnist(tmp_path / "mnist", gz=True)
    write_cifar(tmp_path / "cifar")
    for name, root in (("mnist", "mnist"), ("cifar10", "cifar")):
        data = {"name": name, "options": {"root": str(tmp_path / root), "download": False}}
        r = run(model, data=data, epochs=1, batch_size=16, **params)
        assert r.state.value == "COMPLETE", r.reason
        assert all(v == v for v in r.metrics.values())     # no NaN


def trained_autoencoder(run, **params) -> torch.nn.Module:
    import io

    r = run("autoencoder", epochs=10, lr=3e-3, code_size=32, **params)
    model = get_builder("autoencoder").build(input_shape=(1, 8, 8), code_size=32, **params)
    model.load_state_dict(torch.load(io.BytesIO(r.artifacts["model.pt"]), weights_only=True))
    return model.eval()


@pytest.mark.slow
def test_sparse_and_contractive_penalties_do_what_they_say(run):
    from hypersweep.models.data import load_dataset

    x = load_dataset("digits").x_val
    plain = trained_autoencoder(run, variant="undercomplete")
    sparse = trained_autoencoder(run, variant="sparse", sparsity=1e-2)
    contractive = trained_autoencoder(run, variant="contractive", contraction=0.1)
    with torch.no_grad():
        assert sparse.encoder(x).abs().mean() < 0.5 * plain.encoder(x).abs().mean()

    def jacobian_norm(model: torch.nn.Module) -> float:
        j = torch.func.vmap(torch.func.jacrev(lambda v: model.encoder(v[None])[0]))(x[:64])
        return j.pow(2).flatten(1).sum(1).mean().item()
    assert jacobian_norm(contractive) < 0.5 * jacobian_norm(plain)


@pytest.mark.parametrize("data, task", [("diabetes", "reconstruction"), ("moons", "reconstruction"),
                                        ("moons", "generation")])
def test_data_outside_the_unit_interval_is_refused(data, task):
    """The decoders end in a sigmoid: standardised features could only be modelled
    where they lie in [0, 1]."""
    from hypersweep.models.data import load_dataset

    splits = load_dataset(data)
    lo, hi = (float(splits.x_train.min()), float(splits.x_train.max()))
    for hook in (get_task(task).check_data, get_task(task).prepare):
        with pytest.raises(UserError) as e:
            hook(splits)
        message = str(e.value)
        assert message.startswith(f"data.name: {task} needs inputs in [0, 1]")
        assert f"{data} has values from" in message and "\n" not in message
        assert lo < 0 and hi > 1


def test_validate_refuses_an_autoencoder_on_standardised_data():
    from hypersweep.models.train import check_fit

    with pytest.raises(UserError, match=r"^data.name: reconstruction needs inputs in \[0, 1\]"):
        check_fit("autoencoder", {"name": "diabetes"}, {})
    for model in ("autoencoder", "vae", "gan"):       # images in [0, 1] still fit
        assert check_fit(model, {"name": "digits"}, {}) == get_builder(model).task


def test_a_vae_reports_the_negative_elbo_whatever_its_beta():
    """beta weights the KL term in training only: the reported loss is recon + KL,
    so that trials with different beta compare."""
    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8)
    vaes = [get_builder("vae").build(input_shape=(1, 8, 8), beta=beta) for beta in (0.25, 4.0)]
    vaes[1].load_state_dict(vaes[0].state_dict())
    reports = []
    for vae in vaes:
        vae.eval()            # the posterior mean: no sampling, the same terms for both
        objective, report = vae.loss(x)
        assert report["loss"] == pytest.approx(report["recon"] + report["kl"], rel=1e-6)
        assert objective.item() == pytest.approx(report["recon"] + vae.beta * report["kl"],
                                                 rel=1e-6)
        reports.append(report)
    assert reports[0] == pytest.approx(reports[1]) and reports[0]["kl"] > 0
    stats = Generation().train_batch(vaes[1], x, y=None, update=lambda loss: None)
    assert stats["loss"] == pytest.approx(stats["recon"] + stats["kl"], rel=1e-6)


def test_label_smoothing_is_for_a_gans_discriminator_and_refused_for_a_vae():
    x = torch.rand(16, 1, 8, 8)
    gan = get_builder("gan").build(input_shape=(1, 8, 8), width=16, latent_size=4)
    stats = Generation(label_smoothing=0.1).train_batch(gan, x, None, plain_update(gan))
    assert set(stats) == {"d_loss", "g_loss"}
    vae = get_builder("vae").build(input_shape=(1, 8, 8), width=16, latent_size=4)
    with pytest.raises(UserError, match=r"^params.label_smoothing: .* a VAE has none"):
        Generation(label_smoothing=0.1).train_batch(vae, x, None, plain_update(vae))


def test_an_undercomplete_code_must_be_smaller_than_the_input():
    build = get_builder("autoencoder").build
    for code_size in (64, 500):                 # digits have 64 pixels
        with pytest.raises(UserError) as e:
            build(input_shape=(1, 8, 8), variant="undercomplete", code_size=code_size)
        assert str(e.value) == (f"params.code_size: an undercomplete code must be smaller "
                                f"than the input, 64 values; got {code_size}")
    build(input_shape=(1, 8, 8), variant="undercomplete", code_size=63)
    build(input_shape=(1, 8, 8), variant="sparse", code_size=128)   # a penalty keeps it sparse


def test_every_end_of_the_default_space_builds_on_digits():
    from hypersweep.spaces import parse_space, space_values
    from hypersweep.spaces.defaults import default_space

    builder = get_builder("autoencoder")
    own = builder.hyperparameters()
    for name, _, value, branch in space_values(parse_space(default_space("autoencoder"))):
        if name not in own:            # a training option, not the builder's
            continue
        for variant in own["variant"].choices:
            params = {"variant": variant, **branch, name: value}
            with torch.device("meta"):
                builder.build(input_shape=(1, 8, 8), n_outputs=10, **params)


def test_a_vae_that_diverges_fails_as_any_loss_that_becomes_nan(run):
    """At a learning rate far too high the decoder's outputs become NaN: torch's
    binary cross-entropy refused them mid-epoch ("all elements of input should be
    between 0 and 1"), and the scorer's FID failed to converge on them; the trial
    now fails as every other model's does."""
    r = run(model="vae", epochs=3, lr=1e4, optimizer="sgd")
    assert r.state.value == "FAIL"
    assert r.reason.startswith("train_loss became nan at epoch "), r.reason


def test_binary_cross_entropy_of_outputs_that_are_not_finite_is_nan():
    from hypersweep.models.generative import bce
    out = torch.tensor([0.5, float("nan")], requires_grad=True)
    loss = bce(out, torch.tensor([1.0, 0.0]))
    assert torch.isnan(loss) and loss.requires_grad        # a step on it makes NaN weights
    assert bce(torch.tensor([0.5]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))


def test_the_gpus_binary_cross_entropy_is_the_cpus_and_its_gradient_too():
    """The GPU's form (no host sync) run on CPU tensors: the same loss and gradient
    where the outputs are finite, NaN where one is not."""
    from hypersweep.models.generative import _bce_queued
    target = torch.tensor([1.0, 0.0, 1.0])
    a = torch.tensor([0.2, 0.3, 0.9], requires_grad=True)
    b = a.detach().clone().requires_grad_()
    torch.nn.functional.binary_cross_entropy(a, target).backward()
    _bce_queued(b, target, "mean").backward()
    assert torch.equal(a.grad, b.grad)
    assert torch.isnan(_bce_queued(torch.tensor([0.5, float("nan")]), target[:2], "mean"))
