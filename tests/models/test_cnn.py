"""The CNN family on every image size it is meant for, and its shape checks."""
from __future__ import annotations

import pytest
import torch

from hypersweep.models.cnn import InceptionModule, ResidualBlock
from hypersweep.models.errors import UserError
from hypersweep.models.registry import get_builder
from tests.models.test_builders import check_forward_and_step

CNNS = ["lenet", "alexnet", "vgg", "inception", "resnet"]
IMAGES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@pytest.mark.parametrize("shape", IMAGES.values(), ids=IMAGES.keys())
@pytest.mark.parametrize("name", CNNS)
def test_every_cnn_runs_on_every_image_size(name, shape):
    check_forward_and_step(name, shape, 10, "label", "classification")


@pytest.mark.parametrize("kwargs", [
    {"padding": "valid", "pool": "max", "batch_norm": True, "dropout": 0.3},
    {"kernel": 3, "channels": 4, "activation": "relu", "pool": "max"},
], ids=["valid-bn-dropout", "small-relu"])
def test_lenet_options(kwargs):
    check_forward_and_step("lenet", (1, 28, 28), 10, "label", "classification", **kwargs)


@pytest.mark.parametrize("name,kwargs", [
    ("alexnet", {"stride": 2, "kernel": 5, "batch_norm": True, "pool": "avg"}),
    ("vgg", {"blocks": 4, "convs_per_block": 1, "batch_norm": False, "pool": "avg"}),
    ("inception", {"modules": 4, "reduction": 0.25, "pool": "avg", "stride": 2}),
    ("resnet", {"stages": 4, "blocks_per_stage": 1, "pool": "max", "dropout": 0.2,
                "batch_norm": False}),
])
def test_cnn_options_on_digits(name, kwargs):
    check_forward_and_step(name, (1, 8, 8), 10, "label", "classification", **kwargs)


@pytest.mark.parametrize("name,kwargs,key", [
    ("lenet", {"padding": "valid"}, "kernel"),               # 8 -> 4 -> pool 2 -> 5x5 cannot fit
    ("vgg", {"padding": "valid", "blocks": 3}, "kernel"),
    ("alexnet", {"kernel": 11, "padding": "valid"}, "kernel"),
    ("resnet", {"kernel": 9, "padding": "valid"}, "kernel"),
    ("vgg", {"channels": 0}, "channels"),
    ("inception", {"reduction": 0.0}, "reduction"),
    ("resnet", {"dropout": 1.0}, "dropout"),
])
def test_impossible_shapes_and_values_are_user_errors(name, kwargs, key):
    with pytest.raises(UserError, match=f"^params.{key}:"):
        get_builder(name).build(input_shape=(1, 8, 8), n_outputs=10, **kwargs)


def test_valid_padding_error_names_the_layer_and_the_map():
    with pytest.raises(UserError, match=r"5x5 kernel .* 2x2 feature map of lenet's conv 2"):
        get_builder("lenet").build(input_shape=(1, 8, 8), n_outputs=10, padding="valid")


@pytest.mark.parametrize("name", CNNS)
def test_non_images_are_a_user_error(name):
    with pytest.raises(UserError, match=rf"^model: {name} needs images .*\(8, 8\)"):
        get_builder(name).build(input_shape=(8, 8), n_outputs=10)


def test_pooling_stops_at_one_pixel_so_deep_vggs_fit_small_inputs():
    model = get_builder("vgg").build(input_shape=(1, 8, 8), n_outputs=10, blocks=5)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3          # 8 -> 4 -> 2 -> 1, then no more
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_inception_module_concatenates_its_four_branches():
    module = InceptionModule(8, 16, 0.5, batch_norm=False, pool="max")
    out = module(torch.rand(2, 8, 5, 5))
    assert out.shape == (2, module.out_channels, 5, 5) and module.out_channels == 16 + 16 + 8 + 8
    one_by_one = [m for m in module.modules()
                  if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(one_by_one) == 4     # b1, two reductions, the pool projection


def test_residual_block_adds_its_input():
    block = ResidualBlock(4, 4, 1, batch_norm=False, dropout=0.0)
    for p in block.body.parameters():
        torch.nn.init.zeros_(p)     # the body outputs 0: only the skip remains
    x = torch.rand(2, 4, 6, 6)
    assert torch.equal(block(x), torch.relu(x))
    assert isinstance(block.shortcut, torch.nn.Identity)
    assert not isinstance(ResidualBlock(4, 8, 2, True, 0.0).shortcut, torch.nn.Identity)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("size,stride", [(8, 1), (7, 1), (8, 2), (7, 2), (9, 3)])
def test_same_padding_keeps_the_size_for_odd_and_even_kernels(kernel, size, stride):
    from hypersweep.models.cnn import Grid, conv
    layers, g = conv(Grid(3, size, size), 4, kernel, stride=stride, padding="same")
    out = torch.nn.Sequential(*layers)(torch.rand(2, 3, size, size))
    expected = -(-size // stride)         # ceil(size / stride), as "same" means
    assert out.shape == (2, 4, expected, expected) and (g.h, g.w) == (expected, expected)


@pytest.mark.parametrize("name", ["lenet", "inception", "resnet"])
@pytest.mark.parametrize("kernel", [3, 4])
def test_a_same_padded_first_conv_keeps_digits_8x8(name, kernel):
    """lenet's first conv, inception's and resnet's stems, for odd and even kernels."""
    model = get_builder(name).build(input_shape=(1, 8, 8), n_outputs=10, kernel=kernel)
    first = next(m for m in model.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.Tanh)))
    shapes = []
    first.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[2:])))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert shapes[0] == (8, 8)
