"""Softmax (multinomial logistic) regression: the baseline every search should beat."""
from __future__ import annotations

import math

from torch import nn

from hypersweep.models.registry import register


@register("linear", task="classification", family="linear")
def linear(*, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """One affine map from the flattened input to the class logits.

    The softmax lives in the task's cross-entropy loss, so the module returns logits.
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))
