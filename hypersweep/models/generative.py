"""The reconstruction and generation tasks (autoencoders; VAEs and GANs).

Besides the Task surface they use the optional hooks of models.tasks.Task that
the training loop calls when a task defines them: `check_data` (refuse a dataset
before any trial), `prepare` (see the data once), `train_batch` (take its own
optimizer steps), `epoch_metrics` (an epoch's training metrics from its batches'
stats), `train_metrics` (from its batches' losses), `evaluate` and `artifacts`
(need the model, not only its outputs on a split); and the optional attribute
`train_metric_names` (generation's scores are not training metrics).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hypersweep.models.data import Splits
from hypersweep.models.errors import UserError, refuse_label_smoothing
from hypersweep.models.figures import new_figure, to_png
from hypersweep.models.scorer import Scorer, scorer_for

# update(loss, module=None): one optimizer step on `loss`; with `module`, only its
# parameters move (the discriminator's step must leave the generator alone).
Update = Callable[..., None]
SAMPLES = 1000     # generated images scored per evaluation (at most)
CHUNK = 1024       # samples per forward pass when evaluating a split: bounds memory


class Reconstruction:
    """The target is the input: binary cross-entropy per pixel (pixels in [0, 1])
    plus the model's penalty (sparse, contractive); metrics mse and bce; figure =
    images of the split over their reconstructions."""

    name: ClassVar[str] = "reconstruction"
    metric_names: ClassVar[tuple[str, ...]] = ("mse", "bce")
    figure_name: ClassVar[str] = "reconstructions.png"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        refuse_label_smoothing(label_smoothing, self.name)     # a uniform factory; only 0

    @staticmethod
    def check_data(splits: Splits) -> None:
        check_unit_range(splits, "reconstruction")

    def prepare(self, splits: Splits) -> Splits:
        self.check_data(splits)
        return dataclasses.replace(splits, y_train=splits.x_train, y_val=splits.x_val,
                                   y_test=splits.x_test)

    def training_step(self, model: nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        penalized = getattr(model, "penalized", None)
        if penalized is None:
            out = model(x)
            return out, self.loss(out, y)
        out, penalty = penalized(x)
        return out, self.loss(out, y) + penalty

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return bce(output, y)

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """What the outputs alone give: `loss` is their bce, without the variant's
        penalty, which needs the model (train_metrics and evaluate add it)."""
        bce = self.loss(output, y).item()
        return {"loss": bce, "mse": F.mse_loss(output.float(), y.float()).item(), "bce": bce}

    def train_metrics(self, output: torch.Tensor, y: torch.Tensor,
                      losses: Sequence[torch.Tensor], sizes: Sequence[int]) -> dict[str, float]:
        """The training batches' metrics: `loss` is bce plus the mean penalty that
        training_step added to each batch's loss (a batch's loss less its bce), so
        that it is bce exactly where the variant has no penalty."""
        metrics = self.metrics(output, y)
        bces = [self.loss(o, t) for o, t in zip(output.split(sizes), y.split(sizes))]
        penalties = (torch.stack(losses) - torch.stack(bces)).tolist()
        metrics["loss"] += sum(p * n for p, n in zip(penalties, sizes)) / max(sum(sizes), 1)
        return metrics

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """mse and bce of the reconstructions of the clean inputs; `loss` adds the
        model's penalty on them, computed as in training (`penalized`)."""
        out = torch.cat([model(c) for c in x.split(CHUNK)]).float()
        metrics = self.metrics(out, y)
        penalized = getattr(model, "penalized", None)
        if penalized is not None:
            metrics["loss"] += self._penalty(penalized, x)
        return metrics

    @staticmethod
    def _penalty(penalized: Callable[..., tuple[torch.Tensor, torch.Tensor]],
                 x: torch.Tensor) -> float:
        """The mean penalty over `x`. The contractive one differentiates the code, so
        gradients are on (the loop evaluates under no_grad); the random draws
        (contractive's probe vectors, denoising's noise) come from a fixed seed on a
        forked stream: the same model scores the same every epoch, and training's
        random numbers are left as they were."""
        devices = [] if x.device.type == "cpu" else [x.device]
        with torch.enable_grad(), torch.random.fork_rng(devices, device_type=x.device.type):
            torch.manual_seed(0)
            total = sum(len(c) * penalized(c)[1].item() for c in x.split(CHUNK))
        return total / max(len(x), 1)

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (), split: str = "validation") -> bytes | None:
        n = min(len(y), 12)
        return image_grid(torch.cat([y[:n], output[:n]]), rows=2,
                          title=f"{split} images (top) and reconstructions (bottom)")


