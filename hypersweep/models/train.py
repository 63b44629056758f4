"""The one training loop: `train_trial(spec, report) -> TrialResult`.

It runs the same in a test, in the serial executor and in a Ray worker, and imports
neither Ray nor MLflow: the caller's `report(epoch, metrics)` sees every epoch and
answers whether to stop.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Collection, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from hypersweep.models.data import Splits, load_dataset
from hypersweep.models.errors import OutOfRange, UserError, first_line, unknown
from hypersweep.models.figures import Drawing, learning_curve
from hypersweep.models.registry import HParam, builder_names, check_value, get_builder, hparams_of
from hypersweep.models.tasks import Task, get_task
from hypersweep.models.trial import Report, TrialResult, TrialSpec, TrialState

Optimizer = Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
Schedule = Literal["constant", "step", "exponential", "cosine", "warm_restarts"]
Augment = Literal["none", "shift", "flip", "shift_flip"]


@dataclass(frozen=True)
class TrainOptions:
    """The training options every builder shares; each one is a hyperparameter.

    Optimizers: `sgd` and `rmsprop` use `momentum` (and sgd `nesterov`) only when the
    study sets `momentum`, fixed or searched -- `split_params` resolves an unset
    momentum to 0 for them, so a plain `optimizer: sgd` is plain SGD.
    `momentum` is SGD with `momentum` (0.9 by default), `nesterov` the same with
    Nesterov's look-ahead. `beta1`/`beta2` are Adam's and AdamW's. Nesterov needs
    momentum > 0 and is ignored without it.
    `weight_decay` (L2; decoupled for adamw), `l1` and `max_norm` apply to weight
    matrices and kernels only, not to biases or normalisation parameters (the notes,
    7.1: biases are left unregularized). `max_norm` caps the L2 norm of each unit's
    incoming weights after every step. Schedules step once per epoch: `step` multiplies
    the lr by `gamma` (in (0, 1]) every `step_size` epochs, `exponential` every epoch, `cosine`
    anneals to 0 over `epochs`, `warm_restarts` restarts a cosine every
    `restart_period` epochs. `patience` > 0 stops after that many epochs without a
    lower val_loss and restores the best weights. 0 turns max_norm, patience and
    grad_clip off. `augment` transforms image training batches (N, C, H, W): `shift`
    translates each image by up to an eighth of its size (at least one pixel),
    `flip` mirrors half of them left-right (for natural images, not digits). A task
    whose target is its input (reconstruction) takes the augmented image as the
    target. `input_noise` is added after augmenting, to the input only: for
    reconstruction, a denoising objective.
    """

    optimizer: Optimizer = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    l1: float = 0.0
    max_norm: float = 0.0
    schedule: Schedule = "constant"
    step_size: int = 10
    gamma: float = 0.5
    restart_period: int = 10
    label_smoothing: float = 0.0
    input_noise: float = 0.0
    batch_size: int = 64
    epochs: int = 10
    patience: int = 0
    grad_clip: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    augment: Augment = "none"

    def __post_init__(self) -> None:
        for name, ok, rule in _RULES:
            if not ok(getattr(self, name)):
                raise OutOfRange(f"params.{name}: must be {rule}, got {getattr(self, name)!r}")


_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("lr", lambda v: v > 0, "> 0"),
    ("momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("beta1", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("beta2", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("l1", lambda v: v >= 0, ">= 0"),
    ("max_norm", lambda v: v >= 0, ">= 0"),
    ("step_size", lambda v: v >= 1, ">= 1"),
    ("gamma", lambda v: 0 < v <= 1, "in (0, 1]"),     # a decay: above 1 the lr grows
    ("restart_period", lambda v: v >= 1, ">= 1"),
    ("label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("input_noise", lambda v: v >= 0, ">= 0"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("epochs", lambda v: v >= 1, ">= 1"),
    ("patience", lambda v: v >= 0, ">= 0"),
    ("grad_clip", lambda v: v >= 0, ">= 0"),
)


# Training options that only some values of another option use.
_ADAM = ("adam", "adamw")
TRAIN_USED_WHEN: dict[str, tuple[str, tuple[Any, ...]]] = {
    "momentum": ("optimizer", ("sgd", "momentum", "nesterov", "rmsprop")),
    "nesterov": ("optimizer", ("sgd", "momentum")),     # `nesterov` always is
    "beta1": ("optimizer", _ADAM), "beta2": ("optimizer", _ADAM),
    "step_size": ("schedule", ("step",)),
    "gamma": ("schedule", ("step", "exponential")),
    "restart_period": ("schedule", ("warm_restarts",)),
}


def used_when(model: str) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The hyperparameters of `model` (its own and the training options) that only
    some values of another one use: {name: (that one, the values that use it)}."""
    return {**TRAIN_USED_WHEN, **get_builder(model).used_when}


def training_hparams() -> dict[str, HParam]:
    return hparams_of(TrainOptions)


def hyperparameters(model: str) -> dict[str, HParam]:
    """The flat namespace a study sees: the builder's keywords plus the training options."""
    own, shared = get_builder(model).hyperparameters(), training_hparams()
    clash = sorted(set(own) & set(shared))
    if clash:   # a programming error in the builder, not a user error
        raise TypeError(f"builder '{model}' keyword(s) {clash} clash with training options")
    return {**own, **shared}


def split_params(model: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], TrainOptions]:
    """Check every param and split them into builder keywords and TrainOptions."""
    hparams, own = hyperparameters(model), get_builder(model).hyperparameters()
    kwargs: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in params.items():
        if key not in hparams:
            raise unknown("hyperparameter", key, hparams, key=f"params.{key}")
        value = check_value(hparams[key], value, key=f"params.{key}")
        (kwargs if key in own else train)[key] = value
    if train.get("optimizer") in ("sgd", "rmsprop"):
        train.setdefault("momentum", 0.0)   # plain unless the study asks for momentum
    return kwargs, TrainOptions(**train)


