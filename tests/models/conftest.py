from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest

from hypersweep.models.train import train_trial
from hypersweep.models.trial import TrialResult, TrialSpec


def never_stop(epoch: int, metrics: Mapping[str, float]) -> bool:
    return False


@pytest.fixture
def run() -> Callable[..., TrialResult]:
    """run(model="mlp", data="digits", seed=0, report=None, **params) -> TrialResult."""
    def _run(model: str = "mlp", data: str | Mapping[str, Any] = "digits", seed: int = 0,
             report: Callable | None = None, **params: Any) -> TrialResult:
        data = {"name": data} if isinstance(data, str) else data
        spec = TrialSpec(model=model, data=data, params=params, seed=seed, threads=1)
        return train_trial(spec, report or never_stop)
    return _run
