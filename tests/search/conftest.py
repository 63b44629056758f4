from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    import cloudpickle

    from tests.search import trainers

    cloudpickle.register_pickle_by_value(trainers)   # workers need not import tests/
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()