def resolved_params(model: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every hyperparameter of `model` (hyperparameters(model): the builder's, then
    the training options) with the value a trial on `params` trains with: the given
    one as split_params checks it (an int given for a float becomes a float), else
    what split_params resolves it to (momentum 0.0 for sgd and rmsprop), else its
    default. A run that records these says everything it trained with, defaults
    included, which a later change of a default cannot alter; training on them is
    training on `params`. Each value is a plain bool, int, float or str, which YAML
    and JSON write (a numpy scalar would not be). Refuses what split_params
    refuses, with its one-line error."""
    kwargs, opts = split_params(model, params)
    hparams = hyperparameters(model)
    values = {**{k: h.default for k, h in hparams.items()}, **kwargs, **dataclasses.asdict(opts)}
    return {k: _plain(values[k]) for k in hparams}


def _plain(value: Any) -> Any:
    """The builtin scalar of `value`: numpy's (np.int64 among a Literal's ints) and
    subclasses (np.float64, np.str_) included; None, for an optional keyword, as is."""
    if isinstance(value, np.generic):
        value = value.item()
    for kind in (bool, int, float, str):     # bool first: it is an int too
        if isinstance(value, kind):
            return kind(value)
    return value


# ---------------------------------------------------------------- optimisation

def _materialize(model: nn.Module, x: torch.Tensor) -> None:
    """Lazy layers (`nn.LazyLinear`, in a model of one's own) take their shapes from
    a first forward pass, made here on two samples in eval mode (no batch-norm
    statistics move): the optimizer cannot hold parameters that have none yet, and
    every such trial failed."""
    from torch.nn.parameter import is_lazy
    if not any(is_lazy(p) for p in model.parameters()):
        return
    training = model.training
    model.eval()
    with torch.no_grad():
        model(x[:2])
    model.train(training)


def weight_params(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices and kernels: what L2, L1 and max-norm regularise."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


def make_optimizer(model: nn.Module, o: TrainOptions) -> torch.optim.Optimizer:
    weights = weight_params(model)
    ids = {id(p) for p in weights}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": weights, "weight_decay": o.weight_decay},
              {"params": others, "weight_decay": 0.0}]
    if o.weight_decay == 0:     # one group: each group is a separate pass per step
        groups = [{"params": weights + others, "weight_decay": 0.0}]
    if o.optimizer in ("sgd", "momentum", "nesterov"):
        nesterov = (o.optimizer == "nesterov" or o.nesterov) and o.momentum > 0
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=nesterov)
    if o.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=o.lr)
    if o.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=o.lr, momentum=o.momentum)
    adam = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
    return adam(groups, lr=o.lr, betas=(o.beta1, o.beta2))


def make_schedule(optimizer: torch.optim.Optimizer,
                  o: TrainOptions) -> torch.optim.lr_scheduler.LRScheduler | None:
    """An lr schedule stepped once per epoch, or None for a constant lr."""
    sched = torch.optim.lr_scheduler
    if o.schedule == "step":
        return sched.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
    if o.schedule == "exponential":
        return sched.ExponentialLR(optimizer, gamma=o.gamma)
    if o.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=o.epochs)
    if o.schedule == "warm_restarts":
        return sched.CosineAnnealingWarmRestarts(optimizer, T_0=o.restart_period)
    return None


# ---------------------------------------------------------------- the trial

@dataclass
class Fit:
    """What one trial trains with, set up once."""

    model: nn.Module
    task: Task
    opts: TrainOptions
    splits: Splits                   # tensors already on the trial's device
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator      # batch order, separate from dropout/noise RNG
    device: torch.device
    target_is_input: bool = False   # reconstruction: an augmented input is its own target

    def autocast(self) -> contextlib.AbstractContextManager:
        return precision_autocast(self.opts.precision, self.device.type)


def precision_autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """`params.precision`'s autocast: bf16's, or none (fp32)."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_trial(spec: TrialSpec, report: Report) -> TrialResult:
    """Train one trial; same spec on CPU -> same metrics (except timings). Memory
    that runs out while it trains (the weights' gradients and optimizer state, the
    activations of a batch) fails it naming the hyperparameter that grew the
    model, not in torch's allocator words."""
    fit = setup(spec)
    try:
        return _train(spec, fit, report)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and not _OUT_OF_MEMORY.search(str(e)):
            raise
        raise UserError(_out_of_memory(spec, fit)) from None


# torch's words for an allocation that failed: on the CPU, and on a GPU
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory", re.IGNORECASE)


def _out_of_memory(spec: TrialSpec, fit: Fit) -> str:
    """`params.width: mlp with width 1500000 ran out of memory on cpu while training:
    ... weights (... GB as float32), their gradients and optimizer state, and the
    activations of batch_size 128`, keyed by the most grown hyperparameter."""
    builder = get_builder(spec.model)
    kwargs, _ = split_params(spec.model, spec.params)
    grown = _grown(builder, kwargs)
    key = f"params.{grown[0]}" if grown else "params"
    given = f" with {', '.join(f'{k} {kwargs[k]}' for k in grown)}" if grown else ""
    n = sum(p.numel() for p in fit.model.parameters())
    return (f"{key}: {builder.name}{given} ran out of memory on {fit.device} while training: "
            f"{n:,} weights ({_gigabytes(n * 4)} as float32), their gradients and optimizer "
            f"state, and the activations of batch_size {fit.opts.batch_size}")


def _train(spec: TrialSpec, fit: Fit, report: Report) -> TrialResult:
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # val_loss, epoch, weights
    for epoch in range(1, fit.opts.epochs + 1):
        metrics = run_epoch(fit)
        history.append(metrics)
        diverged = next((k for k in ("train_loss", "val_loss")
                         if not math.isfinite(metrics[k])), None)
        if diverged:
            report(epoch, dict(metrics))    # its curves show the epoch it diverged in
            return TrialResult(TrialState.FAIL, metrics, tuple(history), epoch,
                               reason=f"{diverged} became {metrics[diverged]} at epoch {epoch}",
                               artifacts={"learning_curve.png": _curve(fit, history)})
        if report(epoch, dict(metrics)):
            return finish(fit, TrialState.PRUNED, metrics, history,
                          reason=f"pruned at epoch {epoch}")
        if fit.opts.patience:
            if best is None or metrics["val_loss"] < best[0]:
                best = (metrics["val_loss"], epoch, _copy_weights(fit.model))
            elif epoch - best[1] >= fit.opts.patience:
                break
    if best is not None:    # early stopping: end on the best epoch's weights and metrics
        fit.model.load_state_dict(best[2])
        return dataclasses.replace(finish(fit, TrialState.COMPLETE, history[best[1] - 1],
                                          history), best_epoch=best[1])
    return finish(fit, TrialState.COMPLETE, history[-1], history)


def setup(spec: TrialSpec) -> Fit:
    seed_everything(spec.seed)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    builder = get_builder(spec.model)
    kwargs, opts = split_params(spec.model, spec.params)
    device = torch.device(spec.device)
    splits = _splits_on(spec.data, device)
    task = get_task(_task_name(builder.task, splits.task), label_smoothing=opts.label_smoothing)
    _check_augment(opts, splits)
    _check_input_noise(opts, splits)
    model = _build_in_memory(builder, splits, kwargs)
    model.to(device)
    prepare = getattr(task, "prepare", None)     # e.g. reconstruction: targets = inputs
    if prepare is not None:
        splits = prepare(splits)
    _materialize(model, splits.x_train)
    # One optimizer over every parameter, also for a GAN: `update` steps one net at a
    # time by leaving the other's gradients unset, which torch optimizers skip.
    optimizer = make_optimizer(model, opts)
    return Fit(model, task, opts, splits, optimizer,
               make_schedule(optimizer, opts), torch.Generator().manual_seed(spec.seed), device,
               target_is_input=splits.y_train is splits.x_train)


def run_epoch(fit: Fit) -> dict[str, float]:
    """Train one epoch, evaluate on validation; the metrics `report` receives."""
    start = time.perf_counter()
    lr = fit.optimizer.param_groups[0]["lr"]
    train = train_epoch(fit)
    val = evaluate(fit, fit.splits.x_val, fit.splits.y_val)
    if fit.schedule is not None:
        fit.schedule.step()
    return {**{f"train_{k}": v for k, v in train.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "lr": lr, "epoch_time": time.perf_counter() - start}


def train_epoch(fit: Fit) -> dict[str, float]:
    """One pass over shuffled training batches. The returned metrics are over the
    outputs seen while training (dropout on, weights moving), as Keras reports
    them: free, where a second pass over the training set is not."""
    model, o, x, y = fit.model, fit.opts, fit.splits.x_train, fit.splits.y_train
    model.train()
    order = torch.randperm(len(y), generator=fit.generator).to(x.device)
    own_steps = getattr(fit.task, "train_batch", None)   # e.g. a GAN's two nets
    from_batches = getattr(fit.task, "train_metrics", None)     # uses the batches' losses
    outputs, targets, losses, stats = [], [], [], []
    batches = list(_batches(order, o.batch_size))
    watched: dict[str, float] = {}      # the last batch's step: its sizes (update_sizes)
    for i, batch in enumerate(batches):
        # index_select, not x[batch]: the same rows, without advanced indexing's
        # general path (about 13 us a batch on the digits MLP, 2% of its epoch).
        xb, yb = x.index_select(0, batch), y.index_select(0, batch)
        if o.augment != "none":
            xb = augment_images(xb, o.augment)
            if fit.target_is_input:     # reconstruct the shifted image, not undo the shift
                yb = xb
        if o.input_noise > 0:           # after: a reconstruction's target stays clean
            xb = xb + o.input_noise * torch.randn_like(xb)
        with fit.autocast():
            if own_steps is not None:
                watch = watched if i == len(batches) - 1 else None
                stats.append((len(batch), own_steps(model, xb, yb,
                                                    partial(update, fit, watch=watch))))
                continue
            out, loss = fit.task.training_step(model, xb, yb)
        update(fit, loss, watch=watched if i == len(batches) - 1 else None)
        outputs.append(out.detach())
        targets.append(yb)
        if from_batches is not None:
            losses.append(loss.detach())
    if own_steps is not None:
        summary = getattr(fit.task, "epoch_metrics", None)    # e.g. a GAN's epoch loss
        means = _weighted_means(stats)
        return {**(means if summary is None else summary(means)), **watched}
    output, target = torch.cat(outputs), torch.cat(targets)
    if from_batches is not None:
        return {**from_batches(output, target, losses, [len(t) for t in targets]), **watched}
    return {**fit.task.metrics(output, target), **watched}


def update(fit: Fit, loss: torch.Tensor, module: nn.Module | None = None,
           watch: dict[str, float] | None = None) -> None:
    """One optimizer step on `loss` with the shared training options (L1, gradient
    clipping, max-norm). With `module`, only its parameters move: the others'
    gradients are cleared, and optimizers skip parameters without one. With
    `watch`, the step's sizes go in it (update_sizes): not for one net of a GAN,
    whose two nets step in turn (a single size would be either's)."""
    o, part = fit.opts, module or fit.model
    if o.l1 > 0:
        loss = loss + o.l1 * sum(p.abs().sum() for p in weight_params(part))
    fit.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if module is not None:
        own = {id(p) for p in module.parameters()}
        for p in fit.model.parameters():
            if id(p) not in own:
                p.grad = None
    before = _sizes_before(part) if watch is not None and module is None else None
    if o.grad_clip > 0:
        nn.utils.clip_grad_norm_(part.parameters(), o.grad_clip)
    fit.optimizer.step()
    if o.max_norm > 0:
        _apply_max_norm(part, o.max_norm)
    if before is not None:
        watch.update(update_sizes(part, *before))


def _sizes_before(model: nn.Module) -> tuple[torch.Tensor, float]:
    """The parameters (as one vector, a copy) and the gradient's norm before a step.
    One vector, not a tensor each: three ops where there were four per parameter,
    about 150 us of the last step of each epoch on a small network."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.empty(0), 0.0
    grad_norm = _one_vector([p.grad for p in params]).norm().item()
    return _one_vector(params), grad_norm


def update_sizes(model: nn.Module, before: torch.Tensor, grad_norm: float) -> dict[str, float]:
    """How big a step was: `grad_norm`, the whole gradient's L2 norm (before any
    clipping), and `update_ratio`, the norm of the step the optimizer took over the
    norm of the weights it moved (all parameters with a gradient, as one vector).
    Bottou's rule of thumb: about 1e-2 per minibatch, not 0.5 nor 1e-5; far
    below, the learning rate is likely too low, far above too high."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params or sum(p.numel() for p in params) != before.numel():
        return {}
    step = (_one_vector(params) - before).norm()
    return {"grad_norm": grad_norm, "update_ratio": (step / before.norm().clamp_min(1e-12)).item()}


def _one_vector(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The tensors' values as one float32 vector (a copy)."""
    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def _weighted_means(stats: list[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    """Per-key means over the batches that reported the key, weighted by batch size."""
    sums: dict[str, list[float]] = {}
    for n, batch in stats:
        for k, v in batch.items():
            acc = sums.setdefault(k, [0.0, 0.0])
            acc[0] += n * v
            acc[1] += n
    return {k: total / count for k, (total, count) in sums.items()}


def evaluate(fit: Fit, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The task's metrics on a split (through its `evaluate` hook when it has one)."""
    own = getattr(fit.task, "evaluate", None)
    if own is None:
        return fit.task.metrics(predict(fit, x), y)
    fit.model.eval()
    with torch.no_grad(), fit.autocast():
        return own(fit.model, x, y)


@torch.no_grad()
def predict(fit: Fit, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Eval-mode outputs for a whole split, in chunks to bound memory."""
    fit.model.eval()
    with fit.autocast():
        return torch.cat([fit.model(x[i:i + chunk]) for i in range(0, len(x), chunk)]).float()


def finish(fit: Fit, state: TrialState, metrics: Mapping[str, float],
           history: list[dict[str, float]], reason: str | None = None) -> TrialResult:
    """The result: final metrics plus size and speed, and the artifacts."""
    start = time.perf_counter()
    val_out = predict(fit, fit.splits.x_val)
    inference_ms = 1000 * (time.perf_counter() - start) / max(len(val_out), 1)
    final = {**metrics, "inference_ms": inference_ms,
             "param_count": float(sum(p.numel() for p in fit.model.parameters()
                                      if p.requires_grad))}
    artifacts = {"model.pt": _state_bytes(fit.model), "learning_curve.png": _curve(fit, history),
                 **shown_on(fit, val_out, fit.splits.x_val, fit.splits.y_val)}
    return TrialResult(state, final, tuple(history), len(history), reason, artifacts)


def shown_on(fit: Fit, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             split: str = "validation") -> dict[str, Any]:
    """What the task shows of the model on one split (a trial's validation, the final
    run's test; the figure's title names it), by artifact name: its figure of the
    outputs `out`, and the files its `artifacts` hook makes from the model itself
    (samples, decodes), which a GAN's or VAE's figure of outputs cannot show."""
    shown: dict[str, Any] = {}
    figure = fit.task.figure(out, y, class_names=fit.splits.class_names, split=split)
    if figure is not None:
        shown[fit.task.figure_name] = figure
    if hasattr(fit.task, "artifacts"):
        fit.model.eval()
        with torch.no_grad():
            shown.update(fit.task.artifacts(fit.model, x, y, fit.splits.class_names))
    return shown


# ---------------------------------------------------------------- the final model

@dataclass(frozen=True)
class FinalResult:
    test_metrics: Mapping[str, float]      # `test_` + the task's metrics, evaluated once
    train_metrics: Mapping[str, float]     # the last epoch's, on train+validation
    artifacts: Mapping[str, Any]           # model.pt and, as test_<name>, what shown_on shows


def train_final(spec: TrialSpec) -> FinalResult:
    """Retrain `spec` on train+validation for `epochs` (no early stopping: there is no
    validation split left to stop on), then evaluate on the test split exactly once.
    The artifacts are those a trial shows of validation, made on test and named
    `test_<name>` (test_confusion_matrix.png, test_samples.png, ...), so that a
    final run is read as its trials are; the learning curve, which plots
    validation, is left out."""
    fit = setup(dataclasses.replace(spec, params={**spec.params, "patience": 0}))
    s = fit.splits
    if len(s.y_test) == 0:
        raise UserError("data.test_fraction: the study has no test split (test_fraction 0)")
    fit.splits = Splits(torch.cat([s.x_train, s.x_val]), torch.cat([s.y_train, s.y_val]),
                        s.x_val[:0], s.y_val[:0], s.x_test, s.y_test,
                        input_shape=s.input_shape, n_outputs=s.n_outputs, task=s.task,
                        name=s.name, class_names=s.class_names)
    train: dict[str, float] = {}
    for _ in range(fit.opts.epochs):
        train = train_epoch(fit)
        if fit.schedule is not None:
            fit.schedule.step()
    # Evaluated as validation is in the search: generation's scores and a penalized
    # reconstruction loss need the model, not only its outputs.
    test = {f"test_{k}": v for k, v in evaluate(fit, s.x_test, s.y_test).items()}
    out = predict(fit, s.x_test)
    shown = shown_on(fit, out, s.x_test, s.y_test, split="test")
    artifacts = {"model.pt": _state_bytes(fit.model), **{f"test_{k}": v for k, v in shown.items()}}
    return FinalResult(test, {f"train_{k}": v for k, v in train.items()}, artifacts)


# ---------------------------------------------------------------- helpers

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_description(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a trained model takes and gives, as JSON (the study's `data.json`): the
    dataset and its options, one sample's shape, the task, the classes in label
    order, and how files became inputs and targets (a table's means, stds and
    categories: see models.tables)."""
    s = loaded_splits(data)
    return {"dataset": s.name, "options": dict(data.get("options") or {}), "task": s.task,
            "input_shape": list(s.input_shape), "n_outputs": s.n_outputs,
            "classes": list(s.class_names), **s.meta}


def loaded_splits(data: Mapping[str, Any]) -> Splits:
    """The dataset's splits on the CPU, loaded once per process for consecutive
    trials on the same data (a serial study, a Ray worker): the tensors are shared,
    and nothing in training writes to them in place."""
    def load() -> Splits:
        spec = _flat(data)
        return load_dataset(spec.pop("name", "digits"), **spec)

    return preload(data, load)


def preload(data: Mapping[str, Any], fetch: Callable[[], Splits]) -> Splits:
    """Unless this process holds `data` already, make `fetch()` what its trials on
    `data` train on (a Ray worker fetches the splits the driver loaded, once);
    the splits it holds."""
    key = data_key(data)
    if key not in _LOADED:
        _LOADED.clear()                 # one dataset at a time bounds memory
        _LOADED[key] = fetch()
    return _LOADED[key]


_LOADED: dict[str, Splits] = {}


def _flat(data: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset's options inline, from a DataConfig dump ({name, ..., options:
    {...}}, as validation loads it) or already inline (as trials load it)."""
    spec = dict(data)
    options = spec.pop("options", None) or {}
    return {**spec, **options}


def data_key(data: Mapping[str, Any]) -> str:
    """One key per dataset, whichever form its options come in (see `_flat`)."""
    return json.dumps(_flat(data), sort_keys=True, default=str)


def _task_name(builder_task: str, data_task: str) -> str:
    # Supervised builders (registered as classification) fit whichever task the
    # dataset poses: an rnn classifies seq_digits, regresses `adding` and transduces
    # `copy`. Other tasks (reconstruction, generation, ...) are the builder's own.
    supervised = ("classification", "regression")
    return data_task if builder_task in supervised else builder_task


_ON_ACCELERATOR: dict[tuple[str, str], Splits] = {}


def _splits_on(data: Mapping[str, Any], device: torch.device) -> Splits:
    """The splits on `device`. They stay there for the next trial of this process
    (a Ray worker runs many), so each worker loads and copies a dataset once."""
    if device.type == "cpu":
        return loaded_splits(data)
    key = (data_key(data), str(device))
    if key not in _ON_ACCELERATOR:
        _ON_ACCELERATOR.clear()         # one dataset at a time bounds device memory
        _ON_ACCELERATOR[key] = _to_device(loaded_splits(data), device)
    return _ON_ACCELERATOR[key]


def trial_task(model: str, data: Mapping[str, Any]) -> str:
    """The task a trial of `model` on `data` trains with (loading the dataset, which
    also checks its options): what the study's objective metrics must come from."""
    return _task_name(get_builder(model).task, loaded_splits(data).task)


# What check_fit let pass for a model of one's own that failed at the defaults of
# its searched hyperparameters, by its arguments (fit_note reads it for `validate`).
_FIT_NOTES: dict[str, str] = {}


def _fit_key(model: str, data: Mapping[str, Any], params: Mapping[str, Any],
             searched: Collection[str]) -> str:
    return json.dumps([model, data_key(data), dict(params), sorted(searched)], sort_keys=True,
                      default=str)


def fit_note(model: str, data: Mapping[str, Any], params: Mapping[str, Any],
             searched: Collection[str] = ()) -> str | None:
    """The note for a model of one's own that check_fit found failing at the defaults
    of its searched hyperparameters (the trials' values may not fail): None where
    it did not, or check_fit has not run on these arguments in this process."""
    return _FIT_NOTES.get(_fit_key(model, data, params, searched))


def check_fit(model: str, data: Mapping[str, Any], params: Mapping[str, Any],
              searched: Collection[str] = (), keys: Mapping[str, str] | None = None,
              lows: Sequence[Mapping[str, int]] = ()) -> str:
    """The trial task, after one training step of the model built from the fixed
    `params` on two samples: a builder that cannot take the dataset (a CNN on
    sequences, a many-to-one net on per-step targets, a kernel too large for the
    images) is a UserError before the study starts, not a failed trial. When builder
    hyperparameters are searched, the searched ones take their defaults here, and an
    error passes only when it concerns one of them (`_knobs`), which sampled values
    may fix; one about fixed values alone (a dropout of 1.5) fails every trial.
    `keys`: the config's key of each of `params` that the config does not hold as
    `params.NAME` (`space.head`, a value the space fixes); an error about it names
    that key instead. `lows`: for each combination of branches a trial can take,
    the least whole number each searched hyperparameter can be (spaces.trial_lows).
    A model too large for memory at the defaults that fits with those at their
    lows in every combination (a width of 200,000 at depth 1 of `depth: {int: [1,
    3]}`) is left to the trials; one that does not fit in some combination is
    refused as it is there (`width 200000, depth 3`)."""
    try:
        return _check_fit(model, data, params, searched, lows)
    except UserError as e:
        keyed = _keyed(e, model, params, searched, keys or {})
        if keyed is None:
            raise
        raise keyed from None


def _keyed(e: UserError, model: str, params: Mapping[str, Any], searched: Collection[str],
           keys: Mapping[str, str]) -> UserError | None:
    """`e` keyed by where the value it is about comes from, or None where its key
    says so already: a value of `keys` by its key, also for a `model:` error that
    names that one knob (`set head: many_to_one`: the user wrote head, not model);
    a default, which the user never wrote, by its name and value, not `params.NAME`."""
    key, _, text = str(e).partition(": ")

    def said(message: str) -> UserError:    # the same kind of error (a TooLarge keeps its shapes)
        return TooLarge(message, e.shapes) if isinstance(e, TooLarge) else type(e)(message)

    if key == "model":
        # the one knob it names: one the user set, else one of the model's at its default
        about = _knobs(e, keys) or _knobs(e, params) or _knobs(e, hyperparameters(model))
        name = about.pop() if len(about) == 1 else ""
        if name in params and name not in keys:     # the value the user fixed: its key
            return said(f"params.{name}: {text}")
    else:
        name = key.removeprefix("params.") if key.startswith("params.") else ""
    if name in keys:
        return said(f"{keys[name]}: {text}")
    hparams = hyperparameters(model)
    if not name or name in params or name in searched or name not in hparams:
        return None     # a `model:` error of no one knob of this model's stays the model's
    return said(f"{name} (its default, {hparams[name].default!r}): {text}")


def _check_fit(model: str, data: Mapping[str, Any], params: Mapping[str, Any],
               searched: Collection[str], lows: Sequence[Mapping[str, int]]) -> str:
    builder, splits = get_builder(model), loaded_splits(data)
    kwargs, opts = split_params(model, params)
    # A task that has no use for label smoothing (regression) refuses a fixed one.
    task = get_task(_task_name(builder.task, splits.task), label_smoothing=opts.label_smoothing)
    check_data = getattr(task, "check_data", None)
    if check_data is not None:
        check_data(splits)
    _check_augment(opts, splits)
    _check_input_noise(opts, splits)
    own = builder.hyperparameters()
    tunable = set(searched) & set(own)
    key = _fit_key(model, data, params, searched)
    _FIT_NOTES.pop(key, None)

    def at_defaults(failure: str) -> None:
        """A model of one's own failed at its searched hyperparameters' defaults: left
        to the trials, with a note (a trial's values may fail alike)."""
        if builder.family == "own":
            shown = ", ".join(f"{k}={own[k].default!r}" for k in sorted(tunable))
            _FIT_NOTES[key] = (f"model: {model} fails at its defaults ({shown}) on dataset "
                               f"'{splits.name}' (input_shape {tuple(splits.input_shape)}): "
                               f"{failure}; a trial whose values fail alike fails")
    try:
        net = _build_in_memory(builder, splits, kwargs)
    except UserError as e:
        if str(e).startswith("model:"):
            raise
        if isinstance(e, TooLarge) and lows:
            at_lows = _too_large_at_lows(builder, e.shapes, kwargs, tunable, lows)
            if at_lows is not None:
                raise at_lows from None
        elif not _knobs(e, own) & tunable:
            raise
        net = None
    except Exception as e:  # noqa: BLE001 - a builder of the study's own failing
        if builder.family != "own":
            raise
        if not tunable:
            raise UserError(f"model: {model} fails to build for dataset '{splits.name}' "
                            f"(input_shape {tuple(splits.input_shape)}, n_outputs "
                            f"{splits.n_outputs}): {type(e).__name__}: {first_line(e)}") from None
        at_defaults(f"{type(e).__name__}: {first_line(e)}")
        net = None      # at its defaults; the values sampled are the trials' to try
    else:
        if builder.family == "own":
            _check_own(model, net, task, splits)
    _check_targets(builder.name, task, splits)     # after the builder's own, sharper checks
    if net is None:
        return task.name
    _check_inputs(builder.name, net, splits)
    check_model = getattr(task, "check_model", None)
    if check_model is not None:
        check_model(net)
    # Two samples, or one where batches hold one: batch norm cannot train on one.
    n = min(2, opts.batch_size)
    try:
        # Under the autocast the trials train in: a net may fail only with it, or only without.
        with torch.no_grad(), precision_autocast(opts.precision):
            x, y = splits.x_val[:n], splits.y_val[:n]
            if hasattr(task, "train_batch"):    # its own steps (a GAN's two nets): not taken
                task.train_batch(net, x, y, lambda *step, **of: None)
            else:
                task.training_step(net, x, y)
    except UserError as e:
        # A `model` error names the knob that fixes it (head: many_to_many): unless
        # that knob is searched, no trial can succeed.
        if not _knobs(e, own) & tunable:
            raise
    except Exception as e:  # noqa: BLE001 - with searched values, the trial's to report
        if n == 1 and _ONE_PER_CHANNEL in str(e):
            raise UserError(f"params.batch_size: 1, but {model}'s batch norm needs at least "
                            "2 samples a batch to train; use batch_size 2 or more") from None
        # Fixed values only, and the data's own targets (no `prepare`: this step is
        # the trial's first): every trial would fail the same way.
        if not tunable and not hasattr(task, "prepare"):
            raise UserError(f"model: {model} on dataset '{splits.name}' fails its first "
                            f"training step: {first_line(e)}") from None
        at_defaults(f"its first training step: {type(e).__name__}: {first_line(e)}")
    return task.name


# torch's batch norm, given one sample to train on
_ONE_PER_CHANNEL = "Expected more than 1 value per channel when training"

# A shape's axes, `(channels, height, width)` or `(steps,)`: not hyperparameters.
_AXES = re.compile(r"\((?:\w+, )*\w+,?\)")


def _knobs(e: UserError, names: Collection[str]) -> set[str]:
    """The hyperparameters among `names` that a build or training error concerns:
    the one its key names (`params.kernel: ...`) and, unless it is OutOfRange (a
    value wrong whatever the others are), those its message names (`use padding:
    same`). A bare `params:` error (too many weights) concerns them all."""
    key, _, text = str(e).partition(": ")
    if key == "params":
        return set(names)
    knobs = {key.removeprefix("params.")} & set(names)
    if isinstance(e, OutOfRange):
        return knobs
    return knobs | set(re.findall(r"\w+", _AXES.sub("", text))) & set(names)


def _check_targets(builder: str, task: Task, splits: Splits) -> None:
    """A task that takes its targets from the data as they are (one without a
    `prepare` hook, such as sequence transduction) needs a dataset that poses it."""
    if task.name != splits.task and not hasattr(task, "prepare"):
        raise UserError(f"model: {builder} trains {task.name}, which needs a dataset of that "
                        f"task for its targets; '{splits.name}' is {splits.task}")


def _check_inputs(builder: str, net: nn.Module, splits: Splits) -> None:
    """Token ids (integer inputs) need a net that embeds them: any other one
    multiplies them with float weights, which torch refuses."""
    if splits.x_train.is_floating_point():
        return
    if not any(isinstance(m, nn.Embedding) for m in net.modules()):
        fits = sorted(n for n in builder_names() if get_builder(n).task == splits.task)
        raise UserError(f"model: {builder} needs float inputs; dataset '{splits.name}' gives "
                        f"token ids, which only a builder that embeds them takes "
                        f"({', '.join(fits) or 'none'})")


def _check_own(model: str, net: Any, task: Task, splits: Splits) -> None:
    """A builder of the study's own returns a torch module whose output the task's
    loss reads: a score per class (or token) on the last axis, or `n_outputs`
    values per sample for regression. A head of the wrong size would pass a first
    step whose targets it happens to cover."""
    if not isinstance(net, nn.Module):
        raise UserError(f"model: {model} returned {type(net).__name__}, not a torch.nn.Module"
                        + (" (a missing return?)" if net is None else ""))
    if task.name not in ("classification", "regression", "language_modelling",
                         "sequence_transduction"):
        return
    x = splits.x_val[:2]
    try:
        with torch.no_grad():
            out = net(x)
    except Exception:   # noqa: BLE001 - the first training step reports it
        return
    if not isinstance(out, torch.Tensor):
        raise UserError(f"model: {model} returns {type(out).__name__} from forward, not a "
                        "tensor of scores")
    k = splits.n_outputs
    if task.name == "regression":
        if out.numel() != len(x) * k:
            raise UserError(f"model: {model} gives outputs of shape {tuple(out.shape)}; "
                            f"regression on '{splits.name}' needs {k} value"
                            f"{'s' if k > 1 else ''} per sample (n_outputs)")
    elif out.ndim < 2 or out.shape[-1] != k:
        raise UserError(f"model: {model} gives outputs of shape {tuple(out.shape)}; "
                        f"{task.name} on '{splits.name}' needs {k} scores per sample "
                        "(n_outputs) on the last axis")


def _build_in_memory(builder: Any, splits: Splits, kwargs: Mapping[str, Any]) -> nn.Module:
    """The model, or a UserError when its weights do not fit in memory (a width of
    a hundred million): torch's allocator error is a traceback otherwise. Sizes past
    what torch can count (2**63) are named by the hyperparameters that ask for them."""
    shapes = {"input_shape": splits.input_shape, "n_outputs": splits.n_outputs}
    # Counted first, on the meta device: each of a model's layers may be allocated
    # (memory is promised lazily), and its weights then filled until the kernel
    # kills the process, when they do not fit together.
    try:
        n = _weights_on_meta(builder, shapes, kwargs)
    except Exception:  # noqa: BLE001 - the build below raises it, as a trial sees it
        n = 0
    if _past(n, memory_bytes()):
        raise TooLarge(_size_error(builder, kwargs, n), shapes)
    try:
        return builder.build(**shapes, **kwargs)
    except (MemoryError, RuntimeError, TypeError) as e:
        if not isinstance(e, MemoryError) and not _too_large(e):
            raise
    n = _weights_on_meta(builder, shapes, kwargs)
    raise TooLarge(_size_error(builder, kwargs, n), shapes) from None


def _too_large_at_lows(builder: Any, shapes: Mapping[str, Any], kwargs: Mapping[str, Any],
                       tunable: Collection[str],
                       lows: Sequence[Mapping[str, int]]) -> "TooLarge | None":
    """None when the model fits in memory with the `tunable` whole numbers at their
    lows in each combination of branches; else its error in the first that does not
    (a tunable a combination does not set takes its default)."""
    memory = memory_bytes()
    for each in lows:
        at = {**kwargs, **{k: v for k, v in each.items() if k in tunable}}
        n = _weights_on_meta(builder, shapes, at)
        if _past(n, memory):
            return TooLarge(_size_error(builder, at, n), shapes)
    return None


class TooLarge(UserError):
    """A model whose weights do not fit in this machine's memory; `shapes`: the
    data's (input_shape, n_outputs) it was built for."""

    def __init__(self, message: str, shapes: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.shapes = shapes

    def __reduce__(self) -> tuple:          # a trial's error crosses processes
        return type(self), (str(self), self.shapes)


def _weights_on_meta(builder: Any, shapes: Mapping[str, Any],
                     kwargs: Mapping[str, Any]) -> int | None:
    """The model's weight count, from a build on the meta device (shapes only: no
    memory), or None past what torch can count."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in builder.build(**shapes, **kwargs).parameters())
    except (RuntimeError, TypeError) as e:
        if not _too_large(e):
            raise
        return None


def _size_error(builder: Any, kwargs: Mapping[str, Any], n: int | None,
                name: str | None = None, least: Mapping[str, int] = {}) -> str:
    """The words for a model too large for memory (`n` weights; None: past what
    torch can count), keyed by `name`, or else by the hyperparameter that grew it:
    `params.width: mlp with width 1000000000 has 75,000,000,010 weights (300.0 GB
    as float32), more than this machine's memory holds`. `least`: the other whole
    numbers it was counted at, the least the space gives them (`mlp with width
    70000 (at depth 3, the least the space gives) has ...`)."""
    own = builder.hyperparameters()
    least = {k: v for k, v in least.items() if k not in own or v != own[k].default}
    if name and least:      # those not at their defaults, which the words leave unsaid
        parts = [f"{k} {v}" for k, v in least.items()]
        at = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
        given = f"{name} {kwargs[name]} (at {at}, the least the space gives)"
        if n is None:
            return (f"params.{name}: {builder.name} with {given} has more weights than torch "
                    "can count")
        return (f"params.{name}: {builder.name} with {given} has {n:,} weights "
                f"({_gigabytes(n * 4)} as float32), more than this machine's memory holds")
    if name:
        grown = [name]
    elif n is None:     # those past a million: their product may overflow
        grown = [k for k, v in kwargs.items()
                 if isinstance(v, int) and not isinstance(v, bool) and v > 2**20]
    else:               # the most grown first
        grown = _grown(builder, kwargs)
    # Keyed by the most grown one; past what torch counts, only where one alone is huge.
    keyed = len(grown) == 1 or (bool(grown) and n is not None)
    key = f"params.{grown[0]}" if keyed else "params"
    given = ", ".join(f"{k} {kwargs[k]}" for k in grown) or "these params"
    if n is None:
        return f"{key}: {builder.name} with {given} has more weights than torch can count"
    return (f"{key}: {builder.name} with {given} has {n:,} weights ({_gigabytes(n * 4)} as "
            "float32), more than this machine's memory holds")


def _gigabytes(nbytes: int) -> str:
    """A size in GB, or TB, PB, EB where GB would run to many digits."""
    size, unit = nbytes / 1e9, "GB"
    for bigger in ("TB", "PB", "EB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:,.1f} {unit}"


def memory_bytes() -> int:
    """This machine's memory: the most a trial's model can hold. A container's
    limit (its cgroup's, v2 or v1) where it sets one below the physical memory."""
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():          # `max`: none
            return min(physical, int(text))
    return physical


def _grown(builder: Any, kwargs: Mapping[str, Any]) -> list[str]:
    """The whole-number hyperparameters set above their defaults, the most grown
    first: what makes a model too large, and the key its error names."""
    defaults = {k: h.default for k, h in builder.hyperparameters().items()}
    grown = [(v / max(defaults[k], 1), k) for k, v in kwargs.items()
             if isinstance(v, int) and not isinstance(v, bool)
             and isinstance(defaults.get(k), int) and v > defaults[k]]
    return [k for _, k in sorted(grown, reverse=True)]


def _too_large(e: BaseException) -> bool:
    """torch's words for a tensor it cannot allocate, or whose size overflows."""
    return "allocate" in str(e) or "overflow" in str(e).lower()


def check_space_values(model: str, data: Mapping[str, Any], params: Mapping[str, Any],
                       values: Iterable[tuple[str, str, Any, Mapping[str, Any]]],
                       lows: Callable[[Mapping[str, Any]], Mapping[str, int]] | None = None
                       ) -> None:
    """Each value the space names (a range's ends, each choice, each fixed value)
    is one its hyperparameter takes. `values`: (name, key, value, the branch values
    that lead to it). Each value is set alone over the fixed params and the
    branch's values, and checked as a trial would check it: by the training
    options' rules, or by building the model (on the meta device: shapes only, no
    memory). A UserError about that name comes back keyed by the space's key
    (`space.dropout: must be in [0, 1), got 1.5`) when it is `OutOfRange`, or when
    it is about a training option the dataset refuses whatever the rest (a
    `label_smoothing` on regression, an `input_noise` on token ids, an `augment`
    of images on vectors); anything else (a kernel too large for these images,
    which other values may fit) is left to check_fit and the trials. A value whose
    model has more weights than this machine's memory holds is refused too, unless
    it fits with the other whole numbers at their `lows(branch)`, the least each
    can be in a trial of that branch (a width of 100,000 may fit at depth 1, not
    at the default 2)."""
    builder, shapes, memory = get_builder(model), None, 0
    own = builder.hyperparameters()
    least: dict[tuple, Mapping[str, int]] = {}     # lows by branch: one walk of the space each
    for name, key, value, branch in values:
        prefix = f"params.{name}: "
        try:
            kwargs, opts = split_params(model, {**params, **branch, name: value})
            if name in own:
                shapes, memory = shapes or _shapes(data), memory or memory_bytes()
                # Built on the meta device there: a value out of its range is OutOfRange.
                at = tuple(branch.items())
                if at not in least:
                    least[at] = lows(branch) if lows else {}
                too_large = _too_large_by(model, shapes, {**params, **branch}, name, value,
                                          least[at], memory)
                if too_large is not None:
                    raise OutOfRange(too_large)
            elif name in ("label_smoothing", "input_noise", "augment"):
                splits = loaded_splits(data)
                get_task(_task_name(builder.task, splits.task),
                         label_smoothing=opts.label_smoothing)
                _check_input_noise(opts, splits)
                _check_augment(opts, splits)
        except OutOfRange as e:
            if str(e).startswith(prefix):
                raise UserError(f"{key}: {str(e)[len(prefix):]}") from None
        except UserError as e:
            if str(e).startswith(prefix) and name not in own:
                raise UserError(f"{key}: {str(e)[len(prefix):]}") from None
        except Exception:  # noqa: BLE001, S112 - not a value error: check_fit or the trial says
            continue


def _past(n: int | None, memory: int) -> bool:
    """Whether `n` weights (None: past what torch counts) overflow `memory` as float32."""
    return n is None or n * 4 > memory


def _too_large_by(model: str, shapes: Mapping[str, Any], fixed: Mapping[str, Any], name: str,
                  value: Any, lows: Mapping[str, int], memory: int) -> str | None:
    """The error when `name: value`, over the `fixed` values and with the other
    whole numbers at their `lows` (the least the space gives them: a width of
    100,000 fits at depth 1, and one of 70,000 not at depth 3, whatever the
    default), has more weights than `memory` holds, and is what makes it so: a
    model too large without it is the fixed params' error, check_fit's. Else None."""
    builder = get_builder(model)
    own = builder.hyperparameters()
    lower = {k: v for k, v in lows.items() if k != name and k not in fixed and k in own}
    kwargs, _ = split_params(model, {**fixed, **lower, name: value})
    n = _weights_on_meta(builder, shapes, kwargs)
    if not _past(n, memory):
        return None
    if _past(_weights_on_meta(builder, shapes, split_params(model, fixed)[0]), memory):
        return None
    return _size_error(builder, kwargs, n, name, least=lower)


def _shapes(data: Mapping[str, Any]) -> dict[str, Any]:
    splits = loaded_splits(data)
    return {"input_shape": splits.input_shape, "n_outputs": splits.n_outputs}


def _check_input_noise(opts: TrainOptions, splits: Splits) -> None:
    if opts.input_noise > 0 and not splits.x_train.is_floating_point():
        raise UserError(f"params.input_noise: Gaussian noise needs float inputs; dataset "
                        f"'{splits.name}' gives token ids; use input_noise: 0")


def _check_augment(opts: TrainOptions, splits: Splits) -> None:
    if opts.augment != "none" and len(splits.input_shape) != 3:
        raise UserError(f"params.augment: '{opts.augment}' needs images (channels, height, "
                        f"width); dataset '{splits.name}' gives {splits.input_shape}")


def augment_images(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Random shifts (zero fill) and/or left-right flips, drawn per image."""
    n, _, h, w = x.shape
    if "shift" in kind:
        s = max(1, min(h, w) // 8)
        padded = torch.nn.functional.pad(x, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n, 1, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * s + 1, (n, 1, 1, 1), device=x.device)
        c, wide = x.shape[1], w + 2 * s
        rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy).expand(n, c, h, wide)
        cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx).expand(n, c, h, w)
        x = padded.gather(2, rows).gather(3, cols)
    if "flip" in kind:
        mask = torch.rand(n, 1, 1, 1, device=x.device) < 0.5
        x = torch.where(mask, x.flip(-1), x)
    return x


def _to_device(s: Splits, device: torch.device) -> Splits:
    # Once per trial: batches are then slices of tensors already in place.
    return Splits(*(t.to(device) for t in (s.x_train, s.y_train, s.x_val, s.y_val,
                                           s.x_test, s.y_test)),
                  input_shape=s.input_shape, n_outputs=s.n_outputs, task=s.task,
                  name=s.name, class_names=s.class_names)


def _batches(order: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """Index batches of `size`; a last batch of one sample joins the one before, since
    batch norm cannot train on a single sample."""
    n = len(order)
    stops = list(range(size, n, size)) + [n]
    if len(stops) > 1 and stops[-1] - stops[-2] == 1:
        stops.pop(-2)
    start = 0
    for stop in stops:
        yield order[start:stop]
        start = stop


@torch.no_grad()
def _apply_max_norm(model: nn.Module, max_norm: float) -> None:
    for w in weight_params(model):
        w.copy_(torch.renorm(w, 2, 0, max_norm))   # dim 0 = one unit's incoming weights


def _copy_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _curve(fit: Fit, history: list[dict[str, float]]) -> Drawing:
    return Drawing(learning_curve, (tuple(history),), {"metric": f"val_{fit.task.metric_names[0]}"})
