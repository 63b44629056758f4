"""The frozen classifier that scores generated images: Fréchet distance, confidence,
diversity, and its in-process and on-disk cache."""
from __future__ import annotations

import pytest
import torch

from hypersweep.models import scorer as scoring
from hypersweep.models.data import load_dataset


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERSWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr(scoring, "_MEMO", {})


@pytest.fixture(autouse=True)
def one_thread():
    # The scorer's small matrices gain nothing from threads on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_frechet_distance_of_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    b = torch.randn(4000, 3, generator=g)
    assert scoring.frechet_distance(a, b) < 0.02
    # Shifted by 2 in one coordinate: ||mu_a - mu_b||^2 = 4.
    assert scoring.frechet_distance(a, b + torch.tensor([2.0, 0, 0])) == pytest.approx(4, abs=0.1)
    # Scaled by 3 in every coordinate: 3 * (1 + 9 - 2 * 3) = 12.
    assert scoring.frechet_distance(a, 3 * b) == pytest.approx(12, abs=0.5)


def test_real_digits_score_better_than_noise_and_than_one_repeated_digit():
    s = load_dataset("digits")
    scorer = scoring.scorer_for(s.x_train, s.y_train, 10)
    real = scorer.score(s.x_test, s.x_val)
    noise = scorer.score(torch.rand_like(s.x_test), s.x_val)
    collapsed = scorer.score(s.x_test[s.y_test == 3][:1].expand(len(s.x_test), -1, -1, -1),
                             s.x_val)
    assert real["fid"] < 0.2 * noise["fid"] and real["fid"] < 0.2 * collapsed["fid"]
    assert real["confidence"] > 0.9 > noise["confidence"]
    assert real["diversity"] > 0.95 and collapsed["diversity"] < 0.05


def test_scorer_is_trained_once_and_cached_on_disk(tmp_path):
    s = load_dataset("digits")
    first = scoring.scorer_for(s.x_train, s.y_train, 10)
    assert scoring.scorer_for(s.x_train, s.y_train, 10) is first
    files = list((tmp_path / "scorers").glob("*.pt"))
    assert len(files) == 1
    scoring._MEMO.clear()
    state = torch.get_rng_state()
    again = scoring.scorer_for(s.x_train, s.y_train, 10)          # from disk
    assert again is not first
    assert torch.equal(again(s.x_val), first(s.x_val))
    # A different training set is a different scorer.
    other = scoring.scorer_for(s.x_train[:500], s.y_train[:500], 10)
    assert other is not again and len(list((tmp_path / "scorers").glob("*.pt"))) == 2
    assert torch.equal(torch.get_rng_state(), state)   # trials' random draws untouched
