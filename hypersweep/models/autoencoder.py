"""Autoencoders (the notes, chapter 14): an encoder to a code, a decoder back.

Variants differ in what keeps the code from copying the input:
- `undercomplete`: a code smaller than the input, nothing else;
- `sparse`: an L1 penalty `sparsity * |h|` on the code;
- `denoising`: the encoder sees the input with Gaussian noise of std `noise`, the
  loss compares with the clean input;
- `contractive`: a penalty `contraction * ||dh/dx||_F^2` on the encoder's Jacobian.
The encoder and decoder are MLPs or small conv stacks (`arch`); the decoder ends
in a sigmoid, for pixels in [0, 1].
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from hypersweep.models.errors import UserError, check_at_least, check_layers
from hypersweep.models.mlp import make_activation
from hypersweep.models.registry import register

Variant = Literal["undercomplete", "sparse", "denoising", "contractive"]
Arch = Literal["mlp", "conv"]
Activation = Literal["relu", "leaky_relu", "elu", "tanh", "sigmoid"]


MLP_ARCH = {"depth": ("arch", ("mlp",)), "width": ("arch", ("mlp",)),
            "channels": ("arch", ("conv",))}


@register("autoencoder", task="reconstruction", family="autoencoder",
          variants=("undercomplete", "sparse", "denoising", "contractive"),
          used_when={**MLP_ARCH, "sparsity": ("variant", ("sparse",)),
                     "noise": ("variant", ("denoising",)),
                     "contraction": ("variant", ("contractive",))})
def autoencoder(*, input_shape: tuple[int, ...], n_outputs: int = 0,
                variant: Variant = "undercomplete", arch: Arch = "mlp", code_size: int = 16,
                depth: int = 1, width: int = 128, channels: int = 16,
                activation: Activation = "relu", sparsity: float = 1e-3, noise: float = 0.3,
                contraction: float = 1e-2) -> nn.Module:
    """Encoder (`depth` hidden layers of `width`, or two stride-2 convs of `channels`
    and 2x`channels` when `arch` is conv) -> `code_size` -> mirrored decoder.

    `sparsity`, `noise` and `contraction` are used by their variant only.
    `n_outputs` (the dataset's classes) is unused: the target is the input.
    """
    check_at_least(1, code_size=code_size, width=width, channels=channels)
    check_at_least(0, sparsity=sparsity, noise=noise, contraction=contraction)
    n = math.prod(input_shape)
    if variant == "undercomplete" and code_size >= n:
        # Nothing else keeps such a code from copying the input.
        raise UserError(f"params.code_size: an undercomplete code must be smaller than the "
                        f"input, {n} values; got {code_size}")
    encoder, decoder = encoder_decoder(input_shape, code_size, arch=arch, depth=depth,
                                       width=width, channels=channels, activation=activation)
    weight = {"sparse": sparsity, "denoising": noise, "contractive": contraction}.get(variant, 0.0)
    return AutoEncoder(encoder, decoder, variant, weight)


class AutoEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, variant: str,
                 weight: float) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.variant, self.weight = variant, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def penalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, the variant's penalty) of a training batch."""
        zero = x.new_zeros(())
        if self.variant == "denoising":
            return self(x + self.weight * torch.randn_like(x)), zero
        if self.variant == "sparse":
            code = self.encoder(x)
            return self.decoder(code), self.weight * code.abs().sum(dim=1).mean()
        if self.variant == "contractive" and self.weight > 0:
            x = x.detach().requires_grad_(True)
            code = self.encoder(x)
            # ||J||_F^2 = E_v ||J^T v||^2 for v ~ N(0, I): one vector-Jacobian product
            # per batch instead of one backward pass per code unit (Hutchinson).
            v = torch.randn_like(code)
            (jtv,) = torch.autograd.grad(code, x, v, create_graph=True)
            return self.decoder(code), self.weight * jtv.pow(2).flatten(1).sum(dim=1).mean()
        return self(x), zero


def encoder_decoder(input_shape: tuple[int, ...], code_size: int, *, arch: str, depth: int,
                    width: int, channels: int, activation: str) -> tuple[nn.Module, nn.Module]:
    """An encoder to `code_size` values and a decoder back to `input_shape` in [0, 1]."""
    if arch == "conv":
        return conv_encoder(input_shape, code_size, channels, activation), \
            conv_decoder(input_shape, code_size, channels, activation)
    check_at_least(0, depth=depth)
    check_layers(depth=depth)
    n = math.prod(input_shape)
    enc: list[nn.Module] = [nn.Flatten()]
    dec: list[nn.Module] = []
    sizes = [n] + [width] * depth
    for a, b in zip(sizes, sizes[1:]):
        enc += [nn.Linear(a, b), make_activation(activation, b)]
    enc.append(nn.Linear(sizes[-1], code_size))
    rev = [code_size] + [width] * depth
    for a, b in zip(rev, rev[1:]):
        dec += [nn.Linear(a, b), make_activation(activation, b)]
    dec += [nn.Linear(rev[-1], n), nn.Sigmoid(), nn.Unflatten(1, tuple(input_shape))]
    return nn.Sequential(*enc), nn.Sequential(*dec)


def conv_encoder(input_shape: tuple[int, ...], out: int, channels: int,
                 activation: str) -> nn.Module:
    c, h, w = image_shape(input_shape)
    sizes = downsampled(h, w)
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, stride=2, padding=1), make_activation(activation, channels),
        nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
        make_activation(activation, 2 * channels),
        nn.Flatten(), nn.Linear(2 * channels * sizes[2][0] * sizes[2][1], out))


def conv_decoder(input_shape: tuple[int, ...], n_in: int, channels: int,
                 activation: str) -> nn.Module:
    c, h, w = image_shape(input_shape)
    sizes = downsampled(h, w)
    # Upsampling to the exact sizes met on the way down, then a 3x3 conv, fits any
    # image size (8, 28, 32, odd ones) where transposed convs need per-size padding.
    return nn.Sequential(
        nn.Linear(n_in, 2 * channels * sizes[2][0] * sizes[2][1]),
        nn.Unflatten(1, (2 * channels, *sizes[2])), make_activation(activation, 2 * channels),
        nn.Upsample(size=sizes[1]), nn.Conv2d(2 * channels, channels, 3, padding=1),
        make_activation(activation, channels),
        nn.Upsample(size=sizes[0]), nn.Conv2d(channels, c, 3, padding=1), nn.Sigmoid())


def downsampled(h: int, w: int) -> list[tuple[int, int]]:
    """Spatial sizes after 0, 1 and 2 stride-2 convs (kernel 3, padding 1)."""
    return [(h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 3) // 4, (w + 3) // 4)]


def image_shape(input_shape: tuple[int, ...], arch: str = "conv") -> tuple[int, int, int]:
    """(channels, height, width) for the convolutional `arch` (a GAN's is dcgan)."""
    if len(input_shape) != 3:
        raise UserError(f"params.arch: {arch} needs images (channels, height, width), "
                        f"the dataset gives samples of shape {tuple(input_shape)}; use arch: mlp")
    return input_shape  # type: ignore[return-value]
