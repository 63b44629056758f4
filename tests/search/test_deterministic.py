"""search.deterministic: parallel TPE studies rerun identically whatever order
their trials finish in; without it, the finishing order steers the sampler."""
from __future__ import annotations

import optuna

from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import Stores, small_config
from tests.executors import ShuffledExecutor

TRIALS = 14     # past TPE's 10 random start-up trials, so the model steers sampling


def sampled(tmp_path, name: str, order_seed: int, deterministic: bool):
    d = tmp_path / name
    d.mkdir()
    stores = Stores(d)
    raw = small_config(name, stores, trials=TRIALS, deterministic=deterministic)
    raw["params"]["epochs"] = 1
    cfg = parse_config(raw)
    StudyDriver(cfg, ShuffledExecutor(capacity=4, order_seed=order_seed),
                MlflowTracker(cfg.tracking.uri)).run()
    study = optuna.load_study(study_name=name, storage=stores.optuna_url)
    assert len(study.trials) == TRIALS and all(t.state.is_finished() for t in study.trials)
    return [(t.params, t.values) for t in study.trials]


def test_deterministic_batches_ignore_finishing_order(tmp_path):
    a = sampled(tmp_path, "det-a", order_seed=1, deterministic=True)
    b = sampled(tmp_path, "det-b", order_seed=2, deterministic=True)
    assert a == b


def test_without_batches_finishing_order_changes_the_samples(tmp_path):
    """The control: the same study, not deterministic, diverges after start-up."""
    a = sampled(tmp_path, "free-a", order_seed=1, deterministic=False)
    b = sampled(tmp_path, "free-b", order_seed=2, deterministic=False)
    assert a[:4] == b[:4]           # the first batch is asked before anything finishes
    assert a != b
