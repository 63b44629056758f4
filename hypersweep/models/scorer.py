"""A frozen classifier that scores generated images, so a search over generative
models has a scalar objective.

The scorer is a small MLP trained once per training set (a few hundred steps) and
cached twice: in-process, because one process runs many trials, and on disk under
`$HYPERSWEEP_CACHE` (default `~/.cache/hypersweep/scorers`), keyed by a hash of the
training images and labels, so a later study on the same data skips the training.

Scores of a batch of samples against real images of the same dataset:
- `fid`: the Fréchet distance between Gaussians fitted to the scorer's penultimate
  features of the samples and of the real images (Heusel et al.'s FID, in a
  domain-specific feature space instead of Inception's). Lower is better.
- `confidence`: the mean top-class probability the scorer gives the samples
  (high when samples look like some class, as in the Inception Score).
- `diversity`: the entropy of the mean predicted class distribution over the
  samples, divided by log(classes): 1 when every class is generated equally
  often, 0 under total mode collapse.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

STEPS = 600          # Adam steps of batch 128: ~97% on MNIST, ~98% on digits
FEATURES = 64        # width of the feature layer the Fréchet distance is taken in
_MEMO: dict[str, "Scorer"] = {}


class Scorer(nn.Module):
    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, 256), nn.ReLU(),
                                      nn.Linear(256, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def score(self, samples: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        if not torch.isfinite(samples).all():   # a generator that diverged: no score
            return {"fid": math.nan, "confidence": math.nan, "diversity": math.nan}
        self.eval()
        fake_f, real_f = self.features(samples.float()), self.features(real.float())
        probs = self.head(fake_f).softmax(dim=1)
        marginal = probs.mean(dim=0)
        entropy = -(marginal * marginal.clamp(min=1e-12).log()).sum()
        return {"fid": frechet_distance(fake_f, real_f),
                "confidence": probs.max(dim=1).values.mean().item(),
                "diversity": (entropy / math.log(probs.shape[1])).item()}


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussian fits."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a
    # symmetric PSD matrix, so eigh is exact and needs no scipy.sqrtm.
    root_a = _psd_sqrt(s_a)
    eig = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0)
    value = (mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * eig.sqrt().sum()
    return max(value.item(), 0.0)


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


def cache_dir() -> Path:
    root = os.environ.get("HYPERSWEEP_CACHE")
    return Path(root) / "scorers" if root else Path.home() / ".cache" / "hypersweep" / "scorers"


def scorer_for(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> Scorer:
    """The scorer of this training set: from memory, from disk, or trained now."""
    key = _key(x, y, n_classes)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_dir() / f"{key}.pt"
    # A private RNG: whether the scorer was cached must not change a trial's draws.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        scorer = Scorer(math.prod(x.shape[1:]), n_classes)
        try:
            scorer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, EOFError):   # absent, partial or stale: retrain
            _train(scorer, x.cpu().float(), y.cpu().long())
            _save(scorer, path)
    scorer.eval().requires_grad_(False)
    _MEMO[key] = scorer
    return scorer


def _train(scorer: Scorer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = torch.optim.Adam(scorer.parameters(), lr=1e-3)
    scorer.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(y), (min(128, len(y)),))
        loss = F.cross_entropy(scorer(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _save(scorer: Scorer, path: Path) -> None:
    # Written to a temporary name then renamed: parallel trials never read half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(scorer.state_dict(), buf)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
    except OSError:
        pass   # a read-only home only costs retraining next time


def _key(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> str:
    h = hashlib.sha1(f"v1 {STEPS} {FEATURES} {n_classes} {tuple(x.shape)}".encode())
    h.update(x.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().long().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]
