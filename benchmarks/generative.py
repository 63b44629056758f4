"""Speed and quality of the generative families on digits.

    python -m benchmarks.generative            # the full run (a few minutes)
    python -m benchmarks.generative --quick    # a smoke run at small scale

For each configuration: the median epoch time (training plus validation, which
for generation includes sampling and scoring), and the quality after the first and
the last epoch (val_mse for autoencoders, val_fid for VAEs and GANs); for the
frozen classifier: the one-off cost of training it and the cost of one scoring of
a validation-sized batch. One thread per trial, as the serial executor
runs them. `--json PATH` also writes the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import torch

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("autoencoder", {"variant": "undercomplete"}),
    ("autoencoder", {"variant": "sparse"}),
    ("autoencoder", {"variant": "denoising"}),
    ("autoencoder", {"variant": "contractive"}),
    ("autoencoder", {"variant": "undercomplete", "arch": "conv"}),
    ("vae", {}),
    ("gan", {"arch": "mlp", "beta1": 0.5}),
    ("gan", {"arch": "dcgan", "beta1": 0.5, "channels": 16}),
]


def scorer_cost() -> dict[str, Any]:
    from models import scorer
    from models.data import load_dataset

    s = load_dataset("digits")
    scorer._MEMO.clear()
    start = time.perf_counter()
    frozen = scorer.scorer_for(s.x_train, s.y_train, 10)
    trained = time.perf_counter()
    scores = frozen.score(s.x_test, s.x_val)
    return {"model": "scorer", "train_s": trained - start,
            "score_s": time.perf_counter() - trained, "fid_test_vs_val": scores["fid"]}


def bench(model: str, params: dict[str, Any], epochs: int) -> dict[str, Any]:
    from models.train import train_trial
    from models.trial import TrialSpec

    spec = TrialSpec(model=model, data={"name": "digits"}, seed=0, threads=1,
                     params={"epochs": epochs, "lr": 1e-3, **params})
    result = train_trial(spec, lambda epoch, metrics: False)
    quality = "val_mse" if model == "autoencoder" else "val_fid"
    return {"model": model, **params, "state": result.state.value,
            "epoch_s": statistics.median(h["epoch_time"] for h in result.history),
            "first": result.history[0][quality], quality: result.history[-1][quality]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs per configuration")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HYPERSWEEP_CACHE"] = cache    # measure a cold scorer, leave none behind
        rows: list[dict[str, Any]] = [scorer_cost()]
        epochs = 2 if args.quick else args.epochs
        rows += [bench(m, p, epochs) for m, p in CONFIGS]
    for row in rows:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