class Generation:
    """VAEs and GANs, scored by a frozen classifier of the dataset (models.scorer):
    val_fid (lower is better), val_confidence, val_diversity each epoch, from the
    same fixed noise every epoch. Losses: a VAE's negative ELBO (`loss`, `recon`,
    `kl`); a GAN's `d_loss` + `g_loss` (`loss`), where `label_smoothing` is one-sided
    (real images' target 1 - label_smoothing). Figure: a grid of samples."""

    name: ClassVar[str] = "generation"
    metric_names: ClassVar[tuple[str, ...]] = ("fid", "confidence", "diversity")
    # Samples do not depend on the split: the scores are reported for validation only.
    train_metric_names: ClassVar[tuple[str, ...]] = ()
    figure_name: ClassVar[str] = "samples.png"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        # One-sided label smoothing (Salimans et al., 2016): the discriminator's target
        # for real images is 1 - label_smoothing; generated ones stay at 0.
        self.label_smoothing = label_smoothing
        self.real_target = 1.0 - label_smoothing
        self.scorer: Scorer | None = None
        self._batches = 0
        self._last_g: float | None = None    # the generator's latest loss, once it steps

    @staticmethod
    def check_data(splits: Splits) -> None:
        if splits.task != "classification":
            raise UserError(f"data.name: generation is scored by a classifier of the data, so "
                            f"it needs a labelled dataset; '{splits.name}' is {splits.task}")
        check_unit_range(splits, "generation")

    def prepare(self, splits: Splits) -> Splits:
        self.check_data(splits)
        self.scorer = scorer_for(splits.x_train, splits.y_train, splits.n_outputs)
        return splits

    def check_model(self, model: nn.Module) -> None:
        """Label smoothing smooths a GAN discriminator's targets: a VAE has none."""
        if self.label_smoothing and not hasattr(model, "discriminator"):
            raise UserError(f"params.label_smoothing: smooths a GAN discriminator's targets; "
                            f"a VAE has none; got {self.label_smoothing}, use 0")

    def train_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    update: Update) -> dict[str, float]:
        if not hasattr(model, "discriminator"):
            self.check_model(model)
            loss, stats = model.loss(x)
            update(loss)
            return stats
        # Goodfellow et al.'s algorithm 1: a discriminator step on every real batch,
        # a generator step after every `d_steps` of them. The GAN's `loss` is the
        # epoch's (epoch_metrics).
        self._batches += 1
        stats = {"d_loss": self._discriminator_step(model, x, update)}
        if self._batches % model.d_steps == 0:
            stats["g_loss"] = self._last_g = self._generator_step(model, len(x), x.device,
                                                                  update)
        return stats

    def epoch_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """An epoch's training metrics from its train_batch stats, each averaged over
        the batches that reported it. A GAN's `loss` is the epoch's d_loss + g_loss,
        as on validation: the generator steps on one batch in d_steps, so no sum per
        batch averages to it. An epoch without a generator step (fewer batches than
        d_steps) carries the generator's latest loss; before its first step there is
        none, and the loss is d_loss alone."""
        if "d_loss" not in means:      # a VAE: each batch reports its loss
            return means
        g = means.get("g_loss", self._last_g)
        if g is None:
            return {**means, "loss": means["d_loss"]}
        return {**means, "g_loss": g, "loss": means["d_loss"] + g}

    def _discriminator_step(self, model: nn.Module, x: torch.Tensor, update: Update) -> float:
        with torch.no_grad():
            fake = model.generator(torch.randn(len(x), model.latent_size, device=x.device))
        loss = d_loss(model, x, fake, self.real_target)
        update(loss, model.discriminator)
        return loss.item()

    def _generator_step(self, model: nn.Module, n: int, device: torch.device,
                        update: Update) -> float:
        fake = model.generator(torch.randn(n, model.latent_size, device=device))
        loss = g_loss(model, fake)
        update(loss, model.generator)
        return loss.item()

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Losses on the split's images and scores of fixed-noise samples against them."""
        real = x[:SAMPLES]
        fake = self.samples(model, len(real), x.device)
        if hasattr(model, "discriminator"):
            # Plain targets, so runs with different label smoothing compare.
            d, g = d_loss(model, real, fake).item(), g_loss(model, fake).item()
            losses = {"loss": d + g, "d_loss": d, "g_loss": g}
        else:
            losses = model.loss(x)[1]
        if self.scorer is None:
            raise RuntimeError("Generation.prepare(splits) must run before evaluate")
        return {**losses, **self.scorer.score(fake.cpu(), real.cpu())}

    def artifacts(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  class_names: Sequence[str] = ()) -> dict[str, bytes]:
        grid = image_grid(self.samples(model, 64, x.device), rows=8, title="samples")
        return {} if grid is None else {self.figure_name: grid}

    @staticmethod
    def samples(model: nn.Module, n: int, device: torch.device) -> torch.Tensor:
        # The same noise every epoch, so scores and figures compare across epochs.
        return model.sample(n, generator=torch.Generator().manual_seed(0)).to(device).float()

    # The plain Task surface, for callers that only hold outputs.
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise TypeError("generation trains through train_batch: its loss needs the model")

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        raise TypeError("generation is evaluated through evaluate: its scores need the model")

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (), split: str = "validation") -> bytes | None:
        return None


