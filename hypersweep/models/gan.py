"""Generative adversarial networks (Goodfellow et al., 2014; the notes, chapter 20).

A generator maps noise z ~ N(0, I) to images in [0, 1]; a discriminator outputs
the logit that its input is real. Training (models.generative.Generation) takes
`d_steps` discriminator steps, each on a fresh real batch, per generator step, and
trains the generator on the non-saturating loss -log D(G(z)).

`arch: mlp` is the original fully connected pair; `arch: dcgan` follows Radford
et al.: strided convs with leaky ReLU in the discriminator, upsampling convs with
batch norm and ReLU in the generator, no pooling.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from hypersweep.models.autoencoder import downsampled, image_shape
from hypersweep.models.errors import check_at_least, check_fraction, check_layers
from hypersweep.models.registry import register


@register("gan", task="generation", family="gan", variants=("mlp", "dcgan"),
          used_when={"depth": ("arch", ("mlp",)), "width": ("arch", ("mlp",)),
                     "channels": ("arch", ("dcgan",))})
def gan(*, input_shape: tuple[int, ...], n_outputs: int = 0, arch: Literal["mlp", "dcgan"] = "mlp",
        latent_size: int = 32, depth: int = 2, width: int = 256, channels: int = 32,
        d_steps: int = 1, leak: float = 0.2, batch_norm: bool = True,
        d_dropout: float = 0.0) -> nn.Module:
    """Generator and discriminator: MLPs of `depth` x `width`, or DCGAN-style conv
    stacks of `channels` and 2x`channels`. `batch_norm` applies to the generator's
    hidden layers (and the dcgan discriminator's second conv); `d_dropout` to the
    discriminator's hidden layers; `leak` is its leaky-ReLU slope."""
    check_at_least(1, latent_size=latent_size, width=width, channels=channels, d_steps=d_steps,
                   depth=depth)
    check_layers(depth=depth)
    check_fraction(d_dropout=d_dropout, leak=leak)   # leak 1 is linear, below 0 not a ReLU
    if arch == "dcgan":
        g = dcgan_generator(input_shape, latent_size, channels, batch_norm)
        d = dcgan_discriminator(input_shape, channels, leak, batch_norm, d_dropout)
    else:
        g = mlp_generator(input_shape, latent_size, depth, width, batch_norm)
        d = mlp_discriminator(input_shape, depth, width, leak, d_dropout)
    return GAN(g, d, latent_size, d_steps)


class GAN(nn.Module):
    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent_size: int,
                 d_steps: int) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_size, self.d_steps = latent_size, d_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's logits that the images `x` are real."""
        return self.discriminator(x).squeeze(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.generator(torch.randn(n, self.latent_size, generator=generator).to(device))


def mlp_generator(shape: tuple[int, ...], latent: int, depth: int, width: int,
                  batch_norm: bool) -> nn.Module:
    layers: list[nn.Module] = []
    n_in = latent
    for _ in range(depth):
        layers += [nn.Linear(n_in, width, bias=not batch_norm),
                   nn.BatchNorm1d(width) if batch_norm else nn.Identity(), nn.ReLU()]
        n_in = width
    layers += [nn.Linear(n_in, math.prod(shape)), nn.Sigmoid(), nn.Unflatten(1, tuple(shape))]
    return nn.Sequential(*layers)


def mlp_discriminator(shape: tuple[int, ...], depth: int, width: int, leak: float,
                      dropout: float) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = math.prod(shape)
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.LeakyReLU(leak),
                   nn.Dropout(dropout) if dropout > 0 else nn.Identity()]
        n_in = width
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers)


def dcgan_generator(shape: tuple[int, ...], latent: int, channels: int,
                    batch_norm: bool) -> nn.Module:
    c, h, w = image_shape(shape, "dcgan")
    sizes = downsampled(h, w)
    norm = (lambda n: nn.BatchNorm2d(n)) if batch_norm else (lambda n: nn.Identity())
    return nn.Sequential(
        nn.Linear(latent, 2 * channels * sizes[2][0] * sizes[2][1]),
        nn.Unflatten(1, (2 * channels, *sizes[2])), norm(2 * channels), nn.ReLU(),
        nn.Upsample(size=sizes[1]), nn.Conv2d(2 * channels, channels, 3, padding=1),
        norm(channels), nn.ReLU(),
        nn.Upsample(size=sizes[0]), nn.Conv2d(channels, c, 3, padding=1), nn.Sigmoid())


def dcgan_discriminator(shape: tuple[int, ...], channels: int, leak: float, batch_norm: bool,
                        dropout: float) -> nn.Module:
    c, h, w = image_shape(shape, "dcgan")
    sizes = downsampled(h, w)
    # DCGAN: no batch norm on the discriminator's input layer.
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, stride=2, padding=1), nn.LeakyReLU(leak),
        nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
        nn.BatchNorm2d(2 * channels) if batch_norm else nn.Identity(), nn.LeakyReLU(leak),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        nn.Flatten(), nn.Linear(2 * channels * sizes[2][0] * sizes[2][1], 1))
