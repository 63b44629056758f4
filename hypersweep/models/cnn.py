"""Convolutional networks: LeNet, AlexNet-style, VGG, Inception and ResNet.

Every builder takes images (channels, height, width) of any size its layers allow:
the spatial size is tracked while the layers are built, a 2x2 pooling is skipped
once the feature map is down to a single row or column (so the same net runs on
8x8 digits and on 28x28 or 32x32 images), and a configuration that cannot fit the
input (a valid-padded kernel larger than the feature map) is a UserError that
names the key, before any training starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from hypersweep.models.errors import (OutOfRange, UserError, check_at_least, check_fraction,
                                      check_layers)
from hypersweep.models.registry import register

Padding = Literal["same", "valid"]
Pool = Literal["max", "avg"]
Act = Literal["relu", "tanh"]


@dataclass(frozen=True)
class Grid:
    """The shape of a feature map while a net is built."""

    channels: int
    h: int
    w: int


def image_grid(input_shape: tuple[int, ...], builder: str) -> Grid:
    if len(input_shape) != 3:
        raise UserError(f"model: {builder} needs images (channels, height, width); the "
                        f"dataset gives samples of shape {tuple(input_shape)}")
    return Grid(*input_shape)


def conv(g: Grid, out: int, kernel: int, *, stride: int = 1, padding: Padding = "same",
         batch_norm: bool = False, act: str = "relu", where: str = "",
         depth: str = "", fixed: bool = False) -> tuple[list[nn.Module], Grid]:
    """conv -> batch norm? -> activation, and the feature map it leaves. "same"
    padding keeps the map's size (ceil(size / stride)) for odd and even kernels:
    kernel - 1 zeros in all, the odd one after (right, bottom). `depth` names the
    hyperparameters that set how many convs come before this one, if any. `fixed`:
    a kernel no hyperparameter sets (AlexNet's later 3x3 convs): the padding, or
    the earlier convs' kernel and stride, that left the map too small are named."""
    before, after = ((kernel - 1) // 2, kernel // 2) if padding == "same" else (0, 0)
    h = (g.h + before + after - kernel) // stride + 1
    w = (g.w + before + after - kernel) // stride + 1
    if h < 1 or w < 1:
        fewer = f", or fewer {depth}" if depth else ""
        if fixed:
            raise UserError(f"params.padding: the fixed {kernel}x{kernel} kernel (padding "
                            f"{padding}) does not fit the {g.h}x{g.w} feature map{where}; use "
                            "padding: same, or a smaller kernel or stride for the first conv")
        raise UserError(f"params.kernel: a {kernel}x{kernel} kernel (stride {stride}, padding "
                        f"{padding}) does not fit the {g.h}x{g.w} feature map{where}; use "
                        f"padding: same, a smaller kernel or stride{fewer}")
    layers: list[nn.Module] = []
    if before != after:
        layers.append(nn.ZeroPad2d((before, after, before, after)))
    layers.append(nn.Conv2d(g.channels, out, kernel, stride, before if before == after else 0,
                            bias=not batch_norm))
    if batch_norm:
        layers.append(nn.BatchNorm2d(out))
    layers.append(nn.Tanh() if act == "tanh" else nn.ReLU())
    return layers, Grid(out, h, w)


def pool2(g: Grid, kind: str) -> tuple[list[nn.Module], Grid]:
    """A 2x2 pooling, or none once the map is a single row or column."""
    if min(g.h, g.w) < 2:
        return [], g
    layer = nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)
    return [layer], Grid(g.channels, g.h // 2, g.w // 2)


def classifier(n_in: int, hidden: tuple[int, ...], n_outputs: int, dropout: float,
               act: str = "relu") -> list[nn.Module]:
    """Flatten -> [dropout? -> linear -> activation] per hidden width -> linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(n_in, width), nn.Tanh() if act == "tanh" else nn.ReLU()]
        n_in = width
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers + [nn.Linear(n_in, n_outputs)]


def he_init(model: nn.Module) -> nn.Module:
    """He et al.'s initialisation for the conv and hidden linear layers of a ReLU
    net, small weights for the output layer (as torchvision does): PyTorch's default
    scales weights down, and a deep ReLU stack without batch norm then barely
    trains (AlexNet, VGG). Biases start at 0. (LeNet is shallow, and Inception and
    ResNet have batch norm: they keep PyTorch's default.)"""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        if m is layers[-1]:
            nn.init.normal_(m.weight, 0.0, 0.01)
        else:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


LAYER_COUNTS = ("blocks", "convs_per_block", "modules", "stages", "blocks_per_stage")


def check_common(**values: float) -> None:
    """Sizes and counts >= 1 (counts of layers and blocks <= 1000), `dropout` in [0, 1)."""
    for name, value in values.items():
        if name == "dropout":
            check_fraction(dropout=value)
        else:
            check_at_least(1, **{name: value})
            if name in LAYER_COUNTS:
                check_layers(**{name: value})


# ---------------------------------------------------------------- LeNet

@register("lenet", task="classification", family="cnn", variants=("lenet-5",))
def lenet(*, input_shape: tuple[int, ...], n_outputs: int, channels: int = 6,
          kernel: int = 5, padding: Padding = "same", pool: Pool = "avg",
          activation: Act = "tanh", batch_norm: bool = False, dropout: float = 0.0,
          hidden: int = 120) -> nn.Module:
    """LeCun et al.'s LeNet-5: two conv + pool stages (`channels`, then 8/3 as many:
    6 -> 16 as in the paper), then two fully connected layers (`hidden`, and 0.7 of
    it: 120 -> 84) and the output layer."""
    check_common(channels=channels, kernel=kernel, hidden=hidden, dropout=dropout)
    g = image_grid(input_shape, "lenet")
    layers: list[nn.Module] = []
    for i, out in enumerate((channels, max(1, round(channels * 8 / 3)))):
        block, g = conv(g, out, kernel, padding=padding, batch_norm=batch_norm, act=activation,
                        where=f" of lenet's conv {i + 1}")
        pooled, g = pool2(g, pool)
        layers += block + pooled
    head = classifier(g.channels * g.h * g.w, (hidden, max(1, hidden * 7 // 10)), n_outputs,
                      dropout, act=activation)
    return nn.Sequential(*layers, *head)


# ---------------------------------------------------------------- AlexNet

@register("alexnet", task="classification", family="cnn", variants=("alexnet-small",))
def alexnet(*, input_shape: tuple[int, ...], n_outputs: int, channels: int = 32,
            kernel: int = 3, stride: int = 1, padding: Padding = "same", pool: Pool = "max",
            batch_norm: bool = False, dropout: float = 0.5, hidden: int = 256) -> nn.Module:
    """Krizhevsky et al.'s AlexNet scaled for small images: five ReLU convs with
    widths in the paper's proportions (1, 2, 4, 4, 2 x `channels`), pooling after
    the first, second and fifth, then two dropout-regularised `hidden` layers.
    `kernel` and `stride` are the first conv's (the paper's 11x11 stride 4 shrunk
    to suit 8x8 to 32x32 inputs); the later convs are 3x3."""
    check_common(channels=channels, kernel=kernel, stride=stride, hidden=hidden,
                 dropout=dropout)
    g = image_grid(input_shape, "alexnet")
    layers: list[nn.Module] = []
    widths = (channels, 2 * channels, 4 * channels, 4 * channels, 2 * channels)
    for i, out in enumerate(widths):
        block, g = conv(g, out, kernel if i == 0 else 3, stride=stride if i == 0 else 1,
                        padding=padding, batch_norm=batch_norm, where=f" of alexnet's conv {i + 1}",
                        fixed=i > 0)
        layers += block
        if i in (0, 1, 4):
            pooled, g = pool2(g, pool)
            layers += pooled
    return he_init(nn.Sequential(*layers, *classifier(g.channels * g.h * g.w, (hidden, hidden),
                                                      n_outputs, dropout)))


# ---------------------------------------------------------------- VGG

@register("vgg", task="classification", family="cnn", variants=("vgg-blocks",))
def vgg(*, input_shape: tuple[int, ...], n_outputs: int, channels: int = 16, blocks: int = 3,
        convs_per_block: int = 2, kernel: int = 3, padding: Padding = "same",
        pool: Pool = "max", batch_norm: bool = True, dropout: float = 0.5,
        hidden: int = 128) -> nn.Module:
    """Simonyan and Zisserman's VGG: `blocks` blocks of `convs_per_block` small
    convs, each block doubling the width (from `channels`) and ending in a 2x2 pool;
    then one dropout-regularised `hidden` layer."""
    check_common(channels=channels, blocks=blocks, convs_per_block=convs_per_block,
                 kernel=kernel, hidden=hidden, dropout=dropout)
    g = image_grid(input_shape, "vgg")
    layers: list[nn.Module] = []
    for b in range(blocks):
        for c in range(convs_per_block):
            block, g = conv(g, channels * 2 ** b, kernel, padding=padding, batch_norm=batch_norm,
                            where=f" of vgg's block {b + 1}, conv {c + 1}",
                            depth="blocks or convs_per_block")
            layers += block
        pooled, g = pool2(g, pool)
        layers += pooled
    return he_init(nn.Sequential(*layers, *classifier(g.channels * g.h * g.w, (hidden,),
                                                      n_outputs, dropout)))


# ---------------------------------------------------------------- Inception

class InceptionModule(nn.Module):
    """Szegedy et al.'s module: 1x1, 3x3 and 5x5 convs and a pooling branch side by
    side, the 3x3 and 5x5 behind 1x1 reductions (to `reduction` of their width) and
    the pool followed by a 1x1 projection; outputs concatenated (3 x `width`)."""

    def __init__(self, n_in: int, width: int, reduction: float, batch_norm: bool,
                 pool: str) -> None:
        super().__init__()
        half, red = max(1, width // 2), max(1, round(width * reduction))
        # Every branch keeps the map's size (padding "same"), so they concatenate.
        unit = lambda n, out, k: _same_conv(n, out, k, batch_norm)  # noqa: E731
        self.b1 = unit(n_in, width, 1)
        self.b3 = nn.Sequential(unit(n_in, red, 1), unit(red, width, 3))
        self.b5 = nn.Sequential(unit(n_in, max(1, red // 2), 1), unit(max(1, red // 2), half, 5))
        pooling = nn.MaxPool2d(3, 1, 1) if pool == "max" else nn.AvgPool2d(3, 1, 1)
        self.bp = nn.Sequential(pooling, unit(n_in, half, 1))
        self.out_channels = width + width + half + half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


def _same_conv(n_in: int, out: int, kernel: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(n_in, out, kernel, 1, kernel // 2, bias=not batch_norm)]
    return nn.Sequential(*layers, *([nn.BatchNorm2d(out)] if batch_norm else []), nn.ReLU())


@register("inception", task="classification", family="cnn", variants=("googlenet-small",))
def inception(*, input_shape: tuple[int, ...], n_outputs: int, channels: int = 16,
              modules: int = 2, reduction: float = 0.5, kernel: int = 3, stride: int = 1,
              padding: Padding = "same", pool: Pool = "max", batch_norm: bool = True,
              dropout: float = 0.2) -> nn.Module:
    """A small GoogLeNet: a stem conv (`kernel`, `stride`, `padding`), then
    `modules` Inception modules with a 2x2 pool after every second one (the width
    doubling after each pool), global average pooling, dropout and the output layer."""
    check_common(channels=channels, modules=modules, kernel=kernel, stride=stride,
                 dropout=dropout)
    if not 0.0 < reduction <= 1.0:
        raise OutOfRange(f"params.reduction: must be in (0, 1], got {reduction}")
    g = image_grid(input_shape, "inception")
    layers, g = conv(g, channels, kernel, stride=stride, padding=padding,
                     batch_norm=batch_norm, where=" of inception's stem")
    width = channels
    for m in range(modules):
        module = InceptionModule(g.channels, width, reduction, batch_norm, pool)
        layers.append(module)
        g = Grid(module.out_channels, g.h, g.w)
        if m % 2 == 1 and m + 1 < modules:
            pooled, g = pool2(g, pool)
            layers += pooled
            width *= 2
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    head += [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, *head, nn.Linear(g.channels, n_outputs))


# ---------------------------------------------------------------- ResNet

class ResidualBlock(nn.Module):
    """He et al.'s basic block: two 3x3 convs with batch norm, plus the input (a
    1x1 projection where the width or stride changes)."""

    def __init__(self, n_in: int, n_out: int, stride: int, batch_norm: bool,
                 dropout: float) -> None:
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            nn.Conv2d(n_in, n_out, 3, stride, 1, bias=not batch_norm), norm(n_out), nn.ReLU(),
            *([nn.Dropout2d(dropout)] if dropout > 0 else []),
            nn.Conv2d(n_out, n_out, 3, 1, 1, bias=not batch_norm), norm(n_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=not batch_norm),
                                          norm(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


@register("resnet", task="classification", family="cnn", variants=("resnet-basic",))
def resnet(*, input_shape: tuple[int, ...], n_outputs: int, channels: int = 16,
           stages: int = 3, blocks_per_stage: int = 2, kernel: int = 3, stride: int = 1,
           padding: Padding = "same", pool: Pool = "avg", batch_norm: bool = True,
           dropout: float = 0.0) -> nn.Module:
    """A CIFAR-style ResNet: a stem conv (`kernel`, `stride`, `padding`), then
    `stages` stages of `blocks_per_stage` residual blocks; each stage after the first
    doubles the width and halves the map with a stride-2 block (stride 1 once the
    map is a single pixel); global `pool` pooling, the output layer."""
    check_common(channels=channels, stages=stages, blocks_per_stage=blocks_per_stage,
                 kernel=kernel, stride=stride, dropout=dropout)
    g = image_grid(input_shape, "resnet")
    layers, g = conv(g, channels, kernel, stride=stride, padding=padding,
                     batch_norm=batch_norm, where=" of resnet's stem")
    for s in range(stages):
        for b in range(blocks_per_stage):
            step = 2 if s > 0 and b == 0 and min(g.h, g.w) >= 2 else 1
            layers.append(ResidualBlock(g.channels, channels * 2 ** s, step, batch_norm, dropout))
            g = Grid(channels * 2 ** s, (g.h - 1) // step + 1, (g.w - 1) // step + 1)
    head = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(*layers, head, nn.Flatten(), nn.Linear(g.channels, n_outputs))