def bce(output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of outputs in [0, 1]. Outputs that are not finite (weights
    that diverged, at a learning rate too high) give a NaN loss, as every other
    task's loss then does, and the trial fails with `train_loss became nan at epoch
    N`; torch's own refused them mid-epoch ("all elements of input should be
    between 0 and 1")."""
    if output.is_cuda:
        return _bce_queued(output, target, reduction)
    try:                                # nothing added to a step that goes well
        return F.binary_cross_entropy(output.float(), target.float(), reduction=reduction)
    except RuntimeError:
        if torch.isfinite(output).all():
            raise
        return output.float().sum() * float("nan")


def _bce_queued(output: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    """`bce` on a GPU: no host sync, so that the batches stay queued; and CUDA's
    kernel asserts on a NaN, where the CPU's raises. NaN is added, not multiplied
    in a branch: `where` sends the other branch a zero gradient, and zero times NaN
    is NaN, which would poison every step."""
    finite = torch.isfinite(output)
    loss = F.binary_cross_entropy(torch.where(finite, output, 0.5).float(), target.float(),
                                  reduction=reduction)
    return loss + torch.where(finite.all(), 0.0, float("nan"))


def check_unit_range(splits: Splits, task: str) -> None:
    """Decoders and generators end in a sigmoid and the loss is a per-pixel binary
    cross-entropy: data outside [0, 1] (standardised features) would be modelled
    only where it lies inside, silently, so it is refused."""
    xs = [x for x in (splits.x_train, splits.x_val, splits.x_test) if x.numel()]
    lo = min(x.min().item() for x in xs) if xs else 0.0
    hi = max(x.max().item() for x in xs) if xs else 0.0
    if lo < 0 or hi > 1:
        raise UserError(f"data.name: {task} needs inputs in [0, 1] (images); {splits.name} "
                        f"has values from {lo:.3g} to {hi:.3g}")


def d_loss(model: nn.Module, real: torch.Tensor, fake: torch.Tensor,
           real_target: float = 1.0) -> torch.Tensor:
    """The discriminator's cross-entropy: real images are 1 (or `real_target`),
    generated ones 0."""
    real_logit, fake_logit = model(real).float(), model(fake).float()
    return (F.binary_cross_entropy_with_logits(real_logit,
                                               torch.full_like(real_logit, real_target))
            + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))


def g_loss(model: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))),
    whose gradient vanishes while the discriminator rejects the samples easily."""
    logit = model(fake).float()
    return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))


def image_grid(images: torch.Tensor, rows: int, title: str) -> bytes | None:
    """Images (n, C, H, W) or (n, H, W) in [0, 1] tiled in `rows` rows; None when the
    samples are not images (flat vectors)."""
    images = images.detach().float().cpu().clamp(0, 1)
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        return None
    n, c, h, w = images.shape
    cols = math.ceil(n / rows)
    # Gaps between tiles read as background: 0 is white in gray_r, 1 in RGB.
    grid = np.full((rows * (h + 1), cols * (w + 1), c), 0.0 if c == 1 else 1.0,
                   dtype=np.float32)
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
        r, k = divmod(i, cols)
        grid[r * (h + 1): r * (h + 1) + h, k * (w + 1): k * (w + 1) + w] = img
    fig = new_figure((max(3.0, cols * 0.5), max(1.6, rows * 0.5 + 0.4)))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88)
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray_r" if c == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize="small")
    return to_png(fig)
