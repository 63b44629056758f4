from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard).
    Without a CUDA device it declares one logical GPU, so that fractional
    `gpus_per_trial` goes through Ray's scheduler on every machine (the trials
    then train on the CPU); with one, Ray counts the real GPUs."""
    ray = pytest.importorskip("ray")
    import cloudpickle
    import torch

    from hypersweep.search.ray_executor import wait_stopped
    from tests.search import trainers

    cloudpickle.register_pickle_by_value(trainers)   # workers need not import tests/
    wait_stopped()                  # a study's own Ray instance may still be stopping
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 num_gpus=None if torch.cuda.is_available() else 1,
                 logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()
